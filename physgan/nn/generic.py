"""Generic conditional generators and critics: MLP for vectors, conv nets for grids.

These serve the ``array`` domain (any fixed-shape samples) and are reasonable
starting points for new domains. Generators: ``G(z, c)``; critics:
``D(x, c) -> (B,)`` with a projection head and no batch norm.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from physgan.nn.conditioning import ConditionEmbedding, FiLM, ProjectionHead

__all__ = ["MLPGenerator", "MLPCritic", "ConvGenerator", "ConvCritic", "ACTIVATIONS", "CRITIC_NORMS", "make_activation"]

#: Hidden-layer activations of the MLPs, by name, the default first (``model.options.activation``).
ACTIVATIONS = ("leaky_relu", "relu")

#: Normalisation of the MLP critic's hidden layers, the default first (``model.options.critic_norm``).
CRITIC_NORMS = ("layer", "none")


def make_activation(name: str) -> nn.Module:
    """The activation called ``name``: ``leaky_relu`` (slope 0.2, the default) or ``relu``.

    A ReLU generator can flatten whole regions of its latent space onto a point, which is how
    it tears its mass apart into separated modes; a leaky ReLU map keeps every slope non-zero.
    On the 5 x 5 grid of Gaussians the ReLU MLP covers the modes several times faster
    (bench/RESULTS.md, section 8).
    """
    if name == "leaky_relu":
        return nn.LeakyReLU(0.2)
    if name == "relu":
        return nn.ReLU()
    raise ValueError(f"unknown activation '{name}'; choose one of {', '.join(ACTIVATIONS)}")


class MLPGenerator(nn.Module):
    """``z (B, z_dim)`` and conditions -> samples ``(B, *out_shape)``; FiLM in every layer."""

    def __init__(
        self,
        out_shape: tuple[int, ...],
        n_cond: int,
        z_dim: int = 64,
        width: int = 128,
        depth: int = 3,
        embed_dim: int = 32,
        activation: str = "leaky_relu",
    ):
        super().__init__()
        self.out_shape = tuple(out_shape)
        self.z_dim = z_dim
        self.embed = ConditionEmbedding(n_cond, embed_dim)
        self.inp = nn.Linear(z_dim + embed_dim, width)
        self.hidden = nn.ModuleList(nn.Linear(width, width) for _ in range(depth - 1))
        self.films = nn.ModuleList(FiLM(embed_dim, width) for _ in range(depth))
        self.act = make_activation(activation)
        self.out = nn.Linear(width, math.prod(self.out_shape))

    def latent_shape(self, scale: int = 1) -> tuple[int, ...]:
        return (self.z_dim,)

    def forward(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        e = self.embed(c)
        h = self.act(self.films[0](self.inp(torch.cat([z, e], dim=1)), e))
        for lin, film in zip(self.hidden, self.films[1:]):
            h = self.act(film(lin(h), e))
        return self.out(h).view(z.shape[0], *self.out_shape)


class MLPCritic(nn.Module):
    """Flattened samples -> features (Linear, LayerNorm or none, activation) -> projection head.

    ``norm="layer"`` (the default) suits many-feature samples. On a handful of features
    (2-D toys) LayerNorm discards the magnitude of each layer's pre-activations, which the
    critic needs there: use ``norm="none"``.
    """

    def __init__(
        self,
        in_shape: tuple[int, ...],
        n_cond: int,
        width: int = 128,
        depth: int = 3,
        embed_dim: int = 32,
        activation: str = "leaky_relu",
        norm: str = "layer",
    ):
        super().__init__()
        if norm not in CRITIC_NORMS:
            raise ValueError(f"unknown critic norm '{norm}'; choose one of {', '.join(CRITIC_NORMS)}")
        layers: list[nn.Module] = []
        d_in = math.prod(in_shape)
        for _ in range(depth):
            layers += [nn.Linear(d_in, width), *([nn.LayerNorm(width)] if norm == "layer" else []), make_activation(activation)]
            d_in = width
        self.features = nn.Sequential(*layers)
        self.embed = ConditionEmbedding(n_cond, embed_dim)
        self.head = ProjectionHead(width, embed_dim)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x.flatten(1)), self.embed(c))


def _conv(ndim: int):
    return nn.Conv2d if ndim == 2 else nn.Conv3d


class ConvGenerator(nn.Module):
    """Latent grid -> (upsample x2, conv, FiLM, LeakyReLU) x n_up -> crop to ``out_shape``.

    ``out_shape`` is ``(C, H, W)`` or ``(C, D, H, W)``. The latent is a grid of
    ``z_dim`` channels of size ``ceil(size / 2**n_up)`` per axis, so a latent
    grid ``scale`` times larger yields a sample ``scale`` times larger (fully
    convolutional). ``padding_mode='circular'`` suits periodic boxes.
    """

    def __init__(
        self,
        out_shape: tuple[int, ...],
        n_cond: int,
        z_dim: int = 32,
        width: int = 64,
        n_up: int = 2,
        embed_dim: int = 32,
        padding_mode: str = "zeros",
    ):
        super().__init__()
        self.out_shape = tuple(out_shape)
        self.ndim = len(out_shape) - 1
        self.z_dim = z_dim
        self.n_up = n_up
        self.base = tuple(math.ceil(s / 2**n_up) for s in out_shape[1:])
        Conv = _conv(self.ndim)
        self.embed = ConditionEmbedding(n_cond, embed_dim)
        self.inp = Conv(z_dim, width, 3, padding=1, padding_mode=padding_mode)
        chans = [max(width // 2**i, 8) for i in range(n_up + 1)]
        self.blocks = nn.ModuleList(Conv(chans[i], chans[i + 1], 3, padding=1, padding_mode=padding_mode) for i in range(n_up))
        self.films = nn.ModuleList(FiLM(embed_dim, ch) for ch in chans)
        self.inp = Conv(z_dim, chans[0], 3, padding=1, padding_mode=padding_mode)
        self.out = Conv(chans[-1], out_shape[0], 3, padding=1, padding_mode=padding_mode)
        self.act = nn.LeakyReLU(0.2)

    def latent_shape(self, scale: int = 1) -> tuple[int, ...]:
        return (self.z_dim, *(b * scale for b in self.base))

    def forward(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        e = self.embed(c)
        h = self.act(self.films[0](self.inp(z), e))
        for conv, film in zip(self.blocks, self.films[1:]):
            h = nn.functional.interpolate(h, scale_factor=2, mode="nearest")
            h = self.act(film(conv(h), e))
        y = self.out(h)
        scale = z.shape[2] // self.base[0]
        target = [s * scale for s in self.out_shape[1:]]
        return y[(..., *(slice(0, t) for t in target))]


class ConvCritic(nn.Module):
    """(conv, GroupNorm(1), LeakyReLU, stride-2 conv) blocks -> global average -> projection head."""

    def __init__(
        self,
        in_shape: tuple[int, ...],
        n_cond: int,
        width: int = 64,
        n_down: int = 2,
        embed_dim: int = 32,
        padding_mode: str = "zeros",
    ):
        super().__init__()
        ndim = len(in_shape) - 1
        Conv = _conv(ndim)
        layers: list[nn.Module] = [
            Conv(in_shape[0], width // 2**n_down if width // 2**n_down >= 8 else 8, 3, padding=1, padding_mode=padding_mode)
        ]
        ch = layers[0].out_channels
        for _ in range(n_down):
            nxt = min(ch * 2, width)
            layers += [
                nn.LeakyReLU(0.2),
                Conv(ch, nxt, 3, padding=1, padding_mode=padding_mode),
                nn.GroupNorm(1, nxt),
                nn.LeakyReLU(0.2),
                Conv(nxt, nxt, 4 if min(in_shape[1:]) >= 4 else 3, stride=2, padding=1, padding_mode=padding_mode),
            ]
            ch = nxt
        layers += [nn.LeakyReLU(0.2)]
        self.features = nn.Sequential(*layers)
        self.embed = ConditionEmbedding(n_cond, embed_dim)
        self.head = ProjectionHead(ch, embed_dim)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        h = self.features(x).flatten(2).mean(dim=2)
        return self.head(h, self.embed(c))
