"""Toy simulators with known answers for the generic ``array`` domain.

* ``ring``: the classic 2-D ring of 8 Gaussians (radius as the condition);
  ``grid``: the 5 x 5 grid of Gaussians. Mode coverage is easy to check.
* ``blobs``: 2-D images of a Gaussian blob whose width is the condition, to
  exercise the convolutional path.
"""

from __future__ import annotations

import numpy as np

__all__ = ["ring_modes", "grid_modes", "sample_modes", "gaussian_blobs"]


def ring_modes(radius: float | np.ndarray = 2.0, n_modes: int = 8) -> np.ndarray:
    """Centres of ``n_modes`` Gaussians on a circle: (n_modes, 2) or (N, n_modes, 2)."""
    ang = 2 * np.pi * np.arange(n_modes) / n_modes
    unit = np.stack([np.cos(ang), np.sin(ang)], 1)
    r = np.asarray(radius, dtype=np.float64)
    return unit * r if r.ndim == 0 else unit[None] * r[:, None, None]


def grid_modes(spacing: float = 2.0) -> np.ndarray:
    """Centres of the 5 x 5 grid of Gaussians, (25, 2)."""
    g = (np.arange(5) - 2) * spacing
    return np.stack(np.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)


def sample_modes(n: int, kind: str = "ring", sigma: float = 0.05, radius_range: tuple[float, float] = (2.0, 2.0), seed: int = 0):
    """Draw ``n`` points of the ring (radius condition) or grid mixture.

    Returns
    -------
    x : (n, 2) float32
    c : (n, 1) float32 radius (ring) or spacing (grid)
    """
    rng = np.random.default_rng(seed)
    cond = rng.uniform(*radius_range, size=n)
    if kind == "ring":
        modes = ring_modes(cond)  # (n, 8, 2)
        k = rng.integers(0, modes.shape[1], n)
        centre = modes[np.arange(n), k]
    elif kind == "grid":
        base = grid_modes(1.0)
        k = rng.integers(0, len(base), n)
        centre = base[k] * cond[:, None]
    else:
        raise ValueError(f"unknown toy '{kind}'")
    x = centre + sigma * rng.standard_normal((n, 2))
    return x.astype(np.float32), cond[:, None].astype(np.float32)


def gaussian_blobs(n: int, size: int = 16, width_range: tuple[float, float] = (1.5, 4.0), seed: int = 0):
    """Images (n, size, size) of unit-sum Gaussian blobs with random centres; condition = width (pixels)."""
    rng = np.random.default_rng(seed)
    w = rng.uniform(*width_range, size=n)
    cx, cy = rng.uniform(size * 0.35, size * 0.65, (2, n))
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    img = np.exp(-((xx[None] - cx[:, None, None]) ** 2 + (yy[None] - cy[:, None, None]) ** 2) / (2 * w[:, None, None] ** 2))
    img /= img.sum((1, 2), keepdims=True)
    return img.astype(np.float32), w[:, None].astype(np.float32)
