"""Shared helpers of the generic metrics: device choice, input checks, chunked distances.

Private to :mod:`physgan.metrics`; nothing here is a metric.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from physgan.device import resolve_device  # noqa: F401  (re-exported: the metrics' device choice is the engine's)
from physgan.errors import ConfigError

__all__ = ["resolve_device", "as_matrix", "make_rng", "normalise_pair", "distance_tiles", "knn_radius", "default_dtype"]


def default_dtype(device: torch.device) -> torch.dtype:
    """float64 on CPU (exact enough to flag copies), float32 on accelerators (fast)."""
    return torch.float64 if device.type == "cpu" else torch.float32


def as_matrix(x, name: str = "x", min_rows: int = 2) -> np.ndarray:
    """Return ``x`` as a finite float64 ``(N, d)`` array (1-D input becomes one column).

    Raises
    ------
    ConfigError
        If ``x`` has fewer than ``min_rows`` rows or holds NaN/Inf.
    """
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 1:
        a = a[:, None]
    elif a.ndim > 2:
        a = a.reshape(len(a), -1)
    if a.ndim != 2 or a.shape[0] < min_rows:
        raise ConfigError(f"{name}: need at least {min_rows} samples of shape (N, d), got shape {np.shape(x)}")
    if not np.isfinite(a).all():
        row = int(np.argwhere(~np.isfinite(a))[0][0])
        raise ConfigError(f"{name}: non-finite value in sample {row}")
    return a


def make_rng(seed: int | np.random.Generator | None) -> np.random.Generator:
    """A numpy Generator from an int seed (or the generator itself)."""
    if isinstance(seed, np.random.Generator):
        return seed
    return np.random.default_rng(0 if seed is None else int(seed))


def normalise_pair(real: np.ndarray, fake: np.ndarray, mode: str | None) -> tuple[np.ndarray, np.ndarray]:
    """Scale both samples with statistics of ``real`` only.

    ``'max'``: divide each feature by max |real| (jetnet's convention for FPD/KPD);
    ``'std'``: subtract the real mean and divide by the real standard deviation;
    None/``'none'``: unchanged. Constant features are left unscaled.
    """
    if real.shape[1] != fake.shape[1]:
        raise ConfigError(f"real has {real.shape[1]} features, fake has {fake.shape[1]}")
    if mode in (None, "none", False):
        return real, fake
    if mode == "max":
        scale = np.max(np.abs(real), axis=0)
        scale = np.where(scale > 0, scale, 1.0)
        return real / scale, fake / scale
    if mode == "std":
        mu = real.mean(axis=0)
        sd = real.std(axis=0)
        sd = np.where(sd > 0, sd, 1.0)
        return (real - mu) / sd, (fake - mu) / sd
    raise ConfigError(f"unknown normalisation '{mode}'; use 'max', 'std' or None")


def distance_tiles(
    x: torch.Tensor, y: torch.Tensor, block: int = 4096, squared: bool = False, clamp: bool = True
) -> Iterator[tuple[int, int, torch.Tensor]]:
    """Yield ``(i0, j0, D)`` with ``D[a, b] = ||x[i0 + a] - y[j0 + b]||`` (Euclidean), tile by tile.

    ``squared=True`` yields squared distances (no square root: enough for ranking);
    ``clamp=False`` (squared only) leaves rounding below 0 unclipped (enough for a minimum
    that is re-measured exactly afterwards; one pass less per tile).

    Memory is bounded by ``block**2`` entries whatever ``len(x)`` and ``len(y)``:
    no N x N matrix is ever formed. Each tile is one matrix product of the rows
    extended by their squared norms, ``[x, |x|², 1] · [−2y, 1, |y|²]``, so that
    no element-wise pass adds the norms afterwards.
    """
    one_x = torch.ones((len(x), 1), dtype=x.dtype, device=x.device)
    one_y = torch.ones((len(y), 1), dtype=y.dtype, device=y.device)
    xa = torch.cat([x, (x * x).sum(1, keepdim=True), one_x], 1)
    ya = torch.cat([-2.0 * y, one_y, (y * y).sum(1, keepdim=True)], 1)
    for i0 in range(0, len(x), block):
        xb = xa[i0 : i0 + block]
        for j0 in range(0, len(y), block):
            d2 = xb @ ya[j0 : j0 + block].T
            if clamp or not squared:
                d2.clamp_min_(0.0)
            yield i0, j0, d2 if squared else d2.sqrt_()


def knn_radius(x: torch.Tensor, k: int, block: int = 4096) -> torch.Tensor:
    """Distance of each row of ``x`` to its k-th nearest *other* row (chunked)."""
    if k >= len(x):
        raise ConfigError(f"k-NN with k={k} needs more than {k} samples, got {len(x)}")
    best = torch.full((len(x), k + 1), float("inf"), dtype=x.dtype, device=x.device)
    for i0, _j0, d2 in distance_tiles(x, x, block, squared=True):
        rows = slice(i0, i0 + len(d2))
        # the tile's own k+1 smallest first (one pass over the tile), then merged with the running best
        tile = torch.topk(d2, min(k + 1, d2.shape[1]), dim=1, largest=False).values
        merged = torch.cat([best[rows], tile], dim=1)
        best[rows] = torch.topk(merged, k + 1, dim=1, largest=False).values
    # column 0 is the point itself (distance 0); the k-th other neighbour is column k
    return best[:, k].sqrt()
