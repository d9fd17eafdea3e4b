"""Model-space transform of calorimeter showers: cells relative to the incident energy, log-scaled.

``u = x / E_inc`` (both MeV; cells and extras), then ``y = 1 + 2 log(u + eps) / L`` with ``L = -log(eps)``,
so an empty cell maps to exactly ``y = -1`` and a cell holding the whole incident energy to ``y ~ +1``.
The map needs no fitted statistic besides the energy unit of the condition, so the generator can apply
the very same formula to its physically structured output (:func:`fractions_to_model`); the fit only
records the unit and a few data summaries (JSON-serialisable) for the run directory.

Summary coordinates (option ``summaries``, default on): the model space appends ``1 + n_groups``
standardised coordinates computed from the same cells, ``(log r - m_0) / s_0`` for the response
``r = sum(u)`` and ``(log f_g - m_g) / s_g`` for the energy share ``f_g`` of each layer group (a layer's
cells, plus its extra when there is one per layer; see :func:`~physgan.domains.calo.model.layer_groups`)
(and, with option ``summary_occupancy``, the soft occupancy of each group; see
:func:`summary_coordinates`), then (option ``summary_lateral``, default on) the centre of energy and the
width of every layer along each axis (x, y; r for cylindrical layers) and each layer's peak ratio (the two
hottest cells, CaloGAN's E_ratio), with ``m``, ``s`` the training data's
mean and standard deviation. They are redundant (the inverse drops
them) but they give the critic's Lipschitz budget a unit-scale direction per high-level quantity: in the
log-cell coordinates alone a 1 % shift of the response (GFlash's spread is 0.3 %) moves a shower by
about 0.01, far below the pattern differences the critic sees first, so the gradient penalty left the
response all but invisible and a generator's explicit response drifted by several standard deviations.

The lateral coordinates exist for the same reason: the critic's own centre-of-energy features (in units of
the layer's extent, as the engine gives them) vary by 0.002 over real CaloGAN showers (widths 0.006-0.012)
against 0.03-0.4 for the energy features, and the quickstart's trained critic changed its score by 0.001 per
standard deviation of a centre, the least of all its inputs (``python -m bench.calo_diagnose``), so the
generated centres of energy and widths drifted unpenalised (separation 0.17-0.95).

Inverse: ``u = exp((y - 1) L / 2) - eps``; values ``u < eps / 2`` (including every ``y <= -1``) become
exactly 0, so exact zeros survive the round trip and fluctuations of the zero level cannot create
negative or tiny spurious energies. With the default ``eps = 1e-7`` this discards deposits below
0.05 ppm of the incident energy (0.05 keV for a 1 GeV shower), far below every readout threshold.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from physgan.domains.base import Transform, typed_options
from physgan.domains.calo.segments import SegmentMatrix, column_sums, geometry_segments, layer_bounds
from physgan.errors import ConfigError

__all__ = [
    "CaloTransform",
    "DEFAULT_EPS",
    "fractions_to_model",
    "model_to_fractions",
    "energy_to_mev_factor",
    "group_member_matrix",
    "summary_coordinates",
    "lateral_moments",
    "segment_moments",
    "summary_count",
    "cell_log_std",
    "cell_log_std_line",
    "layer_bounds",
    "ring_members",
    "ring_layer_stats",
    "ring_hit_curves",
    "cell_hit_stats",
    "cell_hit_probit",
    "cell_hit_floor",
    "group_hit_curve",
    "group_share_curve",
    "group_share_quantiles",
    "group_share_noise_line",
    "group_hit_slope",
    "group_hit_patterns",
    "group_share_ceiling",
    "unpack_hit_patterns",
    "response_log_std_line",
]

#: Probit of :func:`group_hit_curve` for a layer group that holds energy in every training shower: P(empty) = 0 in
#: float32 (Phi(-40) underflows).
GROUP_ALWAYS_HIT = 40.0

#: Default log offset, relative to the incident energy.
DEFAULT_EPS = 1e-7


def energy_to_mev_factor(units: str) -> float:
    """Multiplier from the condition's energy unit to MeV (GeV -> 1000, MeV -> 1)."""
    u = str(units).strip().lower()
    if u == "gev":
        return 1000.0
    if u == "mev":
        return 1.0
    raise ConfigError(f"unknown incident-energy unit '{units}' (expected GeV or MeV)")


#: Offset inside the logs of the summary coordinates (relative energies).
SUMMARY_EPS = 1e-6
#: Floor of the summary coordinates' standard deviations (a constant quantity stays finite).
SUMMARY_MIN_STD = 1e-4
#: Standardised lateral coordinates are compressed beyond about this many standard deviations (asinh).
LATERAL_SOFT_SCALE = 3.0


def group_member_matrix(feature_group: list[int] | np.ndarray, n_groups: int) -> np.ndarray:
    """Indicator ``(n_features, n_groups)``: 1 where feature ``i`` belongs to group ``g``."""
    fg = np.asarray(feature_group, dtype=np.int64)
    m = np.zeros((len(fg), n_groups), dtype=np.float32)
    m[np.arange(len(fg)), fg] = 1.0
    return m


def lateral_moments(geom: Any) -> tuple[np.ndarray, list[int]]:
    """Matrices of the per-layer lateral moments: ``(3, n_features, K)`` float32 and the layer of each column.

    One column per layer and axis: ``x``, ``y`` for Cartesian layers and cylindrical layers with more than
    one angular bin, and ``r`` for cylindrical layers (the axes of
    :func:`~physgan.domains.calo.features.shower_features`). Slice 0 is the layer's cell indicator, slice 1
    the cell-centre coordinate in units of the layer's largest ``|coordinate|``, slice 2 its square, so
    ``u @ m[0]``, ``u @ m[1]``, ``u @ m[2]`` are the energy, first and second moment of each column.

    Parameters
    ----------
    geom : CaloGeometry

    Returns
    -------
    moments : numpy.ndarray
        (3, n_features, K) float32; extras (overflow) are in no column.
    col_layer : list of int
        The layer of each of the K columns.
    """
    n_f = geom.n_features
    cols: list[np.ndarray] = []
    col_layer: list[int] = []
    for i, lay in enumerate(geom.layers):
        sl = geom.layer_slice(i)
        axes = []
        if geom.kind == "cartesian" or lay.n_alpha > 1:
            axes += [lay.x_mm, lay.y_mm]
        if geom.kind == "cylindrical":
            axes += [lay.r_mm]
        for coord in axes:
            coord = np.asarray(coord, dtype=np.float64)
            coord = coord / (float(np.abs(coord).max()) or 1.0)
            m = np.zeros((3, n_f))
            m[0, sl], m[1, sl], m[2, sl] = 1.0, coord, coord * coord
            cols.append(m)
            col_layer.append(i)
    return np.stack(cols, axis=2).astype(np.float32), col_layer


#: Most rings per layer of :func:`ring_members` (a layer with more distinct cell radii is cut by rank of radius).
MAX_RINGS = 12


def ring_members(geom: Any, max_rings: int = MAX_RINGS) -> tuple[np.ndarray, list[int]]:
    """Indicator ``(n_features, K)`` of each layer's rings (cells at one distance from the shower axis) and their layers.

    A cylindrical layer's rings are its radial bins; a layer with more than ``max_rings`` distinct cell radii
    (a Cartesian grid) is cut into ``max_rings`` rings of about equal numbers of cells by rank of radius, cells
    at one radius always in one ring. Extras (overflow) are in no ring.

    Parameters
    ----------
    geom : CaloGeometry
    max_rings : int
        Most rings per layer.

    Returns
    -------
    members : numpy.ndarray
        (n_features, K) float32, columns ordered by layer then radius.
    ring_layer : list of int
        The layer of each of the K columns.
    """
    if max_rings < 1:
        raise ValueError(f"ring_members: max_rings must be >= 1, got {max_rings}")
    cols: list[np.ndarray] = []
    ring_layer: list[int] = []
    for i, lay in enumerate(geom.layers):
        sl = geom.layer_slice(i)
        r = np.round(np.asarray(lay.r_mm, dtype=np.float64), 6)
        radii, ring = np.unique(r, return_inverse=True)
        if len(radii) > max_rings:  # rank cuts on the distinct radii, weighted by their numbers of cells
            below = np.cumsum(np.bincount(ring)) - np.bincount(ring)  # cells at smaller radii
            ring = (below * max_rings // len(r))[ring]
            ring = np.unique(ring, return_inverse=True)[1]
        for j in range(int(ring.max()) + 1):
            m = np.zeros(geom.n_features, dtype=np.float32)
            m[sl.start + np.flatnonzero(ring == j)] = 1.0
            cols.append(m)
            ring_layer.append(i)
    return np.stack(cols, axis=1), ring_layer


def segment_moments(moments: np.ndarray, segments: list[tuple[int, int]], dtype: torch.dtype = torch.float32,
                    device: torch.device | str | None = None) -> tuple[SegmentMatrix, ...]:
    """The three slices of :func:`lateral_moments` as :class:`~physgan.domains.calo.segments.SegmentMatrix`
    products (per layer where that saves work), on ``dtype`` and ``device``."""
    return tuple(SegmentMatrix(m, segments).to(dtype=dtype, device=device) for m in moments)


def summary_count(n_groups: int, n_lateral: int, n_layers: int, occupancy: bool, lateral: bool, extras: bool = False) -> int:
    """Number of summary coordinates: ``1 + G`` (+ ``G`` with occupancy) (+ ``2 K + L`` with the lateral block)
    (+ 1 with the extras' energy)."""
    return 1 + n_groups * (2 if occupancy else 1) + (2 * n_lateral + n_layers if lateral else 0) + int(extras)


def extra_indicator(geom: Any) -> np.ndarray:
    """``(n_features, 1)`` float32: 1 at the geometry's extras (CaloGAN's overflow), for the extras' summary coordinate."""
    m = np.zeros((geom.n_features, 1), dtype=np.float32)
    m[geom.n_cells :, 0] = 1.0
    return m


def summary_coordinates(u: torch.Tensor, member: torch.Tensor, mean: torch.Tensor | None = None,
                        std: torch.Tensor | None = None, occupancy: bool = False, eps: float = 1e-7,
                        sharpness: float = 10.0, lateral: torch.Tensor | None = None,
                        bounds: list[tuple[int, int]] | None = None, extras: torch.Tensor | None = None) -> torch.Tensor:
    """``[log r, log f_1..f_G (, o_1..o_G) (, c_1..c_K, w_1..w_K, p_1..p_L) (, log e)]`` of cell fractions ``u``, standardised
    when ``mean``/``std`` are given.

    Parameters
    ----------
    u : torch.Tensor
        (B, n_features) non-negative energies / E_inc.
    member : torch.Tensor or SegmentMatrix
        (n_features, G) group indicator (:func:`group_member_matrix`), dense or as a
        :class:`~physgan.domains.calo.segments.SegmentMatrix` (the same product, per layer).
    mean, std : torch.Tensor, optional
        Training statistics, one per coordinate.
    occupancy : bool
        Append the soft occupancy ``o_g = mean over the group of tanh(k (y + 1))`` with ``y`` the model-space
        value of each cell (``fractions_to_model(u, eps)``): about the fraction of non-empty cells, but
        differentiable for the generator's sparsity threshold.
    eps : float
        The transform's log offset.
    sharpness : float
        ``k`` of the soft occupancy.
    lateral : torch.Tensor or tuple of SegmentMatrix, optional
        (3, n_features, K) :func:`lateral_moments` (or its slices from :func:`segment_moments`):
        append the centre of energy ``c_k`` and the width
        ``w_k = sqrt(var_k + 1e-6)`` of every layer and axis (coordinates in units of the layer's extent;
        an empty layer has ``c = 0``, ``w = 1e-3``). Standardised, these are compressed beyond a few standard
        deviations, ``s -> k asinh(s / k)`` with ``k = LATERAL_SOFT_SCALE``: a centre of energy varies by
        0.2 % of the layer's extent in real CaloGAN showers, so one stray generated cell can put it 50 standard
        deviations out.
    bounds : list of (int, int), optional
        With ``lateral``: each layer's cell range (:func:`layer_bounds`); appends the peak ratio
        ``p_l = (E_1 - E_2) / (E_1 + E_2)`` of the layer's two hottest cells (CaloGAN's E_ratio, per layer).
    extras : torch.Tensor, optional
        (n_features, 1) :func:`extra_indicator`: append ``log(e + SUMMARY_EPS)`` of the extras' energy ``e`` over
        E_inc (CaloGAN's overflow, the evaluation's ``e_extra_over_e_inc``), compressed beyond a few standard
        deviations like the lateral block (a shower without overflow sits far below the bulk).

    Returns
    -------
    torch.Tensor
        (B, n_summaries); ``r = sum(u)``, ``f_g = (u @ member)_g / r``, logs offset by ``SUMMARY_EPS``.
    """
    total = u.sum(dim=1, keepdim=True)
    share = (u @ member) / (total + 1e-12)
    parts = [torch.log(total + SUMMARY_EPS), torch.log(share + SUMMARY_EPS)]
    if occupancy:
        soft = torch.tanh(sharpness * (fractions_to_model(u, eps) + 1.0))
        parts.append((soft @ member) / column_sums(member))
    n_energy = sum(p.shape[1] for p in parts)
    if lateral is not None:
        e = u @ lateral[0] + 1e-12
        centre = (u @ lateral[1]) / e
        var = (u @ lateral[2]) / e - centre * centre
        parts += [centre, torch.sqrt(var.clamp(min=0) + 1e-6)]
        peaks = []
        for a, b in bounds or []:
            top = u[:, a:b].topk(min(2, b - a), dim=1).values
            second = top[:, 1] if top.shape[1] > 1 else torch.zeros_like(top[:, 0])
            peaks.append(((top[:, 0] - second) / (top[:, 0] + second + 1e-12))[:, None])
        parts += peaks
    if extras is not None:
        parts.append(torch.log(u @ extras + SUMMARY_EPS))
    raw = torch.cat(parts, dim=1)
    if mean is None:
        return raw
    s = (raw - mean) / std
    if lateral is None and extras is None:
        return s
    k = LATERAL_SOFT_SCALE
    return torch.cat([s[:, :n_energy], k * torch.asinh(s[:, n_energy:] / k)], dim=1)


def _energy_bins(e_inc: np.ndarray, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Standardised log incident energy ``t = (log E - mean) / std`` (the engine's normalisation of a log-scaled
    condition) and each shower's bin among ``n_bins`` equal-count bins of it, ``(N,)`` each."""
    t = np.log(np.asarray(e_inc, dtype=np.float64))
    t = (t - t.mean()) / (t.std() or 1.0)
    edges = np.quantile(t, np.linspace(0, 1, n_bins + 1))
    return t, np.clip(np.searchsorted(edges, t, side="right") - 1, 0, n_bins - 1)


def group_hit_curve(e_group: np.ndarray, e_inc: np.ndarray, n_bins: int = 16,
                    min_count: int = 30) -> tuple[np.ndarray, np.ndarray]:
    """Per layer group, the probit of the fraction of showers whose group holds any energy, as a piecewise-linear
    curve in the standardised log incident energy ``t`` (:func:`cell_hit_probit`'s).

    The knots are the mean ``t`` of ``n_bins`` bins of equal width in ``t`` (bins with fewer than ``min_count``
    showers are left out), each bin's fraction estimated as ``(hits + 0.5) / (n + 1)``. Equal widths, not equal
    counts, and a curve, not a line: CaloGAN's layer 2 is empty in 51 % of GFlash's 1-3 GeV e+ showers, 25 % at 3-10,
    4.6 % at 10-32 and 0.2 % above, a probit that bends; a line fitted over five equal-count bins of the benchmark's
    uniform 1-100 GeV spectrum (the lowest bin reaches 21 GeV) emptied it in 72 % at 1-3 GeV (bench/RESULTS.md §13,
    twelfth session). A group that holds energy in every shower gets :data:`GROUP_ALWAYS_HIT` (never empty).

    Parameters
    ----------
    e_group : numpy.ndarray
        (N, n_groups) non-negative group energies (any unit).
    e_inc : numpy.ndarray
        (N,) incident energies (any unit).
    n_bins, min_count : int
        Bins of ``t`` and the fewest showers a bin needs.

    Returns
    -------
    knots : numpy.ndarray
        float32 (K,) increasing ``t`` (K >= 1).
    probit : numpy.ndarray
        float32 (K, n_groups).
    """
    from scipy.special import ndtri

    hit = np.asarray(e_group) > 0
    knots, bins = _curve_bins(e_inc, n_bins, min_count)
    probit = np.stack([ndtri((hit[sel].sum(axis=0) + 0.5) / (sel.sum() + 1.0)) for sel in bins])
    probit = np.where(hit.all(axis=0), GROUP_ALWAYS_HIT, probit)
    return knots, probit.astype(np.float32)


def _curve_bins(e_inc: np.ndarray, n_bins: int, min_count: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """The knots of :func:`group_hit_curve` and :func:`group_share_curve`: ``n_bins`` bins of equal width in the
    standardised log incident energy ``t``, those with at least ``min_count`` showers kept (all showers as one bin when
    none is). Returns the knots (each kept bin's mean ``t``, float32 (K,), increasing) and each kept bin's mask (N,)."""
    t, _ = _energy_bins(e_inc, 1)
    edges = np.linspace(t.min(), t.max(), n_bins + 1)
    which = np.clip(np.searchsorted(edges, t, side="right") - 1, 0, n_bins - 1)
    bins = [which == k for k in range(n_bins) if (which == k).sum() >= min(min_count, len(t))]
    if not bins:  # too few showers for any bin: one knot
        bins = [np.ones(len(t), dtype=bool)]
    return np.asarray([t[sel].mean() for sel in bins], np.float32), bins


def _group_shares(e_group: np.ndarray) -> np.ndarray:
    """Each group's share of its shower's summed group energy, float64 (N, n_groups) (0 in a shower without energy)."""
    e_group = np.asarray(e_group, dtype=np.float64)
    total = e_group.sum(axis=1, keepdims=True)
    return np.divide(e_group, total, out=np.zeros_like(e_group), where=total > 0)


def group_share_curve(e_group: np.ndarray, e_inc: np.ndarray, n_bins: int = 16, min_count: int = 30,
                      min_hits: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Per layer group, the log of its mean share of the shower's energy over the showers where it holds energy, as
    a piecewise-linear curve in the standardised log incident energy ``t`` on :func:`group_hit_curve`'s knots.

    A deep layer is empty in most low-energy showers, so its mean share over all showers (the generator's start
    without option ``share_curve``) lies far below what it holds when it does hold energy: on GFlash's dataset 2 at
    1-10 GeV, layers 35-44 hold e^3 to e^5 times the all-shower mean, and a generator trained 4000 steps still put
    their energy 0.3-1 decade too low there (``bench/RESULTS.md`` §13, nineteenth session). Shares are of the summed
    group energy (the response), as the generator's layer fractions are.

    Parameters
    ----------
    e_group : numpy.ndarray
        (N, n_groups) non-negative group energies (any unit).
    e_inc : numpy.ndarray
        (N,) incident energies (any unit).
    n_bins, min_count : int
        As :func:`group_hit_curve`'s (the same knots).
    min_hits : int
        The fewest showers holding energy in the group that a knot's value needs; the others are interpolated
        along ``t`` from the knots that have them (held constant beyond the end ones). A group that holds energy in
        fewer than ``min_hits`` showers at every knot gets its overall mean share, and one never holding energy
        ``log 1e-9``.

    Returns
    -------
    knots : numpy.ndarray
        float32 (K,), :func:`group_hit_curve`'s.
    log_share : numpy.ndarray
        float32 (K, n_groups).
    """
    e_group = np.asarray(e_group, dtype=np.float64)
    share = _group_shares(e_group)
    hit = e_group > 0
    knots, bins = _curve_bins(e_inc, n_bins, min_count)
    n_hit = np.stack([hit[sel].sum(axis=0) for sel in bins])
    mean = np.stack([share[sel].sum(axis=0) for sel in bins]) / np.maximum(n_hit, 1)
    out = np.empty_like(mean)
    for g in range(e_group.shape[1]):
        ok = n_hit[:, g] >= min_hits
        if ok.any():
            out[:, g] = np.interp(knots, knots[ok], np.log(mean[ok, g]))
        else:
            out[:, g] = math.log(share[hit[:, g], g].mean()) if hit[:, g].any() else math.log(1e-9)
    return knots, out.astype(np.float32)


def group_share_quantiles(e_group: np.ndarray, e_inc: np.ndarray, n_levels: int = 16, n_bins: int = 16,
                          min_count: int = 30, min_hits: int = 40) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per layer group, the quantiles of its log share of the shower's summed group energy in the showers where it holds
    energy, at levels ``(j + 1/2) / n_levels``, on :func:`group_hit_curve`'s knots of the standardised log incident
    energy.

    The generator's options ``share_quantile_weight`` and ``share_calibration`` map each generated group share through
    this table to its level (a probability integral transform), which is uniform when the generated shares at that
    incident energy follow the data's. Where a knot has fewer than ``min_hits`` showers holding energy in the group, its
    quantiles are interpolated along ``t`` from the knots that have them (held constant beyond the end ones).

    Parameters
    ----------
    e_group : numpy.ndarray
        (N, n_groups) non-negative group energies (any unit).
    e_inc : numpy.ndarray
        (N,) incident energies (any unit).
    n_levels : int
        Quantile levels per knot.
    n_bins, min_count : int
        As :func:`group_hit_curve`'s (the same knots).
    min_hits : int
        The fewest showers holding energy in the group that a knot's quantiles need.

    Returns
    -------
    knots : numpy.ndarray
        float32 (K,), :func:`group_hit_curve`'s.
    quantiles : numpy.ndarray
        float32 (K, n_groups, n_levels), increasing along the last axis; 0 for a group without ``min_hits`` showers
        holding energy at any knot.
    valid : numpy.ndarray
        bool (n_groups,): the groups whose quantiles were measured at some knot.
    """
    share = _group_shares(e_group)
    knots, bins = _curve_bins(e_inc, n_bins, min_count)
    levels = (np.arange(n_levels) + 0.5) / n_levels
    n_groups = share.shape[1]
    q = np.zeros((len(knots), n_groups, n_levels))
    ok = np.zeros((len(knots), n_groups), dtype=bool)
    for k, sel in enumerate(bins):
        for g in range(n_groups):
            v = share[sel, g]
            v = v[v > 0]
            if len(v) >= min_hits:
                q[k, g], ok[k, g] = np.quantile(np.log(v), levels), True
    valid = ok.any(axis=0)
    for g in np.flatnonzero(valid):
        for j in range(n_levels):
            q[:, g, j] = np.interp(knots, knots[ok[:, g]], q[ok[:, g], g, j])
    return knots, q.astype(np.float32), valid


def ring_layer_stats(u: np.ndarray, rings: np.ndarray, ring_group: np.ndarray,
                     feature_group: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per ring, over the showers whose ring's layer group holds energy: the mean fraction of the ring's cells that are
    hit, and the ring's mean share of the group's energy; and per feature, its hit fraction over the showers whose
    group holds energy.

    Used for the training data (:func:`ring_hit_curves`) and for a generator's own showers (option
    ``ring_calibration`` of the calorimeter generator), so both are measured alike.

    Parameters
    ----------
    u : numpy.ndarray
        (N, n_features) non-negative energies (any unit).
    rings : numpy.ndarray
        (n_features, R) ring indicator (:func:`ring_members`).
    ring_group : numpy.ndarray
        (R,) layer group of each ring.
    feature_group : numpy.ndarray
        (n_features,) group of each feature.

    Returns
    -------
    rate, share : numpy.ndarray
        float64 (R,); 0 where no shower holds energy in the ring's group.
    n : numpy.ndarray
        int64 (R,): the showers whose ring's group holds energy.
    cell_rate : numpy.ndarray
        float64 (n_features,); 0 where no shower holds energy in the feature's group.
    """
    fg = np.asarray(feature_group, dtype=np.int64)
    rings = np.asarray(rings, dtype=np.float64)
    ring_group = np.asarray(ring_group, dtype=np.int64)
    member = group_member_matrix(fg, int(fg.max()) + 1).astype(np.float64)
    hits = np.zeros(len(fg))
    share = np.zeros(rings.shape[1])
    held = np.zeros(member.shape[1], dtype=np.int64)
    for i in range(0, len(u), 4096):  # row blocks: no (N, n_features) float64 copy of the mask
        ub = np.asarray(u[i : i + 4096], dtype=np.float64)
        e_group = ub @ member
        on = e_group > 0
        hits += ((ub > 0) & on[:, fg]).sum(axis=0)
        e_ring = e_group[:, ring_group]
        share += np.divide(ub @ rings, e_ring, out=np.zeros_like(e_ring), where=e_ring > 0).sum(axis=0)
        held += on.sum(axis=0)
    cell_rate = hits / np.maximum(held[fg], 1)
    n = held[ring_group]
    return (cell_rate @ rings) / np.maximum(rings.sum(axis=0), 1.0), share / np.maximum(n, 1), n, cell_rate


def ring_hit_curves(u: np.ndarray, e_inc: np.ndarray, rings: np.ndarray, ring_group: np.ndarray,
                    feature_group: np.ndarray, n_bins: int = 16, min_count: int = 30,
                    min_hits: int = 40) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`ring_layer_stats` on :func:`group_hit_curve`'s knots of the standardised log incident energy.

    The calorimeter generator's option ``ring_calibration`` moves each ring's hit probits and pattern weights, at
    sampling, until its own rings show these. Where a knot has fewer than ``min_hits`` showers holding energy in a
    ring's group, its values are interpolated along ``t`` from the knots that have them (constant beyond the end ones).

    Parameters
    ----------
    u, rings, ring_group, feature_group
        As :func:`ring_layer_stats`.
    e_inc : numpy.ndarray
        (N,) incident energies (any unit).
    n_bins, min_count : int
        As :func:`group_hit_curve`'s (the same knots).
    min_hits : int
        The fewest showers holding energy in the ring's group that a knot's values need.

    Returns
    -------
    knots : numpy.ndarray
        float32 (K,).
    rate, share : numpy.ndarray
        float32 (K, R).
    valid : numpy.ndarray
        bool (R,): the rings measured at some knot.
    """
    knots, bins = _curve_bins(e_inc, n_bins, min_count)
    stats = [ring_layer_stats(np.asarray(u)[sel], rings, ring_group, feature_group) for sel in bins]
    rate, share = np.stack([s[0] for s in stats]), np.stack([s[1] for s in stats])  # per ring: the cells' not kept
    ok = np.stack([s[2] for s in stats]) >= min_hits
    valid = ok.any(axis=0)
    for r in np.flatnonzero(valid):
        rate[:, r] = np.interp(knots, knots[ok[:, r]], rate[ok[:, r], r])
        share[:, r] = np.interp(knots, knots[ok[:, r]], share[ok[:, r], r])
    rate[:, ~valid], share[:, ~valid] = 0.0, 0.0
    return knots, rate.astype(np.float32), share.astype(np.float32), valid


def _line(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares line ``y ~ a + b x`` over points ``x`` (K,), ``y`` (K,) or (K, m) (one line per column); with fewer
    than two distinct ``x`` the line is flat at the mean of ``y``. Returns ``(a, b)`` as float64 scalars or (m,) arrays."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if len(x) < 2 or np.ptp(x) == 0:
        return y.mean(axis=0), np.zeros_like(y.mean(axis=0))
    xc = x - x.mean()
    b = (xc @ (y - y.mean(axis=0))) / (xc @ xc)
    return y.mean(axis=0) - b * x.mean(), b


def response_log_std_line(r: np.ndarray, e_inc: np.ndarray, n_bins: int = 5) -> tuple[float, float]:
    """Line ``log sd(t) ~ a + b t`` of the spread of ``log r`` (the response ``E_sum / E_inc``) against the
    standardised log incident energy ``t`` (:func:`cell_hit_probit`'s), least squares over ``n_bins`` equal-count
    energy bins; showers with ``r <= 0`` are left out.

    A sampling calorimeter's resolution ``sigma / E ~ s / sqrt(E)`` is exactly such a line, slope ``-std(log E) / 2``;
    GFlash in CaloGAN's geometry has a nearly flat 0.3 %.

    Returns
    -------
    a, b : float
        Intercept and slope (``b = 0`` with fewer than two usable bins; ``a = log 1e-4`` without any).
    """
    r = np.asarray(r, dtype=np.float64)
    t, which = _energy_bins(e_inc, n_bins)
    xs, ys = [], []
    for k in range(n_bins):
        sel = (which == k) & (r > 0)
        if sel.sum() >= 3:
            xs.append(t[sel].mean())
            ys.append(np.log(max(np.log(r[sel]).std(), 1e-4)))
    if not xs:
        return math.log(1e-4), 0.0
    a, b = _line(np.asarray(xs), np.asarray(ys))
    return float(a), float(b)


def group_share_noise_line(e_group: np.ndarray, e_inc: np.ndarray, n_bins: int = 5,
                           min_count: int = 50) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per layer group, a line ``log s_g(t) = a_g + b_g t`` of the spread of the group's log energy that its
    neighbouring groups do not explain (``t`` as :func:`cell_hit_probit`'s).

    Within each of ``n_bins`` equal-count bins of the incident energy, over the showers where group ``g`` and its
    neighbours ``g - 1`` and ``g + 1`` (those that exist) hold energy, ``log e_g`` is regressed on ``1, t`` and the
    neighbours' log energies; the residual's standard deviation, divided by ``sqrt(1 + sum beta^2)`` (the part of the
    residual that is the neighbours' own independent spread, were theirs the same), is the bin's ``s_g``. A shower's
    longitudinal profile is a smooth curve (where it starts, how deep it peaks) plus each layer's own fluctuation, the
    count of the few deposits it catches: GFlash on dataset 2 leaves 0.2-0.8 in log energy around the neighbours, a
    trained generator without ``layer_noise`` 5-20x less (``bench/RESULTS.md`` §13, seventeenth session).

    Parameters
    ----------
    e_group : numpy.ndarray
        (N, n_groups) non-negative group energies (any unit).
    e_inc : numpy.ndarray
        (N,) incident energies.
    n_bins, min_count : int
        Energy bins, and the fewest usable showers a bin needs.

    Returns
    -------
    a, b : numpy.ndarray
        float32 (n_groups,) each; a group with no usable bin gets ``a = log 1e-4``, ``b = 0`` (no noise to speak of).
    t_range : numpy.ndarray
        float32 (2, n_groups): the lowest and highest mean ``t`` of the bins each line was fitted on (0, 0 for a group
        with none). The line is meant to be read within it and held constant beyond: a deep layer is hit in too few
        low-energy showers for a bin there, and dataset 2's layer 40, fitted on the upper three bins (1.06 / 0.78 /
        0.57), extrapolated to 1.97 at the lowest bin's energies, where the data's spread of its log energy over the
        showers that hit it is 1.26 (``bench/RESULTS.md`` §13, nineteenth session).
    """
    e_group = np.asarray(e_group, dtype=np.float64)
    t, which = _energy_bins(e_inc, n_bins)
    n_groups = e_group.shape[1]
    logs = np.log(np.where(e_group > 0, e_group, 1.0))
    a, b = np.full(n_groups, math.log(1e-4)), np.zeros(n_groups)
    t_range = np.zeros((2, n_groups))
    for g in range(n_groups):
        nb = [j for j in (g - 1, g + 1) if 0 <= j < n_groups]
        if not nb:
            continue
        held = (e_group[:, [g, *nb]] > 0).all(axis=1)
        xs, ys = [], []
        for k in range(n_bins):
            sel = held & (which == k)
            if sel.sum() < min_count:
                continue
            design = np.column_stack([np.ones(sel.sum()), t[sel], logs[sel][:, nb]])
            beta, *_ = np.linalg.lstsq(design, logs[sel, g], rcond=None)
            sd = (logs[sel, g] - design @ beta).std() / math.sqrt(1.0 + float(beta[2:] @ beta[2:]))
            xs.append(t[sel].mean())
            ys.append(math.log(max(sd, 1e-4)))
        if xs:
            a[g], b[g] = _line(np.asarray(xs), np.asarray(ys))
            t_range[:, g] = min(xs), max(xs)
    return a.astype(np.float32), b.astype(np.float32), t_range.astype(np.float32)


def _binned_log_std(u: np.ndarray, e_inc: np.ndarray, feature_group: np.ndarray, n_bins: int,
                    min_count: int) -> tuple[np.ndarray, np.ndarray]:
    """Per incident-energy bin (``n_bins`` at the quantiles of ``log E_inc``) and cell, the standard deviation of
    ``log(u_i / E_group)`` over the bin's showers that hit the cell (NaN under ``min_count`` hits), ``(n_bins,
    n_features)``, and each bin's mean standardised log energy ``t = (log E - mean) / std``, ``(n_bins,)``."""
    u = np.asarray(u, dtype=np.float64)
    n_groups = int(feature_group.max()) + 1
    e_group = u @ group_member_matrix(feature_group, n_groups).astype(np.float64)
    hit = u > 0
    v = np.where(hit, np.log(np.where(hit, u, 1.0) / np.maximum(e_group[:, feature_group], 1e-300)), 0.0)
    t, which = _energy_bins(e_inc, n_bins)
    stds, centres = [], []
    for b in range(n_bins):
        sel = which == b
        n = hit[sel].sum(axis=0)
        s1, s2 = v[sel].sum(axis=0), (v[sel] ** 2).sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            var = s2 / n - (s1 / n) ** 2
        stds.append(np.where(n >= min_count, np.sqrt(np.maximum(var, 0.0)), np.nan))
        centres.append(t[sel].mean() if sel.any() else np.nan)
    return np.stack(stds), np.asarray(centres)


def cell_log_std(u: np.ndarray, e_inc: np.ndarray, feature_group: np.ndarray, n_bins: int = 5,
                 min_count: int = 5) -> np.ndarray:
    """Per-cell spread of ``log(u_i / E_group)`` over showers that hit the cell, within incident-energy bins.

    The shower-to-shower fluctuation of each cell's share of its layer group, with the energy dependence of the
    mean removed by binning in ``log E_inc`` (``n_bins`` bins at the data's quantiles) and averaging the
    per-bin standard deviations. The generator's per-cell noise starts from it.

    Parameters
    ----------
    u : numpy.ndarray
        (N, n_features) energies / E_inc.
    e_inc : numpy.ndarray
        (N,) incident energies (any unit).
    feature_group : numpy.ndarray
        (n_features,) group of each feature.
    n_bins, min_count : int
        Energy bins, and the hits a cell needs in a bin to count there.

    Returns
    -------
    numpy.ndarray
        float32 (n_features,); NaN for cells hit fewer than ``min_count`` times in every bin.
    """
    stds, _ = _binned_log_std(u, e_inc, feature_group, n_bins, min_count)
    ok = np.isfinite(stds)
    out = np.where(ok.any(axis=0), np.nansum(np.where(ok, stds, 0.0), axis=0) / np.maximum(ok.sum(axis=0), 1), np.nan)
    return out.astype(np.float32)


def cell_log_std_line(u: np.ndarray, e_inc: np.ndarray, feature_group: np.ndarray, n_bins: int = 5,
                      min_count: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Per-cell line ``log sd_i(t) ~ a_i + b_i t`` of the spread of :func:`cell_log_std` against the standardised log
    incident energy ``t`` (least squares over the energy bins with a finite spread; ``b = 0`` with fewer than two).

    CaloGAN's overflow is the example: its log share of the layer spreads by 0.65 at the lowest fifth of the
    quickstart's energies and 0.30 at the highest (layer 1), which one energy-averaged scale cannot follow.

    Returns
    -------
    a, b : numpy.ndarray
        float32 (n_features,); NaN where no bin has ``min_count`` hits.
    """
    stds, t = _binned_log_std(u, e_inc, feature_group, n_bins, min_count)
    with np.errstate(divide="ignore", invalid="ignore"):
        y = np.log(np.maximum(stds, 1e-3))
    ok = np.isfinite(stds) & np.isfinite(t)[:, None]
    n = ok.sum(axis=0)
    w = ok.astype(np.float64)
    tb = (w * t[:, None]).sum(axis=0) / np.maximum(n, 1)
    yb = np.where(ok, y, 0.0).sum(axis=0) / np.maximum(n, 1)
    tc = np.where(ok, t[:, None] - tb, 0.0)
    sxx = (tc * tc).sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        b = np.where((n >= 2) & (sxx > 0), (tc * np.where(ok, y - yb, 0.0)).sum(axis=0) / sxx, 0.0)
    a = np.where(n > 0, yb - b * tb, np.nan)
    return a.astype(np.float32), b.astype(np.float32)


def cell_hit_stats(u: np.ndarray, feature_group: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-cell occupancy and mean share of its group given a hit: the zero-inflated generator starts from them.

    Parameters
    ----------
    u : numpy.ndarray
        (N, n_features) non-negative energies / E_inc.
    feature_group : numpy.ndarray
        (n_features,) group of each feature.

    Returns
    -------
    hit_fraction : numpy.ndarray
        float32 (n_features,): ``(hits + 0.5) / (N + 1)``, so a cell no training shower fills keeps a small,
        finite probability (the count's Jeffreys estimate, not 0).
    hit_share : numpy.ndarray
        float32 (n_features,): mean of ``u_i / E_group`` over the showers that hit cell ``i``; NaN where no shower
        does.
    """
    u = np.asarray(u, dtype=np.float64)
    fg = np.asarray(feature_group, dtype=np.int64)
    e_group = u @ group_member_matrix(fg, int(fg.max()) + 1).astype(np.float64)
    hit = u > 0
    n_hit = hit.sum(axis=0)
    share = np.where(hit, u / np.maximum(e_group[:, fg], 1e-300), 0.0).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_share = np.where(n_hit > 0, share / n_hit, np.nan)
    return ((n_hit + 0.5) / (len(u) + 1.0)).astype(np.float32), mean_share.astype(np.float32)


def cell_hit_probit(u: np.ndarray, e_inc: np.ndarray, n_bins: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Per-cell probit line of the hit probability against the standardised log incident energy.

    ``Phi^-1(P(hit_i)) ~ a_i + b_i t`` with ``t = (log E - mean) / std`` over the data (the engine's normalisation of a
    log-scaled condition), fitted by least squares over ``n_bins`` equal-count energy bins, each bin's hit
    fraction estimated as ``(hits + 0.5) / (n + 1)``.

    Parameters
    ----------
    u : numpy.ndarray
        (N, n_features) non-negative energies (any unit).
    e_inc : numpy.ndarray
        (N,) incident energies (any unit).
    n_bins : int
        Energy bins.

    Returns
    -------
    a, b : numpy.ndarray
        float32 (n_features,) intercept and slope.
    """
    from scipy.special import ndtri

    hit = np.asarray(u) > 0
    t, which = _energy_bins(e_inc, n_bins)
    xs, ys = [], []
    for b in range(n_bins):
        sel = which == b
        if sel.any():
            xs.append(t[sel].mean())
            ys.append(ndtri((hit[sel].sum(axis=0) + 0.5) / (sel.sum() + 1.0)))
    a, b = _line(np.asarray(xs), np.stack(ys))
    return a.astype(np.float32), b.astype(np.float32)


def group_share_ceiling(e_group: np.ndarray, e_inc: np.ndarray, n_bins: int = 16, min_count: int = 30) -> tuple[np.ndarray, np.ndarray]:
    """Per layer group, the log of the largest share of the shower's energy it holds in any training shower near each
    knot of :func:`group_hit_curve` (the knot's energy bin and its two neighbours), the ceiling of option ``share_cap``.

    A generator trained 4000 steps on GFlash's dataset 2 put up to 46 % of a shower's energy into the last eleven layers,
    where no training shower holds more than 4.2 % (bench/RESULTS.md §13, thirty-fourth session). A group holding
    energy in no shower of a bin and its neighbours takes the nearest knot's value that has one (1 if none has).

    Returns
    -------
    knots : numpy.ndarray
        float32 (K,), :func:`group_hit_curve`'s.
    log_max : numpy.ndarray
        float32 (K, n_groups), ``<= 0``.
    """
    share = _group_shares(e_group)
    knots, bins = _curve_bins(e_inc, n_bins, min_count)
    top = np.stack([share[sel].max(axis=0) for sel in bins])  # (K, n_groups)
    wide = np.stack([top[max(k - 1, 0) : k + 2].max(axis=0) for k in range(len(top))])
    out = np.zeros_like(wide)
    for g in range(wide.shape[1]):
        ok = wide[:, g] > 0
        if ok.any():
            out[:, g] = np.log(wide[ok, g])[np.abs(np.arange(len(wide))[:, None] - np.flatnonzero(ok)[None, :]).argmin(axis=1)]
    return knots, out.astype(np.float32)


def group_hit_patterns(e_group: np.ndarray, e_inc: np.ndarray, max_patterns: int = 16384) -> tuple[np.ndarray, list[int]]:
    """Which layer groups hold energy, shower by shower, sorted by incident energy: the bank that option
    ``empty_draw_patterns`` draws each generated shower's empty groups from.

    :func:`group_hit_curve` gives each group's rate; drawn independently per group those rates lose how the groups'
    emptiness goes together: in GFlash's dataset-2 showers the last eleven layers are all empty or all hit far more
    often than independent draws give (neighbouring deep layers' hit correlation 0.18 / 0.28 / 0.50 in thirds of log
    energy; independent draws: -0.01 / 0.04 / 0.23; bench/RESULTS.md §13, thirty-fourth session). The patterns keep
    both the rates and their joint structure. At most ``max_patterns`` showers (evenly spaced in energy rank), so the
    bank stays small in the run's statistics.

    Parameters
    ----------
    e_group : numpy.ndarray
        (N, n_groups) non-negative group energies (any unit).
    e_inc : numpy.ndarray
        (N,) incident energies (any unit).
    max_patterns : int
        Largest bank.

    Returns
    -------
    t : numpy.ndarray
        float32 (M,) the showers' standardised log incident energy (condition 0 as the engine normalises it, the
        ``t`` of :func:`group_hit_curve`), increasing.
    bits : list of int
        (M,) each shower's hit pattern, bit ``k`` set where group ``k`` holds energy (a Python int: any group count).
    """
    hit = np.asarray(e_group) > 0
    t, _ = _energy_bins(e_inc, 1)
    order = np.argsort(t, kind="stable")
    if len(order) > max_patterns:
        order = order[np.linspace(0, len(order) - 1, max_patterns).round().astype(int)]
    weights = [1 << k for k in range(hit.shape[1])]
    bits = [sum(w for w, h in zip(weights, row) if h) for row in hit[order].tolist()]
    return t[order].astype(np.float32), bits


def unpack_hit_patterns(bits: list[int], n_groups: int) -> np.ndarray:
    """The bool (M, n_groups) hit patterns of :func:`group_hit_patterns`'s ``bits``."""
    if n_groups <= 63:  # vectorised
        b = np.asarray(bits, dtype=np.uint64)[:, None]
        return ((b >> np.arange(n_groups, dtype=np.uint64)[None, :]) & np.uint64(1)).astype(bool)
    return np.asarray([[(b >> k) & 1 for k in range(n_groups)] for b in bits], dtype=bool).reshape(len(bits), n_groups)


def group_hit_slope(e_group: np.ndarray, n_hit: np.ndarray, n_cells: np.ndarray, e_inc: np.ndarray, n_bins: int = 5,
                    min_count: int = 50) -> np.ndarray:
    """Per layer group, the slope of the probit of its hit-cell fraction against its log energy at fixed incident
    energy.

    Within each of ``n_bins`` equal-count bins of the incident energy, over the showers where group ``g`` holds
    energy, ``Phi^-1((n_hit + 0.5) / (n_cells + 1))`` is regressed on ``1, t`` (:func:`cell_hit_probit`'s) and
    ``log e_g``; the slopes on ``log e_g`` are averaged over the usable bins, weighted by their showers. A layer that
    catches more of the shower hits more cells: GFlash on dataset 2 ties the two closely, and a generator whose
    layer energy gets its own draw (option ``layer_noise``) but whose occupancy does not is told apart by the hit
    counts (``bench/RESULTS.md`` §13, seventeenth session).

    Parameters
    ----------
    e_group : numpy.ndarray
        (N, n_groups) non-negative group energies (any unit).
    n_hit : numpy.ndarray
        (N, n_groups) each group's number of features holding energy.
    n_cells : numpy.ndarray
        (n_groups,) each group's number of features.
    e_inc : numpy.ndarray
        (N,) incident energies.
    n_bins, min_count : int
        Energy bins, and the fewest usable showers a bin needs.

    Returns
    -------
    numpy.ndarray
        float32 (n_groups,); 0 for a group with no usable bin or a single feature.
    """
    from scipy.special import ndtri

    e_group, n_hit = np.asarray(e_group, dtype=np.float64), np.asarray(n_hit, dtype=np.float64)
    t, which = _energy_bins(e_inc, n_bins)
    slope = np.zeros(e_group.shape[1])
    for g, n in enumerate(np.asarray(n_cells)):
        if n < 2:
            continue
        held = e_group[:, g] > 0
        num = den = 0.0
        for k in range(n_bins):
            sel = held & (which == k)
            if sel.sum() < min_count:
                continue
            y = ndtri((n_hit[sel, g] + 0.5) / (n + 1.0))
            design = np.column_stack([np.ones(sel.sum()), t[sel], np.log(e_group[sel, g])])
            beta, *_ = np.linalg.lstsq(design, y, rcond=None)
            num, den = num + beta[2] * sel.sum(), den + sel.sum()
        slope[g] = num / den if den else 0.0
    return slope.astype(np.float32)


def cell_hit_floor(u: np.ndarray, e_inc: np.ndarray, feature_group: np.ndarray, n_cells: int, q: float = 0.005,
                   n_bins: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Per group, a line of the log smallest hit energy (over ``E_inc``) against the standardised log incident energy.

    ``log u_floor_g = a_g + b_g t`` (``t`` as :func:`cell_hit_probit`). The floor is fitted where it lives, in energy:
    the ``q`` quantile of the hit cells' ``log(u E_inc)`` in each of ``n_bins`` equal-count energy bins, a least-squares
    line in ``t``, then divided by ``E_inc = exp(mean + std t)`` (a quantile of ``u`` itself within a bin would come
    from the bin's most energetic showers). Only a group's cells enter (flat index ``< n_cells``; the extras, such as
    CaloGAN's overflow, are not cells). A simulated calorimeter cell is either empty or holds at least one deposit:
    GFlash's smallest spots carry 0.9 / 1.9-3.3 / 1.3-4.6 MeV in CaloGAN's layers 0 / 1 / 2 at 1-100 GeV (0.1 %
    quantile); Geant4 data have a readout threshold.

    Parameters
    ----------
    u : numpy.ndarray
        (N, n_features) energies over the incident energy.
    e_inc : numpy.ndarray
        (N,) incident energies (any unit).
    feature_group : numpy.ndarray
        (n_features,) group of each feature.
    n_cells : int
        Features before this index are cells.
    q : float
        Quantile of the hit energies taken as the floor.
    n_bins : int
        Energy bins.

    Returns
    -------
    a, b : numpy.ndarray
        float32 (n_groups,) intercept and slope; a group without hits gets ``a = -60`` (no floor).
    """
    u = np.asarray(u, dtype=np.float64)
    log_e = np.log(np.asarray(e_inc, dtype=np.float64))
    m, sd = log_e.mean(), (log_e.std() or 1.0)
    fg = np.asarray(feature_group)
    n_groups = int(fg.max()) + 1
    t, which = _energy_bins(e_inc, n_bins)
    a, b = np.full(n_groups, -60.0), np.zeros(n_groups)
    for g in range(n_groups):
        cols = np.flatnonzero((fg == g) & (np.arange(len(fg)) < n_cells))
        xs, ys = [], []
        for k in range(n_bins):
            sel = np.flatnonzero(which == k)
            v = u[np.ix_(sel, cols)]
            hit = v > 0
            if hit.any():
                xs.append(t[sel].mean())
                ys.append(np.quantile(np.log(v[hit]) + np.broadcast_to(log_e[sel, None], v.shape)[hit], q))
        if not xs:
            continue
        intercept, slope = _line(np.asarray(xs), np.asarray(ys))
        a[g], b[g] = intercept - m, slope - sd
    return a.astype(np.float32), b.astype(np.float32)


def fractions_to_model(u: torch.Tensor, eps: float = DEFAULT_EPS) -> torch.Tensor:
    """Model space from energy fractions ``u = x / E_inc`` (differentiable).

    Parameters
    ----------
    u : torch.Tensor
        Non-negative cell energies divided by the incident energy.
    eps : float
        Log offset.

    Returns
    -------
    torch.Tensor
        ``1 + 2 log(u + eps) / (-log eps)``: exactly -1 for ``u = 0``.
    """
    return 1.0 + 2.0 * torch.log(u + eps) / (-math.log(eps))


def model_to_fractions(y: torch.Tensor, eps: float = DEFAULT_EPS, snap: bool = True) -> torch.Tensor:
    """Energy fractions from model space; ``snap`` sets ``u < eps/2`` to exactly 0.

    Parameters
    ----------
    y : torch.Tensor
        Model-space values.
    eps : float
        Log offset used by :func:`fractions_to_model`.
    snap : bool
        Zero the values below ``eps / 2`` (True for sampling; False gives the smooth, differentiable map
        the critic uses).

    Returns
    -------
    torch.Tensor
    """
    u = torch.exp((y - 1.0) * (-math.log(eps)) / 2.0) - eps
    if snap:
        u = torch.where(u < 0.5 * eps, torch.zeros_like(u), u)
    return u


class CaloTransform(Transform):
    """Cells / E_inc, then log-scaled to about [-1, 1] (see the module docstring).

    Options
    -------
    eps : float
        Log offset relative to the incident energy (default 1e-7).
    energy_units : str, optional
        'GeV' or 'MeV'; normally taken from the geometry in ``attrs`` at :meth:`fit`.
    summaries : bool
        Append the standardised summary coordinates (default True; see the module docstring). A run
        fitted without them (older runs) keeps the plain cell space.
    summary_lateral : bool
        Include the centre of energy and width of every layer and axis among them (default True; see the
        module docstring).
    summary_extras : bool
        Include ``log(extras / E_inc + 1e-6)``, the energy of the geometry's extras (CaloGAN's overflow), among them
        (default False; ignored without extras). At quickstart size the overflow alone let the classifier test reach
        the whole AUC of 0.74; with this coordinate its median came right, its spread not (``bench/RESULTS.md`` §13).
    summary_occupancy : bool
        Include the soft occupancy per layer group among them (default False). A/B on 4000 GFlash
        showers, 2500 CPU steps, one seed: sparsity separation 0.22/0.43/0.35 -> 0.10/0.31/0.30 and voxel
        spectrum 0.38 -> 0.28, but E_tot/E_inc 0.014 -> 0.042 and FPD 0.81 -> 2.3; not a clear gain yet.
    readout_threshold : bool
        Zero the cells below the geometry's voxel threshold (``voxel_threshold_mev``: CaloChallenge DS2/3 15.15 keV, DS1
        1 MeV, CaloGAN 0) in the training showers, before the fitted statistics and in :meth:`forward` (default False).
        The official evaluation applies that threshold to real and generated showers alike, so a deposit below it is
        never measured; without the option the generator still spends hits and energy on them. GFlash's dataset-2
        files hold many: layer 0 is empty in 19-29 % of the raw showers and in 21-39 % after the threshold
        (``bench/RESULTS.md`` §13, seventeenth session). The fitted threshold is kept with the statistics, so a run
        reads its data the way it was trained.
    """

    name = "calo-log-fraction"

    def __init__(self, **options: Any):
        super().__init__(**options)
        self.eps = float(self.typed.eps)
        if not 0 < self.eps < 1:
            raise ConfigError(f"calo transform: eps must lie in (0, 1), got {self.eps}")

    @property
    def typed(self) -> Any:
        """``data.transform`` as :class:`~physgan.domains.calo.options.CaloTransformOptions` (defaults written once, there)."""
        from physgan.domains.calo.options import CaloTransformOptions  # imports this module: not at the top

        return typed_options(CaloTransformOptions, self.options, "data.transform")

    def _factor(self) -> float:
        units = self.stats.get("energy_units", self.typed.energy_units)
        if units is None:
            raise ConfigError("calo transform is not fitted: the incident-energy unit is unknown (fit it or pass energy_units)")
        return energy_to_mev_factor(units)

    def fit(self, x: np.ndarray, c: np.ndarray | None = None, attrs: dict[str, Any] | None = None) -> CaloTransform:
        """Record the energy unit (from the geometry in ``attrs``) and summaries of the training data.

        Parameters
        ----------
        x : numpy.ndarray
            (N, n_features) training showers in MeV.
        c : numpy.ndarray
            (N, k) physical conditions, column 0 the incident energy.
        attrs : dict
            File attributes with the geometry (or ``energy_units``).

        Returns
        -------
        CaloTransform
            ``self``.
        """
        from physgan.domains.calo.features import resolve_geometry
        from physgan.domains.calo.geometry import apply_threshold

        units = self.typed.energy_units
        if units is None:
            units = resolve_geometry(attrs, np.asarray(x).shape[-1]).energy_units
        factor = energy_to_mev_factor(units)
        stats: dict[str, Any] = {"energy_units": str(units), "eps": self.eps}
        self.__dict__.pop("_summary_cache", None)
        if self.typed.readout_threshold:  # what the official evaluation (and a detector) reads: see the class docstring
            geom = resolve_geometry(attrs, np.asarray(x).shape[-1])
            stats.update(readout_threshold_mev=float(geom.voxel_threshold_mev), readout_n_cells=int(geom.n_cells))
            x = apply_threshold(np.asarray(x), geom)
        if c is not None and len(x):
            e = np.asarray(c, dtype=np.float64).reshape(len(x), -1)[:, 0] * factor
            u = np.asarray(x, dtype=np.float64) / e[:, None]
            pos = u[u > 0]
            stats.update(
                zero_fraction=float(np.mean(u == 0)),
                min_positive_fraction=float(pos.min()) if pos.size else 0.0,
                below_eps_fraction=float(np.mean((u > 0) & (u < 0.5 * self.eps))),
            )
            opts = self.typed
            if opts.summaries:
                from physgan.domains.calo.model import feature_groups

                geom = resolve_geometry(attrs, u.shape[1])
                feature_group = feature_groups(geom)
                n_groups = int(feature_group.max()) + 1
                segs = geometry_segments(geom)
                member = SegmentMatrix(group_member_matrix(feature_group, n_groups), segs).double()
                occupancy, lateral = bool(opts.summary_occupancy), bool(opts.summary_lateral)
                moments = segment_moments(lateral_moments(geom)[0], segs, torch.float64) if lateral else None
                extras = bool(opts.summary_extras) and geom.n_extra > 0
                raw = summary_coordinates(torch.as_tensor(u), member, occupancy=occupancy, eps=self.eps, lateral=moments,
                                          bounds=layer_bounds(geom) if lateral else None,
                                          extras=torch.as_tensor(extra_indicator(geom), dtype=torch.float64) if extras else None).numpy()
                stats.update(
                    n_features=int(u.shape[1]),
                    feature_group=feature_group.tolist(),
                    summary_groups=n_groups,
                    summary_occupancy=occupancy,
                    summary_lateral=lateral,
                    summary_extras=extras,
                    geometry_attrs={k: str(v) for k, v in geom.to_attrs().items()},
                    summary_mean=raw.mean(axis=0).tolist(),
                    summary_std=np.maximum(raw.std(axis=0), SUMMARY_MIN_STD).tolist(),
                )
            # the generator initialises its response range, layer fractions and cell patterns from these
            r = u.sum(axis=1)
            sd_a, sd_b = response_log_std_line(r, e)
            stats.update(
                response_min=float(r.min()),
                response_max=float(r.max()),
                response_mean=float(r.mean()),
                response_std=float(r.std()),
                response_log_std_a=sd_a,
                response_log_std_b=sd_b,
                mean_fraction=u.mean(axis=0).astype(np.float32).tolist(),
            )
            if "feature_group" in stats:
                stats["cell_log_std"] = cell_log_std(u, e, np.asarray(stats["feature_group"])).tolist()
                sd_a, sd_b = cell_log_std_line(u, e, np.asarray(stats["feature_group"]))
                stats.update(cell_log_std_a=sd_a.tolist(), cell_log_std_b=sd_b.tolist())
                hit_fraction, hit_share = cell_hit_stats(u, np.asarray(stats["feature_group"]))
                stats.update(cell_hit_fraction=hit_fraction.tolist(), cell_hit_share=hit_share.tolist())
                probit_a, probit_b = cell_hit_probit(u, e)
                stats.update(cell_hit_probit_a=probit_a.tolist(), cell_hit_probit_b=probit_b.tolist())
                # the probit of a whole layer group holding any energy, as a curve in the energy (option empty_draw)
                fg = np.asarray(stats["feature_group"])
                member = group_member_matrix(fg, int(fg.max()) + 1)
                e_group = u @ member.astype(np.float64)
                knots, probit = group_hit_curve(e_group, e)
                stats.update(group_hit_knots=knots.tolist(), group_hit_probit=probit.tolist())
                pattern_t, pattern_bits = group_hit_patterns(e_group, e)  # option empty_draw_patterns
                stats.update(group_hit_pattern_t=pattern_t.tolist(), group_hit_pattern_bits=pattern_bits)
                stats.update(group_share_max_log=group_share_ceiling(e_group, e)[1].tolist())  # option share_cap
                stats.update(group_share_log=group_share_curve(e_group, e)[1].tolist())  # option share_curve
                _, quantiles, valid = group_share_quantiles(e_group, e)  # options share_quantile_weight, share_calibration
                stats.update(group_share_quantiles=quantiles.tolist(), group_share_quantile_valid=valid.tolist())
                rings, ring_group = ring_members(geom)  # option ring_calibration; a layer's group is its index
                _, ring_rate, ring_share, ring_valid = ring_hit_curves(u, e, rings, np.asarray(ring_group), fg)
                stats.update(ring_hit_rate=ring_rate.tolist(), ring_share=ring_share.tolist(),
                             ring_valid=ring_valid.tolist())
                noise_a, noise_b, noise_t = group_share_noise_line(e_group, e)  # option layer_noise
                stats.update(group_share_noise_a=noise_a.tolist(), group_share_noise_b=noise_b.tolist(),
                             group_share_noise_t=noise_t.tolist())
                # option layer_noise_hits; the hit counts in row blocks (no (N, n_features) float copy of the mask)
                n_hit = np.concatenate([(u[i : i + 4096] > 0).astype(np.float32) @ member.astype(np.float32)
                                        for i in range(0, len(u), 4096)])
                slope = group_hit_slope(e_group, n_hit, member.sum(axis=0), e)
                stats.update(group_hit_slope=slope.tolist())
                floor_a, floor_b = cell_hit_floor(u, e, np.asarray(stats["feature_group"]), geom.n_cells)
                stats.update(cell_hit_floor_a=floor_a.tolist(), cell_hit_floor_b=floor_b.tolist())
        self.stats = stats
        return self

    def load_state_dict(self, state: dict[str, Any]) -> CaloTransform:
        super().load_state_dict(state)
        self.__dict__.pop("_summary_cache", None)
        self.eps = float(self.stats.get("eps", self.typed.eps))
        return self

    def _read_out(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (MeV) clamped at 0, and with option ``readout_threshold`` its cells below the fitted threshold zeroed."""
        thr = float(self.stats.get("readout_threshold_mev", 0.0))
        if thr <= 0:
            return torch.clamp(x, min=0)
        below = x < thr
        below[..., int(self.stats["readout_n_cells"]):] = False  # the extras (CaloGAN's overflow) are not cells
        return torch.where(below | (x < 0), torch.zeros((), dtype=x.dtype, device=x.device), x)

    def _e_mev(self, x: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
        if c is None:
            raise ConfigError("calo transform needs the incident energies (conditions) of the batch")
        c = torch.as_tensor(c, dtype=x.dtype, device=x.device)
        e = (c[:, 0] if c.ndim == 2 else c.reshape(-1)) * self._factor()
        return e.reshape(-1, *([1] * (x.ndim - 1)))

    @property
    def has_summaries(self) -> bool:
        """Whether the model space carries the summary coordinates (fitted with ``summaries``)."""
        return "summary_mean" in self.stats

    def model_shape(self, sample_shape: tuple[int, ...]) -> tuple[int, ...]:
        """``(n_features + n_summaries,)`` with summary coordinates, else the sample shape."""
        if self.has_summaries:
            return (int(np.prod(sample_shape)) + len(self.stats["summary_mean"]),)
        return tuple(sample_shape)

    @property
    def summary_groups(self) -> int:
        """Number of layer groups in the summary coordinates."""
        n = len(self.stats["summary_mean"])
        return int(self.stats.get("summary_groups", n - 1))

    @property
    def summary_occupancy(self) -> bool:
        """Whether the summary coordinates include the soft occupancy per group."""
        return bool(self.stats.get("summary_occupancy", False))

    @property
    def summary_lateral(self) -> bool:
        """Whether the summary coordinates include the per-layer centres of energy and widths."""
        return bool(self.stats.get("summary_lateral", False))

    def summary_tensors(self, ref: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``member``, ``mean``, ``std`` of the summary coordinates on ``ref``'s device and dtype, the
        :func:`lateral_moments` and :func:`layer_bounds` (``None`` without lateral coordinates) and the
        :func:`extra_indicator` (``None`` without the extras' coordinate)."""
        key = (ref.device, ref.dtype)
        cache = self.__dict__.setdefault("_summary_cache", {})
        if key not in cache:
            from physgan.domains.calo.features import resolve_geometry

            member = group_member_matrix(self.stats["feature_group"], self.summary_groups)
            lateral, bounds, extras, segs = None, None, None, None
            if "geometry_attrs" in self.stats:  # runs written before it have no lateral block: dense products
                geom = resolve_geometry(self.stats["geometry_attrs"], int(self.stats["n_features"]))
                segs = geometry_segments(geom)
                if self.summary_lateral:
                    lateral, bounds = segment_moments(lateral_moments(geom)[0], segs, ref.dtype, ref.device), layer_bounds(geom)
                if self.stats.get("summary_extras", False):
                    extras = torch.as_tensor(extra_indicator(geom), dtype=ref.dtype, device=ref.device)
            as_ref = {"dtype": ref.dtype, "device": ref.device}
            cache[key] = (
                SegmentMatrix(member, segs).to(**as_ref) if segs else torch.as_tensor(member, **as_ref),
                torch.as_tensor(np.asarray(self.stats["summary_mean"]), **as_ref),
                torch.as_tensor(np.asarray(self.stats["summary_std"]), **as_ref),
                lateral, bounds, extras,
            )
        return cache[key]

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        """Physical showers (MeV) -> model space, given physical conditions ``c`` (column 0 = E_inc)."""
        x = torch.as_tensor(x)
        u = self._read_out(x) / self._e_mev(x, c)
        y = fractions_to_model(u, self.eps)
        if self.has_summaries:
            member, mean, std, lateral, bounds, extras = self.summary_tensors(u)
            summaries = summary_coordinates(u, member, mean, std, occupancy=self.summary_occupancy, eps=self.eps,
                                            lateral=lateral, bounds=bounds, extras=extras)
            y = torch.cat([y, summaries], dim=1)
        return y

    def inverse(self, y: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        """Model space -> showers in MeV (summary coordinates dropped); exact zeros stay exact zeros."""
        y = torch.as_tensor(y)
        if self.has_summaries:
            y = y[:, : int(self.stats["n_features"])]
        return self.from_fractions(model_to_fractions(y, self.eps, snap=False), c)

    def from_fractions(self, u: torch.Tensor, c: torch.Tensor | None = None, inplace: bool = False) -> torch.Tensor:
        """Showers in MeV from cell energies / E_inc ``u`` (the last step of :meth:`inverse`, and the whole of it for a
        generator that makes ``u`` itself, :meth:`~physgan.domains.calo.model.CaloGenerator.sample_physical`).

        Values at or below ``eps / 2`` become exact zeros (the snap of :func:`model_to_fractions`); ``inplace`` reuses
        ``u``'s memory (a fresh tensor of the caller's).
        """
        u = torch.nn.functional.threshold(u, 0.5 * self.eps, 0.0, inplace=inplace)
        e = self._e_mev(u, c)
        return u.mul_(e) if inplace else u * e
