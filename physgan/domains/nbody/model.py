"""Fully convolutional, periodic 2-D/3-D generator and projection critic for density fields.

* Generator: a latent *grid* ``z`` of shape ``(z_dim, m, m[, m])`` is
  upsampled ``n_up`` times (nearest x2, then two 3^d convolutions with
  circular padding, each modulated by FiLM from the condition embedding);
  a 3^d convolution maps to one channel with ``tanh`` (``output='linear'``
  switches it off). All operations commute with periodic shifts, so rolling
  the latent grid by one cell rolls the output by ``2**n_up`` cells, and a
  latent grid ``scale`` times larger gives a field ``scale`` times larger per
  side without edge artefacts (``latent_shape(scale)``).
* Critic: circular 3^d conv, then ``n_down`` stride-2 4^d convs with circular
  padding, LeakyReLU and GroupNorm (no batch norm: the gradient penalty is
  per sample), global average pooling to ``phi`` and the projection head
  ``psi(phi) + <V e(c), phi>``.

Options (``ModelSpec.options``): ``n_up`` (default ``spec.depth``),
``n_down`` (default ``n_up``), ``output`` ('tanh' | 'linear'),
``critic_width`` (default ``spec.width``), ``groups`` (GroupNorm groups, 0 = none).

References
----------
.. [1] A. C. Rodriguez et al., Comput. Astrophys. Cosmol. 5, 4 (2018).
.. [2] T. Miyato and M. Koyama, "cGANs with Projection Discriminator", ICLR 2018.
.. [3] E. Perez et al., "FiLM", AAAI 2018.
"""

from __future__ import annotations

import torch
from torch import nn

from physgan.domains.base import ModelSpec
from physgan.errors import ConfigError
from physgan.nn.conditioning import ConditionEmbedding, FiLM, ProjectionHead

__all__ = ["FieldGenerator", "FieldCritic", "build_generator", "build_critic"]


def _conv(dim: int):
    return nn.Conv2d if dim == 2 else nn.Conv3d


def _geometry(spec: ModelSpec) -> tuple[int, int]:
    """(dim, side) from the model-space shape ``(1, n, n[, n])`` (a shape without the channel is accepted)."""
    shape = tuple(int(s) for s in spec.sample_shape)
    spatial = shape[1:] if (len(shape) in (3, 4) and shape[0] == 1) else shape
    if len(spatial) not in (2, 3):
        raise ConfigError(f"nbody models expect a model-space shape (1, n, n[, n]), got {shape}")
    if len(set(spatial)) != 1:
        raise ConfigError(f"nbody fields must have equal sides, got {spatial}")
    return len(spatial), spatial[0]


class _UpBlock(nn.Module):
    def __init__(self, dim: int, cin: int, cout: int, embed_dim: int):
        super().__init__()
        conv = _conv(dim)
        self.conv1 = conv(cin, cout, 3, padding=1, padding_mode="circular")
        self.conv2 = conv(cout, cout, 3, padding=1, padding_mode="circular")
        self.film1 = FiLM(embed_dim, cout)
        self.film2 = FiLM(embed_dim, cout)
        self.act = nn.LeakyReLU(0.2)

    def forward(self, h: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        h = nn.functional.interpolate(h, scale_factor=2, mode="nearest")
        h = self.act(self.film1(self.conv1(h), e))
        return self.act(self.film2(self.conv2(h), e))


class FieldGenerator(nn.Module):
    """``G(z, c)``: latent grid (B, z_dim, m, m[, m]) and normalised conditions (B, k) -> (B, 1, n, n[, n])."""

    def __init__(self, spec: ModelSpec):
        super().__init__()
        dim, n = _geometry(spec)
        opts = spec.options or {}
        n_up = int(opts.get("n_up", spec.depth))
        if n_up < 0 or n % (2**n_up):
            raise ConfigError(f"nbody generator: field side {n} is not divisible by 2**n_up = {2**n_up}; set model.options.n_up")
        self.dim, self.n, self.n_up = dim, n, n_up
        self.base = n // 2**n_up
        self.z_dim = int(spec.z_dim)
        self.output = opts.get("output", "tanh")
        if self.output not in ("tanh", "linear"):
            raise ConfigError(f"nbody generator output must be 'tanh' or 'linear', got '{self.output}'")
        width = int(spec.width)
        conv = _conv(dim)
        self.embed = ConditionEmbedding(spec.n_cond, spec.embed_dim)
        self.stem = conv(self.z_dim, width, 3, padding=1, padding_mode="circular")
        self.stem_film = FiLM(spec.embed_dim, width)
        self.blocks = nn.ModuleList(_UpBlock(dim, width, width, spec.embed_dim) for _ in range(n_up))
        self.head = conv(width, 1, 3, padding=1, padding_mode="circular")
        self.act = nn.LeakyReLU(0.2)

    def latent_shape(self, scale: int = 1) -> tuple[int, ...]:
        """Shape of one latent grid; ``scale`` > 1 gives a field ``scale`` times larger per side."""
        if int(scale) < 1:
            raise ConfigError(f"scale must be a positive integer, got {scale}")
        return (self.z_dim,) + (self.base * int(scale),) * self.dim

    def forward(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        if z.ndim != self.dim + 2:
            raise ConfigError(f"latent must have shape (B, {self.z_dim}, m{', m' * (self.dim - 1)}), got {tuple(z.shape)}")
        e = self.embed(c)
        h = self.act(self.stem_film(self.stem(z), e))
        for blk in self.blocks:
            h = blk(h, e)
        y = self.head(h)
        return torch.tanh(y) if self.output == "tanh" else y


class FieldCritic(nn.Module):
    """``D(y, c)``: (B, 1, n, n[, n]) model-space fields and normalised conditions -> (B,) scores."""

    def __init__(self, spec: ModelSpec):
        super().__init__()
        dim, n = _geometry(spec)
        opts = spec.options or {}
        n_down = int(opts.get("n_down", opts.get("n_up", spec.depth)))
        while n_down > 0 and n // 2**n_down < 2:
            n_down -= 1
        width = int(opts.get("critic_width", spec.width))
        groups = int(opts.get("groups", 4))
        conv = _conv(dim)
        layers: list[nn.Module] = [conv(1, width, 3, padding=1, padding_mode="circular"), nn.LeakyReLU(0.2)]
        ch = width
        for _ in range(n_down):
            cout = min(2 * ch, 4 * width)
            layers.append(conv(ch, cout, 4, stride=2, padding=1, padding_mode="circular"))
            if groups > 0 and cout % groups == 0:
                layers.append(nn.GroupNorm(groups, cout))
            layers.append(nn.LeakyReLU(0.2))
            ch = cout
        self.features = nn.Sequential(*layers)
        self.embed = ConditionEmbedding(spec.n_cond, spec.embed_dim)
        self.head = ProjectionHead(ch, spec.embed_dim)
        self.dim = dim

    def forward(self, y: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        h = self.features(y)
        phi = h.flatten(2).mean(dim=2)
        return self.head(phi, self.embed(c))


def build_generator(spec: ModelSpec) -> FieldGenerator:
    """Build the periodic conditional generator for ``spec`` (see :class:`FieldGenerator`)."""
    return FieldGenerator(spec)


def build_critic(spec: ModelSpec) -> FieldCritic:
    """Build the periodic projection critic for ``spec`` (see :class:`FieldCritic`)."""
    return FieldCritic(spec)
