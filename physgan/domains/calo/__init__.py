"""Calorimeter showers: CaloGAN (Cartesian) and CaloChallenge (cylindrical) geometries.

Importing this package registers the ``calogan`` and ``calochallenge`` layouts and the ``calo`` domain.

Modules: :mod:`.geometry` (readout binnings), :mod:`.layouts` (HDF5 formats), :mod:`.features`
(high-level shower features), :mod:`.metrics` (separation powers, response), :mod:`.transform`
(cells / E_inc, log-scaled), :mod:`.model` (physics-structured generator and critic),
:mod:`.plots` (figures), :mod:`.make` (``physgan data make calo``, GFlash simulator).

Launch (CPU, a few minutes)::

    physgan quickstart calo
    physgan train calo --data data/calo.h5 --run runs/calo-001 --preset quick
"""

from __future__ import annotations

from typing import Any

from physgan.domains.base import Domain, register_domain
from physgan.domains.calo import checks, layouts  # noqa: F401  (layouts registers the calogan / calochallenge layouts)
from physgan.domains.calo.features import shower_features
from physgan.domains.calo.make import add_make_arguments, make
from physgan.domains.calo.metrics import physics_metrics, score
from physgan.domains.calo.model import build_critic, build_generator
from physgan.domains.calo.options import CaloModelOptions, CaloTransformOptions
from physgan.domains.calo.plots import plots
from physgan.domains.calo.transform import CaloTransform

__all__ = ["CALO", "PRESETS", "QUICKSTART", "make_transform", "detect"]


def make_transform(options: dict[str, Any] | None = None) -> CaloTransform:
    """The unfitted calorimeter transform (options: ``eps``, ``energy_units``); see :mod:`.transform`."""
    return CaloTransform(**dict(options or {}))


def detect(header: Any) -> bool:
    """Whether an opened file (its :class:`~physgan.io.layout.Header`) holds calorimeter showers."""
    attrs = dict(getattr(header, "attrs", None) or {})
    domain = attrs.get("domain")
    if isinstance(domain, bytes):
        domain = domain.decode()
    if domain is not None:
        return str(domain) == "calo"
    return "geometry" in attrs


#: Generator options of every preset: per-cell noise with the per-layer head, zero-inflated per-cell occupancy
#: (see :mod:`.model`; ``bench/RESULTS.md`` §13 holds the A/B behind them). ``layer_hidden: false`` (G 28-37 % smaller,
#: generation 77-78x -> 85-87x GFlash) tied on AUC over three quickstart-size runs (0.75 / 0.73 / 0.82 vs 0.74 / 0.78 /
#: 0.74), so it is not among them. The long presets add ``extras_cap`` (fifth session): without it the overflow took the
#: whole layer in 23-31 % of the showers below 10 GeV after 12k-16k default steps at 100k (real: 0 %), with it 0 %, and
#: the late resolution blow-up (generated / real spread 34x at step 16000) fell to 4x. The quick preset never showed
#: that defect in 3000 steps (0 % in five A/B arms) and keeps what its figures were measured with. They also add
#: ``hit_floor`` (sixth session): every hit cell holds at least the data's smallest deposit; at 100k (35 min) AUC 0.842
#: -> 0.777, FPD 0.22 -> 0.006, sparsity of layer 2 0.034 -> 0.004, every centre of energy < 0.01. At quickstart size
#: (one seed) AUC 0.791 -> 0.761 but FPD 0.42 -> 4.05 (a few layer-2 outliers), so the quick preset did not take it alone.
#: And ``occupancy_slope`` (eleventh session): each cell's hit probability follows the incident energy from the data's
#: line; at 100k (35 min, two seeds each) AUC 0.777 / 0.752 -> 0.676 / 0.708, voxel spectrum 0.037 / 0.042 -> 0.012 /
#: 0.0067, and layer 0 no longer drifts late; the lowest energy bin's resolution got worse (1.09 -> 1.33 / 1.91). The
#: quick preset takes the floor and the slope together (QUICK_G_OPTIONS): at quickstart size (3000 steps) AUC 0.761
#: (floor alone) -> 0.540, voxel spectrum 0.035 -> 0.011, FPD 4.0 -> 0.007 (with extras_cap as well: 0.536, 0.014).
#: The long presets also take ``empty_draw`` and ``response_noise`` (thirteenth session): each layer group is empty at
#: the data's rate for the shower's energy, and the response E_tot / E_inc has its own log-normal draw. At 100k (35 min,
#: seeds 0 / 1, against the eleventh session's two default runs): E_layer 2 0.014 / 0.011 -> 0.0064 / 0.0049, the
#: resolution at 1-3 GeV (generated / simulated) 1.33 / 1.91 -> 1.10 / 0.95, FPD 0.0024 / 0.013 -> 0.0012 / 0.0018, AUC
#: 0.676 / 0.708 -> 0.681 / 0.725 (tied); width y of layer 2 0.009 / 0.011 -> 0.013 / 0.016 (worse). On dataset 2
#: (quick preset) the E_layer median 0.030 -> 0.004-0.009 and the resolution 0.19-1.52x -> 0.85-1.11x (three runs).
#: Since the fortieth session they also map each layer's share, where hit, to the data's quantiles at sampling
#: (``share_calibration``): at 100k (35 min, seeds 0 / 1) E_layer 2 0.0064 / 0.0049 -> 0.0020 / 0.0017, every other item
#: unchanged (AUC 0.695 / 0.724). Not measured on a GPU. The quick preset does not take it (at quickstart size, without
#: empty_draw, neutral to worse: thirty-ninth session).
G_OPTIONS: dict[str, Any] = {"cell_noise": True, "noise_head": "layer", "occupancy": True}
QUICK_G_OPTIONS: dict[str, Any] = {**G_OPTIONS, "hit_floor": True, "occupancy_slope": True}
LONG_G_OPTIONS: dict[str, Any] = {**QUICK_G_OPTIONS, "extras_cap": True, "empty_draw": True, "response_noise": True,
                                   "share_calibration": True}
#: The ``calochallenge`` preset is the best recipe measured on CaloChallenge dataset 2 (cylindrical, 45 layers x 144
#: cells; ``bench/RESULTS.md`` §13, fourteenth to twenty-second sessions): the quick preset's sizes, 4000 steps (~45
#: min on one CPU core), and on top of the quick preset's options the long presets' empty-layer and response draws (not
#: their ``extras_cap``: it was not in the measured runs), a gamma-shaped cell noise with its energy slope held at
#: least at 0.7 of the data's spread (``noise_floor``: the trained generator otherwise switched its cell noise off), a
#: log-normal draw per layer at the data's spread (``layer_noise``) that also moves the layer's hit level
#: (``layer_noise_hits``), the hit level's spread kept from raising the rare cells' hit rates
#: (``occupancy_mean_preserving``), and training on the showers as the readout sees them (``readout_threshold``).
#: Dataset 2, high-level classifier AUC: 0.99 with the quick preset and the long presets' draws alone, 0.905-0.95 with the
#: noise options, 0.907-0.927 with the layer draws, 0.899 / 0.907 (seeds 0 / 1) with the mean-preserving hit level read
#: per energy bin (coverage 0.81-0.82; layers 0-1's radial centres and widths still 0.04-0.08). On CaloGAN at
#: quickstart size the noise options made things worse (AUC 0.54 -> 0.60-0.67), so the other presets do not take them.
#: Since the thirty-fifth session it also draws each shower's empty layers as one training shower's pattern at that
#: energy (``empty_draw_patterns``: dataset 2's deep layers are empty or hit together) and caps each layer's share at the
#: largest the data hold at that energy (``share_cap``: no too-late showers): seeds 0 / 1 AUC 0.899 / 0.907 -> 0.897 /
#: 0.891, FPD 0.67 / 0.40 -> 0.15 / 0.12, coverage 0.82 / 0.81 -> 0.92 / 0.91, sparsity every layer < 0.02, every
#: centre and width < 0.02 but for layers 0-1 (bench/RESULTS.md §13, thirty-fourth and thirty-fifth sessions). Not
#: measured on CaloGAN at 100k, so the ``default`` preset keeps its independent empty draws.
#: Since the thirty-ninth session it also holds each layer's hit level at mean 0 by a running-mean training term
#: (``occupancy_level_mean_weight`` 10 with ``occupancy_level_mean_running``: trained longer, layer 1's outer rings no
#: longer empty out; seed 0 at 6500 steps AUC 0.885 -> 0.865 and centres / widths over 0.02 7 -> 1, seed 1 at 5500-6500
#: layer 1's radial centre 0.086 -> 0.009) and maps each layer's share, where hit, to the data's quantiles at sampling
#: (``share_calibration``): every layer's E_layer separation < 0.005 at 4000 steps on both seeds (before: 11-13 of 45
#: over 0.01), AUC 0.899 -> 0.891 (seed 0). Since the fortieth session it also moves each ring's hit rate and mean share
#: of its layer to the data's at sampling (``ring_calibration``): seed 2 at 5000 steps, post hoc, AUC 0.883 -> 0.746,
#: FPD 0.104 -> 0.048, every centre and width < 0.02 (before: layer 0's six and layer 1's two up to 0.050); end to end
#: (the benchmark, 60 min) seed 4 AUC 0.775 with every goal-2 item met, seed 3 AUC 0.796 with layer 0's radial centre
#: 0.040 left (its trained pattern puts layer 0's hottest cell off the axis in a third of the high-energy showers).
CHALLENGE_G_OPTIONS: dict[str, Any] = {
    **QUICK_G_OPTIONS, "empty_draw": True, "response_noise": True, "noise_shape": "gamma", "noise_slope": True,
    "noise_floor": 0.7, "layer_noise": True, "layer_noise_hits": True, "occupancy_mean_preserving": True,
    "empty_draw_patterns": True, "share_cap": True, "occupancy_level_mean_weight": 10.0,
    "occupancy_level_mean_running": True, "share_calibration": True, "ring_calibration": True,
}
#: The CPU presets' generator is half as wide as their critic (``generator_width``): at quickstart size G 42 539 instead
#: of 100 811 parameters kept every separation within ~0.01 of the full width (AUC 0.74 / 0.72 over two seeds vs 0.85,
#: every centre and width < 0.05 in both), and the default preset's G generates ~1.6x faster (``bench/RESULTS.md`` §13,
#: fourth session). Not measured on a GPU: the ``gpu`` preset keeps one width.

#: Named config overrides (sections train / model / data of the engine config): sizes and schedules; the
#: objective and optimiser come from the recipe (``--recipe``, default gulrajani2017).
PRESETS: dict[str, dict[str, Any]] = {
    # trains a few thousand steps on 2 CPU cores in minutes (measured ~0.05-0.1 s per step)
    "quick": {
        "train": {"steps": 3000, "batch_size": 64,
                  "ema_beta": 0.999, "val_every": 500, "ckpt_every": 1000},
        "model": {"z_dim": 32, "width": 96, "depth": 2, "embed_dim": 16, "options": {**QUICK_G_OPTIONS, "generator_width": 48}},
        "data": {"val_fraction": 0.1},
    },
    "default": {
        "train": {"steps": 20000, "batch_size": 128,
                  "ema_beta": 0.999, "val_every": 1000, "ckpt_every": 2000},
        "model": {"z_dim": 64, "width": 256, "depth": 3, "embed_dim": 32, "options": {**LONG_G_OPTIONS, "generator_width": 128}},
        "data": {"val_fraction": 0.1},
    },
    # CaloChallenge dataset 2 on one CPU core in ~45 min (the recipe above; measured there, not on datasets 1 and 3)
    "calochallenge": {
        "train": {"steps": 4000, "batch_size": 64,
                  "ema_beta": 0.999, "val_every": 500, "ckpt_every": 1000},
        "model": {"z_dim": 32, "width": 96, "depth": 2, "embed_dim": 16,
                  "options": {**CHALLENGE_G_OPTIONS, "generator_width": 48}},
        "data": {"val_fraction": 0.1, "transform": {"readout_threshold": True}},
    },
    "gpu": {
        "train": {"steps": 100000, "batch_size": 1024,
                  "ema_beta": 0.999, "val_every": 2000, "ckpt_every": 5000},
        "model": {"z_dim": 128, "width": 512, "depth": 4, "embed_dim": 64, "options": {"critic_norm": "layer", **LONG_G_OPTIONS}},
        "data": {"val_fraction": 0.1},
    },
}

#: ``physgan quickstart calo``: simulate 8k GFlash e+ showers in the CaloGAN geometry, train the quick preset.
QUICKSTART: dict[str, Any] = {
    "make": {"geometry": "calogan", "particle": "e+", "energy": "1:100", "n": 8000, "seed": 0},
    "preset": "quick",
}

CALO = register_domain(
    Domain(
        name="calo",
        description="calorimeter showers (CaloGAN / CaloChallenge layouts): physics-structured WGAN-GP",
        layouts=["calogan", "calochallenge"],
        make_transform=make_transform,
        build_generator=build_generator,
        build_critic=build_critic,
        condition_scales={"energy": "log"},
        features=shower_features,
        physics_metrics=physics_metrics,
        physics_takes_features=True,
        score=score,
        plots=plots,
        presets=PRESETS,
        model_options=CaloModelOptions,
        transform_options=CaloTransformOptions,
        add_make_arguments=add_make_arguments,
        make=make,
        quickstart=QUICKSTART,
        detect=detect,
        condition_bounds=checks.BOUNDS,
        check_samples=checks.check_samples,
    )
)
