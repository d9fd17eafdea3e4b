"""Typed options of the micro domain: ``model.options`` (:mod:`.model`) and ``data.transform`` (:mod:`.transform`).

``resolve_config`` checks a run's options against these records (an unknown key is an error naming the
closest known one); the meaning of each is documented where it is used, the defaults are the code's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["MicroModelOptions", "MicroTransformOptions"]


@dataclass(frozen=True)
class MicroModelOptions:
    """``model.options`` of the SliceGAN-style generators and critics (see :mod:`physgan.domains.micro.model`)."""

    n_layers: int | None = None  # generator transposed convolutions (None: planned from the sample size)
    max_channels: int = 512
    exact_fractions: bool = False  # shift logits so soft phase fractions meet the conditions
    critic_layers: int = 5
    critic_stats: bool = False  # image statistics beside the critic's convolutions
    critic_euler: bool = False  # 3-D: the volume's soft Euler characteristic beside the slice critic (issue 14)
    critic_volume: int = 0  # 3-D: side of a random window scored by a small 3-D convolutional critic (0: off; issue 14)
    isotropic: bool = True  # one slice critic for the three axes of a volume
    slice_stride: int = 1
    slices_per_axis: int = 0  # 0: every slice
    scale_blur: bool = False  # generator: a Gaussian blur of the output logits whose width follows the conditions (issue 14)
    moment_hard: bool = False  # summaries of the hardened labels (straight-through); measured worse (RESULTS §12.11)


@dataclass(frozen=True)
class MicroTransformOptions:
    """``data.transform`` of :class:`physgan.domains.micro.transform.OneHotTransform`."""

    n_phases: int | None = None  # None: attrs['n_phases'] or the largest label + 1
    hardening: Literal["fraction", "argmax"] = "fraction"
    neighbour_weight: float | None = None  # None: the run's calibrated weight, else NEIGHBOUR_WEIGHT
