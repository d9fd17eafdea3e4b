"""Materials microstructures: segmented 2-D images / 3-D volumes of integer phase labels.

Importing this package registers the ``micro`` layout and the ``micro`` domain:

* data: ``labels`` (N, [d,] h, w) uint8 (:mod:`.layout`); synthetic data from
  porespy (``physgan data make micro``, :mod:`.make`); TIFF import with phase
  detection (``physgan data import micro``, :mod:`.importer`);
* model space: one-hot phases (:mod:`.transform`);
* conditions: phase fractions that cannot exist are refused, default draws are valid
  combinations (:mod:`.conditions`); the generator meets its porosity / fraction
  conditions exactly (:mod:`.fractions`);
* models: fully convolutional 2-D/3-D generators obeying SliceGAN's transposed
  convolution rules, 2-D critics and a SliceGAN slice critic for volumes (:mod:`.model`);
* metrics and plots: phase fractions, S2, specific surface area, chord lengths,
  Euler characteristic, tortuosity (:mod:`.metrics`, :mod:`.plots`).

References
----------
.. [1] S. Kench and S. J. Cooper, Nature Machine Intelligence 3 (2021) 299 (SliceGAN).
.. [2] L. Mosser, O. Dubrule and M. J. Blunt, Phys. Rev. E 96 (2017) 043309.
"""

from __future__ import annotations

from typing import Any

from physgan.domains.base import Domain, register_domain
from physgan.domains.micro import checks
from physgan.domains.micro import layout as _layout  # noqa: F401  (registers the 'micro' layout)
from physgan.domains.micro.conditions import complete_conditions
from physgan.domains.micro.importer import add_import_arguments, import_
from physgan.domains.micro.make import add_make_arguments, make
from physgan.domains.micro.metrics import physics_metrics, sample_features, score
from physgan.domains.micro.model import build_critic, build_generator
from physgan.domains.micro.options import MicroModelOptions, MicroTransformOptions
from physgan.domains.micro.plots import plots
from physgan.domains.micro.summaries import moment_features
from physgan.domains.micro.transform import OneHotTransform

__all__ = ["DOMAIN", "make_transform", "detect", "PRESETS"]


def make_transform(options: dict[str, Any] | None = None) -> OneHotTransform:
    """Unfitted one-hot transform (``options['n_phases']`` optional)."""
    return OneHotTransform(**(options or {}))


def detect(header: Any) -> bool:
    """A file belongs to ``micro`` when ``attrs['domain'] == 'micro'``."""
    attrs = getattr(header, "attrs", header) or {}
    return str(attrs.get("domain", "")) == "micro"


#: ``default``: SliceGAN's generator and slice critic sized for a CPU core (issue 14, measured in
#: ``bench/micro3d_speed.py``): widths 16..64, 4 volumes per batch, 4 random slices per axis and volume
#: through the critic instead of all of them, lr 2e-4; a status line from the first step.
#: ``slicegan``: Kench & Cooper's sizes (lambda 10, n_critic 5, Adam 1e-4, betas (0, 0.9): recipe gulrajani2017;
#: z (16, 4, 4, 4) at 64^3, widths up to 512, batch 8, every slice scored), for a GPU.
#: ``default`` also scores one 32^3 window of each volume with a small 3-D critic (``critic_volume``: the slices cannot
#: show how pores connect; Berea's tortuosity +47 % -> +28 %, RESULTS §12.24) and trains with recipe
#: ``gulrajani2017-ttur`` (two critic updates per generator step, the critic at 4e-4: 1.0 steps/s instead of 0.5-0.6 at
#: 64^3, and Berea's tortuosity +7.8 % / +22 % of the real in 60 min over two seeds, §12.26-12.27). ``anisotropic``
#: (three critics) keeps recipe ``gulrajani2017-lr2e-4`` and no window critic, which is what its figures were measured
#: with (§12.16). A 2-D file trained with ``default`` gets its recipe too (the window critic does not apply to images).
#: On 32^2 blobs at matched steps (400) it is worse than the old recipe (S2 0.077 vs 0.020), but a step costs half as
#: much; at matched time (800 ttur steps in 24 s against 400 old-recipe steps in 21 s) it is better on S2 (0.011 vs
#: 0.020), one-pixel islands (0.88 vs 1.13 per image, real 0.64) and chord lengths (0.012 vs 0.018), worse on surface
#: area (-5.3 % vs -2.3 %) (§12.27, fifteenth session). The 2-D quickstart uses ``quick``.
#: ``default`` generates from the run's last checkpoint (``train.keep_best: false``): the validation score plateaus after
#: ~2500 steps of the hour on Berea while the tortuosity keeps falling, so the score's best (the low point of a noisy
#: plateau) was the worse checkpoint: +33.6 % / +13.1 % / +0.1 % / +3.6 % at steps 2500 (best) / 3000 / 3500 / 3950
#: (last) of one fp32 hour, +15.9 % at best (4000) against +2.7 % at last (5048) of a bf16 hour (RESULTS §12.34).
#: A recipe named with ``--recipe`` replaces a preset's.
_CPU_3D = {"z_dim": 8, "width": 16, "embed_dim": 16}
_CPU_OPTS = {"max_channels": 64, "slices_per_axis": 4, "exact_fractions": True}
_CPU_TRAIN = {"recipe": "gulrajani2017-lr2e-4", "batch_size": 4, "log_every": 10}
PRESETS: dict[str, dict[str, Any]] = {
    "default": {
        "model": {**_CPU_3D, "options": {"isotropic": True, **_CPU_OPTS, "critic_volume": 32}},
        "train": {**_CPU_TRAIN, "recipe": "gulrajani2017-ttur", "keep_best": False},
    },
    "slicegan": {
        "model": {"z_dim": 16, "width": 64, "embed_dim": 32, "options": {"isotropic": True, "exact_fractions": True}},
        "train": {"recipe": "gulrajani2017", "batch_size": 8},
    },
    "quick": {
        "model": {"z_dim": 8, "width": 16, "embed_dim": 16, "options": {"isotropic": True, "max_channels": 64, "exact_fractions": True}},
        "train": {
            "recipe": "gulrajani2017-lr2e-4",
            "steps": 400,
            "batch_size": 32,
            "val_every": 200,
            "ckpt_every": 200,
            "log_every": 25,
        },
    },
    "anisotropic": {
        "model": {**_CPU_3D, "options": {"isotropic": False, **_CPU_OPTS}},
        "train": dict(_CPU_TRAIN),
    },
}

DOMAIN = register_domain(
    Domain(
        name="micro",
        description="materials microstructures: segmented 2-D images / 3-D volumes (porespy generators, TIFF import, SliceGAN)",
        layouts=["micro"],
        make_transform=make_transform,
        build_generator=build_generator,
        build_critic=build_critic,
        condition_scales={"porosity": "linear", "blobiness": "linear", "radius": "linear"},
        features=sample_features,
        physics_metrics=physics_metrics,
        score=score,
        plots=plots,
        presets=PRESETS,
        model_options=MicroModelOptions,
        transform_options=MicroTransformOptions,
        add_make_arguments=add_make_arguments,
        make=make,
        add_import_arguments=add_import_arguments,
        import_=import_,
        quickstart={
            "make": {"generator": "blobs", "porosity": "0.2:0.6", "blobiness": "0.3:0.6", "shape": "32,32", "n": 1024},
            "preset": "quick",
        },
        detect=detect,
        condition_bounds=checks.BOUNDS,
        check_conditions=checks.check_conditions,
        import_suffixes=(".tif", ".tiff", ".zip"),
        complete_conditions=complete_conditions,
        moment_features=moment_features,
    )
)
