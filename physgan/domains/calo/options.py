"""Typed options of the calo domain: ``model.options`` (read by :mod:`.model`) and ``data.transform`` (:mod:`.transform`).

``resolve_config`` checks a run's options against these records: an unknown key is an error naming the
closest known one. The meaning of each option is documented where it is used; the defaults here are
those of the code. The transform's ``eps`` is the only one: the model takes it from the fitted
transform (``data_stats['eps']``), so there is no ``model.options.eps``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from physgan.domains.calo.transform import DEFAULT_EPS

__all__ = ["CaloModelOptions", "CaloTransformOptions"]


@dataclass(frozen=True)
class CaloModelOptions:
    """``model.options`` of the calo generator and critic (see :mod:`physgan.domains.calo.model`)."""

    sparsify: bool = True  # generator: learned threshold zeroes small cells
    threshold_init: float = 1e-3  # initial relative threshold
    generator_width: int | None = None  # hidden width of the generator (None: model.width, the critic's too; issue 19)
    layer_hidden: bool | None = None  # hidden layer of the layer-energy head (None: when <= 8 layer groups)
    pattern_scale_mm: float = 20.0  # initial lateral pattern softmax(-r / scale)
    response_range: tuple[float, float] | None = None  # bounds of E_sum / E_inc (None: from the data)
    cell_noise: bool = False  # per-cell noise (off for runs made before it)
    cell_noise_init: float = 0.5  # initial per-cell noise scale
    noise_head: Literal["cell", "layer"] = "cell"  # per-cell log sigma, or per-cell plus one shift per layer (issue 19)
    noise_slope: bool = False  # noise_head layer: each cell's noise scale a line in the log incident energy (issue 19)
    noise_shape: Literal["normal", "gamma"] = "normal"  # noise on the log shares: symmetric, or a gamma's log (issue 19)
    noise_floor: float = 0.0  # noise_head layer: the layer's noise factor is at least this (0: may switch off; issue 19)
    noise_clip: float | None = None  # per-cell noise draws clipped above at this value (None: not clipped; issue 19)
    extras_noise: bool = False  # the extras' (overflow's) own noise scale, from the data's spread against the energy (issue 19)
    extras_cap: bool = False  # the extras' pattern logits at most their group's hottest cell's (issue 19)
    occupancy: bool = False  # zero-inflated per-cell occupancy draw (issue 19)
    occupancy_init: float = 0.5  # (issue 19)
    occupancy_temperature: float = 0.5  # relaxed Bernoulli temperature (issue 19)
    occupancy_slope: bool = False  # per-cell slope of the hit probit on the incident energy (issue 19)
    occupancy_from_condition: bool = False  # with occupancy: the hit probit's shift from the condition, not the trunk (issue 19)
    occupancy_from_shares: bool = False  # with occupancy: the hit shift from the condition and the layer shares (issue 19)
    occupancy_radial: bool = False  # with occupancy: a per-shower radial slope of each layer's hit probit (issue 19)
    occupancy_mean_preserving: bool = False  # with occupancy: the hit shift's spread does not raise the mean hit rate (issue 19)
    occupancy_pinned: bool = False  # with mean-preserving: each cell's hit rate is the data's line, not learned (issue 19)
    occupancy_pinned_groups: int = 0  # with occupancy_pinned: only the first N layer groups are pinned (0: every group)
    occupancy_pinned_layers: tuple[int, ...] | None = None  # with occupancy_pinned: only these layer groups (None: occupancy_pinned_groups)
    occupancy_level_bound: float = 0.0  # with occupancy: each group's hit level is b tanh(level / b) (0: unbounded; issue 19)
    occupancy_level_mean_weight: float = 0.0  # with occupancy: training term on each group's hit-level mean at fixed energy (0: off)
    occupancy_level_mean_running: bool = False  # that term against the level's running mean at fixed energy, not the batch's
    occupancy_summary_st: bool = False  # straight-through of the hit draw also into the summary coordinates (issue 19)
    hit_floor: bool = False  # with occupancy: every hit cell holds at least the data's smallest hit energy (issue 19)
    empty_layers: bool = False  # with occupancy: a layer group whose every draw misses is empty (issue 19)
    response_noise: bool = False  # the response's own log-normal draw, spread from the data's line in the energy (issue 19)
    empty_draw: bool = False  # a layer group is empty at the data's rate for the shower's energy; the trunk sees it (issue 19)
    # with empty_draw: the empty groups are a training shower's pattern at the shower's energy (the nearest in energy of
    # the transform's bank, picked by one latent value), so their joint structure is the data's, not independent per group
    empty_draw_patterns: bool = False
    # no layer group's share of a shower's energy above the largest any training shower of that energy holds
    # (transform statistic group_share_max_log); the others are scaled up to keep the sum (issue 19)
    share_cap: bool = False
    share_quantile_weight: float = 0.0  # training term: each group's energy given a hit follows the data's quantiles (0: off)
    share_calibration: bool = False  # at sampling, each group's energy given a hit mapped to the data's quantiles (issue 19)
    ring_calibration: bool = False  # at sampling, each ring's hit probits and pattern weights moved to the data's (issue 19)
    share_curve: bool = False  # the layer shares start at the data's log mean share where each group is hit, by energy (issue 19)
    layer_noise: bool = False  # each layer group's share gets its own log-normal draw, from the data's spread (issue 19)
    layer_noise_floor: float = 0.5  # layer_noise: its learned factor on the data's spread is at least this (issue 19)
    layer_noise_hits: bool = False  # layer_noise + occupancy: a group's hit probit follows its layer draw (issue 19)
    pattern_conv: int = 0  # channels of the generator's per-layer conv stream on the pattern logits (0: none; issue 19)
    critic_layer_stream: int = 0  # channels of the critic's stream along the layers (0: none; issue 19)
    critic_spatial: int = 0  # channels of the critic's per-layer conv streams (0: none; issue 19)
    critic_spectrum: Literal["none", "counts", "shares"] = "none"  # critic: cells above multiples of the hit floor (issue 19)
    critic_spectrum_layers: tuple[int, ...] | None = None  # layers whose spectrum the critic sees (None: all; issue 19)
    critic_ring_hits: bool = False  # critic: soft number of hit cells per layer and ring (sparsity by radius; issue 19)
    critic_depth_width: bool = False  # critic: the shower's longitudinal width beside its depth (issue 19)
    critic_norm: Literal["none", "layer"] = "none"  # critic hidden-layer normalisation
    occupancy_sharpness: float = 10.0  # critic's soft occupancy


@dataclass(frozen=True)
class CaloTransformOptions:
    """``data.transform`` of :class:`physgan.domains.calo.transform.CaloTransform`."""

    eps: float = DEFAULT_EPS  # offset of the log fractions; the model uses the fitted value too
    energy_units: Literal["GeV", "MeV"] | None = None  # incident-energy unit (None: from the geometry)
    summaries: bool = True  # append the standardised summary coordinates
    summary_lateral: bool = True  # centres and widths of every layer among them
    summary_occupancy: bool = False  # soft occupancy per layer group among them
    summary_extras: bool = False  # log energy of the extras (CaloGAN's overflow) among them (issue 19)
    readout_threshold: bool = False  # zero the cells below the geometry's voxel threshold before fitting and training
