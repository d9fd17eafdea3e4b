"""The ``nbody`` domain: cosmological density fields (2-D slabs or 3-D boxes) conditioned on (Omega_m, sigma8[, z]).

Files use physgan's generic ``array`` layout: ``samples`` of shape
``(N, n, n[, n])`` holding ``1 + delta`` (density in units of the mean, >= 0),
``conditions/omega_m``, ``conditions/sigma8`` (``conditions/redshift`` when it
varies) and root attributes ``domain = 'nbody'``, ``box_size`` (Mpc/h),
``grid``, ``dim``, ``redshift``, ``slice_thickness`` (Mpc/h, 2-D), ``field``,
``sim`` and ``provenance``. The generic layout was chosen over a dedicated one
because nothing in these files needs more than samples + named conditions +
attributes; ``detect`` recognises them by ``attrs['domain'] == 'nbody'``.

::

    physgan data make nbody --sim lognormal --dim 2 --grid 32 --box 64 --n 4000 --out nbody.h5
    physgan data import nbody snap_010.hdf5 --grid 64 --cond sigma8=0.81 --out boxes.h5
    physgan train nbody --data nbody.h5 --preset quick --run runs/nbody-001
    physgan quickstart nbody

Modules: :mod:`.transform` (s(x) or log map), :mod:`.model` (periodic fully
convolutional G and projection critic), :mod:`.metrics`, :mod:`.plots`,
:mod:`.make`, :mod:`.importer`; simulators in :mod:`physgan.sim.nbody`, the
P(k) estimator in :mod:`physgan.metrics.spectra`.
"""

from __future__ import annotations

from typing import Any

from physgan.domains.base import Domain, register_domain
from physgan.domains.checks import Bound
from physgan.domains.nbody.importer import add_import_arguments, import_
from physgan.domains.nbody.make import add_make_arguments, make
from physgan.domains.nbody.metrics import cross_correlation, features, nearest_training, physics_metrics, score
from physgan.domains.nbody.model import build_critic, build_generator, moment_features
from physgan.domains.nbody.options import NbodyModelOptions, NbodyTransformOptions
from physgan.domains.nbody.plots import plots
from physgan.domains.nbody.positions import PLAIN_SUFFIXES
from physgan.domains.nbody.transform import DensityTransform, make_transform

__all__ = ["NBODY", "PRESETS", "QUICKSTART", "detect", "DensityTransform", "cross_correlation"]


def detect(header: Any) -> bool:
    """Whether an opened file (its :class:`~physgan.io.layout.Header`) holds nbody density fields."""
    attrs = dict(getattr(header, "attrs", None) or {})
    domain = attrs.get("domain")
    if isinstance(domain, bytes):
        domain = domain.decode()
    return str(domain) == "nbody"


_TRAIN = {"ema_beta": 0.999}  # the objective and optimiser come from the recipe (--recipe, default gulrajani2017)
#: Every preset: the mean density is set by one learned constant offset and the residual has no mean of its own
#: (the code's defaults, a conditional offset and a free residual, stay for runs made before).
_MEAN = {"mean_offset": "constant", "zero_mean_residual": True}
#: Every preset: the log transform's softening is chosen by the data (``eps='auto'``: the smallest that makes the
#: training fields' log density symmetric). Particle-mesh slabs get 0.01 where the fixed 1e-3 left a skewness of -0.58
#: and the generated power 7-16 % high; lognormal slabs are symmetric already and get 1e-4 (bench/RESULTS.md §11).
_TRANSFORM = {"kind": "gauss", "eps": "auto"}

#: Named config overrides (sections train / model / data of the engine config).
PRESETS: dict[str, dict[str, Any]] = {
    # Spectral generator + summary critic (model.py) on the 'gauss' transform. On CPU the critic reads the field
    # summaries only (critic_width 0): a conv branch of width 8 costs 4x the critic step at 64^2 (0.63 vs 0.12 s
    # per critic step at batch 32, one core) and lognormal fields hold no structure beyond their one- and
    # two-point statistics; for particle-mesh data set model.options.critic_width (e.g. 8) to let it see more.
    "quick": {  # 32^2 slabs: the quickstart
        "train": {"steps": 800, "batch_size": 32, "val_every": 200, "ckpt_every": 400, **_TRAIN},
        # mean density set by the offset alone (one learned constant; a residual without its mean): the conditional
        # offset and a free residual drift the mean with sigma8 (RESULTS §11, fourth session: Minkowski chi 0.010 /
        # 0.009 vs 0.015 / 0.015 over two seeds, P(k) 0.036 / 0.044 vs 0.041 / 0.073; at 64^2, fifth session: P(k)
        # 0.025-0.046 vs 0.063-0.125 at the six benchmark cosmologies, response 11 vs 1 of 15 pairs within 5 %)
        "model": {"z_dim": 8, "width": 8, "depth": 3, "embed_dim": 16, "options": {"critic_width": 0, "amp_degree": 2, **_MEAN}},
        "data": {"val_fraction": 0.1, "transform": {**_TRANSFORM}},
    },
    "default": {  # 64^2 slabs on one CPU core (bench.nbody_benchmark)
        "train": {"steps": 20000, "batch_size": 32, "val_every": 500, "ckpt_every": 500, **_TRAIN},
        # mf_summaries: the critic also reads the soft Minkowski functionals; at 64² (40 min, one seed) the Euler
        # characteristic curve's deviation fell from 4-11x its floor to 1.8-3.0x, P(k) and mean density unchanged, 1.6x
        # the CPU per step (bench/RESULTS.md §11, sixth session); since they come from one set of vacancy products the
        # preset makes 3640 steps in the benchmark's 40 min instead of 2169 (thirty-second session). residual_highpass 2:
        # the residual's modes with |m| < 2 zeroed, so the largest scales are the coloured field's; against the preset
        # without it on two data seeds, same 40 min (2000-2124 steps): P(k) within 5 % at the training cosmologies in both
        # (without: 5.8 % at the corner (0.25, 0.9) on one), Minkowski functionals over 3x their floor at 0 / 1
        # cosmologies (without: 4 / 1), response within 5 % for 13 / 11 of 15 pairs (without: 11 / 10) (bench/RESULTS.md
        # §11, nineteenth and twentieth sessions)
        "model": {"z_dim": 8, "width": 8, "depth": 3, "embed_dim": 32,
                  "options": {"critic_width": 0, "amp_degree": 2, "mf_summaries": True, "residual_highpass": 2, **_MEAN}},
        "data": {"val_fraction": 0.1, "transform": {**_TRANSFORM}},
    },
    "gpu": {
        "train": {"steps": 100000, "batch_size": 64, "val_every": 2000, "ckpt_every": 5000, **_TRAIN},
        # _MEAN by the same diagnosis (the drift is the offset's and the residual's, not a matter of size); not run on a GPU
        "model": {"z_dim": 16, "width": 32, "depth": 4, "embed_dim": 64, "options": {"critic_width": 32, "amp_degree": 2, **_MEAN}},
        "data": {"val_fraction": 0.1, "transform": {**_TRANSFORM}},
    },
}

#: ``physgan quickstart nbody``: 4000 lognormal 32^2 slabs (64 Mpc/h) over (Omega_m, sigma8), quick preset.
QUICKSTART: dict[str, Any] = {
    "make": {"sim": "lognormal", "dim": 2, "grid": 32, "box": 64.0, "omega_m": "0.2:0.4", "sigma8": "0.6:1.0", "n": 4000},
    "preset": "quick",
    # as many held-out fields as training fields: at 1000 the density P(k) is measured only to +-0.1 (the goal is 0.2)
    "n_heldout": 4000,
    "heldout_fraction": 1.0,
}

#: Physical domain of the conditions (extrapolation may widen the training range, never leave these).
BOUNDS = {
    "omega_m": Bound(0.0, None, lo_open=True, why="a matter density parameter is positive"),
    "sigma8": Bound(0.0, None, lo_open=True, why="the amplitude of fluctuations sigma8 is positive"),
    "redshift": Bound(-1.0, None, lo_open=True, why="a redshift is > -1 (scale factor a = 1/(1+z) > 0)"),
}

NBODY = register_domain(
    Domain(
        name="nbody",
        description="cosmological density fields (2-D slabs / 3-D boxes) conditioned on Omega_m, sigma8 (, z)",
        layouts=["array"],
        make_transform=make_transform,
        build_generator=build_generator,
        build_critic=build_critic,
        condition_scales={"omega_m": "linear", "sigma8": "linear", "redshift": "linear"},
        features=features,
        physics_metrics=physics_metrics,
        score=score,
        plots=plots,
        presets=PRESETS,
        model_options=NbodyModelOptions,
        transform_options=NbodyTransformOptions,
        add_make_arguments=add_make_arguments,
        make=make,
        add_import_arguments=add_import_arguments,
        import_=import_,
        quickstart=QUICKSTART,
        detect=detect,
        condition_bounds=BOUNDS,
        import_suffixes=PLAIN_SUFFIXES,
        nearest=nearest_training,
        moment_features=moment_features,
    )
)
