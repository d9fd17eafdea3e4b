"""Differentiable morphology summaries of (soft) phase images: what conditional moment matching pins.

A porespy blob image's texture scale (its ``blobiness``) sets how often a line crosses an interface
and how fast the two-point function S2(r) decays; RESULTS.md §12.5 shows the critic alone never taught
the generator to follow it (slope 0.00-0.06, real 0.94). :class:`MicroSummaries` maps model-space
samples ``(B, P, [d,] h, w)`` (one-hot for real data, softmax probabilities for generated ones) to,
per phase, the interface density (mean |p(i+1) - p(i)| over neighbour pairs, all axes) and S2 at
:data:`RADII` voxels (mean of p(i) p(i+r), all axes, non-periodic), standardised with the training
data's mean and spread (fitted by the transform, :func:`fit_summary_stats`). Volumes (3-D samples) add,
per phase, the Euler characteristic per voxel (:func:`~physgan.nn.topology.soft_euler_density`,
26-connectivity, cells inside the volume only): their connectivity, which no slice of them shows (RESULTS §12.22). With
``train.moment_weight > 0`` the engine (:mod:`physgan.train.moments`) drives the generator's mean
summaries, and their slopes against every condition, to the data's.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from physgan.domains.base import ModelSpec
from physgan.domains.micro.fractions import harden
from physgan.errors import ConfigError
from physgan.nn.topology import soft_euler_density

__all__ = [
    "RADII",
    "summary_phases",
    "soft_summaries",
    "fit_summary_stats",
    "straight_through_hard",
    "MicroSummaries",
    "moment_features",
]

#: S2 radii (voxels) among the summaries (those below half the smallest side)
RADII = (1, 2, 4, 8)


def summary_phases(n_phases: int) -> list[int]:
    """Phases summarised: phase 0 alone for two phases (the other is its complement), else all."""
    return [0] if n_phases == 2 else list(range(n_phases))


def _radii(spatial: tuple[int, ...]) -> list[int]:
    return [r for r in RADII if r < min(spatial) // 2]


def soft_summaries(x: torch.Tensor) -> torch.Tensor:
    """``(B, F)`` summaries of phase probabilities ``x`` (B, P, [d,] h, w): per phase, interface density and S2(r)
    (and, for volumes, the Euler characteristic per voxel).

    All reduce to the usual estimators for one-hot input (the fraction of neighbour pairs that differ;
    the non-periodic S2 averaged over axes; scikit-image's ``euler_number`` with 26-connectivity).
    """
    spatial = tuple(x.shape[2:])
    out = []

    def along(p: torch.Tensor, r: int, fn) -> torch.Tensor:  # mean over axes of mean fn(p(i + r), p(i))
        parts = [fn(p.narrow(a, r, p.shape[a] - r), p.narrow(a, 0, p.shape[a] - r)).flatten(1).mean(1) for a in range(1, p.dim())]
        return torch.stack(parts).mean(0)

    for k in summary_phases(x.shape[1]):
        p = x[:, k]
        out.append(along(p, 1, lambda a, b: (a - b).abs()))
        out += [along(p, r, torch.mul) for r in _radii(spatial)]
        if len(spatial) == 3:
            out.append(soft_euler_density(p, 3))
    return torch.stack(out, dim=1)


def fit_summary_stats(onehot: torch.Tensor, batch: int = 64) -> dict[str, Any]:
    """``{'summary_mean', 'summary_std'}`` (lists) of :func:`soft_summaries` over training samples ``onehot``."""
    with torch.no_grad():
        f = torch.cat([soft_summaries(onehot[s : s + batch].float()) for s in range(0, len(onehot), batch)]).double()
    std = f.std(dim=0) if len(f) > 1 else torch.ones(f.shape[1], dtype=torch.float64)
    std = torch.where(std > 1e-6, std, torch.ones_like(std))
    return {"summary_mean": f.mean(dim=0).tolist(), "summary_std": std.tolist()}


def straight_through_hard(x: torch.Tensor) -> torch.Tensor:
    """One-hot of :func:`~physgan.domains.micro.fractions.harden` (what a user gets) forward, the soft ``x``'s gradient backward.

    Unchanged for one-hot input (real data), so real and generated summaries are measured alike.
    """
    hard = F.one_hot(harden(x.detach()), x.shape[1]).movedim(-1, 1).to(x.dtype)
    return hard + x - x.detach()


class MicroSummaries(nn.Module):
    """``x (B, P, [d,] h, w) -> (B, F)``: :func:`soft_summaries` in units of the training data's spread.

    With ``options['moment_hard']`` the summaries are taken of the hardened labels (straight-through
    gradient, :func:`straight_through_hard`): speckle the hardening leaves then counts against the
    generator, where soft summaries of blurred probabilities reward extra boundaries.
    """

    def __init__(self, spec: ModelSpec):
        super().__init__()
        self.hard = bool((spec.options or {}).get("moment_hard", False))
        stats = spec.data_stats or {}
        if "summary_mean" not in stats:
            raise ConfigError(
                "micro: train.moment_weight > 0 needs the training data's summary statistics, which this run's transform "
                "did not fit (a run made before they existed); start a new run"
            )
        self.register_buffer("mean", torch.as_tensor(np.asarray(stats["summary_mean"], np.float32)))
        self.register_buffer("std", torch.as_tensor(np.asarray(stats["summary_std"], np.float32)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = soft_summaries(straight_through_hard(x) if self.hard else x)
        if f.shape[1] != self.mean.shape[0]:
            raise ConfigError(f"micro summaries: {f.shape[1]} summaries of samples {tuple(x.shape[1:])}, {self.mean.shape[0]} fitted")
        return (f - self.mean) / self.std


def moment_features(spec: ModelSpec) -> nn.Module:
    """Domain hook: the summaries conditional moment matching pins (:class:`MicroSummaries`)."""
    return MicroSummaries(spec)
