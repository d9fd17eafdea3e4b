"""The neighbour vote's weight fitted to a run's own data: the generated interface density matches the real one.

:func:`~physgan.domains.micro.fractions.harden` blends each voxel's log-probability with its
neighbours' (weight ``w``). ``w`` trades speckle (one-voxel chords and islands, removed by a
larger ``w``) against boundary roughness (the surface area, lowered by a larger ``w``). A fixed
``w`` (0.4) was chosen on porespy blobs; RESULTS.md §12.2 shows that no single fixed value meets
chords, islands and surface area together there, and a fixed value has no reason to suit
another material. :func:`calibrate_neighbour_weight` picks ``w`` per run instead: generated
probabilities at the training data's own conditions are hardened with every ``w`` of a grid,
and the ``w`` whose mean interface density is closest to the real samples' (linearly
interpolated between grid points) is returned. It is a fitted statistic of the run, stored in
the transform's ``stats['neighbour_weight']`` by :func:`calibrate_transform`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from physgan.domains.micro.fractions import harden

__all__ = ["WEIGHT_GRID", "interface_density", "calibrate_neighbour_weight", "calibrate_transform"]

#: weights tried (harden accepts [0, 0.5))
WEIGHT_GRID = tuple(round(0.025 * i, 3) for i in range(19))  # 0 .. 0.45


def interface_density(labels: torch.Tensor | np.ndarray) -> np.ndarray:
    """Per-sample fraction of face-neighbour voxel pairs with different labels, all axes pooled.

    Parameters
    ----------
    labels : Tensor or ndarray, shape (N, [d,] h, w)
        Phase labels.

    Returns
    -------
    ndarray (N,)
        In [0, 1]; proportional to the specific surface area of a two-phase structure.
    """
    lab = torch.as_tensor(np.asarray(labels) if not isinstance(labels, torch.Tensor) else labels)
    lab = lab.round().to(torch.int16)
    n = lab.shape[0]
    diff = torch.zeros(n, dtype=torch.float64)
    pairs = 0
    for ax in range(1, lab.dim()):
        d = lab.diff(dim=ax) != 0
        diff += d.reshape(n, -1).sum(dim=1, dtype=torch.float64)
        pairs += d[0].numel()
    return (diff / max(pairs, 1)).numpy()


def calibrate_neighbour_weight(
    prob: torch.Tensor, target: float, grid: tuple[float, ...] = WEIGHT_GRID
) -> tuple[float, dict[float, float]]:
    """The vote weight whose hardened labels of ``prob`` have mean interface density ``target``.

    Parameters
    ----------
    prob : Tensor, shape (B, P, [d,] h, w)
        Generated phase probabilities (the generator's softmax), at the conditions of the real
        samples that gave ``target``.
    target : float
        Mean :func:`interface_density` of those real samples.
    grid : tuple of float
        Increasing weights in [0, 0.5).

    Returns
    -------
    (weight, table)
        The weight (linear interpolation between the two grid points that bracket ``target``;
        the nearest end of the grid when none does) and ``{w: mean interface density}``.
    """
    if not 0 < target < 1:
        raise ValueError(f"calibrate_neighbour_weight: target interface density must be in (0, 1), got {target}")
    table = {float(w): float(interface_density(harden(prob, float(w))).mean()) for w in grid}
    ws = np.array(list(table))
    dens = np.array(list(table.values()))
    for i in range(len(ws) - 1):
        lo, hi = dens[i], dens[i + 1]
        if min(lo, hi) <= target <= max(lo, hi) and lo != hi:
            return float(ws[i] + (target - lo) / (hi - lo) * (ws[i + 1] - ws[i])), table
    return float(ws[int(np.argmin(np.abs(dens - target)))]), table


def calibrate_transform(
    transform,
    generate: Callable[[torch.Tensor], torch.Tensor],
    real: np.ndarray,
    conditions: np.ndarray,
    batch_size: int = 64,
) -> dict[float, float]:
    """Fit ``transform.stats['neighbour_weight']`` so generated interface density matches ``real``'s.

    Parameters
    ----------
    transform : OneHotTransform
        The run's fitted transform; its ``stats`` get ``neighbour_weight`` and
        ``interface_density_real``.
    generate : callable
        Physical conditions ``(b, k)`` -> generated probabilities ``(b, P, ...)`` (the run's
        generator with fixed seeds; model space, before hardening).
    real : ndarray (N, [d,] h, w)
        Real labels (a subset of the training data).
    conditions : ndarray (N, k)
        Their physical conditions.
    batch_size : int
        Generator batch.

    Returns
    -------
    dict
        ``{w: generated mean interface density}`` over :data:`WEIGHT_GRID`.
    """
    if len(real) != len(conditions) or not len(real):
        raise ValueError(f"calibrate_transform: {len(real)} real samples for {len(conditions)} condition rows")
    target = float(interface_density(real).mean())
    c = torch.as_tensor(np.asarray(conditions, dtype=np.float32))
    prob = torch.cat([generate(c[s : s + batch_size]).float().cpu() for s in range(0, len(c), batch_size)])
    w, table = calibrate_neighbour_weight(prob, target)
    transform.stats["neighbour_weight"] = w
    transform.stats["interface_density_real"] = target
    return table
