"""Microstructure models: fully convolutional 2-D/3-D generators and SliceGAN-style critics.

Generator (2-D or 3-D, :class:`MicroGenerator`): a latent grid ``(z_dim, l, l[, l])``
goes through transposed convolutions obeying SliceGAN's uniform-information-density
rules ``s < k``, ``k mod s == 0``, ``p >= k - s`` (k = 4, s = 2, p = 2; p = 3 on the
last layer), so every output voxel receives the same number of kernel taps and a
larger latent grid gives a larger volume without edge artefacts:
``edge = 2^L (l - 2)`` for L layers, and ``latent_shape(scale)`` returns the grid
for ``scale`` times the training size per side. GroupNorm + FiLM conditioning +
ReLU between layers; softmax over the phase channels at the end.

Critic: 2-D data use a 2-D conv critic (:class:`SliceCritic2d`; no batch norm,
projection head). 3-D data use :class:`SliceCritic3d`: the volume is cut into all
its slices along each of the three axes, each slice is scored by a 2-D critic (one
shared critic when ``options['isotropic']`` (default), one per axis otherwise) and
the scores are averaged per volume, so the engine's generic WGAN-GP, which calls
``D(volume, c)``, trains a SliceGAN critic.

References
----------
.. [1] S. Kench and S. J. Cooper, "Generating three-dimensional structures from a
   two-dimensional slice with generative adversarial network-based dimensionality
   expansion", Nature Machine Intelligence 3 (2021) 299, arXiv:2102.07708.
.. [2] I. Gulrajani et al., "Improved Training of Wasserstein GANs", NeurIPS 2017.
.. [3] T. Miyato and M. Koyama, "cGANs with Projection Discriminator", ICLR 2018.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from physgan.domains.base import ModelSpec, typed_options
from physgan.domains.micro.fractions import fraction_targets, match_fractions
from physgan.domains.micro.options import MicroModelOptions
from physgan.domains.micro.summaries import summary_phases
from physgan.errors import ConfigError
from physgan.nn.conditioning import ConditionEmbedding, FiLM, ProjectionHead
from physgan.nn.topology import soft_euler_density
from physgan.train.conditions import ConditionNormaliser

__all__ = [
    "KERNEL",
    "STRIDE",
    "slicegan_rules_ok",
    "generator_plan",
    "tap_count_map",
    "MicroGenerator",
    "SliceCritic2d",
    "SliceCritic3d",
    "build_generator",
    "build_critic",
]

KERNEL, STRIDE, PAD, PAD_LAST = 4, 2, 2, 3
#: option ``scale_blur``: taps either side of the blur kernel, and its initial width (voxels)
BLUR_RADIUS, BLUR_SIGMA_INIT = 4, 0.7
MAX_LAYERS = 5
#: scale of the critic's image statistics (fractions and interface densities vary by ~0.05 between conditions)
STATS_SCALE = 10.0
#: option ``critic_euler``: the Euler density is given to the critic per this many voxels (Berea: ~ -0.9, sd 1.5 in 32^3 windows)
EULER_VOXELS = 1e4
#: option ``critic_euler``: largest side of the window (at a random place per call) whose Euler density is estimated
EULER_WINDOW = 32
#: option ``critic_volume``: channels of the window critic's first 3-D convolution (doubled per halving)
VOLUME_WIDTH = 8


def downsampling_features(ndim: int, in_channels: int, side: int, width: int, max_layers: int, max_channels: int, pooled: int):
    """Conv(k=4, s=2, p=1) + LeakyReLU(0.2) blocks halving a ``side``-wide image or volume down to about 4, then average
    pooling to ``pooled`` per axis and a flatten: ``(nn.Sequential, number of output features)``.

    The feature extractor of both critics of this module (:class:`SliceCritic2d` on slices, :class:`VolumeCritic3d`
    on windows); channels ``width * 2^j``, at most ``max_channels``, at most ``max_layers`` blocks.
    """
    conv, pool = (nn.Conv2d, nn.AdaptiveAvgPool2d) if ndim == 2 else (nn.Conv3d, nn.AdaptiveAvgPool3d)
    n_down = max(1, min(max_layers, int(math.floor(math.log2(max(side, 2) / 4))) if side >= 8 else 1))
    layers: list[nn.Module] = []
    ch = in_channels
    for j in range(n_down):
        out = min(width * 2**j, max_channels)
        layers += [conv(ch, out, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
        ch = out
    return nn.Sequential(*layers, pool((pooled,) * ndim), nn.Flatten()), ch * pooled**ndim


def slicegan_rules_ok(k: int, s: int, p: int) -> bool:
    """SliceGAN's rules for a transposed convolution: ``s < k``, ``k mod s = 0``, ``p >= k - s``."""
    return s < k and k % s == 0 and p >= k - s


def _out_size(n: int, k: int, s: int, p: int) -> int:
    return (n - 1) * s - 2 * p + k


def generator_plan(spatial: tuple[int, ...], n_layers: int | None = None) -> tuple[int, tuple[int, ...]]:
    """Number of transposed-conv layers ``L`` and latent grid ``l_i`` so that ``2^L (l_i - 2) = n_i``.

    Parameters
    ----------
    spatial : tuple of int
        Output size per axis (voxels).
    n_layers : int, optional
        Force ``L`` (default: the largest ``L <= 5`` dividing every side).

    Returns
    -------
    (L, latent spatial shape)
    """
    spatial = tuple(int(n) for n in spatial)
    if n_layers is None:
        cands = [L for L in range(MAX_LAYERS, 0, -1) if all(n % 2**L == 0 for n in spatial)]
        if not cands:
            raise ConfigError(f"micro generator needs even sample sides (crop to a multiple of 4, e.g. 64), got {spatial}")
        n_layers = cands[0]
    n_layers = int(n_layers)
    if n_layers < 1 or any(n % 2**n_layers for n in spatial):
        raise ConfigError(f"sample sides {spatial} are not multiples of 2^{n_layers} (n_layers = {n_layers})")
    return n_layers, tuple(n // 2**n_layers + 2 for n in spatial)


def _geometry(n_layers: int) -> list[tuple[int, int, int]]:
    return [(KERNEL, STRIDE, PAD)] * (n_layers - 1) + [(KERNEL, STRIDE, PAD_LAST)]


def tap_count_map(geometry: list[tuple[int, int, int]], latent: tuple[int, ...]) -> torch.Tensor:
    """Number of kernel-tap paths from the latent grid to each output voxel.

    Propagates ones through single-channel transposed convolutions of the given
    ``(k, s, p)`` geometry with all-one kernels. With SliceGAN's rules the map is
    constant (uniform information density); otherwise the border voxels receive
    fewer contributions (the edge artefacts of DCGAN-style generators).
    """
    nd = len(latent)
    conv = {2: F.conv_transpose2d, 3: F.conv_transpose3d}[nd]
    h = torch.ones((1, 1, *latent), dtype=torch.float64)
    for k, s, p in geometry:
        h = conv(h, torch.ones((1, 1) + (k,) * nd, dtype=torch.float64), stride=s, padding=p)
    return h[0, 0]


class MicroGenerator(nn.Module):
    """Fully convolutional conditional generator ``G(z, c) -> (B, P, [d,] h, w)`` softmax phases.

    Parameters
    ----------
    spec : ModelSpec
        ``sample_shape = (n_phases, *spatial)``; ``z_dim`` latent channels; ``width``
        channels of the last hidden layer (doubling towards the latent, capped by
        ``options['max_channels']``, default 512); ``options['n_layers']`` forces L;
        ``options['exact_fractions']`` (bool): shift each sample's logits so that its soft
        phase fractions equal its ``porosity`` / ``fraction_<k>`` conditions exactly
        (:func:`~physgan.domains.micro.fractions.match_fractions`).
        ``options['scale_blur']`` (bool): blur the output logits with a Gaussian whose width
        ``sigma(c) = exp(a + w . e(c))`` voxels follows the condition embedding (:meth:`blur`), before
        the fraction matching: a direct path from a length-scale condition (porespy's blobiness is the
        width of the filter that made the image) to the texture's scale.
    """

    def __init__(self, spec: ModelSpec):
        super().__init__()
        n_phases, *spatial = spec.sample_shape
        if len(spatial) not in (2, 3):
            raise ConfigError(f"micro models need 2-D or 3-D samples, got sample shape {spec.sample_shape}")
        opts = typed_options(MicroModelOptions, spec.options or {})
        self.dim = len(spatial)
        self.n_layers, self.latent_spatial = generator_plan(tuple(spatial), opts.n_layers)
        self.z_dim = int(spec.z_dim)
        self.geometry = _geometry(self.n_layers)
        for k, s, p in self.geometry:
            if not slicegan_rules_ok(k, s, p):  # pragma: no cover - constants satisfy them
                raise ConfigError(f"transposed conv (k={k}, s={s}, p={p}) breaks SliceGAN's rules")
        cap = int(opts.max_channels)
        hidden = [min(int(spec.width) * 2 ** (self.n_layers - 2 - j), cap) for j in range(self.n_layers - 1)]
        chans = [self.z_dim, *hidden, int(n_phases)]
        ConvT = nn.ConvTranspose3d if self.dim == 3 else nn.ConvTranspose2d
        self.embed = ConditionEmbedding(spec.n_cond, spec.embed_dim)
        self.convs = nn.ModuleList(
            ConvT(chans[i], chans[i + 1], k, stride=s, padding=p, bias=False) for i, (k, s, p) in enumerate(self.geometry)
        )
        self.norms = nn.ModuleList(nn.GroupNorm(math.gcd(8, c), c) for c in hidden)
        self.films = nn.ModuleList(FiLM(spec.embed_dim, c) for c in hidden)
        targets = fraction_targets(list(spec.condition_names), int(n_phases)) if opts.exact_fractions else {}
        self.fraction_phases, self.fraction_columns = list(targets), list(targets.values())
        stats = spec.condition_stats
        if targets and not stats:
            raise ConfigError("micro generator: exact_fractions needs the condition statistics (ModelSpec.condition_stats)")
        self.normaliser = ConditionNormaliser.from_state(stats) if targets else None
        # option scale_blur: the log width of the output blur, linear in the condition embedding
        self.blur_width = None
        if opts.scale_blur:
            self.blur_width = nn.Linear(spec.embed_dim, 1)
            nn.init.normal_(self.blur_width.weight, std=0.01)
            nn.init.constant_(self.blur_width.bias, math.log(BLUR_SIGMA_INIT))

    def latent_shape(self, scale: int = 1) -> tuple[int, ...]:
        """Shape of one latent: ``(z_dim, *l)`` with ``l = scale (l_1 - 2) + 2`` for ``scale`` x the training size."""
        if int(scale) != scale or scale < 1:
            raise ConfigError(f"micro generator scale must be a positive integer, got {scale}")
        return (self.z_dim, *[int(scale) * (n - 2) + 2 for n in self.latent_spatial])

    def forward(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        e = self.embed(c)
        h = z
        for i, conv in enumerate(self.convs):
            h = conv(h)
            if i < len(self.norms):
                h = F.relu(self.films[i](self.norms[i](h), e))
        if self.blur_width is not None:
            h = self.blur(h, torch.exp(self.blur_width(e))[:, 0])
        if self.fraction_phases:
            t = self.normaliser.inverse(c.float())[:, self.fraction_columns]
            h = match_fractions(h.float(), t, self.fraction_phases)
        return torch.softmax(h, dim=1)

    @staticmethod
    def blur(h: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """Separable Gaussian blur of ``h`` (B, P, *spatial) with one width ``sigma`` (B,) in voxels per sample.

        The kernel has ``2 BLUR_RADIUS + 1`` taps per axis, normalised to sum 1 (a width far below one voxel is the
        identity); the edges replicate the outermost voxel, so a larger latent (a larger volume) is blurred the same
        way in its interior.
        """
        b, p, *spatial = h.shape
        taps = torch.arange(-BLUR_RADIUS, BLUR_RADIUS + 1, dtype=h.dtype, device=h.device)
        k = torch.softmax(-0.5 * (taps[None, :] / sigma.to(h.dtype).clamp(min=0.05)[:, None]) ** 2, dim=1)  # (B, K)
        k = k.repeat_interleave(p, dim=0)  # (B P, K): one kernel per sample and channel (grouped convolution)
        out = h.reshape(1, b * p, *spatial)
        conv = F.conv3d if len(spatial) == 3 else F.conv2d
        for axis in range(len(spatial)):
            shape = [b * p, 1] + [1] * len(spatial)
            shape[2 + axis] = 2 * BLUR_RADIUS + 1
            pad = [0, 0] * len(spatial)
            pad[2 * (len(spatial) - 1 - axis) : 2 * (len(spatial) - 1 - axis) + 2] = [BLUR_RADIUS, BLUR_RADIUS]
            out = conv(F.pad(out, pad, mode="replicate"), k.reshape(shape), groups=b * p)
        return out.reshape(b, p, *spatial)


class SliceCritic2d(nn.Module):
    """2-D conditional critic ``D(img (B, P, h, w), c) -> (B,)``; no batch norm.

    Conv(k=4, s=2, p=1) + LeakyReLU(0.2) blocks halve the image down to about 4x4
    (at most ``options['critic_layers']``, default 5), adaptive average pooling to
    4x4, a linear layer to features phi and the projection head
    ``psi(phi) + <V e(c), phi>``. With ``stats`` (option ``critic_stats``), phi also holds
    each image's phase fractions and interface densities (mean |difference| of each phase
    channel between neighbours, both axes), times :data:`STATS_SCALE`: the projection term can
    then compare a texture scale such as porespy's blobiness with its condition directly.
    """

    def __init__(
        self,
        in_channels: int,
        spatial: tuple[int, int],
        n_cond: int,
        width: int,
        embed_dim: int,
        max_layers: int = 5,
        max_channels: int = 512,
        stats: bool = False,
    ):
        super().__init__()
        self.features, n_feat = downsampling_features(2, in_channels, min(spatial), width, max_layers, max_channels, 4)
        feat = min(8 * width, max_channels)
        self.to_phi = nn.Sequential(nn.Linear(n_feat, feat), nn.LeakyReLU(0.2))
        self.embed = ConditionEmbedding(n_cond, embed_dim)
        self.stats = bool(stats)
        self.head = ProjectionHead(feat + (2 * in_channels if self.stats else 0), embed_dim)

    @staticmethod
    def image_stats(x: torch.Tensor) -> torch.Tensor:
        """``(B, 2P)``: phase fractions and interface densities of ``x`` (B, P, h, w), times :data:`STATS_SCALE`."""
        frac = x.mean(dim=(2, 3))
        edge = 0.5 * ((x[:, :, 1:] - x[:, :, :-1]).abs().mean(dim=(2, 3)) + (x[:, :, :, 1:] - x[:, :, :, :-1]).abs().mean(dim=(2, 3)))
        return STATS_SCALE * torch.cat([frac, edge], dim=1)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        phi = self.to_phi(self.features(x))
        if self.stats:
            phi = torch.cat([phi, self.image_stats(x)], dim=1)
        return self.head(phi, self.embed(c))


class VolumeCritic3d(nn.Module):
    """Small 3-D conditional critic of a volume window ``D(win (B, P, s, s, s), c) -> (B,)`` (option ``critic_volume``).

    :func:`downsampling_features` in 3-D (first layer :data:`VOLUME_WIDTH` channels, pooled to 2^3), a linear
    layer to features and a projection head that starts at zero, so the branch is silent until it has learnt
    something (the default-initialised Euler head took over the critic for ~150 steps, RESULTS §12.22). Why: a
    slice critic cannot see how the pores of consecutive slices connect; a 3-D window of a few pore lengths can.
    """

    def __init__(self, in_channels: int, side: int, n_cond: int, embed_dim: int, max_layers: int, max_channels: int):
        super().__init__()
        self.features, n_feat = downsampling_features(3, in_channels, side, VOLUME_WIDTH, max_layers, max_channels, 2)
        feat = min(8 * VOLUME_WIDTH, max_channels)
        self.to_phi = nn.Sequential(nn.Linear(n_feat, feat), nn.LeakyReLU(0.2))
        self.embed = ConditionEmbedding(n_cond, embed_dim)
        self.head = ProjectionHead(feat, embed_dim)
        for p in (self.head.psi.weight, self.head.psi.bias, self.head.V.weight):
            nn.init.zeros_(p)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return self.head(self.to_phi(self.features(x)), self.embed(c))


class SliceCritic3d(nn.Module):
    """SliceGAN critic for volumes ``D(vol (B, P, d, h, w), c) -> (B,)``.

    Every slice along each axis is scored by a 2-D critic (shared when ``isotropic``,
    else one per axis); the score of a volume is the mean over its slices and axes.
    ``slice_stride > 1`` scores every ``slice_stride``-th slice only (cheaper).
    ``slices_per_axis = k > 0`` scores ``k`` slices per axis and volume drawn uniformly
    at random on each call (an unbiased estimate of the all-slice mean at ``k / n`` of
    the cost; the profile of ``bench/micro3d_speed.py`` shows the critic's slice batch
    is where a CPU step goes). The draw uses ``self.generator`` (a ``torch.Generator``;
    default None: torch's global RNG, which physgan's checkpoints save and restore).

    ``euler`` (option ``critic_euler``) adds a volume branch: the soft Euler density of each
    summarised phase (:func:`~physgan.nn.topology.soft_euler_density`, 26-connectivity, cells inside the window
    only, per :data:`EULER_VOXELS` voxels, in a random window of side :data:`EULER_WINDOW`) through its own
    projection head (zero-initialised), added to the slice score. Why: a
    volume's connectivity (its number of loops and isolated clusters, which set its tortuosity) is not
    visible in any 2-D section, so slice critics alone cannot teach it (RESULTS §12.22: a Berea generator
    with slice statistics at the floor had less than half the real Euler characteristic and a tortuosity 44 % too high).

    ``volume`` (option ``critic_volume``) adds :class:`VolumeCritic3d` on one random window of that side per call
    (:meth:`window`, the draw of the Euler branch), its score added to the slice score: the critic then sees 3-D
    connectivity over a few pore lengths directly. At 64^3 with a 32^3 window its cost was within the step-rate
    noise (0.58-0.64 generator steps/s against the default's 0.59-0.61, RESULTS §12.24).
    """

    def __init__(
        self,
        in_channels: int,
        spatial: tuple[int, int, int],
        n_cond: int,
        width: int,
        embed_dim: int,
        isotropic: bool = True,
        slice_stride: int = 1,
        max_layers: int = 5,
        max_channels: int = 512,
        slices_per_axis: int = 0,
        stats: bool = False,
        euler: bool = False,
        volume: int = 0,
    ):
        super().__init__()
        self.isotropic = bool(isotropic)
        self.slice_stride = max(1, int(slice_stride))
        self.slices_per_axis = max(0, int(slices_per_axis))
        self.generator: torch.Generator | None = None
        d, h, w = spatial
        planes = [(h, w), (d, w), (d, h)]  # slice shapes along axes 0, 1, 2
        n_crit = 1 if self.isotropic else 3
        self.critics = nn.ModuleList(
            SliceCritic2d(in_channels, planes[a], n_cond, width, embed_dim, max_layers, max_channels, stats) for a in range(n_crit)
        )
        self.euler_phases = summary_phases(in_channels) if euler else []
        if euler:
            self.euler_embed = ConditionEmbedding(n_cond, embed_dim)
            self.euler_head = ProjectionHead(len(self.euler_phases), embed_dim)
            # silent at the start: with default init the branch dominated the critic for ~150 steps (W 30 -> 360)
            nn.init.zeros_(self.euler_head.psi.weight)
            nn.init.zeros_(self.euler_head.V.weight)
        self.volume_side = min(int(volume), *spatial) if volume else 0
        if self.volume_side:
            self.volume_critic = VolumeCritic3d(in_channels, self.volume_side, n_cond, embed_dim, max_layers, max_channels)

    def window(self, x: torch.Tensor, side: int) -> torch.Tensor:
        """A cube of ``side`` voxels of every volume of ``x`` (B, P, d, h, w) at one place drawn with ``self.generator``
        (the whole extent along axes shorter than ``side``): real and generated volumes are cut alike."""
        for axis, n in enumerate(x.shape[2:]):
            if side < n:
                start = int(torch.randint(0, n - side + 1, (1,), generator=self.generator))
                x = x.narrow(axis + 2, start, side)
        return x

    def volume_euler(self, x: torch.Tensor, window: int | None = None) -> torch.Tensor:
        """``(B, k)``: soft Euler density of each summarised phase of ``x`` per :data:`EULER_VOXELS` voxels.

        Estimated in a cube of side ``window`` (default :data:`EULER_WINDOW`; the whole volume if it is smaller) at
        one place per call drawn with ``self.generator``: the count costs 8x less at 64^3, and real and generated
        volumes are cut alike. Only the cells inside the window count (:func:`~physgan.nn.topology.soft_euler_density`):
        a whole-window count adds one per cluster the window's border cuts, +1.5 per 10^4 voxels at 32^3 on Berea,
        larger than the network's own -0.9.
        """
        x = self.window(x, int(window or EULER_WINDOW))
        return soft_euler_density(x[:, self.euler_phases], 3) * EULER_VOXELS

    def slices(self, x: torch.Tensor, axis: int) -> torch.Tensor:
        """Slices normal to spatial ``axis`` (0, 1, 2) as a 2-D batch ``(B * n, P, s1, s2)`` (volume-major; all, strided or drawn)."""
        v = x.movedim(axis + 2, 1)[:, :: self.slice_stride]
        k = self.slices_per_axis
        if 0 < k < v.shape[1]:
            idx = torch.randint(0, v.shape[1], (v.shape[0], k), device=x.device, generator=self.generator)
            v = v[torch.arange(v.shape[0], device=x.device)[:, None], idx]
        return v.reshape(v.shape[0] * v.shape[1], *v.shape[2:])

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        scores = []
        for axis in range(3):
            crit = self.critics[0 if self.isotropic else axis]
            sl = self.slices(x, axis)
            n = sl.shape[0] // b
            scores.append(crit(sl, c.repeat_interleave(n, dim=0)).view(b, n).mean(dim=1))
        score = torch.stack(scores, dim=0).mean(dim=0)
        if self.euler_phases:
            score = score + self.euler_head(self.volume_euler(x), self.euler_embed(c))
        if self.volume_side:
            score = score + self.volume_critic(self.window(x, self.volume_side), c)
        return score


def build_generator(spec: ModelSpec) -> MicroGenerator:
    """Domain factory: :class:`MicroGenerator` for ``spec``."""
    return MicroGenerator(spec)


def build_critic(spec: ModelSpec) -> nn.Module:
    """Domain factory: :class:`SliceCritic2d` for 2-D samples, :class:`SliceCritic3d` for 3-D.

    Options: ``isotropic`` (bool, default True), ``slice_stride`` (int, default 1),
    ``slices_per_axis`` (int, default 0 = every slice), ``critic_layers`` (default 5),
    ``max_channels`` (default 512), ``critic_stats`` (bool, default False: image statistics
    beside the learnt features, :class:`SliceCritic2d`), ``critic_euler`` (bool, default False: the
    volume's soft Euler characteristic beside the slice scores, 3-D only, :class:`SliceCritic3d`),
    ``critic_volume`` (int, default 0: the side of a window scored by :class:`VolumeCritic3d` beside the slice
    scores, 3-D only). The 3-D-only options do not apply to 2-D samples.
    """
    n_phases, *spatial = spec.sample_shape
    opts = typed_options(MicroModelOptions, spec.options or {})
    common = dict(
        n_cond=spec.n_cond,
        width=int(spec.width),
        embed_dim=int(spec.embed_dim),
        max_layers=int(opts.critic_layers),
        max_channels=int(opts.max_channels),
        stats=bool(opts.critic_stats),
    )
    if len(spatial) == 2:
        # critic_euler and critic_volume, like isotropic and slices_per_axis, are about volumes: a 2-D critic sees an
        # image's connectivity itself, so they do not apply (the default preset, which 2-D files also get, has
        # critic_volume)
        return SliceCritic2d(int(n_phases), tuple(spatial), **common)
    if len(spatial) == 3:
        return SliceCritic3d(
            int(n_phases),
            tuple(spatial),
            isotropic=bool(opts.isotropic),
            slice_stride=int(opts.slice_stride),
            slices_per_axis=int(opts.slices_per_axis),
            euler=bool(opts.critic_euler),
            volume=int(opts.critic_volume),
            **common,
        )
    raise ConfigError(f"micro models need 2-D or 3-D samples, got sample shape {spec.sample_shape}")
