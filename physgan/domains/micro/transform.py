"""Phase labels <-> one-hot channels (the model space of microstructure GANs).

``forward``: labels ``(B, [d,] h, w)`` (float or int) -> one-hot ``(B, P, [d,] h, w)``
float32. ``inverse``: phase probabilities -> labels as float32, by
:func:`~physgan.domains.micro.fractions.harden` (two phases: the hard phase fractions
equal the soft ones to within half a voxel; option ``hardening='argmax'`` restores the
per-voxel argmax).
Generators end in a softmax over phases, as in SliceGAN (Kench & Cooper 2021).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from physgan.domains.base import Transform, typed_options
from physgan.domains.micro.fractions import NEIGHBOUR_WEIGHT, harden
from physgan.domains.micro.options import MicroTransformOptions
from physgan.domains.micro.summaries import fit_summary_stats
from physgan.errors import DataError

__all__ = ["OneHotTransform", "FIT_SUMMARY_SAMPLES"]

#: training samples the summary statistics are fitted on (their mean and spread)
FIT_SUMMARY_SAMPLES = 256


class OneHotTransform(Transform):
    """One-hot encoding of ``n_phases`` integer labels.

    Options
    -------
    n_phases : int, optional
        Fixed number of phases; otherwise ``attrs['n_phases']`` at ``fit``, or the
        largest label + 1 in the data.
    hardening : str, optional
        ``'fraction'`` (default; :func:`~physgan.domains.micro.fractions.harden`) or ``'argmax'``
        (per-voxel argmax, as before issue 14).
    neighbour_weight : float, optional
        Weight of the neighbours' vote in ``'fraction'`` hardening (0 = none). Default: the run's
        calibrated weight ``stats['neighbour_weight']`` when
        :func:`~physgan.domains.micro.calibration.calibrate_transform` fitted one, else 0.4.
    """

    name = "onehot"

    def fit(self, x: np.ndarray, c: np.ndarray | None = None, attrs: dict[str, Any] | None = None) -> Transform:
        n = self.typed.n_phases or (attrs or {}).get("n_phases")
        if n is None:
            n = int(np.max(x)) + 1 if np.size(x) else 2
        n = int(n)
        if np.size(x) and (np.max(x) > n - 1 or np.min(x) < 0):
            raise DataError("<training data>", f"labels span {np.min(x)}..{np.max(x)} but n_phases = {n}")
        self.stats = {"n_phases": max(n, 2)}
        if np.size(x) and np.ndim(x) >= 3:  # the summaries moment matching pins (physgan.domains.micro.summaries)
            sub = np.asarray(x[:FIT_SUMMARY_SAMPLES])
            self.stats.update(fit_summary_stats(self.forward(torch.as_tensor(sub))))
        return self

    @property
    def typed(self) -> MicroTransformOptions:
        """``data.transform`` as the domain's typed record (each default written once, there)."""
        return typed_options(MicroTransformOptions, self.options, "data.transform")

    @property
    def n_phases(self) -> int:
        if "n_phases" not in self.stats:
            raise RuntimeError("OneHotTransform is not fitted (call fit or load_state_dict)")
        return int(self.stats["n_phases"])

    def model_shape(self, sample_shape: tuple[int, ...]) -> tuple[int, ...]:
        return (self.n_phases, *tuple(sample_shape))

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        lab = torch.as_tensor(x).round().long().clamp_(0, self.n_phases - 1)
        onehot = torch.nn.functional.one_hot(lab, self.n_phases)  # (B, ..., P)
        return onehot.movedim(-1, 1).to(torch.float32)

    def inverse(self, y: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        y = torch.as_tensor(y)
        if self.typed.hardening == "argmax":
            return y.argmax(dim=1).to(torch.float32)
        return harden(y, self.neighbour_weight).to(torch.float32)

    @property
    def neighbour_weight(self) -> float:
        """The vote weight used: the option if set, else the calibrated ``stats`` value, else :data:`NEIGHBOUR_WEIGHT`."""
        w = self.typed.neighbour_weight
        if w is None:
            w = self.stats.get("neighbour_weight", NEIGHBOUR_WEIGHT)
        return float(w)
