"""Physics-structured generator and critic for calorimeter showers (conditional WGAN-GP).

Generator ``G(z, c)`` (``c``: normalised conditions) builds a shower in three explicit steps:

1. the **energy response** ``r = E_sum / E_inc`` (a sigmoid onto ``response_range``: by default the training
   data's range widened by half its span each side, initialised at the data's mean; [0.5, 1.5] from 1 without
   data statistics), where ``E_sum`` is the sum of all cells and
   extras (hadron showers may need a lower bound near 0);
2. the **fractions** ``f_g`` of that energy per layer group (softmax over groups);
3. a **normalised pattern** ``q_g`` per group (softmax over its cells, then sparsified, see below),

so a cell holds ``u = r f_g q_g`` of the incident energy and the layer sums equal ``r f_g`` by
construction. A group is a layer's cells; with one extra per layer (CaloGAN's overflow) the extra joins
its layer's group, otherwise all extras form one more group. ``G`` returns model space, i.e. exactly
:func:`~physgan.domains.calo.transform.fractions_to_model` of ``u``: the same map as
:class:`~physgan.domains.calo.transform.CaloTransform` (same ``eps``: pass the same ``model.options``
to ``make_transform`` and to the model), so the physical structure needs no condition statistics.

Sparsity: real showers have many exactly empty cells (CaloGAN occupancy 45 / 79 / 28 %). The pattern
is a *shifted softmax* with a learned, per-shower threshold: ``p = softmax(a)``,
``tau = s * max(p)`` with ``s = 0.99 sigmoid(h)`` predicted per group and shower, ``g = relu(p - tau)``,
``q = g / sum(g)``. Cells under the threshold are exact zeros (``y = -1`` exactly), the hottest cell
always survives (``s <= 0.99``) so ``sum(g) > 0`` and the renormalisation keeps the layer sums exact, and
everything is differentiable almost everywhere (gradients reach ``a`` and ``h`` through the surviving
cells; no straight-through estimator is needed). It is the sparsemax idea with a learned cut. A fixed
cut at the readout threshold would need the incident energy in MeV inside G, which G does not see.

Zero-inflated occupancy (option ``occupancy``, on in every preset): the relative threshold above cuts every
cell whose share is below ``s max(p)``, and a tail cell that a stray spot fills now and then holds ~1e-4 of
its layer, about 10 in log-share below the core, beyond any learned noise: on the quickstart data 128 / 6 / 4
cells of layers 0 / 1 / 2 that real showers fill stayed empty in all 2000 generated showers (``bench/RESULTS.md``
§13). With ``occupancy`` each cell is hit or missed by its own draw instead: hit when one more N(0, 1) latent value
per feature lies below ``o_i + d_g(h)`` (probit, ``P(hit) = Phi(o)``), with ``o_i`` a per-cell parameter that
starts at the training data's hit fraction of the cell (:func:`~physgan.domains.calo.transform.cell_hit_stats`,
a fitted statistic like the per-cell spread) and ``d_g`` one condition-dependent shift per layer group; the
group's hottest cell is always hit. The pattern ``p`` is then the share *given a hit* (it starts at the data's
mean share given a hit) and ``q = p m / sum(p m)``, so missed cells are exact zeros and the layer sums stay
exact. The critic shapes the draw through a straight-through relaxed Bernoulli, ``soft = sigmoid((o - n) / T)``
(``occupancy_temperature`` ``T``, default 0.5): the forward values are the hard draw's, the gradient of a draw
is ``d soft`` times the change it makes, in model space (``y + 1``) for the cells; through the summary
coordinates (energy space) only with option ``occupancy_summary_st`` (its gradients spiked to 1e10).
With ``occupancy`` the relative threshold is not built. Option ``empty_layers``: a layer group none of whose draws
hits is left empty (otherwise its hottest cell is always hit), and the other groups share its energy in proportion to
their fractions, so the shower's sum stays ``response`` exactly; low-energy showers leave the last layers empty.
Option ``empty_draw`` (instead): one more N(0, 1) latent value per group decides, before anything else, whether the
group is empty, at the training data's rate for the shower's incident energy (a probit curve fitted by the transform,
``group_hit_curve``, not learned); the trunk takes the outcome as input, so the other groups' fractions and patterns
can follow it, and an empty group's energy goes to the others as with ``empty_layers``. With ``empty_draw_patterns``
the groups are not drawn one by one: the first of those latent values picks one of the :data:`PATTERN_WINDOW` training
showers nearest in energy from the transform's bank (``group_hit_patterns``), and its empty groups are the shower's, so
which groups are empty together is the data's (independent draws leave neighbouring deep layers of dataset 2 far less
correlated than the data; bench/RESULTS.md §13, thirty-fourth session). Option ``share_cap``: no group's share above
the largest any training shower of that energy holds (``group_share_ceiling``; the groups under their ceiling take up
the rest in proportion), against a tail of far too late showers. Option ``share_curve``: the
layer shares' logits add the data's log mean share of each group in the showers where it holds energy, a curve in the
incident energy (``group_share_curve``), so a group drawn non-empty starts at what the data hold there. Option
``share_calibration`` (sampling only): each layer share where the layer holds energy is mapped from its quantile in the
generator's own table at the shower's energy (set by :meth:`CaloGenerator.calibrate_statistics`) to the data's
(``group_share_quantiles``), monotone per layer, so the generator's correlations between layers stay. Option
``ring_calibration`` (sampling only): each ring of each layer (cells at one distance from the axis) gets a probit offset
on its cells' hit draws and a weight on their share of the layer's energy, per energy knot, set by
:meth:`CaloGenerator.calibrate_statistics` until the generator's rings show the data's hit rates and mean layer shares
(``ring_hit_curves``).

Noise head (option ``noise_head``): ``'cell'`` (the default, runs made before it) predicts ``log sigma`` per
cell with a ``Linear(width, cells)`` per group; ``'layer'`` (every preset) learns a per-cell log-scale (starting
at the data's spread) plus one condition-dependent shift per group: fewer parameters and less work per shower.

Per-cell noise (option ``cell_noise``, on in every preset; off for runs made before it): the latent is the
shower latent ``z`` (``z_dim``) followed by one N(0, 1) value ``n_i`` per feature, and the pattern logits become
``a_i + sigma_i(h) n_i`` with a learned, condition-dependent ``log sigma`` per cell (initial ``sigma``: the
training data's spread of ``log(cell / layer energy)`` per cell within incident-energy bins
(:func:`~physgan.domains.calo.transform.cell_log_std`; cells too rarely hit take their layer's largest; without
data statistics ``cell_noise_init``, default 0.5). A constant start of 0.5 made the core cells, whose real
spread is 0.03 on the quickstart data, fluctuate 15x too much (E_ratio separation 0.93 at step 1000), and Adam
at lr 1e-4 moves a log-scale by at most about 0.3 in 3000 steps. Why noise at all: a real shower is a sum of
discrete energy spots, so every cell fluctuates on its own (Poisson-like: little in the core, a lot in the
tails), which moves the centre of energy, sets which of the two central layer-0 strips is hotter (E_ratio) and
now and then fills a tail cell. Without it every fluctuation has to come through the MLP from ``z``: measured on
the quickstart's trained generator (``python -m bench.calo_diagnose``), ``d u / d z`` has numerical rank 21 of
507 cells, 49 % of the layer-0 cells that real showers fill were zero in all 2000 generated showers, and
E_ratio's spread was 2.4x too wide while two of three layer centres were 3-9x too narrow. The noise keeps the
energy bookkeeping exact (it only reshapes each group's softmax).

Noise shape (option ``noise_shape``, with the layer noise head): ``'normal'`` (the default) adds ``sigma_i n_i`` to
the logit, which makes a cell's share log-normal: symmetric in log, and on average ``exp(sigma^2 / 2)`` too hot, so
the widest-fluctuating (tail) cells gain weight and the mean pattern widens. ``'gamma'`` adds the log of a unit-mean
gamma variable of shape ``1 / sigma_i^2`` drawn from the same ``n_i`` (:func:`_gamma_log_noise`): the share of a cell
that holds a few deposits, left-skewed in log (much emptier than usual, hardly much hotter) and unbiased on average.

Critic ``D(y, c)``: an MLP on the model-space cells, beside an MLP on differentiable physics features
computed in torch from ``y`` (log layer energies and total response, per-layer centres of energy and
widths in x, y (and r for cylindrical layers), soft per-layer occupancy, shower depth), joined and
scored by a projection head with the condition embedding (Miyato & Koyama). When the transform appends
its standardised summary coordinates (log response and log layer shares; see
:mod:`~physgan.domains.calo.transform`), G appends the same coordinates computed from its own cells, and D
feeds them to its physics MLP: the gradient penalty then gives each high-level quantity a unit-scale
direction, so a response off by a standard deviation costs as much as any other unit step. No batch norm; optional
layer norm. All operations are twice differentiable (widths use ``sqrt(var + 1e-6)``).

Geometry-aware streams (options, off by default; :mod:`~physgan.domains.calo.spatial`, ``bench/RESULTS.md`` §13,
third session): ``critic_spatial`` (channels) gives the critic a 3 x 3 convolution over each layer's own grid
(coordinate channels, circular in the angle of cylindrical layers), mean-pooled per layer and joined beside the cell
and physics MLPs; ``pattern_conv`` (channels) gives the generator one over the pattern logits, reading each layer's
log shares and the per-cell noise, its output added to the logits (it starts at 0, so the generator starts as
without it).

Option ``critic_layer_stream`` (channels, off by default; :mod:`~physgan.domains.calo.layer_stream`): the critic also
reads the layers as a sequence, each layer's energy, occupancy, centres and widths beside its neighbours', through
convolutions along the depth with one set of weights for every layer, averaged over the layers.

Option ``critic_spectrum`` (off by default): the critic's physics features also count, per layer, the cells above
:data:`SPECTRUM_MULTIPLES` times the layer's fitted hit floor (:meth:`CaloCritic.spectrum_features`): each shower's
cell-energy spectrum, which the voxel-energy metric pools over showers.

Sampling (``bench/RESULTS.md`` §13, fourth session): :meth:`CaloGenerator.physics` is one code path for training and
sampling; without gradients its element-wise steps run in place (the same values, fewer passes over (B, cells)
arrays), and :meth:`CaloGenerator.sample_physical` hands its cells to the transform's last step
(:meth:`~physgan.domains.calo.transform.CaloTransform.from_fractions`) instead of taking the log of
:func:`~physgan.domains.calo.transform.fractions_to_model` for the inverse transform's exp to undo. Option
``generator_width`` gives the generator a width of its own (narrower than the critic's ``model.width``). Option
``extras_noise`` gives the extras (CaloGAN's overflow) a noise scale of their own that follows the incident energy
from the start (the data's line of the spread, :func:`~physgan.domains.calo.transform.cell_log_std_line`). Option
``extras_cap`` caps an extra's pattern logit at its layer's hottest cell's, so the hit that every group keeps is a cell
and the overflow cannot take a layer's energy by itself (it did in a quarter of the low-energy showers after long
default runs, ``bench/RESULTS.md`` §13, fifth session).

References
----------
.. [1] I. Gulrajani et al., "Improved Training of Wasserstein GANs", NeurIPS 2017, arXiv:1704.00028.
.. [2] T. Miyato and M. Koyama, "cGANs with Projection Discriminator", ICLR 2018, arXiv:1802.05637.
.. [3] A. Martins and R. Astudillo, "From Softmax to Sparsemax", ICML 2016, arXiv:1602.02068.
.. [4] C. Krause, D. Shih, "CaloFlow", arXiv:2106.05285 (layer energies first, then normalised showers).
.. [5] M. Paganini et al., "CaloGAN", arXiv:1712.10321.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from physgan.domains.base import ModelSpec
from physgan.domains.calo.features import resolve_geometry
from physgan.domains.calo.geometry import CaloGeometry
from physgan.domains.calo.layer_stream import LayerSequenceStream
from physgan.domains.calo.segments import SegmentMatrix, geometry_segments
from physgan.domains.calo.spatial import LayerConvStream
from physgan.domains.calo.transform import (
    DEFAULT_EPS,
    energy_to_mev_factor,
    extra_indicator,
    fractions_to_model,
    group_member_matrix,
    lateral_moments,
    layer_bounds,
    model_to_fractions,
    ring_layer_stats,
    ring_members,
    segment_moments,
    summary_coordinates,
    summary_count,
    unpack_hit_patterns,
)
from physgan.errors import ConfigError
from physgan.nn.conditioning import ConditionEmbedding, FiLM, ProjectionHead
from physgan.train.conditions import ConditionNormaliser

__all__ = ["CaloGenerator", "CaloCritic", "build_generator", "build_critic", "layer_groups", "feature_groups", "geometry_for_spec"]


#: Largest relative cut ``s`` of the sparse pattern (< 1 keeps the hottest cell and the sums finite).
S_MAX = 0.99
#: Critic: the layer energy under a centre of energy / width is floored at this share of the data's mean layer
#: energy. With a floor of 1e-7 E_inc the gradient-penalty interpolates with a nearly empty last layer
#: (E_2 ~ 1e-6 E_inc) had input gradients up to 21 (through the widths), and with per-cell noise the penalty
#: spiked to 24-40 and training diverged at step ~400 (measured, quickstart data).
MOMENT_FLOOR = 0.05

#: Critic option ``critic_spectrum``: the cell-energy thresholds, as multiples of each layer's hit floor (the data's
#: 0.5 % quantile of the hit energies, ``cell_hit_floor``), at which the critic counts the cells above; log-spaced
#: from just above the floor, where a one-deposit cell lies, to the shower core.
SPECTRUM_MULTIPLES = (1.4, 2.0, 3.0, 5.0, 10.0, 25.0, 60.0, 150.0, 400.0)

#: Softness (in log energy) of the critic's count of cells above a spectrum threshold.
SPECTRUM_WIDTH = 0.3
#: Negative slope of the generator's LeakyReLU.
LEAKY_SLOPE = 0.2


def _leaky(x: torch.Tensor, grad: bool) -> torch.Tensor:
    """LeakyReLU of the generator, in place on ``x`` (a fresh tensor) when gradients are off."""
    return torch.nn.functional.leaky_relu(x, LEAKY_SLOPE, inplace=not grad)


#: Floor of the Wilson-Hilferty cube root's base in :func:`_gamma_log_noise`: a draw below it leaves the cell at
#: e^-21 of its share (empty in effect; whether a cell is hit at all is the occupancy draw's to decide).
GAMMA_BASE_FLOOR = 1e-3
#: Option ``occupancy_mean_preserving``: the shift's variance is kept in this many bins of the normalised log incident
#: energy over [-SHIFT_VAR_EDGE, SHIFT_VAR_EDGE] (a uniform log spectrum standardises to +-1.73; beyond, the end bins hold)
#: and read linearly between the bins' centres: on dataset 2 layer 0's shift spread 0.45 in probit at the lowest
#: energies and 0.90 at the highest, so one variance over all energies over-corrected the low energies' rare cells
#: (outer rings 3-4x too rarely hit there; bench/RESULTS.md §13, twenty-second session)
SHIFT_VAR_BINS = 8
SHIFT_VAR_EDGE = 2.0
SHIFT_VAR_WIDTH = 2.0 * SHIFT_VAR_EDGE / SHIFT_VAR_BINS
#: Option ``empty_draw_patterns``: a shower's empty groups are drawn among this many training showers nearest in energy
#: (of a bank of up to 16384 evenly spaced in energy rank: ~0.4 % of the energy range on either side)
PATTERN_WINDOW = 64
#: Option ``share_calibration``: the fewest generated showers holding energy in a group at a knot for its own quantiles
CALIBRATION_MIN_HITS = 64
#: Option ``ring_calibration``: rounds of :meth:`CaloGenerator._calibrate_ring_tables` per calibration (times its scale;
#: each training calibration starts from 0, as the EMA update copies the training generator's buffers over the tables),
#: the largest step of a ring's probit offset or log weight in one round, and the largest value either takes
RING_CALIBRATION_ROUNDS = 2
RING_CALIBRATION_STEP = 1.0
RING_CALIBRATION_BOUND = 3.0
#: Option ``occupancy_level_mean_weight``: the groups whose hit level is pulled to mean 0 hold energy in at least this
#: share of the training showers at every energy (a group often empty needs a positive level where it is hit)
LEVEL_MEAN_MIN_HIT = 0.97


def _gamma_log_noise(sigma: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
    """Log of a unit-mean gamma variable with shape ``k = 1 / sigma^2``, drawn from a standard normal ``n``.

    A cell's energy is a sum of a few discrete deposits, so its share of the layer is roughly gamma distributed
    with a shape ``k`` near the number of deposits, and its log share is left-skewed: a cell can be much emptier than
    usual but hardly much hotter (GFlash on dataset 2: skewness -1 to -3, upper tail q99 - median 0.8-2.8 against a
    lower tail of 1.6-11; bench/RESULTS.md §13, fourteenth session). The Wilson-Hilferty approximation
    ``G / k ~ (1 - 1 / (9k) + n / (3 sqrt(k)))^3`` is a smooth function of ``n`` and ``k`` (so the latent still
    determines the shower, and ``sigma`` gets gradients). For small ``sigma`` it is ``sigma n`` to first order, the
    symmetric noise of option ``noise_shape: normal``.

    Parameters
    ----------
    sigma : torch.Tensor
        The cells' noise scales (> 0), broadcastable against ``n``.
    n : torch.Tensor
        Standard-normal draws.

    Returns
    -------
    torch.Tensor
        ``3 log(max(1 - sigma^2 / 9 + sigma n / 3, GAMMA_BASE_FLOOR))``, to be added to the pattern logits.
    """
    base = 1.0 - sigma * sigma / 9.0 + sigma * n / 3.0
    return 3.0 * torch.log(base.clamp(min=GAMMA_BASE_FLOOR))


def _knot_curve(data: dict[str, Any], key: str, n_groups: int, option: str) -> tuple[torch.Tensor, torch.Tensor]:
    """A per-group curve of the transform's statistics on ``group_hit_knots``: the knots (K,) and ``data[key]``
    (K, n_groups), float32; a missing or misshapen one is a :class:`ConfigError` naming ``option``."""
    knots, values = data.get("group_hit_knots"), data.get(key)
    values = np.asarray(values if values is not None else [], dtype=np.float32)
    if knots is None or len(knots) < 1 or values.shape != (len(knots), n_groups):
        raise ConfigError(f"calo model: {option} needs the transform statistics 'group_hit_knots' and '{key}' of this "
                          "version (a curve per layer group); fit the transform again")
    return torch.as_tensor(np.asarray(knots, dtype=np.float32)), torch.as_tensor(values)


def _along_knots(knots: torch.Tensor, values: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Per-group curves ``values`` (K, n_groups, ...) at knots (K,) of the normalised log incident energy (condition 0),
    read at each shower's: (B, n_groups, ...), linear between the knots and constant beyond them."""
    t = c[:, 0].to(knots.dtype).contiguous()
    if len(knots) == 1:
        return values[0].expand(len(t), *values.shape[1:])
    hi = torch.searchsorted(knots, t).clamp(1, len(knots) - 1)
    w = ((t - knots[hi - 1]) / (knots[hi] - knots[hi - 1])).clamp(0.0, 1.0)
    return torch.lerp(values[hi - 1], values[hi], w.reshape(-1, *[1] * (values.ndim - 1)))


def _quantile_levels(v: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Levels (B, G) of values ``v`` (B, G) in per-row quantile tables ``q`` (B, G, J) at levels ``(j + 1/2) / J``,
    increasing along the last axis: piecewise linear between the quantiles and extended linearly beyond the end ones
    (below 0 or above 1 there), so every value has a gradient. Uniform on [0, 1] when ``v`` follows the tables."""
    n_levels = q.shape[-1]
    idx = torch.searchsorted(q, v.unsqueeze(-1).contiguous()).clamp(1, n_levels - 1)
    lo, hi = q.gather(-1, idx - 1), q.gather(-1, idx)
    step = (v.unsqueeze(-1) - lo) / (hi - lo).clamp(min=1e-6)
    return ((idx - 1).to(v.dtype) + 0.5 + step).squeeze(-1) / n_levels


def _quantile_values(u: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`_quantile_levels`: values (B, G) at levels ``u`` (B, G) in per-row quantile tables ``q``
    (B, G, J) at levels ``(j + 1/2) / J``, piecewise linear and extended linearly beyond the end quantiles."""
    n_levels = q.shape[-1]
    x = u * n_levels - 0.5
    idx = x.floor().clamp(0, n_levels - 2).long().unsqueeze(-1)
    lo, hi = q.gather(-1, idx), q.gather(-1, idx + 1)
    return (lo + (x.unsqueeze(-1) - idx.to(u.dtype)) * (hi - lo)).squeeze(-1)


def _uniform_energy_score(u: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Per column, half the energy distance between the masked values of ``u`` (B, G; mask ``m``, same shape) and the
    uniform distribution on [0, 1]: ``mean_i E|u_i - U| - 1/2 mean_{i != j} |u_i - u_j| - 1/6`` (an unbiased U-statistic:
    0 in expectation when the values are uniform, larger for any other distribution; the energy score is proper).
    Columns with fewer than two values give 0. Returns (G,)."""
    m = m.to(u.dtype)
    inside = 0.5 * (u * u + (1.0 - u) * (1.0 - u))  # E|u - U| for u in [0, 1]; |u - 1/2| outside
    first = torch.where(u < 0, 0.5 - u, torch.where(u > 1, u - 0.5, inside))
    n = m.sum(dim=0)
    pair = ((u[:, None, :] - u[None, :, :]).abs() * (m[:, None, :] * m[None, :, :])).sum(dim=(0, 1))
    score = (first * m).sum(dim=0) / n.clamp(min=1.0) - 0.5 * pair / (n * (n - 1.0)).clamp(min=1.0) - 1.0 / 6.0
    return torch.where(n >= 2, score, torch.zeros_like(score))


def _energy_basis(c: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``(B, 3)``: 1, t, t^2 of condition 0 (the normalised log incident energy)."""
    t = c[:, :1].to(dtype)
    return torch.cat([torch.ones_like(t), t, t * t], dim=1)


def _quadratic_fit(x: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
    """Least-squares coefficients ``(3, G)`` of ``level`` (B, G) on the basis ``x`` (B, 3), with their gradient."""
    return torch.linalg.solve(x.T @ x + 1e-6 * torch.eye(3, dtype=x.dtype, device=x.device), x.T @ level)


def _mean_along_energy(level: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """The batch's least-squares quadratic of ``level`` (B, G) in condition 0 (the normalised log incident energy),
    evaluated at each row: each column's mean at its shower's energy, with its gradient. Needs B > 3."""
    x = _energy_basis(c, level.dtype)
    return x @ _quadratic_fit(x, level)


def _squared_mean_along_energy(level: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Unbiased estimate of ``sum_g mean_b m_g(t_b)^2``, ``m_g`` the mean of column g of ``level`` (B, G) at energy t
    (a quadratic in condition 0): the quadratics fitted to the even and to the odd rows, multiplied at every row's
    energy. The square of one fit would add each column's variance at fixed energy times 3 / B, a pull towards less
    spread (as :mod:`physgan.train.moments` splits its batch for the same reason). Needs B >= 8."""
    x = _energy_basis(c, level.dtype)
    m_even = x @ _quadratic_fit(x[0::2], level[0::2])
    m_odd = x @ _quadratic_fit(x[1::2], level[1::2])
    return (m_even * m_odd).mean(dim=0).sum()


def _without_groups(fractions: torch.Tensor, empty: torch.Tensor) -> torch.Tensor:
    """``fractions`` (B, G) with the ``empty`` (bool, B x G) groups at 0 and the others sharing their part in proportion
    to their own, so each row still sums to 1; a row whose every group is marked keeps them all."""
    keep = ~empty | empty.all(dim=1, keepdim=True)
    kept = fractions * keep
    return kept / kept.sum(dim=1, keepdim=True)


def _capped_shares(fractions: torch.Tensor, ceiling: torch.Tensor, n_iter: int = 40) -> torch.Tensor:
    """Shares (B, G) summing to 1 moved under per-group ceilings (B, G): ``min(lam f, m)`` with the one ``lam >= 1`` per
    shower that keeps the sum at 1 (the groups under their ceiling share what the capped ones give up, in proportion),
    found by bisection in ``log lam`` without gradient; renormalised at the end, so a shower whose ceilings cannot hold
    its energy (their sum over its non-empty groups below 1) keeps its proportions beyond them."""
    with torch.no_grad():
        f, m = fractions.detach().double(), ceiling.detach().double()
        lo = torch.zeros(len(f), 1, dtype=f.dtype, device=f.device)
        hi = torch.full_like(lo, 30.0)
        for _ in range(int(n_iter)):
            mid = 0.5 * (lo + hi)
            over = torch.minimum(f * torch.exp(mid), m).sum(dim=1, keepdim=True) > 1.0
            hi = torch.where(over, mid, hi)
            lo = torch.where(over, lo, mid)
        lam = torch.exp(lo).to(fractions.dtype)
    capped = torch.minimum(fractions * lam, ceiling)
    return capped / capped.sum(dim=1, keepdim=True).clamp_min(1e-12)


def geometry_for_spec(spec: ModelSpec) -> CaloGeometry:
    """The geometry of a model spec: from ``spec.attrs`` or, failing that, from the sample length.

    The model-space length is the geometry's ``n_features``, plus the summary coordinates when the transform
    was fitted with them (:func:`~physgan.domains.calo.transform.summary_count`; see :func:`n_summaries`).
    """
    n = int(np.prod(spec.sample_shape))
    geom = resolve_geometry(spec.attrs if spec.attrs else None, n)
    g, k = len(layer_groups(geom)), len(lateral_moments(geom)[1])
    allowed = sorted({0} | {summary_count(g, k, geom.n_layers, occ, lat, ext) for occ in (False, True) for lat in (False, True)
                            for ext in ((False, True) if geom.n_extra else (False,))})
    if n - geom.n_features not in allowed:
        raise ConfigError(
            f"calo model: geometry '{geom.name}' has {geom.n_features} features "
            f"(+{' or '.join(str(a) for a in allowed[1:])} summary coordinates) but samples have {n}"
        )
    return geom


def n_summaries(spec: ModelSpec, geom: CaloGeometry) -> int:
    """Number of summary coordinates after the cells in model space (0, ``1 + n_groups``, or ``1 + 2 n_groups``
    with the soft occupancy)."""
    return int(np.prod(spec.sample_shape)) - geom.n_features


def layer_groups(geom: CaloGeometry) -> list[np.ndarray]:
    """Flat indices of each energy group: a layer's cells (+ its extra when there is one extra per layer).

    Parameters
    ----------
    geom : CaloGeometry

    Returns
    -------
    list of numpy.ndarray
        int64 index arrays into the flat sample, covering every entry exactly once.
    """
    groups = []
    per_layer_extra = geom.n_extra == geom.n_layers
    for i in range(geom.n_layers):
        sl = geom.layer_slice(i)
        idx = np.arange(sl.start, sl.stop)
        if per_layer_extra:
            idx = np.append(idx, geom.n_cells + i)
        groups.append(idx.astype(np.int64))
    if geom.n_extra and not per_layer_extra:
        groups.append(np.arange(geom.n_cells, geom.n_features, dtype=np.int64))
    return groups


def feature_groups(geom: CaloGeometry) -> np.ndarray:
    """Group index of every flat feature, ``(n_features,)`` int64 (the inverse of :func:`layer_groups`)."""
    fg = np.empty(geom.n_features, dtype=np.int64)
    for g, idx in enumerate(layer_groups(geom)):
        fg[idx] = g
    return fg


def _opt(spec: ModelSpec, key: str, default: Any) -> Any:
    """Model option ``key`` (``model.options``); the fitted statistics are ``spec.data_stats``, not options."""
    if key in ("data_stats", "condition_stats", "eps"):
        raise AssertionError(f"calo model: '{key}' is not a model option (spec.data_stats holds the fitted statistics and eps)")
    return (spec.options or {}).get(key, default)


def _eps(spec: ModelSpec) -> float:
    """The transform's ``eps`` (fitted, ``data_stats['eps']``): the model maps fractions as the transform does."""
    return float(spec.data_stats.get("eps", DEFAULT_EPS))


def _response_range(spec: ModelSpec, data: dict[str, Any]) -> tuple[float, float, float]:
    """Bounds ``(lo, hi)`` of the generator's response ``E_sum / E_inc`` and its initial value.

    ``model.options.response_range`` when given; else the training data's range widened by half its
    span on each side (so a response as narrow as GFlash's 0.3 % is resolved by the sigmoid, and
    every observed value stays reachable), starting at the data's mean; else (0.5, 1.5) from 1.
    """
    if "response_range" in (spec.options or {}):
        lo, hi = (float(v) for v in spec.options["response_range"])
        if not 0 <= lo < hi:
            raise ConfigError(f"calo model: response_range must satisfy 0 <= lo < hi, got ({lo}, {hi})")
        return lo, hi, min(max(1.0, lo + 0.01 * (hi - lo)), hi - 0.01 * (hi - lo))
    try:
        r_min, r_max, r_mean = (float(data[k]) for k in ("response_min", "response_max", "response_mean"))
    except (KeyError, TypeError, ValueError):
        return 0.5, 1.5, 1.0
    if not (math.isfinite(r_min) and math.isfinite(r_max) and 0 <= r_min <= r_mean <= r_max):
        return 0.5, 1.5, 1.0
    margin = max(0.5 * (r_max - r_min), 1e-3 * max(r_mean, 1e-3))
    return max(0.0, r_min - margin), r_max + margin, r_mean


class CaloGenerator(nn.Module):
    """``G(z, c) -> y`` (model space) with explicit response, layer fractions and sparse patterns.

    Parameters
    ----------
    spec : ModelSpec
        ``z_dim``, ``width``, ``depth`` (hidden layers of the shared trunk, >= 1), ``embed_dim``;
        ``options``: ``generator_width`` (the trunk's width when it differs from the critic's ``width``),
        ``sparsify`` (default True),
        ``layer_hidden`` (a private hidden layer per group; default: when there are <= 8 groups),
        ``response_range`` (bounds of E_sum / E_inc; default from ``data_stats``, see :func:`_response_range`),
        ``data_stats`` (the fitted transform's statistics, passed by the engine: response range and mean, mean
        cell fractions, which initialise the response, the layer fractions and the patterns), ``threshold_init`` (initial relative
        cut ``s``, default 1e-3), ``pattern_scale_mm`` (initial pattern
        ``softmax(-r / scale)``: a core on the shower axis, default 20 mm).
    """

    def __init__(self, spec: ModelSpec):
        super().__init__()
        geom = geometry_for_spec(spec)
        self.geometry_name = geom.name
        self.z_dim, self.n_features = int(spec.z_dim), geom.n_features
        self.eps = _eps(spec)
        self.sparsify = bool(_opt(spec, "sparsify", True))
        width, depth = int(_opt(spec, "generator_width", None) or spec.width), max(1, int(spec.depth))
        if width < 1:
            raise ConfigError(f"calo model: generator_width must be >= 1, got {width}")
        self.n_cond = int(spec.n_cond)
        self.embed = ConditionEmbedding(spec.n_cond, spec.embed_dim)
        # option empty_draw: which layer groups are empty is drawn first, at the data's rate for the shower's energy
        # (group_hit_curve), and the trunk sees the outcome (one 0 / 1 input per group); see physics()
        self.empty_draw = bool(_opt(spec, "empty_draw", False))
        n_flags = len(layer_groups(geom)) if self.empty_draw else 0
        # option response_noise (see below): the trunk also takes the response's draw
        response_noise = bool(_opt(spec, "response_noise", False))
        self.inp = nn.Linear(self.z_dim + spec.embed_dim + n_flags + int(response_noise), width)
        self.blocks = nn.ModuleList(nn.Linear(width, width) for _ in range(depth - 1))
        self.films = nn.ModuleList(FiLM(spec.embed_dim, width) for _ in range(depth))
        groups = layer_groups(geom)
        self.n_groups = len(groups)
        self.group_sizes = [len(g) for g in groups]
        self.n_summaries = n_summaries(spec, geom)
        if self.n_summaries:  # the model space appends the transform's summary coordinates (same statistics)
            stats = dict(spec.data_stats)
            if "summary_mean" not in stats or len(stats["summary_mean"]) != self.n_summaries:
                raise ConfigError("calo model: summary coordinates in model space but no matching data_stats from the transform")
            feature_group = feature_groups(geom)
            if list(feature_group) != list(stats["feature_group"]):
                raise ConfigError("calo model: the transform's layer groups differ from the geometry's")
            f32 = torch.float32
            segs = geometry_segments(geom)
            self.summary_member = SegmentMatrix(group_member_matrix(feature_group, self.n_groups), segs)
            self.register_buffer("summary_mean", torch.as_tensor(stats["summary_mean"], dtype=f32), persistent=False)
            self.register_buffer("summary_std", torch.as_tensor(stats["summary_std"], dtype=f32), persistent=False)
            self.summary_occupancy = bool(stats.get("summary_occupancy", False))
            moments, _ = lateral_moments(geom)
            self.summary_lateral = bool(stats.get("summary_lateral", False))
            self.summary_bounds = layer_bounds(geom) if self.summary_lateral else None
            if self.summary_lateral:
                self.summary_moments = nn.ModuleList(segment_moments(moments, segs))
            else:
                self.summary_moments = None
            if stats.get("summary_extras", False):
                self.register_buffer("summary_extras", torch.as_tensor(extra_indicator(geom)), persistent=False)
            else:
                self.summary_extras = None
        # groups of cells get a threshold; a pure-extras group (not per layer) does not
        self.group_sparse = [bool(self.sparsify and (g < geom.n_cells).any()) for g in groups]
        order = np.concatenate(groups)
        inv = np.empty_like(order)
        inv[order] = np.arange(len(order))
        # flat order as runs of consecutive entries of one group: (group, start, stop) within the group, so the
        # groups' outputs are put back in flat order by one cat of slices (a gather by `unpermute` was ~5 % of sampling)
        owner = np.concatenate([np.full(len(g), k) for k, g in enumerate(groups)])[inv]
        within = np.concatenate([np.arange(len(g)) for g in groups])[inv]
        cuts = np.flatnonzero((np.diff(owner) != 0) | (np.diff(within) != 1)) + 1
        self.flat_runs = [(int(owner[a]), int(within[a]), int(within[a]) + (b - a))
                          for a, b in zip(np.r_[0, cuts], np.r_[cuts, len(owner)])]
        # with response_noise the response's mean is a function of the condition alone (its spread is the draw's)
        self.response = nn.Linear(spec.embed_dim if response_noise else width, 1)
        self.fractions = nn.Linear(width, self.n_groups)
        for head in (self.response, self.fractions):
            nn.init.normal_(head.weight, std=0.01)
            nn.init.zeros_(head.bias)
        data = dict(spec.data_stats)
        lo, hi, r0 = _response_range(spec, data)
        self.response_lo, self.response_span = lo, hi - lo
        nn.init.constant_(self.response.bias, math.log((r0 - lo) / (hi - r0)))  # response starts at r0
        # option response_noise: the response E_sum / E_inc gets its own log-normal draw, whose spread is a line in the
        # normalised log incident energy starting at the data's (response_log_std_a/b) and then learned, around a mean
        # that depends on the condition only; the trunk takes the draw, so the shower's shape can follow its response.
        # Without it every fluctuation of the response comes through the trunk: a trained generator's spread at 1-3 GeV
        # came out 1.3-1.9x GFlash's 0.3 % (CaloGAN), and on dataset 2, whose spread falls from 7 % at 1 GeV to 0.4 % at
        # 1 TeV, 0.19x at the lowest energies and 1.5x at the highest (bench/RESULTS.md §13, eleventh and twelfth
        # sessions); a draw whose mean still came from the trunk gave 1.2x and 3-4x (the trunk's spread on top)
        self.response_log_sd = None
        if response_noise:
            ra, rb = data.get("response_log_std_a"), data.get("response_log_std_b")
            if ra is None or rb is None or not (math.isfinite(float(ra)) and math.isfinite(float(rb))):
                raise ConfigError("calo model: response_noise needs the transform statistics 'response_log_std_a/b' of "
                                  "this version; fit the transform again")
            self.response_log_sd = nn.Parameter(torch.tensor([float(ra), float(rb)]))
        # option layer_noise: each group's share gets its own unit-mean log-normal factor, spread the data's line of the
        # group's log energy around its neighbours' (group_share_noise_line) times a learned factor per group of at least
        # layer_noise_floor; a profile from the trunk alone is a smooth function of a few latent directions: on dataset 2
        # a layer's log energy given its neighbours spread 5-20x less than GFlash's (bench/RESULTS.md §13, 17th session)
        self.layer_noise = bool(_opt(spec, "layer_noise", False))
        if self.layer_noise:
            na, nb = data.get("group_share_noise_a"), data.get("group_share_noise_b")
            if na is None or nb is None or len(na) != self.n_groups:
                raise ConfigError("calo model: layer_noise needs the transform statistics 'group_share_noise_a/b' of this "
                                  "version; fit the transform again")
            self.layer_noise_floor = float(_opt(spec, "layer_noise_floor", 0.5))
            if not 0.0 <= self.layer_noise_floor < 1.0:
                raise ConfigError(f"calo model: layer_noise_floor must lie in [0, 1), got {self.layer_noise_floor}")
            self.register_buffer("layer_noise_a", torch.tensor(na, dtype=torch.float32))
            self.register_buffer("layer_noise_b", torch.tensor(nb, dtype=torch.float32))
            # the line is read within the energies it was fitted on (group_share_noise_t), held constant beyond; runs
            # fitted before that statistic existed read it everywhere, as they were trained
            nt = data.get("group_share_noise_t")
            nt = np.asarray(nt, dtype=np.float32) if nt is not None else np.array([[-np.inf], [np.inf]], dtype=np.float32)
            self.register_buffer("layer_noise_t", torch.as_tensor(nt), persistent=False)
            self.layer_noise_shift = nn.Parameter(torch.zeros(self.n_groups))
        # option layer_noise_hits (with layer_noise and occupancy): each group's hit probit moves by a learned slope per
        # group times its layer draw's log deviation (sd n), the slope starting at the data's (group_hit_slope); with the
        # layer draw alone a layer holding more of the shower hit no more cells, and on dataset 2 the hit counts then
        # separated generated from GFlash showers (sparsity alone AUC 0.90-0.92; bench/RESULTS.md §13, 17th session)
        self.layer_noise_hits = bool(_opt(spec, "layer_noise_hits", False))
        if self.layer_noise_hits:
            if not (self.layer_noise and bool(_opt(spec, "occupancy", False))):
                raise ConfigError("calo model: layer_noise_hits needs layer_noise and occupancy")
            slope = data.get("group_hit_slope")
            if slope is None or len(slope) != self.n_groups:
                raise ConfigError("calo model: layer_noise_hits needs the transform statistic 'group_hit_slope' of this "
                                  "version (one per layer group); fit the transform again")
            self.layer_hit_slope = nn.Parameter(torch.tensor(slope, dtype=torch.float32))
        mean_u = np.asarray(data.get("mean_fraction", []), dtype=np.float64)
        if mean_u.shape != (geom.n_features,) or not np.isfinite(mean_u).all() or mean_u.sum() <= 0:
            mean_u = None
        # option share_curve: the layer shares' logits are the trunk's head plus the data's log mean share of each group
        # where it holds energy, a curve in the incident energy (group_share_curve); without it the head's bias starts at
        # the all-shower mean share, which for a layer empty in most showers of an energy is far below what it holds
        # when hit (dataset 2, layers 35-44 at 1-10 GeV: e^3-e^5 below), and the trunk alone did not learn the
        # difference in 4000 steps (their energies 0.3-1 decade low). Measured on dataset 2 over two seeds: the deep
        # layers' medians come out right, their spread stays too wide, layers 0-1 narrow, AUC 0.917 / 0.938 against
        # 0.915 / 0.917 without: no gain, in no preset (bench/RESULTS.md §13, nineteenth session)
        # option share_cap: each group's share at most the largest the data hold at the shower's energy (see physics())
        self.share_cap = bool(_opt(spec, "share_cap", False))
        if self.share_cap:
            knots, log_max = _knot_curve(data, "group_share_max_log", self.n_groups, "share_cap")
            self.register_buffer("share_cap_knots", knots, persistent=False)
            self.register_buffer("group_share_max_log", log_max, persistent=False)
        # option share_quantile_weight (w > 0): a generator training term w * sum over groups of the energy score between
        # the uniform distribution and the levels of the batch's group shares (in the showers where the group holds
        # energy) in the data's quantile table at each shower's energy (group_share_quantiles), each times its table's
        # span in log share (see _share_quantile_score): the levels are uniform exactly when each group's share given a
        # hit follows the data's at every energy, which (with the response) is what the E_layer separations measure. Why:
        # on dataset 2 the deep layers' energies given a hit spread too wide at 6000-6500 steps (layers 34-44, middle
        # energy third: sd of log10 E 0.42-0.66 against the data's 0.39-0.42), E_layer 0.010-0.027 where the floor is
        # 0.001-0.003, with the empty layers the data's (empty_draw_patterns). Measured on top of the running level-mean
        # term (seed 0): unscaled it broke layer 0 by 2500 steps (validation score 0.0295 against 0.0184; bench/RESULTS.md
        # §13, thirty-ninth session), so off
        self.share_quantile_weight = float(_opt(spec, "share_quantile_weight", 0.0))
        if not (math.isfinite(self.share_quantile_weight) and self.share_quantile_weight >= 0):
            raise ConfigError(f"calo model: share_quantile_weight must be >= 0 (0: off), got {self.share_quantile_weight}")
        # option share_calibration: at sampling (not in training), each group's share where it holds energy is mapped
        # through its level at the shower's energy in the generator's own quantile table (group_share_quantiles_own, set
        # by calibrate_statistics from the generator's outputs) to the data's quantile at that level, then the shares are
        # scaled together to sum to 1 again (the response is the generator's); the map is monotone per group and energy,
        # so each layer's ranks across showers, and with them the generator's correlations between layers, are kept,
        # while each layer's share given a hit takes the data's distribution. The own table starts as the data's (the map
        # is then the identity)
        self.share_calibration = bool(_opt(spec, "share_calibration", False))
        self._calibrating = False  # calibrate_statistics samples the raw shares
        if self.share_quantile_weight or self.share_calibration:
            option = "share_quantile_weight" if self.share_quantile_weight else "share_calibration"
            knots = data.get("group_hit_knots")
            table = np.asarray(data.get("group_share_quantiles", []), dtype=np.float32)
            valid = np.asarray(data.get("group_share_quantile_valid", []), dtype=bool)
            if knots is None or table.ndim != 3 or table.shape[:2] != (len(knots), self.n_groups) or valid.shape != (self.n_groups,):
                raise ConfigError(f"calo model: {option} needs the transform statistics 'group_hit_knots', "
                                  "'group_share_quantiles' and 'group_share_quantile_valid' of this version; fit the "
                                  "transform again")
            self.register_buffer("quantile_knots", torch.as_tensor(np.asarray(knots, dtype=np.float32)), persistent=False)
            self.register_buffer("group_share_quantiles", torch.as_tensor(table), persistent=False)
            self.register_buffer("quantile_groups", torch.as_tensor(np.flatnonzero(valid)), persistent=False)
        if self.share_calibration:
            self.register_buffer("group_share_quantiles_own", torch.as_tensor(table).clone())
        # option ring_calibration: at sampling (not in training), each ring's cells (the cells of a layer at one distance
        # from the shower axis, transform.ring_members) get a probit offset on their hit draws and a log weight on their
        # share of the layer's energy, both per ring and incident-energy knot, set by calibrate_statistics until the
        # generator's own showers hit each ring's cells as often as the training data and give it the data's mean share
        # of its layer, in the showers where the layer holds energy (transform.ring_hit_curves). Why: with every layer's
        # energy right, dataset 2's layers 0-1 kept radial centres and widths 0.02-0.05 from the data's at 60 min, their
        # outer rings hit 2-3x too rarely (layer 0) or the innermost ring holding 3x the data's share (layer 1)
        # (bench/RESULTS.md §13, thirty-ninth session). The offsets start at 0 (the map is the identity)
        self.ring_calibration = bool(_opt(spec, "ring_calibration", False))
        if self.ring_calibration:
            if not (bool(_opt(spec, "occupancy", False)) and self.sparsify):
                raise ConfigError("calo model: ring_calibration needs options occupancy and sparsify (hit draws)")
            rate = np.asarray(data.get("ring_hit_rate", []), dtype=np.float32)
            rings, ring_group = ring_members(geom)  # a layer's group is its index (layer_groups)
            knots = data.get("group_hit_knots")
            if knots is None or rate.shape != (len(knots), rings.shape[1]):
                raise ConfigError("calo model: ring_calibration needs the transform statistics 'ring_hit_rate', "
                                  "'ring_share' and 'ring_valid' of this version; fit the transform again")
            col = np.where(rings.any(axis=1), rings.argmax(axis=1), rings.shape[1])  # R: no ring (extras)
            self.register_buffer("ring_knots", torch.as_tensor(np.asarray(knots, dtype=np.float32)), persistent=False)
            self.register_buffer("ring_hit_rate", torch.as_tensor(rate), persistent=False)
            self.register_buffer("ring_share", torch.as_tensor(np.asarray(data["ring_share"], dtype=np.float32)),
                                 persistent=False)
            self.register_buffer("ring_valid", torch.as_tensor(np.asarray(data["ring_valid"], dtype=bool)), persistent=False)
            self.register_buffer("ring_cell_col", torch.as_tensor(np.concatenate([col[idx] for idx in groups])),
                                 persistent=False)
            self._feature_group = feature_groups(geom)  # for the calibration's own statistics (numpy)
            # the data's statistics were read with the readout threshold (transform option readout_threshold), so the
            # generator's own are too: cells below it in MeV at the knot's incident energy count as empty
            self._ring_readout = None
            threshold = float(data.get("readout_threshold_mev", 0.0) or 0.0)
            if threshold > 0:
                if not spec.condition_stats:
                    raise ConfigError("calo model: ring_calibration with a readout threshold needs the conditions' "
                                      "normaliser state (the incident energy in MeV)")
                to_mev = energy_to_mev_factor(str(data.get("energy_units", "MeV")))
                self._ring_readout = (ConditionNormaliser.from_state(spec.condition_stats), threshold / to_mev, geom.n_cells)
            self._ring_members, self._ring_group = rings, np.asarray(ring_group, dtype=np.int64)
            self.register_buffer("ring_probit_offset", torch.zeros(len(knots), rings.shape[1] + 1))
            self.register_buffer("ring_log_weight", torch.zeros(len(knots), rings.shape[1] + 1))
        self.share_curve = bool(_opt(spec, "share_curve", False))
        if self.share_curve:
            knots, log_share = _knot_curve(data, "group_share_log", self.n_groups, "share_curve")
            self.register_buffer("share_knots", knots, persistent=False)
            self.register_buffer("group_share_log", log_share, persistent=False)
        elif mean_u is not None:  # layer fractions start at the training data's mean fractions
            share = np.array([mean_u[g].sum() for g in groups]) / mean_u.sum()
            with torch.no_grad():
                self.fractions.bias.copy_(torch.as_tensor(np.log(share + 1e-6), dtype=torch.float32))
        layer_hidden = _opt(spec, "layer_hidden", self.n_groups <= 8)
        self.layer_hidden = nn.ModuleList(
            nn.Sequential(nn.Linear(width, width), nn.LeakyReLU(LEAKY_SLOPE, inplace=True)) if layer_hidden else nn.Identity()
            for _ in groups
        )
        self.patterns = nn.ModuleList(nn.Linear(width, n) for n in self.group_sizes)
        # start from the training data's mean pattern per group (log of the mean normalised cell energy), or,
        # without data statistics, from a physics prior: a shower core on the axis, log-pattern -r / scale
        scale_mm = float(_opt(spec, "pattern_scale_mm", 20.0))
        r_flat = np.concatenate([np.asarray(lay.r_mm, dtype=np.float64) for lay in geom.layers])
        with torch.no_grad():
            for head, idx in zip(self.patterns, groups):
                head.weight.mul_(0.1)
                is_cell = idx < geom.n_cells
                bias = np.zeros(len(idx))
                if mean_u is not None and mean_u[idx].sum() > 0:
                    q = mean_u[idx] / mean_u[idx].sum()
                    n_empty = int((q == 0).sum())  # cells never hit in the data share 1e-4 of the group at the start
                    bias = np.log(np.where(q > 0, q, 1e-4 / max(n_empty, 1)))
                else:
                    bias[is_cell] = -r_flat[idx[is_cell]] / scale_mm
                    bias[~is_cell] = (bias[is_cell].min() if is_cell.any() else 0.0) - 2.0
                head.bias.copy_(torch.as_tensor(bias, dtype=torch.float32))
        # per-cell noise: the latent carries one N(0, 1) value per feature (group order) beside the shower latent,
        # added to the pattern logits with a learned, condition-dependent scale (see the module docstring)
        self.cell_noise = bool(_opt(spec, "cell_noise", False))
        self.noise_head = str(_opt(spec, "noise_head", "cell"))
        self.noise_slope = None  # option noise_slope, see below
        # option noise_clip: each cell's N(0, 1) noise draw is clipped above at this value (None: not clipped). A cell
        # holds a few deposits, so its log share can fall far below its usual value but hardly rise far above it: on
        # dataset 2 GFlash's per-cell log shares have skewness -1 to -3 (upper tail, q99 - median, 0.8-2.8; lower
        # 1.6-11), and a symmetric noise at their spread made the centres 3-6x and the widths 4x further from the data,
        # so the trained generator switched its noise off. Clipping a trained generator's draws at 0.5 brought both back
        # near the noise-off level with the cells fluctuating nearly as the data's, but a generator trained with the
        # clip still switched its noise off by step 3000 (bench/RESULTS.md §13, fourteenth session): an option, in no
        # preset
        # option noise_shape: 'normal' adds sigma n to a cell's pattern logit; 'gamma' adds the log of a unit-mean gamma
        # variable of shape 1 / sigma^2 drawn from n (_gamma_log_noise): left-skewed like a sum of a few deposits
        self.noise_shape = str(_opt(spec, "noise_shape", "normal"))
        if self.noise_shape not in ("normal", "gamma"):
            raise ConfigError(f"calo model: noise_shape must be 'normal' or 'gamma', got '{self.noise_shape}'")
        if self.noise_shape == "gamma" and not (self.cell_noise and _opt(spec, "noise_head", "cell") == "layer"):
            raise ConfigError("calo model: noise_shape 'gamma' needs cell_noise with noise_head 'layer'")
        # option noise_floor (in [0, 1)): the layer's factor on its cells' noise scales is noise_floor + (1 - noise_floor)
        # exp(shift), so the trained generator cannot switch its noise off (a dataset-2 generator did by step 2000-4000
        # whatever the noise's shape or start: the critic's cell MLP, the layers' centres and peak ratios pulled it down;
        # bench/RESULTS.md §13, fifteenth session)
        self.noise_floor = float(_opt(spec, "noise_floor", 0.0))
        if not 0.0 <= self.noise_floor < 1.0:
            raise ConfigError(f"calo model: noise_floor must be in [0, 1), got {self.noise_floor}")
        if self.noise_floor > 0 and not (self.cell_noise and _opt(spec, "noise_head", "cell") == "layer"):
            raise ConfigError("calo model: noise_floor needs cell_noise with noise_head 'layer'")
        clip = _opt(spec, "noise_clip", None)
        self.noise_clip = None if clip is None else float(clip)
        if self.noise_clip is not None and not self.cell_noise:
            raise ConfigError("calo model: noise_clip needs cell_noise")
        if bool(_opt(spec, "noise_slope", False)) and not (self.cell_noise and self.noise_head == "layer"):
            raise ConfigError("calo model: noise_slope needs cell_noise with noise_head 'layer'")
        if self.noise_head not in ("cell", "layer"):
            raise ConfigError(f"calo model: noise_head must be 'cell' or 'layer', got '{self.noise_head}'")
        if self.cell_noise:
            sigma0 = float(_opt(spec, "cell_noise_init", 0.5))
            if not sigma0 > 0:
                raise ConfigError(f"calo model: cell_noise_init must be > 0, got {sigma0}")
            cell_std = np.asarray(data.get("cell_log_std", []), dtype=np.float64)
            if cell_std.shape != (geom.n_features,):
                cell_std = np.full(geom.n_features, np.nan)
            log_sd = []
            for idx in groups:  # the data's per-cell spread of log(cell / group energy); cells too rarely hit: the group's largest
                sd = cell_std[idx]
                fill = float(np.nanmax(sd)) if np.isfinite(sd).any() else sigma0
                log_sd.append(torch.as_tensor(np.log(np.maximum(np.where(np.isfinite(sd), sd, fill), 1e-3)), dtype=torch.float32))
            if self.noise_head == "cell":  # a full Linear(width, cells) per group (runs made before noise_head)
                self.noise_scales = nn.ModuleList(nn.Linear(width, n) for n in self.group_sizes)
                with torch.no_grad():
                    for head, b in zip(self.noise_scales, log_sd):
                        nn.init.normal_(head.weight, std=0.01)
                        head.bias.copy_(b)
            else:  # per-cell log-scale (learned, from the data) + one condition-dependent shift per group
                # option noise_slope: the per-cell log-scale is a line in the normalised log incident energy (condition
                # 0), a_i + b_i t, starting at the data's line (cell_log_std_line); without it one energy-averaged
                # scale per cell. On dataset 2 (1-1000 GeV) a core cell's real spread falls from ~1.1 at 1-10 GeV to
                # ~0.18 at 100-1000 GeV, so the averaged start (~1.4) is 3-8x too wide for most showers. It did not stop
                # the trained generator from switching its noise off through the layer shift (exp(shift) < 0.003 with
                # and without it; bench/RESULTS.md §13, fourteenth session): an option, in no preset
                if bool(_opt(spec, "noise_slope", False)):
                    a = np.asarray(data.get("cell_log_std_a", []), dtype=np.float64)
                    b = np.asarray(data.get("cell_log_std_b", []), dtype=np.float64)
                    if a.shape != (geom.n_features,) or b.shape != (geom.n_features,):
                        raise ConfigError("calo model: noise_slope needs the transform statistics 'cell_log_std_a/b' "
                                          "of this version; fit the transform again")
                    lines = []
                    for idx, fallback in zip(groups, log_sd):  # cells without a line: the averaged scale, flat
                        ok = np.isfinite(a[idx]) & np.isfinite(b[idx])
                        lines.append((torch.as_tensor(np.where(ok, a[idx], fallback.numpy()), dtype=torch.float32),
                                      torch.as_tensor(np.where(ok, b[idx], 0.0), dtype=torch.float32)))
                    log_sd = [la for la, _ in lines]
                    self.noise_slope = nn.ParameterList(nn.Parameter(lb) for _, lb in lines)
                self.noise_log_scale = nn.ParameterList(nn.Parameter(b) for b in log_sd)
                self.noise_shift = nn.Linear(width, self.n_groups)
                nn.init.normal_(self.noise_shift.weight, std=0.01)
                nn.init.zeros_(self.noise_shift.bias)
        # option extras_noise: the extras (CaloGAN's overflow) get a noise scale of their own, log sigma = a + b t + d(h)
        # with t the normalised log incident energy (condition 0), a, b the data's line (cell_log_std_line) and d one
        # condition-dependent shift per extra, instead of a per-cell scale times their layer group's shift
        self.extras_noise = bool(_opt(spec, "extras_noise", False)) and geom.n_extra > 0
        self.group_n_cells = [int((idx < geom.n_cells).sum()) for idx in groups]  # the extras follow a group's cells
        if self.extras_noise:
            if not (self.cell_noise and self.noise_head == "layer"):
                raise ConfigError("calo model: extras_noise needs cell_noise with noise_head 'layer'")
            extra_idx = np.concatenate([idx[idx >= geom.n_cells] for idx in groups])  # the extras in group order
            a = np.asarray(data.get("cell_log_std_a", []), dtype=np.float64)
            b = np.asarray(data.get("cell_log_std_b", []), dtype=np.float64)
            if a.shape == b.shape == (geom.n_features,) and np.isfinite(a[extra_idx]).all() and np.isfinite(b[extra_idx]).all():
                a, b = a[extra_idx], b[extra_idx]
            else:  # the energy-averaged scale, flat in energy
                fg = feature_groups(geom)
                pos = {int(i): j for g_idx in groups for j, i in enumerate(g_idx)}
                a = np.array([float(log_sd[fg[i]][pos[int(i)]]) for i in extra_idx])
                b = np.zeros(len(extra_idx))
            self.extra_log_scale = nn.Parameter(torch.as_tensor(a, dtype=torch.float32))
            self.extra_slope = nn.Parameter(torch.as_tensor(b, dtype=torch.float32))
            self.extra_noise_shift = nn.Linear(width, len(extra_idx))
            nn.init.normal_(self.extra_noise_shift.weight, std=0.01)
            nn.init.zeros_(self.extra_noise_shift.bias)
            ends = np.cumsum([len(idx) - nc for idx, nc in zip(groups, self.group_n_cells)]).tolist()
            self.extra_runs = [(nc, e - (len(idx) - nc), e) for idx, nc, e in zip(groups, self.group_n_cells, ends)]
        # option extras_cap: an extra's (CaloGAN's overflow) pattern logit is capped at its group's hottest cell's, so the
        # forced hit is always a cell of the layer and the overflow never takes the group's energy by itself
        # (bench/RESULTS.md §13, fifth session: 23-31 % of the showers below 10 GeV did after 12k-16k default steps)
        self.extras_cap = bool(_opt(spec, "extras_cap", False)) and geom.n_extra > 0
        if self.extras_cap and any((idx[:nc] >= geom.n_cells).any() for idx, nc in zip(groups, self.group_n_cells)):
            raise ConfigError("calo model: extras_cap needs each group's cells before its extras")
        # zero-inflated occupancy: a per-cell hit / miss draw replaces the relative threshold (module docstring)
        self.occupancy = bool(_opt(spec, "occupancy", False))
        self.occupancy_temperature = float(_opt(spec, "occupancy_temperature", 0.5))
        # the straight-through term also through the summary coordinates (energy space; off by default): measured, it
        # gave occupancy_shift gradients up to 4e10 in some batches while the critic's input gradient stayed <= 0.01,
        # and the quickstart A/B without it: AUC 0.88 -> 0.74, FPD 0.020 -> 0.011 (bench/RESULTS.md §13, arm H')
        self.occupancy_summary_st = bool(_opt(spec, "occupancy_summary_st", False))
        self.hit_floor = bool(_opt(spec, "hit_floor", False))  # option hit_floor: see below
        if self.hit_floor and not self.occupancy:
            raise ConfigError("calo model: hit_floor needs occupancy (the per-cell hit draws)")
        self.occupancy_mean_preserving = bool(_opt(spec, "occupancy_mean_preserving", False))  # option: see below
        if self.occupancy_mean_preserving and not self.occupancy:
            raise ConfigError("calo model: occupancy_mean_preserving needs occupancy (the per-cell hit draws)")
        self.occupancy_pinned = False  # option occupancy_pinned: see below
        self.occupancy_level_bound = 0.0  # option occupancy_level_bound: see below
        if float(_opt(spec, "occupancy_level_bound", 0.0)) and not self.occupancy:
            raise ConfigError("calo model: occupancy_level_bound needs occupancy (the per-cell hit draws)")
        self._level_sink: list[torch.Tensor] | None = None  # calibrate_statistics collects the hit shifts here
        self.occupancy_level_mean_weight = float(_opt(spec, "occupancy_level_mean_weight", 0.0))  # see below
        if not (math.isfinite(self.occupancy_level_mean_weight) and self.occupancy_level_mean_weight >= 0):
            raise ConfigError(f"calo model: occupancy_level_mean_weight must be >= 0 (0: off), got {self.occupancy_level_mean_weight}")
        if self.occupancy_level_mean_weight and not self.occupancy:
            raise ConfigError("calo model: occupancy_level_mean_weight needs occupancy (the per-cell hit draws)")
        self._auxiliary_loss: torch.Tensor | None = None  # take_auxiliary_loss hands it to the training step
        self.level_mean_running = False  # option occupancy_level_mean_running: see below
        if bool(_opt(spec, "occupancy_pinned", False)) and not self.occupancy:
            raise ConfigError("calo model: occupancy_pinned needs occupancy (the per-cell hit draws)")
        # option empty_layers: a layer group none of whose draws hits is empty, and the other groups share its energy;
        # without it the group's hottest cell is always hit, so no generated shower has an empty layer, where GFlash's
        # e+ at 1-3 GeV leave CaloGAN's last layer empty in 53 % of the showers (4 % of the 100k benchmark's showers:
        # E_layer 2 separation 0.013-0.014 at 100k, 0.15-0.22 in the two lowest energy bins; bench/RESULTS.md §13,
        # eleventh session)
        self.empty_layers = bool(_opt(spec, "empty_layers", False))
        if self.empty_layers and not self.occupancy:
            raise ConfigError("calo model: empty_layers needs occupancy (the per-cell hit draws)")
        if self.empty_draw:
            # the empty_layers way learns the rate through its straight-through estimate and drifted to over-empty
            # layer 2 (79-93 % of the 1-3 GeV showers by step 6000, real 51 %; bench/RESULTS.md §13); here the rate is
            # the data's and is not learned, only what the rest of the shower does given the outcome
            if self.empty_layers:
                raise ConfigError("calo model: empty_draw and empty_layers are two ways to empty a layer group; set one")
            knots, probit = _knot_curve(data, "group_hit_probit", self.n_groups, "empty_draw")
            self.register_buffer("group_hit_knots", knots, persistent=False)
            self.register_buffer("group_hit_probit", probit, persistent=False)
        # option empty_draw_patterns: the empty groups are a training shower's pattern at the same energy (see _drawn_empty)
        self.empty_patterns = bool(_opt(spec, "empty_draw_patterns", False))
        if self.empty_patterns:
            bits, pattern_t = data.get("group_hit_pattern_bits"), data.get("group_hit_pattern_t")
            if not self.empty_draw:
                raise ConfigError("calo model: empty_draw_patterns needs empty_draw")
            if bits is None or pattern_t is None or len(bits) != len(pattern_t) or not len(bits):
                raise ConfigError("calo model: empty_draw_patterns needs the transform statistics 'group_hit_pattern_t' and "
                                  "'group_hit_pattern_bits' of this version; fit the transform again")
            # a file of fewer training showers than the window picks among all of them (at any energy)
            self.pattern_window = min(PATTERN_WINDOW, len(bits))
            self.register_buffer("pattern_t", torch.as_tensor(np.asarray(pattern_t, dtype=np.float32)), persistent=False)
            self.register_buffer("pattern_hit", torch.as_tensor(unpack_hit_patterns(bits, self.n_groups)), persistent=False)
        if self.occupancy:
            if not self.occupancy_temperature > 0:
                raise ConfigError(f"calo model: occupancy_temperature must be > 0, got {self.occupancy_temperature}")
            frac = np.asarray(data.get("cell_hit_fraction", []), dtype=np.float64)
            if frac.shape != (geom.n_features,) or not np.isfinite(frac).all():
                frac = np.full(geom.n_features, float(_opt(spec, "occupancy_init", 0.5)))
            frac = np.clip(frac, 1e-6, 1 - 1e-6)
            probit = torch.special.ndtri(torch.as_tensor(frac, dtype=torch.float32)).numpy()
            # option occupancy_slope: a per-cell slope on the (normalised log) incident energy, starting at the data's
            # probit line (cell_hit_probit), so each cell's occupancy follows the energy on its own
            self.occupancy_slope = None
            if bool(_opt(spec, "occupancy_slope", False)):
                a = np.asarray(data.get("cell_hit_probit_a", []), dtype=np.float64)
                b = np.asarray(data.get("cell_hit_probit_b", []), dtype=np.float64)
                ok = a.shape == b.shape == (geom.n_features,) and np.isfinite(a).all() and np.isfinite(b).all()
                probit = a.astype(np.float32) if ok else probit
                slope = b if ok else np.zeros(geom.n_features)
                self.occupancy_slope = nn.ParameterList(
                    nn.Parameter(torch.as_tensor(slope[idx], dtype=torch.float32)) for idx in groups
                )
            self.occupancy_logit = nn.ParameterList(nn.Parameter(torch.as_tensor(probit[idx])) for idx in groups)
            # option hit_floor: a hit cell holds at least its layer's smallest hit energy in the data (cell_hit_floor: a
            # line in the standardised log incident energy, the occupancy_slope's variable); without it the softmax
            # pattern gives hit cells any share down to 0, and 17 % of layer 2's generated hits fell below the
            # data's 0.1 % quantile at 100k (voxel-spectrum separation 0.03-0.04; bench/RESULTS.md §13, sixth session)
            if self.hit_floor:
                fa, fb = data.get("cell_hit_floor_a"), data.get("cell_hit_floor_b")
                if fa is None or fb is None or len(fa) != len(groups) or len(fb) != len(groups):
                    raise ConfigError("calo model: hit_floor needs the transform statistics 'cell_hit_floor_a/b' of this "
                                      "version (one per layer group); fit the transform again")
                self.register_buffer("floor_a", torch.as_tensor(fa, dtype=torch.float32), persistent=False)
                self.register_buffer("floor_b", torch.as_tensor(fb, dtype=torch.float32), persistent=False)
            # option occupancy_radial: besides its level, each shower sets a radial slope of every layer's hit probit
            # (per cell: the shift times the cell's radius over the layer's largest), so a shower can be narrow (no
            # outer cell hit) or wide as a whole; with one shift per layer the cells' draws are independent given the
            # level, and on dataset 2 the generated layer 1 always hit an outer ring where 27 % of the real showers keep
            # all of it in the innermost one (width_r separation 0.47; bench/RESULTS.md §13, twelfth session)
            self.occupancy_radial = bool(_opt(spec, "occupancy_radial", False))
            if self.occupancy_radial:  # every feature's radius over its group's largest, in group order (extras: 0)
                r_flat = np.concatenate([np.asarray(lay.r_mm, dtype=np.float64) for lay in geom.layers])
                radii = []
                for idx in groups:
                    r = np.where(idx < geom.n_cells, r_flat[np.minimum(idx, geom.n_cells - 1)], 0.0)
                    radii.append(r / (r.max() if r.max() > 0 else 1.0))
                self.register_buffer("cell_radius", torch.as_tensor(np.concatenate(radii), dtype=torch.float32),
                                     persistent=False)
            # option occupancy_from_condition: the shift is a function of the condition alone (as the response's mean with
            # response_noise), so a shower's hit counts vary only through the cells' own draws and, with
            # layer_noise_hits, its layer draws; from the trunk it varied 0.2-0.8 in probit between showers of one energy
            # on dataset 2, and each layer's hit count given its energy spread 1.1-1.8x GFlash's, correlated across the
            # layers; but taking it from the condition alone made dataset 2 worse (AUC 0.915 -> 0.950, sparsity max 0.02 ->
            # 0.14: the trunk also sets each layer's mean occupancy for the shower's profile) (bench/RESULTS.md §13, 18th)
            self.occupancy_from_condition = bool(_opt(spec, "occupancy_from_condition", False))
            # option occupancy_from_shares: the shift from the condition's embedding and the layer groups' log shares
            # (the profile the trunk and the layer draws produced), not from the hidden state: each layer's mean
            # occupancy can follow the shower's profile, but at fixed layer energies the hit counts vary only through
            # the cells' own draws (the next step after occupancy_from_condition). Negative on dataset 2 over two seeds:
            # AUC 0.915 / 0.917 -> 0.997 / 0.947, layers 0-1 broke (layer 0's share is tiny and noisy, and its hit level
            # swung with it) (bench/RESULTS.md §13, 18th and 19th sessions)
            self.occupancy_from_shares = bool(_opt(spec, "occupancy_from_shares", False))
            if self.occupancy_from_shares and self.occupancy_from_condition:
                raise ConfigError("calo model: occupancy_from_condition and occupancy_from_shares are two sources of the "
                                  "hit shift; set one")
            # option occupancy_mean_preserving: a zero-mean shift of spread v in a rare cell's hit probit o raises its
            # mean hit rate, E Phi(o + v n) = Phi(o / sqrt(1 + v^2)) > Phi(o) for o < 0. On dataset 2 the trunk's shift of
            # layer 0 spread 0.69 in probit between showers of one energy, and that alone took the layer's hits from 2.46
            # to 3.41 per shower (GFlash 2.70; bench/RESULTS.md §13, 21st session). With the option each group's cell
            # probits (and their energy slopes) are scaled by sqrt(1 + v_g^2), v_g^2 a running estimate of the variance
            # of the group's shift at fixed energy, per energy bin (_track_shift_var, SHIFT_VAR_BINS), kept from the
            # training batches of the generator's steps (as batch normalisation keeps its statistics; a buffer, so
            # sampling reads the trained value): each
            # cell's hit rate is then Phi(o) on average over the showers of one energy, whatever the shift's spread
            if self.occupancy_mean_preserving:
                self.register_buffer("occupancy_shift_var", torch.zeros(self.n_groups, SHIFT_VAR_BINS))
                self.register_buffer("occupancy_shift_seen", torch.zeros(SHIFT_VAR_BINS, dtype=torch.bool))
            # option occupancy_pinned (with occupancy_mean_preserving and occupancy_slope): every cell's hit rate at each
            # energy is the data's probit line's, not learned. The cells' probits and slopes stay at the data's fit and
            # the shift's running mean at fixed energy (per energy bin, kept as its variance) is taken off, so the
            # shower's shift only moves its cells' hits together around the data's rates. Why: with mean-preserving
            # alone, training lowered layer 0's outer-ring probits by 0.07-0.11 and the trunk's shift kept a mean of
            # -0.36 at fixed energy in layer 1: the outer rings were hit 3-5x too rarely at low energies, the rings'
            # energy went to fewer, hotter hits (bench/RESULTS.md §13, twenty-second session). Centring: _centred_shift.
            # Negative on dataset 2 so far (twenty-third session): the EMA generator that samples has its own shift mean,
            # up to 0.4 probit off the running table it inherits, and layers 5-16's widths went to separation 0.3
            self.occupancy_pinned = bool(_opt(spec, "occupancy_pinned", False))
            pinned_layers = _opt(spec, "occupancy_pinned_layers", None)
            if (int(_opt(spec, "occupancy_pinned_groups", 0)) or pinned_layers is not None) and not self.occupancy_pinned:
                raise ConfigError("calo model: occupancy_pinned_groups and occupancy_pinned_layers need occupancy_pinned")
            if self.occupancy_pinned:
                if not (self.occupancy_mean_preserving and self.occupancy_slope is not None):
                    raise ConfigError("calo model: occupancy_pinned needs occupancy_mean_preserving and occupancy_slope "
                                      "(the data's hit-rate lines and the shift's statistics at fixed energy)")
                # option occupancy_pinned_groups: only the first N groups (on dataset 2 the pinned rates helped layer 0, the
                # thin first layer, and cost layers 4-16's centres: bench/RESULTS.md §13, twenty-third session)
                n_pinned = int(_opt(spec, "occupancy_pinned_groups", 0))
                if not 0 <= n_pinned <= self.n_groups:
                    raise ConfigError(f"calo model: occupancy_pinned_groups must be in 0..{self.n_groups} (0: all), got {n_pinned}")
                pinned = list(range(n_pinned or self.n_groups))
                # option occupancy_pinned_layers: these layer groups only (by index; group k < n_layers is layer k). Why:
                # on dataset 2 layer 1's hit level kept a negative mean at high energies (-0.10 at 4000 steps, -0.16 at
                # 5000, top third), its outer rings ~30 % too rarely hit, more showers with the whole layer in the
                # innermost ring with training (bench/RESULTS.md §13, thirty-seventh session); pinning layer 0 had cost
                # layer 0 (thirty-fourth session), so layer 1 alone was tried. Negative on both seeds (same session): the
                # pinned group's raw level is free once its mean is taken off, ran to -8 .. -12 with a steep energy
                # trend the sampling table cannot follow; seed 0 AUC 0.986 (layer 0 broke), seed 1 0.928 (layer 1 worst)
                if pinned_layers is not None:
                    if n_pinned:
                        raise ConfigError("calo model: occupancy_pinned_groups and occupancy_pinned_layers both choose the "
                                          "pinned groups; set one")
                    pinned = [int(v) for v in pinned_layers]
                    if not pinned or len(set(pinned)) != len(pinned) or not all(0 <= v < self.n_groups for v in pinned):
                        raise ConfigError(f"calo model: occupancy_pinned_layers must be distinct group indices in "
                                          f"[0, {self.n_groups - 1}], got {pinned}")
                for k in pinned:
                    self.occupancy_logit[k].requires_grad_(False)
                    self.occupancy_slope[k].requires_grad_(False)
                mask = torch.zeros(self.n_groups)
                mask[pinned] = 1.0
                self.register_buffer("occupancy_pinned_mask", mask, persistent=False)
                self.register_buffer("occupancy_shift_mean", torch.zeros(self.n_groups, SHIFT_VAR_BINS))
            # option occupancy_level_bound (b > 0): each group's hit level (the shift, with layer_noise_hits its layer
            # draw's term included) is b tanh(level / b), so no shower's level lies more than b probit from 0. Why: on
            # dataset 2 layer 1's level spread wider with training (top energy third, 5-95 % -1.27 .. 0.83 at 4000 steps,
            # -2.46 .. 1.21 at 6500) while the critic let it, and the showers at the low end hit only the innermost ring
            # (35.5 % against the data's 10.6 %; bench/RESULTS.md §13, thirty-sixth session). Measured with b = 1.0
            # (thirty-seventh session, seed 0): neutral at 4000 steps (AUC 0.896 against 0.897); at 6000 AUC 0.874 and
            # layer 1's lateral items < 0.025, but the deep layers' energies worse; the innermost-ring showers still grow
            # (the level's mean drifts, not only its spread), so off
            self.occupancy_level_bound = float(_opt(spec, "occupancy_level_bound", 0.0))
            # option occupancy_level_mean_weight (w > 0): a generator training term w * sum over groups of the batch mean
            # of the squared hit level's mean at each shower's energy (_squared_mean_along_energy: quadratics in the
            # energy, unbiased), which pulls each group's level towards mean 0 at fixed energy, where occupancy_mean_preserving
            # makes every cell's hit rate the data's probit line's, and leaves its spread to the critic. Why: on
            # dataset 2 layer 1's level drifted to a mean of -0.10 / -0.16 / -0.23 (top energy third, 4000 / 5000 / 6000
            # steps), every outer ring hit ~30 % too rarely, while its energy shares stayed right (bench/RESULTS.md
            # §13, thirty-seventh session); pinning the mean by construction (occupancy_pinned) freed the raw level
            # to run away, a penalty keeps the level the network's own and near 0. Only the groups that hold energy in
            # at least LEVEL_MEAN_MIN_HIT of the training showers at every energy (the transform's group_hit_probit):
            # the cells' probit lines are their rates over all showers, so a group that is often empty needs a positive
            # level where it is hit; pulled to 0 on every group, dataset 2's layer 0 (empty in up to 43 % of the
            # showers) broke, centres 0.16-0.19 at step 3500 (thirty-eighth session). Measured (seed 0, layers 1-10): the
            # batch form at w = 1 AUC 0.917 at 4000 steps (preset 0.897); the running form below at w = 10 AUC 0.899 at
            # 4000, layer 1's hit counts the data's in every energy third, and at 6500 AUC 0.865 (preset 0.885), centres
            # and widths over 0.02 7 -> 1, but layers' energies under 0.01 38 -> 33; one seed, so off
            if self.occupancy_level_mean_weight:
                _, hit_probit = _knot_curve(data, "group_hit_probit", self.n_groups, "occupancy_level_mean_weight")
                held = hit_probit.min(dim=0).values >= float(torch.special.ndtri(torch.tensor(LEVEL_MEAN_MIN_HIT)))
                self.register_buffer("level_mean_groups", torch.nonzero(held).flatten(), persistent=False)
                self._level_mean_group_list = self.level_mean_groups.tolist()  # for the per-group table reads, no sync
            # option occupancy_level_mean_running: the term is w * sum_g mean_b level_bg * m_g(t_b), m_g the running mean
            # of the group's level at fixed energy (per energy bin, kept as the variance is, not differentiated): each
            # shower's level is pushed by the mean at its energy, the same push for every shower of one energy, where the
            # batch's estimate above is noisy. Why: the batch form at w = 10 on every group left the levels' spread at
            # fixed energy collapsed at 4000 steps (layer 1, top energy third, 5-95 % -0.29 .. 0.27 against -0.88 .. 0.68;
            # thirty-eighth session); whether its noise or the broken layer 0 did that is not separated (at w = 1 on
            # layers 1-10 the batch form kept the spread)
            self.level_mean_running = bool(_opt(spec, "occupancy_level_mean_running", False))
            if self.level_mean_running and not (self.occupancy_level_mean_weight and self.occupancy_mean_preserving):
                raise ConfigError("calo model: occupancy_level_mean_running needs occupancy_level_mean_weight > 0 and "
                                  "occupancy_mean_preserving (whose running statistics it reads)")
            if self.level_mean_running and not self.occupancy_pinned:
                self.register_buffer("occupancy_shift_mean", torch.zeros(self.n_groups, SHIFT_VAR_BINS))
            if not (math.isfinite(self.occupancy_level_bound) and self.occupancy_level_bound >= 0):
                raise ConfigError(f"calo model: occupancy_level_bound must be >= 0 (0: unbounded), got {self.occupancy_level_bound}")
            shift_in = spec.embed_dim if self.occupancy_from_condition else width
            shift_in = spec.embed_dim + self.n_groups if self.occupancy_from_shares else shift_in
            self.occupancy_shift = nn.Linear(shift_in, self.n_groups * (2 if self.occupancy_radial else 1))
            nn.init.normal_(self.occupancy_shift.weight, std=0.01)
            nn.init.zeros_(self.occupancy_shift.bias)
            share = np.asarray(data.get("cell_hit_share", []), dtype=np.float64)
            if share.shape == (geom.n_features,) and np.isfinite(share).any():
                # patterns start from the data's mean share given a hit (the mask supplies the zeros);
                # cells no shower hits: the group's smallest share
                with torch.no_grad():
                    for head, idx in zip(self.patterns, groups):
                        sh = share[idx]
                        if np.isfinite(sh).any() and np.nanmax(sh) > 0:
                            fill = float(np.nanmin(np.where(sh > 0, sh, np.nan)))
                            sh = np.where(np.isfinite(sh) & (sh > 0), sh, fill)
                            head.bias.copy_(torch.as_tensor(np.log(sh), dtype=torch.float32))
        self.noise_offsets = np.concatenate([[0], np.cumsum(self.group_sizes)]).tolist()
        # option pattern_conv: a per-layer 3 x 3 conv stream over each layer's grid refines the pattern logits from the
        # layer's log shares and the per-cell noise (spatially correlated fluctuations); its output starts at 0
        conv = int(_opt(spec, "pattern_conv", 0))
        if conv < 0:
            raise ConfigError(f"calo model: pattern_conv must be >= 0 channels, got {conv}")
        self.pattern_conv = None
        if conv:
            self.pattern_conv = LayerConvStream(geom, 1 + int(self.cell_noise), conv, out_channels=1)
            for grp in self.pattern_conv.groups:
                nn.init.zeros_(grp.out.weight)
                nn.init.zeros_(grp.out.bias)
            self.layer_cells = [lay.n_cells for lay in geom.layers]  # group k < n_layers starts with layer k's cells
            self.register_buffer("log_cells", torch.log(torch.tensor(self.layer_cells, dtype=torch.float32)), persistent=False)
        if not self.occupancy:
            s0 = float(_opt(spec, "threshold_init", 1e-3))
            if not 0 < s0 < S_MAX:
                raise ConfigError(f"calo model: threshold_init must lie in (0, {S_MAX}), got {s0}")
            self.thresholds = nn.Linear(width, self.n_groups)
            nn.init.normal_(self.thresholds.weight, std=0.01)
            nn.init.constant_(self.thresholds.bias, math.log(s0 / (S_MAX - s0)))

    def latent_shape(self, scale: int = 1) -> tuple[int, ...]:
        """Shape of one latent vector: ``(z_dim + k n_features [+ n_groups] [+ 1],)`` with ``k`` = 1 per per-cell block
        in use (noise, occupancy), then one draw per layer group with ``empty_draw``, one per group with ``layer_noise``
        and the response's own draw with ``response_noise``; the geometry is fixed, so ``scale`` must be 1."""
        if int(scale) != 1:
            raise ConfigError("the calorimeter generator has a fixed geometry: latent scale must be 1")
        n_groups = self.n_groups * (int(self.empty_draw) + int(self.layer_noise))
        return (self.z_dim + self.n_features * (int(self.cell_noise) + int(self.occupancy)) + n_groups
                + int(self.response_log_sd is not None),)

    def _hit_mask(self, k: int, occ_shift: torch.Tensor, c: torch.Tensor, draw: torch.Tensor,
                  ring_offset: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Miss mask of group ``k`` (bool, ``True``: missed) and, when gradients are on, the zero-valued straight-through
        term of its hit draws.

        A cell is hit when its N(0, 1) draw ``n`` lies below its occupancy logit ``o`` (probit: ``P(hit) = Phi(o)``);
        ``occ_shift`` is ``occupancy_shift`` of the trunk's ``h`` (of the condition's embedding with
        ``occupancy_from_condition``, of it and the groups' log shares with ``occupancy_from_shares``), plus the layer
        draws' term with ``layer_noise_hits``: (B, n_groups), with ``occupancy_radial`` followed by each group's radial
        slope (B, n_groups), times the cells' normalised radii. The caller sets the group's hottest cell to hit, so the
        group keeps its energy. ``ring_offset`` (B, group size), option ``ring_calibration`` at sampling: each cell's
        ring's probit offset. The relaxation is ``soft = sigmoid((o - n) / T)`` (``occupancy_temperature``), whose
        expected slope tends to ``dP(hit)/do``.
        """
        if self.occupancy_mean_preserving:  # the cells' own probits scaled, then the shower's shift
            base = self.occupancy_logit[k]
            if self.occupancy_slope is not None:
                base = base + c[:, :1] * self.occupancy_slope[k]
            logit = base * torch.sqrt(1.0 + self._binned_at(self.occupancy_shift_var, c[:, 0], k))[:, None]
            logit = logit + occ_shift[:, k : k + 1]
        else:
            logit = self.occupancy_logit[k] + occ_shift[:, k : k + 1]
        if self.occupancy_radial:
            g, lo, hi = self.n_groups, self.noise_offsets[k], self.noise_offsets[k + 1]
            logit = logit + occ_shift[:, g + k : g + k + 1] * self.cell_radius[lo:hi]
        if self.occupancy_slope is not None and not self.occupancy_mean_preserving:  # condition 0: normalised log E_inc
            logit = logit + c[:, :1] * self.occupancy_slope[k]
        if ring_offset is not None:
            logit = logit + ring_offset
        miss = draw >= logit
        if not torch.is_grad_enabled():
            return miss, None
        soft = torch.sigmoid((logit - draw) / self.occupancy_temperature)
        return miss, soft - soft.detach()

    @staticmethod
    def _binned_at(table: torch.Tensor, t: torch.Tensor, k: int) -> torch.Tensor:
        """Option ``occupancy_mean_preserving``: row ``k`` of a per-energy-bin ``table`` (the shift's variance or mean;
        (n_groups, :data:`SHIFT_VAR_BINS`)) at normalised log energies ``t`` (B,), linear between the bins' centres
        (constant beyond the outer centres)."""
        pos = ((t.float() + SHIFT_VAR_EDGE) / SHIFT_VAR_WIDTH - 0.5).clamp(0.0, SHIFT_VAR_BINS - 1.0)
        i0 = pos.floor().long().clamp(max=SHIFT_VAR_BINS - 2)
        frac = pos - i0
        row = table[k]
        return (row[i0] * (1.0 - frac) + row[i0 + 1] * frac).to(t.dtype)

    @property
    def calibrated(self) -> bool:
        """Whether :meth:`calibrate_statistics` sets anything (options ``occupancy_mean_preserving``,
        ``share_calibration``, ``ring_calibration``)."""
        return self.occupancy_mean_preserving or self.share_calibration or self.ring_calibration

    @torch.no_grad()
    def calibrate_statistics(self, n_per_bin: int = 2048, seed: int = 0, scale: int = 1) -> None:
        """Option ``occupancy_mean_preserving``: set the per-energy-bin tables of the hit shift (its variance, and with
        ``occupancy_pinned`` its mean) from this generator's own shifts at each bin's centre; option ``share_calibration``:
        then set the own quantile table of the group energies from ``n_per_bin / 2 * scale`` showers at each of its knots;
        option ``ring_calibration``: then move the rings' probit offsets and log weights, in
        ``RING_CALIBRATION_ROUNDS * scale`` rounds of ``n_per_bin / 2`` showers at each knot; no-op without any.

        The training loop calls it on the EMA generator before each validation and checkpoint. The EMA generator
        inherits the training generator's running tables with the other buffers, but its averaged weights spread the
        shift less: on dataset 2 its layer-0 shift spread 0.53-0.57 at the lowest energies where the inherited table
        read 0.72-0.73, so the rare outer cells' probits were scaled too far and layer 0's outer rings came out ~2x too
        rarely hit at low energies (bench/RESULTS.md §13, twenty-third session). Other conditions than the energy are
        held at 0 (their normalised mean). Uses its own random generator: the global random state is untouched.

        Parameters
        ----------
        n_per_bin : int
            Latent draws at each bin's centre per batch.
        seed : int
            Seed of the latent draws.
        scale : int
            Batches per bin (``physgan calibrate --scale``: more draws than the training loop spends).
        """
        if not self.calibrated:
            return
        gen = torch.Generator(device="cpu").manual_seed(int(seed))
        was_training = self.training
        self.eval()
        try:
            if self.occupancy_mean_preserving:
                self._calibrate_shift_tables(n_per_bin, scale, gen)
            if self.share_calibration:  # after the hit shifts, which the group energies follow
                self._calibrate_share_table(n_per_bin // 2 * max(1, int(scale)), gen)
            if self.ring_calibration:  # last: its showers are sampled as they will be, shares calibrated
                self._calibrate_ring_tables(n_per_bin // 2, RING_CALIBRATION_ROUNDS * max(1, int(scale)), gen)
        finally:
            self.train(was_training)

    def _calibrate_shift_tables(self, n_per_bin: int, scale: int, gen: torch.Generator) -> None:
        """Option ``occupancy_mean_preserving``: the hit-shift tables of :meth:`calibrate_statistics`."""
        device = self.occupancy_shift_var.device
        self._level_sink = []
        try:
            for b in range(SHIFT_VAR_BINS):
                self._level_sink.clear()
                for _ in range(max(1, int(scale))):
                    z = torch.randn(n_per_bin, *self.latent_shape(), generator=gen).to(device)
                    c = torch.zeros(n_per_bin, self.n_cond, device=device)
                    c[:, 0] = -SHIFT_VAR_EDGE + (b + 0.5) * SHIFT_VAR_WIDTH
                    self.physics(z, c)
                level = torch.cat(self._level_sink).float()
                self.occupancy_shift_var[:, b] = level.var(dim=0).to(self.occupancy_shift_var.dtype)
                if self.occupancy_pinned or self.level_mean_running:
                    self.occupancy_shift_mean[:, b] = level.mean(dim=0).to(self.occupancy_shift_mean.dtype)
            self.occupancy_shift_seen.fill_(True)
        finally:
            self._level_sink = None

    def _centred_shift(self, occ_shift: torch.Tensor, c: torch.Tensor, batch: bool) -> torch.Tensor:
        """Option ``occupancy_pinned``: the hit shift's level columns less their mean at each shower's energy.

        In a training forward (``batch``) the mean is the batch's least-squares quadratic in condition 0, with its
        gradient, so the loss does not depend on the shift's mean at fixed energy and nothing pushes it (as batch
        normalisation centres with the batch's mean). Taking off the running mean instead let the shift's mean run
        away: the critic pushed it, the running mean followed 50 steps behind, and their difference held the rates
        0.3 probit off the data's while the means reached +-11 by step 2000 (bench/RESULTS.md §13, twenty-third
        session). Sampling takes off the running per-bin mean (:meth:`_track_shift_var`).
        """
        g = self.n_groups
        level = occ_shift[:, :g]
        if batch and len(level) > 3:
            mean = _mean_along_energy(level, c)
        else:
            mean = torch.stack([self._binned_at(self.occupancy_shift_mean, c[:, 0], k) for k in range(g)], dim=1)
        mean = mean.to(level.dtype) * self.occupancy_pinned_mask.to(level.dtype)  # groups not pinned keep their shift
        return torch.cat([level - mean, occ_shift[:, g:]], dim=1)

    @torch.no_grad()
    def _track_shift_var(self, level: torch.Tensor, c: torch.Tensor, momentum: float = 0.02) -> None:
        """Option ``occupancy_mean_preserving``: move the running variance of each group's hit shift at fixed incident
        energy, per energy bin, towards this batch's, by ``momentum``. Only the generator's training forward calls it;
        sampling reads the buffer.

        The batch's estimate is half the mean squared difference of ``level`` (B, n_groups) between showers adjacent in
        condition 0 (the normalised log incident energy), von Neumann's successive-difference variance: any smooth mean
        trend in the energy cancels between neighbours. A residual about a line in the energy had read the trend's
        curvature as spread (layer 0 of dataset 2: 0.87 against 0.74 about a quadratic), and the scaled probits then
        hit the outer rings 2-3x too rarely (bench/RESULTS.md §13, twenty-first session). Each difference counts in the
        bin of its pair's mean energy; a bin with at least two differences in the batch moves (the first time it is
        set), and a bin never seen takes its nearest seen neighbour's value.
        """
        if len(level) < 3:
            return
        t, order = torch.sort(c[:, 0].float())
        level = level.float()[order]  # float32 also under autocast
        half_sq = 0.5 * (level[1:] - level[:-1]).pow(2)
        mid = 0.5 * (t[1:] + t[:-1])
        bins = ((mid + SHIFT_VAR_EDGE) / SHIFT_VAR_WIDTH).floor().long().clamp(0, SHIFT_VAR_BINS - 1)
        sums = torch.zeros(SHIFT_VAR_BINS, level.shape[1], device=level.device).index_add_(0, bins, half_sq)
        counts = torch.bincount(bins, minlength=SHIFT_VAR_BINS)
        tables = [(self.occupancy_shift_var, sums)]
        if self.occupancy_pinned or self.level_mean_running:  # the mean too, of each difference's pair
            mid_level = 0.5 * (level[1:] + level[:-1])
            tables.append((self.occupancy_shift_mean, torch.zeros_like(sums).index_add_(0, bins, mid_level)))
        seen = self.occupancy_shift_seen
        fresh = [b for b in torch.nonzero(counts >= 2).flatten().tolist()]
        for buf, batch_sums in tables:
            for b in fresh:
                est = (batch_sums[b] / counts[b]).to(buf.dtype)
                buf[:, b] = buf[:, b].lerp(est, momentum) if seen[b] else est
        for b in fresh:
            seen[b] = True
        if seen.any() and not seen.all():
            idx = torch.nonzero(seen).flatten()
            for b in torch.nonzero(~seen).flatten().tolist():
                for buf, _ in tables:
                    buf[:, b] = buf[:, idx[(idx - b).abs().argmin()]]

    def _empty_groups(self, fractions: torch.Tensor, occ_shift: torch.Tensor, c: torch.Tensor, draws: torch.Tensor,
                      ring: tuple[torch.Tensor, torch.Tensor] | None = None
                      ) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor | None] | None]]:
        """Option ``empty_layers``: the hit draws of every sparse group and the layer fractions with the empty groups'
        shares given to the others (renormalised), so the shower's energy stays ``response`` exactly.

        A group is empty when every one of its draws (cells and extras) misses. Should every group of a shower be
        empty, none is (the group keeps its hottest cell, as without the option).

        Returns
        -------
        fractions : torch.Tensor
            (B, n_groups), zero for the empty groups.
        masks : list
            Per group, :meth:`_hit_mask`'s ``(miss, straight-through term)``, or None for a group without draws.
        """
        masks: list[tuple[torch.Tensor, torch.Tensor | None] | None] = []
        empty = torch.zeros_like(fractions, dtype=torch.bool)
        for k in range(self.n_groups):
            if not self.group_sparse[k]:
                masks.append(None)
                continue
            lo, hi = self.noise_offsets[k], self.noise_offsets[k + 1]
            masks.append(self._hit_mask(k, occ_shift, c, draws[:, lo:hi],
                                        None if ring is None else ring[0][:, self.ring_cell_col[lo:hi]]))
            empty[:, k] = masks[k][0].all(dim=1)
        return _without_groups(fractions, empty), masks

    def layer_noise_sd(self, c: torch.Tensor) -> torch.Tensor:
        """Option ``layer_noise``: each group's spread of its log share draw at each shower's energy, (B, n_groups).

        The data's line ``exp(a_g + b_g t)`` (:func:`~physgan.domains.calo.transform.group_share_noise_line`), ``t``
        (condition 0, the normalised log incident energy) held within the energies the line was fitted on, times the
        learned factor ``floor + (1 - floor) exp(shift_g)`` (at least ``layer_noise_floor``).
        """
        t = torch.minimum(torch.maximum(c[:, :1].to(self.layer_noise_a.dtype), self.layer_noise_t[0]), self.layer_noise_t[1])
        sd = torch.exp(self.layer_noise_a + self.layer_noise_b * t)
        return sd * (self.layer_noise_floor + (1.0 - self.layer_noise_floor) * torch.exp(self.layer_noise_shift))

    def _drawn_empty(self, draw: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """Option ``empty_draw``: which groups of each shower are empty (bool, (B, n_groups)).

        Group ``k`` holds energy when its N(0, 1) draw lies below ``p_k(t)`` (``t``: condition 0, the normalised log
        incident energy; ``p_k``: the transform's :func:`~physgan.domains.calo.transform.group_hit_curve`, the probit
        of the data's fraction of showers whose group ``k`` holds any energy, linear between its knots and constant
        beyond them), independently per group. Should every group of a shower come out empty, none is.
        """
        if self.empty_patterns:
            empty = ~self.pattern_hit[self._pattern_index(draw[:, 0], c)]
        else:
            empty = draw >= _along_knots(self.group_hit_knots, self.group_hit_probit, c).to(draw.dtype)
        return empty & ~empty.all(dim=1, keepdim=True)

    def _pattern_index(self, draw: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """Option ``empty_draw_patterns``: the bank row of each shower, (B,) long: among the :data:`PATTERN_WINDOW`
        training showers nearest in energy (condition 0; all of them in a smaller bank), the one at the draw's normal quantile."""
        m, w = len(self.pattern_t), self.pattern_window
        pos = torch.searchsorted(self.pattern_t, c[:, 0].to(self.pattern_t.dtype).contiguous())
        start = (pos - w // 2).clamp(0, m - w)
        u = torch.special.ndtr(draw.double())
        return start + (u * w).long().clamp(0, w - 1)

    def _floor(self, k: int, wm: torch.Tensor, e_k: torch.Tensor,
               c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Option ``hit_floor`` for group ``k``: each hit cell's floor ``p`` (B, 1), their sum over the hit cells (B, 1)
        and the cells' hit indicator (B, n_cells of the group; the extras have no floor).

        ``p = exp(a_k + b_k t)`` (``t``: condition 0, the normalised log incident energy), at most ``e_k / n_hit`` so the
        floors never exceed the group's energy (then every hit cell holds the same share).
        """
        nc = self.group_n_cells[k]
        hit = (wm[:, :nc] > 0).to(e_k.dtype)
        n_hit = hit.sum(dim=1, keepdim=True).clamp(min=1.0)
        p = torch.minimum(torch.exp(self.floor_a[k] + self.floor_b[k] * c[:, :1].to(e_k.dtype)), e_k / n_hit)
        return p, p * n_hit, hit

    def _to_flat(self, parts: list[torch.Tensor]) -> torch.Tensor:
        """Per-group tensors ``(B, group_size)`` -> ``(B, n_features)`` in flat order."""
        if len(self.flat_runs) == 1:
            return parts[0]
        return torch.cat([parts[k][:, a:b] for k, a, b in self.flat_runs], dim=1)

    def _conv_logits(self, logits: list[torch.Tensor], noise: torch.Tensor | None) -> list[torch.Tensor]:
        """Option ``pattern_conv``: add the conv stream's output to the cells' pattern logits of every layer.

        Inputs per cell: the layer's log share (``logits - logsumexp``, over ``log n_cells`` of the layer, so about
        [-2, 0] whatever the geometry) and, with ``cell_noise``, the cell's own noise value.
        """
        nl = len(self.layer_cells)
        cells = [lg[:, :n] for lg, n in zip(logits[:nl], self.layer_cells)]
        share = torch.cat([(c - torch.logsumexp(c, dim=1, keepdim=True)) / self.log_cells[k].clamp(min=1.0)
                           for k, c in enumerate(cells)], dim=1)
        inputs = [share]
        if noise is not None:
            inputs.append(torch.cat([noise[:, self.noise_offsets[k] : self.noise_offsets[k] + n]
                                     for k, n in enumerate(self.layer_cells)], dim=1))
        delta = self.pattern_conv(torch.stack(inputs, dim=2))[..., 0]
        out, start = [], 0
        for k, lg in enumerate(logits):
            if k < nl:
                n = self.layer_cells[k]
                lg = torch.cat([lg[:, :n] + delta[:, start : start + n], lg[:, n:]], dim=1)
                start += n
            out.append(lg)
        return out

    def physics(self, z: torch.Tensor, c: torch.Tensor) -> dict[str, torch.Tensor]:
        """The structured shower before the model-space map.

        Parameters
        ----------
        z : torch.Tensor
            (B, *latent_shape()) latents: the shower latent, then (with ``cell_noise``) one value per feature, then
            (with ``occupancy``) one more per feature.
        c : torch.Tensor
            (B, n_cond) normalised conditions.

        Returns
        -------
        dict
            ``u`` (B, n_features) cell energies / E_inc in flat order; ``response`` (B,);
            ``fractions`` (B, n_groups); ``group_energy`` (B, n_groups) = response * fractions. With ``occupancy``
            and gradients on, also ``hit_st`` (B, n_features), zero-valued straight-through terms of the hit draws,
            and ``u_hit`` (B, n_features, detached), each cell's energy had it been hit (see :meth:`forward`).
        """
        if z.ndim != 2 or z.shape[1] != self.latent_shape()[0]:
            raise ConfigError(f"calo generator: latent of shape {tuple(z.shape)}, expected (B, {self.latent_shape()[0]})")
        e = self.embed(c)
        nf = self.n_features
        # without gradients (sampling) the element-wise steps below run in place on fresh tensors: the same values in
        # fewer passes over (B, width) and (B, cells) arrays (tests/test_calo_model.py checks both paths agree)
        grad = torch.is_grad_enabled()
        noise = z[:, self.z_dim : self.z_dim + nf] if self.cell_noise else None
        if noise is not None and self.noise_clip is not None:  # a new tensor: the latent is not modified
            noise = noise.clamp(max=self.noise_clip)
        draws = z[:, self.z_dim + nf * int(self.cell_noise) : self.z_dim + nf * (int(self.cell_noise) + 1)] if self.occupancy else None
        tail = self.z_dim + nf * (int(self.cell_noise) + int(self.occupancy))  # then the empty draws, the response's
        drawn_empty = self._drawn_empty(z[:, tail : tail + self.n_groups], c) if self.empty_draw else None
        tail += self.n_groups * int(self.empty_draw)
        layer_draw = z[:, tail : tail + self.n_groups] if self.layer_noise else None
        response_draw = z[:, -1] if self.response_log_sd is not None else None
        z = z[:, : self.z_dim]
        trunk_in = [z, e]
        if drawn_empty is not None:
            trunk_in.append(drawn_empty.to(z.dtype))
        if response_draw is not None:
            trunk_in.append(response_draw[:, None])
        h = _leaky(self.films[0](self.inp(torch.cat(trunk_in, dim=1)), e), grad)
        for block, film in zip(self.blocks, self.films[1:]):
            a = _leaky(film(block(h), e), grad)
            h = a.add_(h) if not grad else a + h
        mean_from = e if response_draw is not None else h
        response = (self.response_lo + self.response_span * torch.sigmoid(self.response(mean_from))).squeeze(1)
        if response_draw is not None:  # log-normal with the same mean: exp(sd n - sd^2 / 2)
            sd = torch.exp(self.response_log_sd[0] + self.response_log_sd[1] * c[:, 0].to(response.dtype))
            response = response * torch.exp(sd * response_draw - 0.5 * sd * sd)
        share_logits = self.fractions(h)
        if self.share_curve:
            share_logits = share_logits + _along_knots(self.share_knots, self.group_share_log, c).to(share_logits.dtype)
        layer_dev = None  # with layer_noise: each group's log deviation sd n (B, n_groups)
        if layer_draw is not None:  # unit-mean log-normal: exp(sd n - sd^2 / 2)
            sd = self.layer_noise_sd(c).to(share_logits.dtype)
            layer_dev = sd * layer_draw
            share_logits = share_logits + layer_dev - 0.5 * sd * sd
        fractions = torch.softmax(share_logits, dim=1)
        if drawn_empty is not None:  # the empty groups' cells then hold exact zeros (their group energy is 0)
            fractions = _without_groups(fractions, drawn_empty)
        if self.share_cap:
            fractions = self._capped(fractions, c)
        s = None if self.occupancy else S_MAX * torch.sigmoid(self.thresholds(h))  # < 1: the hottest cell survives
        # the per-layer noise head: sigma = exp(log_scale_i) exp(shift_g(h)), applied as (n exp(log_scale)) exp(shift)
        # (no exp over a (B, cells) array); one occupancy shift per group, computed once
        shift = torch.exp(self.noise_shift(h)) if noise is not None and self.noise_head == "layer" else None
        if shift is not None and self.noise_floor > 0:  # at least noise_floor of the start; 1 at the start as without
            shift = self.noise_floor + (1.0 - self.noise_floor) * shift
        occ_shift = None
        if draws is not None:
            if self.occupancy_from_shares:
                occ_in = torch.cat([e, torch.log_softmax(share_logits, dim=1).to(e.dtype)], dim=1)
            else:
                occ_in = e if self.occupancy_from_condition else h
            occ_shift = self.occupancy_shift(occ_in)
        if occ_shift is not None and self.layer_noise_hits:  # the level columns come first (then the radial slopes)
            moved = occ_shift[:, : self.n_groups] + self.layer_hit_slope * layer_dev
            occ_shift = torch.cat([moved, occ_shift[:, self.n_groups :]], dim=1) if self.occupancy_radial else moved
        if occ_shift is not None and self.occupancy_level_bound > 0:
            bound, g = self.occupancy_level_bound, self.n_groups
            level = bound * torch.tanh(occ_shift[:, :g] / bound)
            occ_shift = torch.cat([level, occ_shift[:, g:]], dim=1) if occ_shift.shape[1] > g else level
        aux: list[torch.Tensor] = []  # the generator's own training terms (take_auxiliary_loss)
        if occ_shift is not None and self.occupancy_level_mean_weight > 0 and grad and self.training and len(c) >= 8:
            level = occ_shift[:, self.level_mean_groups].float()
            if self.level_mean_running:
                mean = torch.stack([self._binned_at(self.occupancy_shift_mean, c[:, 0].float(), k)
                                    for k in self._level_mean_group_list], dim=1)
                sq = (level * mean).mean(dim=0).sum()
            else:
                sq = _squared_mean_along_energy(level, c.float())
            aux.append(self.occupancy_level_mean_weight * sq)
        if occ_shift is not None and self.occupancy_mean_preserving and grad and self.training:
            self._track_shift_var(occ_shift[:, : self.n_groups].detach(), c)
        if occ_shift is not None and self._level_sink is not None:
            self._level_sink.append(occ_shift[:, : self.n_groups].detach())
        if occ_shift is not None and self.occupancy_pinned:
            occ_shift = self._centred_shift(occ_shift, c, batch=grad and self.training)
        masks: list[tuple[torch.Tensor, torch.Tensor | None] | None] = [None] * self.n_groups
        ring = self._ring_tables(c) if draws is not None else None
        full = None  # with empty_layers: the groups' energies had none been empty (the straight-through's counterfactual)
        if self.empty_layers and draws is not None:  # the hit draws first: which groups are empty
            full = (response[:, None] * fractions).detach() if grad else None
            fractions, masks = self._empty_groups(fractions, occ_shift, c, draws, ring)
        if self.share_calibration and not self.training and not self._calibrating:
            fractions = self._calibrated_fractions(fractions, c)
            if self.share_cap:  # the map's linear tails can reach past the largest share the data hold
                fractions = self._capped(fractions, c)
        group_energy = response[:, None] * fractions
        if self.share_quantile_weight > 0 and grad and self.training and len(c) >= 8:
            aux.append(self.share_quantile_weight * self._share_quantile_score(fractions, c))
        if aux:
            self._auxiliary_loss = torch.stack(aux).sum()
        x_shift = self.extra_noise_shift(h) if shift is not None and self.extras_noise else None
        parts, st_parts, hit_parts = [], [], []
        all_logits = []
        for k, (hid, head) in enumerate(zip(self.layer_hidden, self.patterns)):
            hk = hid(h)
            logits = head(hk)
            lo, hi = self.noise_offsets[k], self.noise_offsets[k + 1]
            if noise is not None:
                if shift is None:
                    logits = torch.addcmul(logits, torch.exp(self.noise_scales[k](hk)), noise[:, lo:hi])
                else:
                    if self.noise_slope is None:
                        scale = torch.exp(self.noise_log_scale[k])
                    else:  # the per-cell scale follows the incident energy: one exp over (B, cells)
                        scale = torch.exp(torch.addcmul(self.noise_log_scale[k], c[:, :1].to(noise.dtype), self.noise_slope[k]))
                    sk = shift[:, k : k + 1]
                    if self.noise_shape == "gamma":  # the cell's sigma is its scale times the shift; see _gamma_log_noise
                        scaled, sk = _gamma_log_noise(scale * sk, noise[:, lo:hi]), torch.ones_like(sk)
                    else:
                        scaled = noise[:, lo:hi] * scale
                    nc, xa, xb = self.extra_runs[k] if self.extras_noise else (hi - lo, 0, 0)
                    if xb == xa:
                        logits = logits.addcmul_(scaled, sk) if not grad else torch.addcmul(logits, scaled, sk)
                    else:  # the group's cells, then its extras with their own scale
                        sx = torch.exp(self.extra_log_scale[xa:xb] + c[:, :1] * self.extra_slope[xa:xb] + x_shift[:, xa:xb])
                        if not grad:
                            logits[:, :nc].addcmul_(scaled[:, :nc], sk)
                            logits[:, nc:].addcmul_(noise[:, lo + nc : hi], sx)
                        else:
                            logits = torch.cat([torch.addcmul(logits[:, :nc], scaled[:, :nc], sk),
                                                torch.addcmul(logits[:, nc:], noise[:, lo + nc : hi], sx)], dim=1)
            all_logits.append(logits)
        if self.pattern_conv is not None:
            all_logits = self._conv_logits(all_logits, noise)
        for k, logits in enumerate(all_logits):
            lo, hi = self.noise_offsets[k], self.noise_offsets[k + 1]
            # the pattern unnormalised, exp(a - max a): every use below renormalises, so the softmax's division is
            # not needed, and the max gives the hottest cell's index (no separate argmax); exp(0) = 1 there exactly
            nc = self.group_n_cells[k]
            if self.extras_cap and nc < logits.shape[1]:  # the hottest over the cells; the extras at most as hot
                top, hottest = logits[:, :nc].max(dim=1, keepdim=True)
                if not grad:  # in place: no copy of the group's logits
                    logits[:, nc:].clamp_(max=top)
                else:
                    logits = torch.cat([logits[:, :nc], torch.minimum(logits[:, nc:], top)], dim=1)
            else:
                top, hottest = logits.max(dim=1, keepdim=True)
            w = logits.sub_(top).exp_() if not grad else torch.exp(logits - top)
            e_k = group_energy[:, k : k + 1]
            st = None
            if self.group_sparse[k] and draws is not None:
                if masks[k] is not None:
                    miss, st = masks[k]
                else:
                    offset = None if ring is None else ring[0][:, self.ring_cell_col[lo:hi]]
                    miss, st = self._hit_mask(k, occ_shift, c, draws[:, lo:hi], offset)
                if st is not None:
                    hit_parts.append(w.detach())  # rescaled below, once the group's sum is known
                wm = (w.masked_fill_(miss, 0.0) if not grad else w.masked_fill(miss, 0.0)).scatter_(1, hottest, 1.0)
                if ring is not None:  # option ring_calibration: each ring's weight in the layer's pattern
                    ring_w = torch.exp(ring[1][:, self.ring_cell_col[lo:hi]]).to(wm.dtype)
                    wm = wm.mul_(ring_w) if not grad else wm * ring_w
                floor = self._floor(k, wm, e_k, c) if self.hit_floor else None
                # with the floor, the pattern shares what the hit cells' floors leave of the group's energy
                scale = (e_k if floor is None else e_k - floor[1]) / wm.sum(dim=1, keepdim=True)
                if st is not None:
                    scale_h, floor_h = scale, floor
                    if full is not None:  # a cell of an empty group, had it been hit, would hold a share of its energy:
                        # without this the straight-through term of an empty group is 0 and nothing pulls it back to a
                        # hit (layer 2 emptied in 93 % of the 1-3 GeV showers by step 6000, real 51 %; RESULTS §13)
                        e_h = torch.where(e_k > 0, e_k, full[:, k : k + 1])
                        floor_h = self._floor(k, wm, e_h, c) if self.hit_floor else None
                        scale_h = (e_h if floor_h is None else e_h - floor_h[1]) / wm.sum(dim=1, keepdim=True)
                    hit_parts[-1] = hit_parts[-1] * scale_h.detach()
                    if floor_h is not None:  # a missed cell, had it been hit, would hold its floor as well
                        hit_parts[-1][:, :nc] += floor_h[0].detach()
                part = wm.mul_(scale) if not grad else wm * scale
                if floor is not None:
                    on = floor[2] * floor[0]  # the hit cells' floors
                    if not grad:
                        part[:, :nc].add_(on)
                    else:
                        part = torch.cat([part[:, :nc] + on, part[:, nc:]], dim=1)
            elif self.group_sparse[k]:  # relative threshold s * max(w), and max(w) = 1
                g = torch.relu(w - s[:, k : k + 1])
                part = g * (e_k / g.sum(dim=1, keepdim=True))
            else:
                part = w.mul_(e_k / w.sum(dim=1, keepdim=True)) if not grad else w * (e_k / w.sum(dim=1, keepdim=True))
            parts.append(part)
            if draws is not None and grad:
                st_parts.append(st if st is not None else torch.zeros_like(part))
                if st is None:
                    hit_parts.append(part.detach())
        u = self._to_flat(parts)
        out = {"u": u, "response": response, "fractions": fractions, "group_energy": group_energy}
        if st_parts:
            out["hit_st"] = self._to_flat(st_parts)
            out["u_hit"] = self._to_flat(hit_parts)
        return out

    def _capped(self, fractions: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """Option ``share_cap``: no group's share above the largest the data hold at the shower's energy."""
        ceiling = torch.exp(_along_knots(self.share_cap_knots, self.group_share_max_log, c)).to(fractions.dtype)
        return _capped_shares(fractions, ceiling)

    def _calibrated_fractions(self, fractions: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """Option ``share_calibration``: the group shares (B, n_groups) mapped, where not 0, from the own quantile table
        to the data's at each shower's energy (a group without a table keeps its share), then scaled to sum to 1."""
        hit = fractions > 0
        v = torch.log(torch.where(hit, fractions, torch.ones_like(fractions))).float()
        u = _quantile_levels(v, _along_knots(self.quantile_knots, self.group_share_quantiles_own, c).contiguous())
        mapped = torch.exp(_quantile_values(u, _along_knots(self.quantile_knots, self.group_share_quantiles, c)))
        mapped = torch.where(hit, mapped.to(fractions.dtype), torch.zeros_like(fractions))
        without = torch.ones(fractions.shape[1], dtype=torch.bool, device=fractions.device)
        without[self.quantile_groups] = False  # never hit often enough in the data for a table: kept as generated
        mapped = torch.where(without, fractions, mapped)
        return mapped / mapped.sum(dim=1, keepdim=True).clamp(min=1e-30)

    def _calibrate_share_table(self, n: int, gen: torch.Generator) -> None:
        """Option ``share_calibration``: the own quantile table from ``n`` raw showers at each knot's energy (other
        conditions at 0); where a group holds energy in fewer than :data:`CALIBRATION_MIN_HITS` of them (or has no data
        table), the data's quantiles are kept (the identity map)."""
        own = self.group_share_quantiles.clone()
        n_levels = own.shape[-1]
        levels = (torch.arange(n_levels, dtype=torch.float64) + 0.5) / n_levels
        groups = self.quantile_groups.tolist()
        self._calibrating = True
        try:
            for k, t in enumerate(self.quantile_knots.tolist()):
                z = torch.randn(n, *self.latent_shape(), generator=gen).to(own.device)
                c = torch.zeros(n, self.n_cond, device=own.device)
                c[:, 0] = t
                f = self.physics(z, c)["fractions"].double().cpu()
                for g in groups:
                    v = f[:, g][f[:, g] > 0]
                    if len(v) >= CALIBRATION_MIN_HITS:
                        own[k, g] = torch.quantile(torch.log(v), levels).to(own.device, own.dtype)
        finally:
            self._calibrating = False
        # strictly increasing along the levels (a share that repeats one value would give flat steps)
        own = torch.cummax(own, dim=-1).values + 1e-6 * torch.arange(n_levels, dtype=own.dtype, device=own.device)
        self.group_share_quantiles_own.copy_(own)

    def _ring_tables(self, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Option ``ring_calibration``, at sampling only (None otherwise): each ring's probit offset and log weight at
        each shower's energy, (B, R + 1) each, column R (cells in no ring: extras) 0."""
        if not self.ring_calibration or self.training:
            return None
        both = _along_knots(self.ring_knots, torch.stack([self.ring_probit_offset, self.ring_log_weight], dim=1), c)
        return both[:, 0], both[:, 1]

    def _calibrate_ring_tables(self, n: int, rounds: int, gen: torch.Generator) -> None:
        """Option ``ring_calibration``: ``rounds`` times, sample ``n`` showers at each knot's energy (other conditions at
        0) as they will be sampled and, over the showers whose layer holds energy
        (:func:`~physgan.domains.calo.transform.ring_layer_stats`), move each ring's probit offset by the shift that
        brings its cells' mean hit rate to the data's, each cell's rate taken as ``Phi(Phi^-1(own rate) + shift)``, and
        its log weight by the log ratio of the data's mean share of the layer to this generator's. A ring without data
        values, or held by fewer than :data:`CALIBRATION_MIN_HITS` of the showers, keeps its values. Steps are bounded by
        :data:`RING_CALIBRATION_STEP` and the values by :data:`RING_CALIBRATION_BOUND`.

        A ring's cells hit at different rates, so one probit shift moves their mean by less than the probit of the
        means says (a toy ring of 1 %, 30 % and 90 % cells closed half its gap per round); the per-cell model closes
        most of it, and the spread of the shower's hit shift leaves ~20 % per round, so a calibration takes
        :data:`RING_CALIBRATION_ROUNDS` rounds (times its ``scale``). Each training calibration starts again from 0 (the
        EMA update copies the training generator's buffers)."""
        from scipy.special import ndtr, ndtri

        members = self._ring_members.astype(np.float64)
        size = np.maximum(members.sum(axis=0), 1.0)
        valid = self.ring_valid.cpu().numpy()
        rate_data = np.clip(self.ring_hit_rate.double().cpu().numpy(), 1e-4, 1.0 - 1e-4)
        share_data = self.ring_share.double().cpu().numpy()
        n_rings, device = members.shape[1], self.ring_probit_offset.device
        in_ring = members.any(axis=1)
        for _ in range(max(1, int(rounds))):
            offset = self.ring_probit_offset.double().cpu().numpy()
            log_w = self.ring_log_weight.double().cpu().numpy()
            for k, t in enumerate(self.ring_knots.tolist()):
                z = torch.randn(n, *self.latent_shape(), generator=gen).to(device)
                c = torch.zeros(n, self.n_cond, device=device)
                c[:, 0] = t
                u = self.physics(z, c)["u"].double().cpu().numpy()
                if self._ring_readout is not None:  # as the data's statistics were read
                    normaliser, threshold, n_cells = self._ring_readout
                    e_inc = normaliser.inverse(c.cpu())[:, :1].double().numpy()
                    u[:, :n_cells][u[:, :n_cells] * e_inc < threshold] = 0.0
                _, share, held, cell_rate = ring_layer_stats(u, self._ring_members, self._ring_group, self._feature_group)
                ok = valid & (held >= CALIBRATION_MIN_HITS)
                low = 0.5 / (held[np.argmax(members, axis=1)] + 1.0)  # a cell never hit reads as half a hit
                q = ndtri(np.clip(cell_rate, low, 1.0 - low))[in_ring]
                lo_s = np.full(n_rings, -RING_CALIBRATION_STEP)
                hi_s = np.full(n_rings, RING_CALIBRATION_STEP)
                m = members[in_ring]
                for _ in range(30):  # bisection: the shift whose ring mean of Phi(q + shift) is the data's rate
                    mid = 0.5 * (lo_s + hi_s)
                    above = (ndtr(q + m @ mid) @ m) / size > rate_data[k]
                    hi_s, lo_s = np.where(above, mid, hi_s), np.where(above, lo_s, mid)
                offset[k, :n_rings] += np.where(ok, 0.5 * (lo_s + hi_s), 0.0)
                with np.errstate(divide="ignore", invalid="ignore"):
                    step = np.log(np.maximum(share_data[k], 1e-12)) - np.log(np.maximum(share, 1e-12))
                ok &= share_data[k] > 0
                log_w[k, :n_rings] += np.where(ok, np.clip(step, -RING_CALIBRATION_STEP, RING_CALIBRATION_STEP), 0.0)
            bound = RING_CALIBRATION_BOUND
            self.ring_probit_offset.copy_(torch.as_tensor(np.clip(offset, -bound, bound), dtype=self.ring_probit_offset.dtype))
            self.ring_log_weight.copy_(torch.as_tensor(np.clip(log_w, -bound, bound), dtype=self.ring_log_weight.dtype))

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs):
        """A checkpoint made without option ``share_calibration`` has no own quantile table: it starts as the data's
        (the identity map) until :meth:`calibrate_statistics` sets it; one without ``ring_calibration``'s tables starts
        with them at 0 (also the identity)."""
        key = prefix + "group_share_quantiles_own"
        if self.share_calibration and key not in state_dict:
            state_dict[key] = self.group_share_quantiles.clone()
        for name in ("ring_probit_offset", "ring_log_weight"):  # option ring_calibration: 0, the identity
            if self.ring_calibration and prefix + name not in state_dict:
                state_dict[prefix + name] = torch.zeros_like(getattr(self, name))
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs)

    def _share_quantile_score(self, fractions: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """Option ``share_quantile_weight``: the sum over the groups with a quantile table of the energy score between
        the uniform distribution and the levels of the batch's group shares ``fractions`` (B, n_groups) that are not 0,
        each in the data's table at its shower's energy (linear between the knots, constant beyond them), times the
        table's span in log share there."""
        f = fractions[:, self.quantile_groups].float()
        q = _along_knots(self.quantile_knots, self.group_share_quantiles[:, self.quantile_groups], c)
        hit = f > 0
        u = _quantile_levels(torch.log(torch.where(hit, f, torch.ones_like(f))), q.contiguous())
        # each group's score in units of its log share: times the span of its table (first to last quantile) averaged
        # over the batch's showers that hold energy in it, so a group whose share varies little at fixed energy (middle
        # layers of dataset 2: a span of 0.4-0.5 against 3-7 for layers 0 and 30-44) is not pushed ~10x harder per unit
        # of log share, and with it the batch's noise
        m = hit.float()
        span = ((q[..., -1] - q[..., 0]) * m).sum(dim=0) / m.sum(dim=0).clamp(min=1.0)
        return (_uniform_energy_score(u, hit) * span).sum()

    def take_auxiliary_loss(self) -> torch.Tensor | None:
        """The generator's own training terms from its last training forward (options ``occupancy_level_mean_weight``,
        ``share_quantile_weight``), summed and handed over once: the training step adds them to the generator's loss.
        None when there is none."""
        loss, self._auxiliary_loss = self._auxiliary_loss, None
        return loss

    def forward(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """Model-space showers ``(B, n_features [+ n_summaries])``: ``fractions_to_model(u)`` [and the summaries].

        With ``occupancy`` the values are those of the hard hit / miss draws; the gradient of each draw is the
        straight-through estimate ``d soft * (value if hit - value if missed)``, taken in model space for the cells
        (``y + 1``: a missed cell's log has an infinite slope at 0) and in energy for the summary coordinates.
        """
        out = self.physics(z, c)
        u = out["u"]
        y = fractions_to_model(u, self.eps)
        if "hit_st" in out:
            st, u_hit = out["hit_st"], out["u_hit"]
            y = y + st * (fractions_to_model(u_hit, self.eps) + 1.0)
            if self.occupancy_summary_st:
                u = u + st * u_hit
        if self.n_summaries:
            summaries = summary_coordinates(
                u, self.summary_member, self.summary_mean, self.summary_std, occupancy=self.summary_occupancy, eps=self.eps,
                lateral=self.summary_moments, bounds=self.summary_bounds, extras=self.summary_extras,
            )
            y = torch.cat([y, summaries], dim=1)
        return y

    def sample_model(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """Model-space cells only ``(B, n_features)`` for sampling: the summary coordinates, which the inverse
        transform drops, are not computed."""
        return fractions_to_model(self.physics(z, c)["u"], self.eps)

    def sample_physical(self, z: torch.Tensor, c: torch.Tensor, c_phys: torch.Tensor, transform: Any) -> torch.Tensor:
        """Physical showers (MeV) for sampling: ``transform.from_fractions`` of :meth:`physics`'s cells, without the
        log of :func:`~physgan.domains.calo.transform.fractions_to_model` and the exp of the inverse transform, which
        undo each other; equal to ``transform.inverse(self.sample_model(z, c), c_phys)`` to float rounding (the round
        trip's own error, ~1e-6 relative), with the same exact zeros."""
        if not math.isclose(float(transform.eps), self.eps, rel_tol=1e-12):
            raise ConfigError(f"calo generator: eps {self.eps} differs from the transform's {transform.eps}")
        return transform.from_fractions(self.physics(z, c)["u"].float(), c_phys, inplace=True)


class CaloCritic(nn.Module):
    """``D(y, c) -> (B,)``: MLP on model-space cells + MLP on differentiable physics features, projection head.

    Parameters
    ----------
    spec : ModelSpec
        ``width``, ``depth`` (hidden layers of the cell MLP), ``embed_dim``; ``options``: ``eps``,
        ``critic_norm`` ('none' default, or 'layer'), ``occupancy_sharpness`` (default 10), ``critic_spectrum``,
        ``critic_ring_hits`` (default false), ``critic_depth_width`` (default false), ``critic_spatial``, ``critic_layer_stream``.
    """

    def __init__(self, spec: ModelSpec):
        super().__init__()
        geom = geometry_for_spec(spec)
        self.eps = _eps(spec)
        self.kappa = float(_opt(spec, "occupancy_sharpness", 10.0))
        norm = str(_opt(spec, "critic_norm", "none"))
        if norm not in ("none", "layer"):
            raise ConfigError(f"calo critic: critic_norm must be 'none' or 'layer', got '{norm}'")
        width, depth = int(spec.width), max(1, int(spec.depth))
        self.n_layers = geom.n_layers
        member = np.zeros((geom.n_features, geom.n_layers), dtype=np.float64)  # cell -> layer indicator
        for i in range(geom.n_layers):
            member[geom.layer_slice(i), i] = 1.0
        moments, col_layer = lateral_moments(geom)
        f32 = torch.float32
        segs = geometry_segments(geom)
        self.member = SegmentMatrix(member, segs)
        self.register_buffer("n_per_layer", torch.as_tensor(member.sum(axis=0), dtype=f32), persistent=False)
        self.moment_1, self.moment_2 = SegmentMatrix(moments[1], segs), SegmentMatrix(moments[2], segs)
        self.register_buffer("col_layer", torch.as_tensor(col_layer, dtype=torch.long), persistent=False)
        # floor of the layer energy under the centre / width: a share of the data's mean layer energy
        mean_u = np.asarray(spec.data_stats.get("mean_fraction", []), dtype=np.float64)
        floor = np.full(geom.n_layers, 1e-7)
        if mean_u.shape == (geom.n_features,) and np.isfinite(mean_u).all():
            floor = np.maximum(MOMENT_FLOOR * (mean_u @ member), 1e-7)
        self.register_buffer("moment_floor", torch.as_tensor(floor[col_layer], dtype=f32), persistent=False)
        self.n_cells_model = geom.n_features
        self.n_summaries = n_summaries(spec, geom)
        n_phys = 2 + 2 * self.n_layers + 2 * len(col_layer) + self.n_summaries
        # option critic_spectrum: per layer, the number of cells above each of SPECTRUM_MULTIPLES times the layer's hit
        # floor ('counts'), or that over the layer's hit cells ('shares'): each shower's cell-energy spectrum
        self.spectrum = str(_opt(spec, "critic_spectrum", "none"))
        if self.spectrum not in ("none", "counts", "shares"):
            raise ConfigError(f"calo critic: critic_spectrum must be 'none', 'counts' or 'shares', got '{self.spectrum}'")
        if self.spectrum != "none":
            fa, fb = spec.data_stats.get("cell_hit_floor_a"), spec.data_stats.get("cell_hit_floor_b")
            groups = layer_groups(geom)
            if fa is None or fb is None or len(fa) != len(groups) or len(fb) != len(groups):
                raise ConfigError("calo critic: critic_spectrum needs the transform statistics 'cell_hit_floor_a/b' of "
                                  "this version (one per layer group); fit the transform again")
            fg = feature_groups(geom)
            base_a = np.asarray(fa, dtype=np.float64)[fg]
            base_a[geom.n_cells :] = 60.0  # the extras (CaloGAN's overflow) are not cells: never counted
            self.register_buffer("spectrum_a", torch.as_tensor(base_a, dtype=f32), persistent=False)
            self.register_buffer("spectrum_b", torch.as_tensor(np.asarray(fb, dtype=np.float64)[fg], dtype=f32),
                                 persistent=False)
            self.register_buffer("spectrum_log_multiples", torch.log(torch.as_tensor(SPECTRUM_MULTIPLES, dtype=f32)),
                                 persistent=False)
            # option critic_spectrum_layers: the layers whose spectrum the critic sees (None: all)
            chosen = _opt(spec, "critic_spectrum_layers", None)
            chosen = list(range(self.n_layers)) if chosen is None else [int(v) for v in chosen]
            if not chosen or len(set(chosen)) != len(chosen) or not all(0 <= v < self.n_layers for v in chosen):
                raise ConfigError(f"calo critic: critic_spectrum_layers must be distinct layer indices in "
                                  f"[0, {self.n_layers - 1}], got {chosen}")
            self.spectrum_layers = chosen
            n_phys += len(SPECTRUM_MULTIPLES) * len(chosen)
        # option critic_ring_hits: per layer and ring (cells at one distance from the axis), the soft number of hit cells
        self.ring_hits = None
        if bool(_opt(spec, "critic_ring_hits", False)):
            rings, _ = ring_members(geom)
            self.ring_hits = SegmentMatrix(rings, segs)
            n_phys += rings.shape[1]
        # option critic_depth_width: the shower's longitudinal width (the energy-weighted spread of the layer index)
        # beside its depth; on dataset 2 the generated width spread 0.61-0.65 layers at the top energies against the
        # data's 0.50-0.54 with only the depth in the critic (bench/RESULTS.md §13, thirty-fifth session)
        self.depth_width = bool(_opt(spec, "critic_depth_width", False))
        n_phys += int(self.depth_width)
        self.n_phys = n_phys

        def mlp(n_in: int, n_hidden: int, n_layers: int) -> nn.Sequential:
            mods: list[nn.Module] = []
            for k in range(n_layers):
                mods.append(nn.Linear(n_in if k == 0 else n_hidden, n_hidden))
                if norm == "layer":
                    mods.append(nn.LayerNorm(n_hidden))
                mods.append(nn.LeakyReLU(0.2))
            return nn.Sequential(*mods)

        self.cell_net = mlp(geom.n_features, width, depth)
        self.phys_net = mlp(n_phys, width, 2)
        # option critic_spatial: per-layer 3 x 3 conv streams over each layer's grid, mean-pooled (spatial.py)
        spatial = int(_opt(spec, "critic_spatial", 0))
        if spatial < 0:
            raise ConfigError(f"calo critic: critic_spatial must be >= 0 channels, got {spatial}")
        self.n_cells = geom.n_cells
        self.spatial = LayerConvStream(geom, 1, spatial) if spatial else None
        n_spatial = spatial * geom.n_layers
        # option critic_layer_stream: a stream along the layers over each layer's features, one set of weights for
        # every layer, averaged over the layers (layer_stream.py)
        stream = int(_opt(spec, "critic_layer_stream", 0))
        if stream < 0:
            raise ConfigError(f"calo critic: critic_layer_stream must be >= 0 channels, got {stream}")
        self.layer_stream = LayerSequenceStream(geom, col_layer, stream) if stream else None
        self.joint = mlp(2 * width + n_spatial + stream, width, 1)
        self.embed = ConditionEmbedding(spec.n_cond, spec.embed_dim)
        self.head = ProjectionHead(width, spec.embed_dim)

    def physics_features(self, y: torch.Tensor) -> torch.Tensor:
        """Differentiable physics features ``(B, n_phys)`` of model-space showers (dimensionless, O(1)).

        Columns: 10 log(sum u) (response), shower depth, then per layer ``log(E_l/E_inc + 1e-6) / 4`` and soft
        occupancy ``mean(tanh(k (y + 1)))``, then per layer and axis the centre of energy and
        ``sqrt(var + 1e-6)`` in units of the layer's largest cell-centre coordinate; the moments divide by the
        layer energy plus ``MOMENT_FLOOR`` times the training data's mean layer energy (1e-7 without data
        statistics), so a nearly empty layer's centre tends to 0 instead of amplifying its cells by ``1 / E_l``.
        With option ``critic_depth_width`` a last column: 4 x the energy-weighted standard deviation of the layer
        index over (layers - 1), the shower's longitudinal width.
        """
        u = model_to_fractions(y, self.eps, snap=False).clamp(min=0)
        e_layers = u @ self.member  # (B, L) energy per layer / E_inc
        total = e_layers.sum(dim=1, keepdim=True)
        pos = torch.arange(self.n_layers, dtype=y.dtype, device=y.device)
        depth = (e_layers @ pos)[:, None] / (total + 1e-7) / max(1, self.n_layers - 1)
        occupancy = torch.tanh(self.kappa * (y + 1.0)) @ self.member / self.n_per_layer
        el = e_layers[:, self.col_layer] + self.moment_floor
        mean = (u @ self.moment_1) / el
        var = (u @ self.moment_2) / el - mean * mean
        width = torch.sqrt(var.clamp(min=0) + 1e-6)
        cols = [10.0 * torch.log(total + 1e-6), depth, torch.log(e_layers + 1e-6) / 4.0, occupancy, mean, width]
        if self.depth_width:  # the spread of the layer index around the depth, in the depth's unit, times 4 (O(1))
            pos_n = pos / max(1, self.n_layers - 1)
            spread = (e_layers @ (pos_n * pos_n))[:, None] / (total + 1e-7) - depth * depth
            cols.append(4.0 * torch.sqrt(spread.clamp(min=0) + 1e-6))
        return torch.cat(cols, dim=1)

    def layer_stream_features(self, phys: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """Option ``critic_layer_stream``: the pooled output ``(B, channels)`` of the stream over the layers
        (:class:`~physgan.domains.calo.layer_stream.LayerSequenceStream`), read from :meth:`physics_features`'s
        columns ``phys``."""
        n, m = self.n_layers, len(self.col_layer)
        log_e, occupancy = phys[:, 2 : 2 + n], phys[:, 2 + n : 2 + 2 * n]
        mean, width = phys[:, 2 + 2 * n : 2 + 2 * n + m], phys[:, 2 + 2 * n + m : 2 + 2 * n + 2 * m]
        return self.layer_stream(log_e, occupancy, mean, width, c[:, 0])

    def spectrum_features(self, y: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """Option ``critic_spectrum``: each shower's cell-energy spectrum per layer ``(B, n_thresholds * n_chosen)``.

        The layers are those of option ``critic_spectrum_layers`` (all by default), in the order given.

        Column ``(j, l)`` is ``log(1 + n_jl)`` (``counts``) or ``log((1 + n_jl) / (1 + h_l))`` (``shares``; ``h_l`` the
        layer's soft number of hit cells, as the occupancy feature), with
        ``n_jl = sum_i sigmoid((log(u_i + eps) - log(m_j p_l(t))) / w)`` over the cells of layer ``l``: the soft number
        of its cells above ``m_j`` (:data:`SPECTRUM_MULTIPLES`) times the layer's
        hit floor ``p_l(t) = max(exp(a_l + b_l t), 20 eps)`` (the transform's ``cell_hit_floor`` line, ``t`` = condition
        0, the normalised log incident energy), ``w`` = :data:`SPECTRUM_WIDTH`.

        Why: the voxel-energy spectrum is a statistic of every cell at once; the cell MLP sees each cell's value but
        not, without many units, how many cells sit at each energy. With the generator's hit floor, generated cells
        piled up at the floor where the data's one-deposit cells lie at 1.5-5x it (voxel-spectrum separation
        0.037-0.042 at 100k; bench/RESULTS.md §13, sixth session). Thresholds relative to the fitted floor follow the
        incident energy and carry no constant of a particular simulator.
        """
        log_u = (y - 1.0) * (-0.5 * math.log(self.eps))  # = log(u + eps), fractions_to_model inverted
        t = c[:, :1].to(y.dtype)
        # (B, n_features): log of the energy over the floor; a floor is taken at least 20 eps, so that an empty cell
        # (log u = log eps) stays 3 nats, 10 widths, below the lowest threshold
        floor = torch.clamp(self.spectrum_a + self.spectrum_b * t, min=math.log(20.0 * self.eps))
        d = log_u - floor
        s = torch.sigmoid((d[:, None, :] - self.spectrum_log_multiples[None, :, None]) / SPECTRUM_WIDTH)
        b, j = s.shape[0], s.shape[1]
        counts = self.member(s.reshape(b * j, -1)).reshape(b, j, self.n_layers)[:, :, self.spectrum_layers]
        n = len(self.spectrum_layers)
        if self.spectrum == "shares":  # over the layer's soft number of hit cells: the shape of its spectrum only
            hits = self.member(torch.tanh(self.kappa * (y + 1.0)))[:, self.spectrum_layers]
            return torch.log((1.0 + counts) / (1.0 + hits[:, None, :])).reshape(b, j * n)
        return torch.log1p(counts).reshape(b, j * n)

    def ring_hit_features(self, y: torch.Tensor) -> torch.Tensor:
        """Option ``critic_ring_hits``: ``log(1 + h_lr)`` per layer ``l`` and ring ``r`` ``(B, n_rings)``, ``h_lr`` the
        soft number of hit cells of the ring (``tanh(k (y + 1))`` summed, as the occupancy feature); rings from
        :func:`~physgan.domains.calo.transform.ring_members`.

        Why: the per-layer occupancy counts a layer's hits wherever they are, and the energy-weighted widths do not see
        how many cells carry an outer ring's energy. On dataset 2 the generator hit layer 0's outer rings 3-5x too
        rarely at low energies and gave the hit outer cells of layers 1-2 1.5-2x the data's energy: fewer, hotter
        hits with nearly the right width (bench/RESULTS.md §13, twenty-second session).
        """
        return torch.log1p(self.ring_hits(torch.tanh(self.kappa * (y + 1.0))))

    def forward(self, y: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """Critic scores ``(B,)`` for model-space showers ``y`` with normalised conditions ``c``."""
        cells, summaries = y[:, : self.n_cells_model], y[:, self.n_cells_model :]
        return self.score_by_path(cells, cells, summaries, c)

    def score_by_path(self, cells: torch.Tensor, cells_physics: torch.Tensor, summaries: torch.Tensor,
                      c: torch.Tensor) -> torch.Tensor:
        """Critic scores with the cells given twice: once to the cell MLP and the spatial stream, once to the physics
        features (and through them the layer stream and the spectrum).

        :meth:`forward` passes the same tensor to both. Passing one of them detached lets a caller take the gradient
        through one path of the critic at a time (``bench/calo_diagnose.py``: which input pulls the generator's noise
        down).

        Parameters
        ----------
        cells, cells_physics : torch.Tensor
            ``(B, n_cells_model)`` model-space cells.
        summaries : torch.Tensor
            ``(B, n_summaries)`` summary coordinates (may have zero columns).
        c : torch.Tensor
            ``(B, n_cond)`` normalised conditions.

        Returns
        -------
        torch.Tensor
            ``(B,)`` scores.
        """
        features = self.physics_features(cells_physics)
        phys = [features, summaries]
        if self.spectrum != "none":
            phys.append(self.spectrum_features(cells_physics, c))
        if self.ring_hits is not None:
            phys.append(self.ring_hit_features(cells_physics))
        phys = torch.cat(phys, dim=1)
        parts = [self.cell_net(cells), self.phys_net(phys)]
        if self.layer_stream is not None:
            parts.append(self.layer_stream_features(features, c))
        if self.spatial is not None:  # y + 1: 0 for an empty cell, the zero padding of the grid
            parts.append(self.spatial.pooled(cells[:, : self.n_cells, None] + 1.0))
        return self.head(self.joint(torch.cat(parts, dim=1)), self.embed(c))


def build_generator(spec: ModelSpec) -> CaloGenerator:
    """Factory for the engine: :class:`CaloGenerator` from a :class:`~physgan.domains.base.ModelSpec`."""
    return CaloGenerator(spec)


def build_critic(spec: ModelSpec) -> CaloCritic:
    """Factory for the engine: :class:`CaloCritic` from a :class:`~physgan.domains.base.ModelSpec`."""
    return CaloCritic(spec)
