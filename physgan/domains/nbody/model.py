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

import numpy as np
import torch
from torch import nn

from physgan.domains.base import ModelSpec, typed_options
from physgan.domains.nbody.calibration import GRID_EDGE, calibrate_generator, grid_basis
from physgan.domains.nbody.options import NbodyModelOptions
from physgan.domains.nbody.spectral import (
    field_summaries,
    lattice_harmonics,
    low_modes,
    n_summaries,
    shell_interpolation,
    shell_multiplicity,
    singleton_thresholds,
    soft_minkowski,
    soft_singletons,
)
from physgan.errors import ConfigError
from physgan.nn.conditioning import ConditionEmbedding, FiLM, ProjectionHead
from physgan.train.conditions import ConditionNormaliser
from physgan.train.moments import condition_basis

__all__ = [
    "FieldGenerator",
    "FieldCritic",
    "SpectralFieldGenerator",
    "StandardisedSummaries",
    "SummaryFieldCritic",
    "build_generator",
    "build_critic",
    "moment_features",
]


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
        opts = typed_options(NbodyModelOptions, spec.options or {})
        n_up = int(spec.depth if opts.n_up is None else opts.n_up)
        if n_up < 0 or n % (2**n_up):
            raise ConfigError(f"nbody generator: field side {n} is not divisible by 2**n_up = {2**n_up}; set model.options.n_up")
        self.dim, self.n, self.n_up = dim, n, n_up
        self.base = n // 2**n_up
        self.z_dim = int(spec.z_dim)
        self.output = opts.output
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


def _conv_features(spec: ModelSpec, dim: int, n: int) -> tuple[nn.Sequential, int]:
    """The critic's periodic conv stack (circular 3^d conv, ``n_down`` stride-2 4^d convs) and its width."""
    opts = typed_options(NbodyModelOptions, spec.options or {})
    n_down = int(opts.n_down if opts.n_down is not None else (spec.depth if opts.n_up is None else opts.n_up))
    while n_down > 0 and n // 2**n_down < 2:
        n_down -= 1
    width = int(spec.width if opts.critic_width is None else opts.critic_width)
    groups = int(opts.groups)
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
    return nn.Sequential(*layers), ch


class FieldCritic(nn.Module):
    """``D(y, c)``: (B, 1, n, n[, n]) model-space fields and normalised conditions -> (B,) scores."""

    def __init__(self, spec: ModelSpec):
        super().__init__()
        dim, n = _geometry(spec)
        self.features, ch = _conv_features(spec, dim, n)
        self.embed = ConditionEmbedding(spec.n_cond, spec.embed_dim)
        self.head = ProjectionHead(ch, spec.embed_dim)
        self.dim = dim

    def forward(self, y: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        h = self.features(y)
        phi = h.flatten(2).mean(dim=2)
        return self.head(phi, self.embed(c))


def _load_calibration(module: nn.Module, state_dict: dict, prefix: str, *args) -> None:
    """Load-state pre-hook of :class:`SpectralFieldGenerator`, for checkpoints made under another ``calibrate`` setting.

    * A checkpoint without the calibration's buffers (a run made without it) loads into a generator that has them (the
      user set ``calibrate: true``) as no correction: it samples what it was trained and judged as, and a resumed
      training calibrates it at its next checkpoint.
    * A checkpoint with them (runs made while the default was on, 2026-12-06) keeps its calibration when the option is
      at its default, and drops it when the user set ``calibrate: false``.
    """
    key_power, key_mean = prefix + "cal_power", prefix + "cal_mean"
    if module.power_fit is not None:
        if key_power not in state_dict:
            state_dict[key_power] = torch.zeros_like(module.cal_power)
            state_dict[key_mean] = torch.zeros_like(module.cal_mean)
        return
    if key_power not in state_dict:
        return
    if module._calibrate_set or module._fit_available is None:
        for key in (key_power, key_mean):
            state_dict.pop(key, None)
    else:
        module._enable_calibration(module._fit_available)


def _data_stats(spec: ModelSpec) -> dict:
    stats = dict(spec.data_stats)
    missing = [k for k in ("mu", "sd", "pk_shell", "summary_mean", "summary_std") if k not in stats]
    if missing:
        raise ConfigError(
            f"nbody spectral model needs the 'gauss' transform's statistics (missing {missing}); "
            "set data.transform.kind=gauss or model.options.arch=conv"
        )
    return stats


class SpectralFieldGenerator(nn.Module):
    """``G(z, c)``: white-noise latent fields (B, z_dim, n, n[, n]) and conditions (B, k) -> (B, 1, n, n[, n]).

    Built on what a cosmological field is: a Gaussian random field is white noise coloured by
    ``sqrt(P(k))``, and the lognormal and N-body fields are close to pointwise and local transforms of one.

    1. *Spectral colouring.* The first ``channels`` latent channels are coloured in Fourier space by
       ``exp(log A_c(k, theta))``: an MLP of the shell index and the condition embedding gives ``log A`` on
       the shells ``|m| = 0, 1, 2, ...`` of the training grid, linearly interpolated onto each mode. Its last
       layer starts at zero on top of the training fields' mean spectrum (``data_stats['pk_node']``: node powers
       that give each shell its mean power after the interpolation), so training starts from the right power and
       learns its dependence on cosmology.
    2. *Local non-Gaussianity.* A residual of 1^d and circular 3^d convolutions (FiLM-modulated; the
       remaining ``z_dim - channels`` latent channels are per-pixel noise injected here) adds what the
       coloured field lacks (N-body filaments, peaks); its output layer starts at zero.
    3. ``y = b + g_0 + r``, linear: nothing squashes the tail (the transform is ``'gauss'``) below the training
       fields' largest log density, where it is cut (option ``density_cap``, ``data_stats['y_max']``). The offset ``b``
       holds the mean density at the cosmic mean by construction, as the calorimeter generator holds its
       energy bookkeeping: for the transform ``x = exp(mu + sd y) - eps`` and a Gaussian ``g_0`` of variance
       ``var`` (known from its own amplitudes), ``b = (log(1 + eps) - mu - sd^2 var / 2) / sd`` gives
       ``E[x] = 1`` at every cosmology; a learned correction ``b'`` (starting at zero) absorbs what the
       residual changes: a function of the conditions, one constant or none (option ``mean_offset``); or, with
       ``mean_offset='exact'``, no learned correction: each field's ``y`` is lowered by ``(log <exp(sd (g_0 + r))> -
       log <exp(sd g_0)>) / sd`` (``<.>``: the mean over its cells), so that its mean density is exactly what its coloured
       field alone gives and ``E[x] = 1`` holds at every cosmology whatever the residual does to the density's
       distribution (a constant ``b'`` holds it on average over the training conditions only). With
       ``zero_mean_residual`` the residual has zero mean in every field, so only ``b`` sets the mean density; with
       ``residual_highpass`` its modes below that ``|m|`` are removed (the mean among them), so the large scales are
       the coloured field's alone. Option ``residual`` false builds no residual (``y = b + g_0``: a log-Gaussian
       field, the model class of data lognormal per cell (not of slabs through lognormal boxes: bench/RESULTS.md §11,
       twenty-ninth session), where all that is learned is the spectrum and its
       dependence on the conditions).

    Every operation commutes with periodic shifts and sees the field only through Fourier shells or 3^d
    stencils, so rolling the latent rolls the output by as many cells, and a latent ``scale`` times larger
    per side gives a field ``scale`` times larger with the same P(k) (the shells are interpolated at the
    same physical wavenumbers). Options: ``channels`` (coloured channels, default ``min(4, z_dim)``),
    ``res_blocks`` (3^d conv blocks, default 2), ``spectral_hidden`` (MLP width, default 64), ``amp_degree``
    (0, 1 or 2: the learned part of ``log A`` is a polynomial of that degree in the conditions, see
    :meth:`log_amplitude`; 0 learns one correction for all conditions on top of the fitted response) and ``amp_fit``
    (default true: with ``amp_degree``, ``log A`` starts from the training fields' own least-squares dependence on
    the conditions, ``data_stats['amp_fit']``, so the networks learn a correction rather than the whole response),
    ``amp_form`` (``'quadratic'``, default; ``'power_law'``: the fitted start is a power law in the conditions and the
    learned polynomial is in their normalised logarithms) and
    ``calibrate`` (default false: after training, :meth:`calibrate_statistics` sets the mean density and the density power
    to the training fields' at every condition, :mod:`physgan.domains.nbody.calibration`) and ``lattice_anisotropy``
    (default false: the coloured power depends on a mode's direction as the training fields' does near the grid scale,
    ``data_stats['lattice_aniso']``; fixed, not learned).
    """

    def __init__(self, spec: ModelSpec):
        super().__init__()
        dim, n = _geometry(spec)
        opts = typed_options(NbodyModelOptions, spec.options or {})
        stats = _data_stats(spec)
        self.dim, self.n = dim, n
        self.z_dim = int(spec.z_dim)
        self.channels = int(min(4, self.z_dim) if opts.channels is None else opts.channels)
        if not 1 <= self.channels <= self.z_dim:
            raise ConfigError(f"nbody spectral generator: channels must be in 1..z_dim={self.z_dim}, got {self.channels}")
        pk = torch.as_tensor(stats.get("pk_node", stats["pk_shell"]), dtype=torch.float32)  # runs before pk_node: shell means
        self.n_nodes = len(pk)
        self.register_buffer("log_amp0", 0.5 * torch.log(pk), persistent=False)
        nodes = torch.arange(self.n_nodes, dtype=torch.float32)
        kfeat = torch.stack([nodes / (n / 2), torch.log1p(nodes) / np.log(n), (nodes == 0).float()], dim=1)
        self.register_buffer("kfeat", kfeat, persistent=False)
        hidden = int(opts.spectral_hidden)
        self.embed = ConditionEmbedding(spec.n_cond, spec.embed_dim)
        self.amp_degree = opts.amp_degree  # None: runs made before (an MLP of shell and embedding)
        if self.amp_degree is None:
            n_in, n_out = 3 + spec.embed_dim, self.channels
        else:
            self.amp_degree = int(self.amp_degree)
            if self.amp_degree not in (0, 1, 2):
                raise ConfigError(f"nbody model.options.amp_degree must be 0, 1 or 2, got {self.amp_degree}")
            self.n_terms = condition_basis(torch.zeros(1, spec.n_cond), self.amp_degree).shape[1]
            n_in, n_out = 3, self.channels * self.n_terms
        self.amp_net = nn.Sequential(
            nn.Linear(n_in, hidden),
            nn.LeakyReLU(0.2),
            nn.Linear(hidden, hidden),
            nn.LeakyReLU(0.2),
            nn.Linear(hidden, n_out),
        )
        nn.init.zeros_(self.amp_net[-1].weight)
        nn.init.zeros_(self.amp_net[-1].bias)
        self.amp_fit = None
        # option amp_form: "power_law" puts the fitted start and the learned polynomial in the normalised log conditions
        if opts.amp_form == "power_law" and self.amp_degree is None:
            raise ConfigError("nbody model.options.amp_form=power_law needs model.options.amp_degree (0, 1 or 2)")
        self.amp_log = opts.amp_form == "power_law" and bool(spec.n_cond)
        key = "amp_fit_power_law" if self.amp_log else "amp_fit"
        fit = stats.get(key)
        if self.amp_log and (fit is None or not spec.condition_stats):
            raise ConfigError(
                f"nbody model.options.amp_form=power_law needs data_stats['{key}'] (a transform fitted by this version on "
                "conditions that are all > 0) and the conditions' normaliser state"
            )
        if self.amp_degree is not None and fit is not None and (opts.amp_fit or self.amp_log) and spec.n_cond:
            if len(fit["coef"]) != self.n_nodes:
                raise ConfigError(f"nbody spectral generator: data_stats['{key}'] has {len(fit['coef'])} shells, expected {self.n_nodes}")
            if not spec.condition_stats:
                raise ConfigError(f"nbody spectral generator: data_stats['{key}'] needs the conditions' normaliser state")
            self.amp_fit = ConditionNormaliser.from_state(spec.condition_stats)
            self.amp_fit_degree = int(fit["degree"])
            self.amp_fit_used = bool(opts.amp_fit)  # power_law without amp_fit: the fit's log normalisation alone
            self.register_buffer("af_coef", torch.as_tensor(fit["coef"], dtype=torch.float32), persistent=False)
            self.register_buffer("af_offset", torch.as_tensor(fit["offset"], dtype=torch.float32), persistent=False)
            self.register_buffer("af_mean", torch.as_tensor(fit["c_mean"], dtype=torch.float32), persistent=False)
            self.register_buffer("af_std", torch.as_tensor(fit["c_std"], dtype=torch.float32), persistent=False)
        lattice_coef = None  # option lattice_anisotropy: (n_nodes, 2) of the data's direction dependence
        if opts.lattice_anisotropy:
            coef = stats.get("lattice_aniso")
            if coef is None or len(coef) != self.n_nodes:
                raise ConfigError(
                    "nbody model.options.lattice_anisotropy needs data_stats['lattice_aniso'] with one row per shell node "
                    "(a transform fitted with this version)"
                )
            lattice_coef = torch.as_tensor(coef, dtype=torch.float32)
        self.register_buffer("lattice_coef", lattice_coef, persistent=False)
        self.mu, self.sd, self.eps = float(stats["mu"]), float(stats["sd"]), float(stats.get("eps", 1e-3))
        y_max = stats.get("y_max")
        self.y_max = float(y_max) if y_max is not None and opts.density_cap else None  # the output's ceiling
        # option calibrate: the mean density and the density power set to the training fields' after training
        # (physgan.domains.nbody.calibration); runs whose statistics lack the density fit have no such buffers
        fit = stats.get("density_power_fit") if spec.n_cond and spec.condition_stats else None
        self._fit_available = fit
        self._calibrate_set = "calibrate" in (spec.options or {})  # set by the user, not the default
        self._condition_stats = spec.condition_stats
        self.power_fit = None
        if fit is not None and opts.calibrate:
            self._enable_calibration(fit)
        self.register_load_state_dict_pre_hook(_load_calibration)
        self.offset = nn.Linear(spec.embed_dim, 1)
        nn.init.zeros_(self.offset.weight)
        nn.init.zeros_(self.offset.bias)
        # b'(theta) learned freely drifts with the conditions and shifts the mean density the wrong way (0.98 at high
        # sigma8, 1.01 at low: the density power's sigma8 response came out 15 % weak, bench/RESULTS.md §11); the
        # presets keep it constant or off. Frozen parameters stay at zero (and in the state dict, for old runs).
        self.offset.weight.requires_grad_(opts.mean_offset == "conditional")
        self.offset.bias.requires_grad_(opts.mean_offset in ("conditional", "constant"))
        self.mean_exact = opts.mean_offset == "exact"
        # a residual free to move each field's mean learns a condition-dependent mean density (0.986 at high sigma8,
        # 1.005 at low, with b' off) and weakens the same response; without its mean it only shapes the field
        self.zero_mean_residual = bool(opts.zero_mean_residual)
        self.residual_conditioned = bool(opts.residual_conditioned)  # False: the residual's shape ignores the conditions
        # the residual's large-scale modes removed: with a conditioned residual the grid corner (0.25, 0.90) kept 4-5 %
        # too much large-scale power, an unconditioned one fixed that but not the Minkowski functionals (RESULTS §11,
        # fifteenth session); a conditioned residual above the cut can shape the field by cosmology without moving P(k) there
        self.residual_highpass = float(opts.residual_highpass)
        if self.residual_highpass < 0:
            raise ConfigError(f"nbody spectral generator: residual_highpass must be >= 0, got {self.residual_highpass}")
        self.residual = bool(opts.residual)
        if not self.residual:  # y = b + g_0: nothing else is built (the other latent channels are read by nothing)
            return
        width = int(spec.width)
        conv = _conv(dim)
        self.residual_condition = opts.residual_condition
        n_film = spec.embed_dim
        if self.residual_condition != "embedding":
            n_film = 1 if self.residual_condition == "variance" else 2
            # the moments of the training fields' mean spectrum: the features are log moments relative to these
            self.register_buffer("moment_ref", self._log_moments(self.log_amp0[None, :, None], (n,) * dim)[0], persistent=False)
        self.res_in = conv(self.z_dim, width, 1)
        self.res_film = FiLM(n_film, width)
        self.res_blocks = nn.ModuleList(
            nn.ModuleDict({"conv": conv(width, width, 3, padding=1, padding_mode="circular"), "film": FiLM(n_film, width)})
            for _ in range(int(opts.res_blocks))
        )
        self.res_out = conv(width, 1, 1)
        nn.init.zeros_(self.res_out.weight)
        nn.init.zeros_(self.res_out.bias)
        self.act = nn.LeakyReLU(0.2)

    def latent_shape(self, scale: int = 1) -> tuple[int, ...]:
        """Shape of one latent (white noise per cell); ``scale`` > 1 gives a field ``scale`` times larger per side."""
        if int(scale) < 1:
            raise ConfigError(f"scale must be a positive integer, got {scale}")
        return (self.z_dim,) + (self.n * int(scale),) * self.dim

    def _log_moments(self, log_a: torch.Tensor, spatial: tuple[int, ...]) -> torch.Tensor:
        """``(log sigma_0^2, log sigma_1^2)`` (B, 2) of the first coloured channel for node log amplitudes ``log_a``
        (B, nodes, C): its variance and its gradient's (``|m|`` in training-grid units), per field."""
        lo, hi, w = (t.to(log_a.device) for t in shell_interpolation(spatial, self.n, self.n_nodes))
        la = log_a[:, lo, 0] * (1 - w) + log_a[:, hi, 0] * w  # (B, modes)
        mult = shell_multiplicity(spatial).to(log_a.device).flatten()
        m2 = (lo * (1 - w) + hi * w) ** 2
        p = torch.exp(2 * la) * mult
        return torch.log(torch.stack([p.sum(dim=1), (p * m2).sum(dim=1)], dim=1) / mult.sum())

    def log_amplitude(self, e: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """``log A`` per shell node -> (B, n_nodes, channels), for condition embeddings ``e`` (B, E) and conditions ``c``.

        With ``amp_degree`` (new runs) ``log A`` is a polynomial of that degree in the normalised conditions (their
        normalised logarithms with ``amp_form='power_law'``) whose coefficients are functions of the shell: smooth
        between the training cosmologies by construction. A free MLP of the embedding (runs made before) fits the
        training grid's points and may bend anywhere between them: held-out cosmologies came out up to 8 % off in
        amplitude while neighbouring training points were right (bench/RESULTS.md §11).
        """
        b = e.shape[0]
        if self.amp_degree is None:
            x = torch.cat([self.kfeat.expand(b, -1, -1), e[:, None, :].expand(-1, self.n_nodes, -1)], dim=2)
            return self.log_amp0[None, :, None] + self.amp_net(x)
        coef = self.amp_net(self.kfeat).view(self.n_nodes, self.channels, self.n_terms)
        u = None
        if self.amp_fit is not None:  # the fit's coordinates: normalised conditions, or their logarithms (amp_form)
            c_phys = self.amp_fit.inverse(c.float())
            u = (torch.log(c_phys.clamp_min(1e-30)) if self.amp_log else c_phys) - self.af_mean
            u = u / self.af_std
        phi = condition_basis(u if self.amp_log else c.float(), self.amp_degree)  # (B, T)
        log_a = self.log_amp0[None, :, None] + torch.einsum("nct,bt->bnc", coef, phi)
        if u is not None and self.amp_fit_used:  # start from the training data's own dependence on the conditions
            fitted = condition_basis(u, self.amp_fit_degree) @ self.af_coef.T - self.af_offset  # (B, nodes): log power
            log_a = log_a + 0.5 * fitted[:, :, None]
        if self.power_fit is not None:
            log_a = log_a + 0.5 * (self._calibration_basis(c) @ self.cal_power.T)[:, :, None]
        return log_a

    def _enable_calibration(self, fit: dict) -> None:
        """Register the calibration's buffers (zero: no correction until :meth:`calibrate_statistics`) for ``fit``."""
        if len(fit["coef"]) != self.n_nodes:
            raise ConfigError(
                f"nbody spectral generator: data_stats['density_power_fit'] has {len(fit['coef'])} shells, expected {self.n_nodes}"
            )
        self.power_fit = fit
        self.cond_norm = ConditionNormaliser.from_state(self._condition_stats)
        n_cal = grid_basis(torch.zeros(1, len(fit["c_mean"]))).shape[1]
        device = self.log_amp0.device
        self.register_buffer("cal_power", torch.zeros(self.n_nodes, n_cal, device=device))  # log-power correction per node and term
        self.register_buffer("cal_mean", torch.zeros(n_cal, device=device))  # log-density shift per term
        self.register_buffer("cal_c_mean", torch.as_tensor(fit["c_mean"], dtype=torch.float32, device=device), persistent=False)
        self.register_buffer("cal_c_std", torch.as_tensor(fit["c_std"], dtype=torch.float32, device=device), persistent=False)

    def _calibration_basis(self, c: torch.Tensor) -> torch.Tensor:
        """Condition basis of the calibration (:mod:`physgan.domains.nbody.calibration`) at normalised conditions ``c``."""
        u = (self.cond_norm.inverse(c.float()) - self.cal_c_mean) / self.cal_c_std
        return grid_basis(u.clamp(-GRID_EDGE, GRID_EDGE))  # held at the grid's edge beyond it, not extrapolated

    @property
    def calibrated(self) -> bool:
        """Whether this generator has the calibration (option ``calibrate`` and the data's density power fit)."""
        return self.power_fit is not None

    def calibrate_statistics(self, n_per_point: int | None = None, seed: int = 0, scale: int = 1) -> dict[str, list[float]] | None:
        """Set the mean density and the density power to the training fields' at every condition (no-op without
        :attr:`calibrated`); see :func:`physgan.domains.nbody.calibration.calibrate_generator`. The training loop
        calls it on the EMA generator before each validation and checkpoint.

        Parameters
        ----------
        n_per_point : int, optional
            Fields generated at each calibration condition in the first rounds, four times as many in the last two;
            default 512 at 64^2 and below, fewer for larger fields (as many cells as 512 fields of 64^2: 64 at 32^3), at
            least 64. The cost is ~55 s on one core at 64^2.
        seed : int
            Seed of their latents (the global random state is untouched).
        scale : int
            Multiplies the last two rounds' fields (``physgan calibrate --scale``, after training: 4 gives 8192 fields per
            point at 64^2, ~3.5 min on one core).

        Returns
        -------
        dict or None
            :func:`~physgan.domains.nbody.calibration.calibrate_generator`'s report; None without :attr:`calibrated`.
        """
        if not self.calibrated:
            return None
        if n_per_point is None:
            n_per_point = int(np.clip(512 * 64**2 // self.n**self.dim, 64, 512))
        return calibrate_generator(self, n_per_point=n_per_point, seed=seed, n_final=4 * n_per_point * max(1, int(scale)))

    def forward(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        if z.ndim != self.dim + 2 or z.shape[1] != self.z_dim:
            raise ConfigError(f"latent must have shape (B, {self.z_dim}, n{', n' * (self.dim - 1)}), got {tuple(z.shape)}")
        e = self.embed(c)
        spatial = tuple(z.shape[2:])
        lo, hi, w = (t.to(z.device) for t in shell_interpolation(spatial, self.n, self.n_nodes))
        log_a_nodes = self.log_amplitude(e, c)  # (B, nodes, C)
        log_a = log_a_nodes[:, lo] * (1 - w)[None, :, None] + log_a_nodes[:, hi] * w[None, :, None]  # (B, modes, C)
        if self.lattice_coef is not None:  # the direction dependence, at the same physical wavenumbers on any grid
            u = torch.as_tensor(lattice_harmonics(spatial), dtype=log_a.dtype, device=z.device)
            coef = self.lattice_coef[lo] * (1 - w)[:, None] + self.lattice_coef[hi] * w[:, None]
            log_a = log_a + 0.5 * (u * coef).sum(dim=1)[None, :, None]
        dims = tuple(range(2, z.ndim))
        f = torch.fft.rfftn(z[:, : self.channels], dim=dims, norm="ortho")
        amp = torch.exp(log_a).transpose(1, 2).reshape(f.shape)
        g = torch.fft.irfftn(f * amp, s=spatial, dim=dims, norm="ortho")
        mult = shell_multiplicity(spatial).to(z.device)
        var = (amp[:, 0].flatten(1) ** 2 * mult).sum(dim=1) / mult.sum()  # variance of g_0 (ortho: per-mode power)
        b = (np.log1p(self.eps) - self.mu - self.sd**2 * var / 2) / self.sd + self.offset(e)[:, 0]
        if self.power_fit is not None:
            b = b + self._calibration_basis(c) @ self.cal_mean
        shape = (z.shape[0], 1) + (1,) * self.dim
        y = b.view(shape) + g[:, :1]
        if self.residual:
            if self.residual_condition != "embedding":  # the coloured field's own log moments, x4: O(1) over a grid;
                # read on the training grid whatever the latent's size (a larger field's extra large-scale modes would
                # move them by a few per cent: the residual would act as at another cosmology)
                e = 4.0 * (self._log_moments(log_a_nodes, (self.n,) * self.dim).detach() - self.moment_ref)
                e = e[:, :1] if self.residual_condition == "variance" else e
            r = self._residual(g, z, e, spatial, dims)
            y = y + (r - self._mean_shift(g[:, :1], r, dims) if self.mean_exact else r)
        return y if self.y_max is None else y.clamp(max=self.y_max)

    def _mean_shift(self, g0: torch.Tensor, r: torch.Tensor, dims: tuple) -> torch.Tensor:
        """Per field, the constant (in ``y``) by which the residual ``r`` raises the mean over cells of ``exp(sd y)``
        above the coloured field ``g0``'s alone (option ``mean_offset='exact'``), shaped to broadcast over ``r``."""
        flat = (g0.shape[0], -1)
        shift = torch.logsumexp(self.sd * (g0 + r).reshape(flat), dim=1) - torch.logsumexp(self.sd * g0.reshape(flat), dim=1)
        return (shift / self.sd).view((-1,) + (1,) * (r.ndim - 1))

    def _residual(self, g: torch.Tensor, z: torch.Tensor, e: torch.Tensor, spatial: tuple, dims: tuple) -> torch.Tensor:
        """The local residual ``r`` of the coloured channels ``g`` and the noise channels of ``z`` (option ``residual``)."""
        e_res = e if self.residual_conditioned else torch.zeros_like(e)
        h = self.act(self.res_film(self.res_in(torch.cat([g, z[:, self.channels :]], dim=1)), e_res))
        for blk in self.res_blocks:
            h = self.act(blk["film"](blk["conv"](h), e_res))
        r = self.res_out(h)
        if self.residual_highpass > 0:
            low = low_modes(spatial, self.n, self.residual_highpass).to(r.device)
            fr = torch.fft.rfftn(r, dim=dims, norm="ortho").masked_fill(low, 0.0)
            r = torch.fft.irfftn(fr, s=spatial, dim=dims, norm="ortho")
        elif self.zero_mean_residual:
            r = r - r.mean(dim=dims, keepdim=True)
        return r


class StandardisedSummaries(nn.Module):
    """``y (B, 1, *spatial) -> (B, F)``: :func:`~physgan.domains.nbody.spectral.field_summaries` standardised with
    the training fields' mean and spread (``data_stats``), so that a unit means one data standard deviation.

    What the critic's summary branch reads, and what conditional moment matching
    (:mod:`physgan.train.moments`, :func:`moment_features`) pins at every condition: one mechanism for both.
    Runs fitted before the density spectrum became a summary keep their shorter summary vector. Option
    ``mf_summaries`` appends the soft Minkowski functionals of :func:`~physgan.domains.nbody.spectral.soft_minkowski`
    (boundary measure and Euler characteristic at the training fields' quantile thresholds); ``minkowski_only`` gives
    those columns alone (what conditional moment matching pins with option ``moment_summaries='minkowski'``); option
    ``mf_singletons`` appends the soft counts of one-cell islands and holes (:func:`~physgan.domains.nbody.spectral.soft_singletons`).
    """

    def __init__(self, spec: ModelSpec, minkowski_only: bool = False):
        super().__init__()
        _, n = _geometry(spec)
        stats = _data_stats(spec)
        opts = typed_options(NbodyModelOptions, spec.options or {})
        self.minkowski_only = bool(minkowski_only)  # only the soft Minkowski columns (what moment_summaries='minkowski' pins)
        self.mu, self.sd = float(stats["mu"]), float(stats["sd"])
        found = len(stats["summary_mean"])
        if found not in (n_summaries(n), n_summaries(n, density_power=False)):
            raise ConfigError(f"nbody summary critic: data_stats has {found} summaries, fields of side {n} need {n_summaries(n)}")
        self.density_power = found == n_summaries(n)
        self.n_out = found
        self.register_buffer("s_mean", torch.as_tensor(stats["summary_mean"], dtype=torch.float32), persistent=False)
        self.register_buffer("s_std", torch.as_tensor(stats["summary_std"], dtype=torch.float32), persistent=False)
        self.minkowski = bool(opts.mf_summaries) or self.minkowski_only
        if self.minkowski:
            if "mf_thresholds" not in stats:
                option = "moment_summaries='minkowski'" if self.minkowski_only else "mf_summaries"
                raise ConfigError(f"nbody model.options.{option} needs a transform fitted with this version (no mf_thresholds)")
            for key in ("mf_thresholds", "mf_mean", "mf_std"):
                self.register_buffer(key, torch.as_tensor(stats[key], dtype=torch.float32), persistent=False)
            self.n_out = (0 if self.minkowski_only else self.n_out) + len(stats["mf_mean"])
        self.singletons = bool(opts.mf_singletons) and not self.minkowski_only
        if self.singletons:
            if "singleton_mean" not in stats:
                raise ConfigError("nbody model.options.mf_singletons needs a transform fitted with this version (no singleton_mean)")
            islands, holes = singleton_thresholds(stats["mf_thresholds"])
            self.register_buffer("island_thresholds", islands, persistent=False)
            self.register_buffer("hole_thresholds", holes, persistent=False)
            for key in ("singleton_mean", "singleton_std"):
                self.register_buffer(key, torch.as_tensor(stats[key], dtype=torch.float32), persistent=False)
            self.n_out += len(stats["singleton_mean"])

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        mf = (soft_minkowski(y, self.mf_thresholds) - self.mf_mean) / self.mf_std if self.minkowski else None
        if self.minkowski_only:
            return mf
        cols = [(field_summaries(y, self.mu, self.sd, self.density_power) - self.s_mean) / self.s_std]
        if mf is not None:
            cols.append(mf)
        if self.singletons:
            cols.append((soft_singletons(y, self.island_thresholds, self.hole_thresholds) - self.singleton_mean) / self.singleton_std)
        return torch.cat(cols, dim=1)


class SummaryFieldCritic(nn.Module):
    """``D(y, c)``: the periodic conv critic plus a branch on differentiable field summaries.

    What the critic does not see, the generator does not learn: a conv critic held to Lipschitz 1 barely
    notices a field whose power is too low by half at small scales. The summary branch reads
    :class:`StandardisedSummaries` (log power per Fourier shell up to Nyquist of the log field and of the
    density, quantiles, moments and the log mean density, in units of the training fields' spread, so that
    the gradient penalty weighs each alike) through a small MLP; both feature vectors meet in the
    projection head. Option ``critic_width`` sets the conv branch (``0`` drops it: summaries only).
    """

    def __init__(self, spec: ModelSpec):
        super().__init__()
        dim, n = _geometry(spec)
        opts = typed_options(NbodyModelOptions, spec.options or {})
        self.summaries = StandardisedSummaries(spec)
        self.density_power = self.summaries.density_power
        self.conv = None
        ch = 0
        if int(spec.width if opts.critic_width is None else opts.critic_width) > 0:
            self.conv, ch = _conv_features(spec, dim, n)
        hidden = int(opts.summary_hidden)
        self.summary_net = nn.Sequential(
            nn.Linear(self.summaries.n_out, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, hidden), nn.LeakyReLU(0.2)
        )
        self.embed = ConditionEmbedding(spec.n_cond, spec.embed_dim)
        self.head = ProjectionHead(ch + hidden, spec.embed_dim)

    def forward(self, y: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        phi = [self.summary_net(self.summaries(y))]
        if self.conv is not None:
            phi.append(self.conv(y).flatten(2).mean(dim=2))
        return self.head(torch.cat(phi, dim=1), self.embed(c))


def moment_features(spec: ModelSpec) -> nn.Module:
    """The summaries conditional moment matching pins (spectral runs): :class:`StandardisedSummaries`, all of them or,
    with option ``moment_summaries='minkowski'``, the soft Minkowski functionals alone."""
    if _arch(spec) != "spectral":
        raise ConfigError("nbody: train.moment_weight > 0 needs the spectral model (transform kind 'gauss')")
    opts = typed_options(NbodyModelOptions, spec.options or {})
    return StandardisedSummaries(spec, minkowski_only=opts.moment_summaries == "minkowski")


def _arch(spec: ModelSpec) -> str:
    """'spectral' when the run's transform fitted the spectral statistics, else the original 'conv' pair."""
    opts = typed_options(NbodyModelOptions, spec.options or {})
    arch = opts.arch or ("spectral" if "pk_shell" in spec.data_stats else "conv")
    if arch not in ("spectral", "conv"):
        raise ConfigError(f"nbody model.options.arch must be 'spectral' or 'conv', got '{arch}'")
    return arch


def build_generator(spec: ModelSpec) -> nn.Module:
    """The periodic conditional generator: :class:`SpectralFieldGenerator`, or :class:`FieldGenerator` (``arch='conv'``)."""
    return SpectralFieldGenerator(spec) if _arch(spec) == "spectral" else FieldGenerator(spec)


def build_critic(spec: ModelSpec) -> nn.Module:
    """The periodic projection critic: :class:`SummaryFieldCritic`, or :class:`FieldCritic` (``arch='conv'``)."""
    return SummaryFieldCritic(spec) if _arch(spec) == "spectral" else FieldCritic(spec)
