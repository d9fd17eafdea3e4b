"""Memorisation check: are generated samples closer to the training set than new real samples are?

For every generated sample we find the distance to its nearest training sample
(``d_fake``), and the same for held-out real samples never used in training
(``d_heldout``). A generator that generalises gives the two distance
distributions the same shape; one that copies training samples gives many
``d_fake`` far below the held-out ones. Reported:

* ``ratio``: median(d_fake) / median(d_heldout) (≈ 1 fine, ≪ 1 memorised),
* ``copy_fraction``: fraction of generated samples with ``d_fake`` below the
  1 % quantile of ``d_heldout`` (≈ 0.01 expected without memorisation),
* ``exact_copy_fraction``: fraction with ``d_fake`` ≤ ``1e-6`` × median(d_heldout).

Features are standardised with the training sample's statistics. Distances
are computed tile by tile on the device (bounded memory; cost ~ N_query ×
N_train × d; ``max_samples`` caps each set by a random subset).

References
----------
.. [1] C. Meehan, K. Chaudhuri, S. Dasgupta, "A non-parametric test to detect
   data-copying in generative models", AISTATS 2020, arXiv:2004.05675.
.. [2] G. Somepalli et al., "Diffusion art or digital forgery? Investigating data
   replication in diffusion models", CVPR 2023, arXiv:2212.03860.
"""

from __future__ import annotations

import numpy as np
import torch

from physgan.errors import ConfigError
from physgan.metrics._common import as_matrix, default_dtype, distance_tiles, make_rng, resolve_device

__all__ = ["nearest_distances", "memorisation", "copied_mask"]


def nearest_distances(query, reference, *, block: int = 4096, device: str | torch.device = "auto") -> np.ndarray:
    """Euclidean distance of each query row to its nearest reference row (chunked).

    Parameters
    ----------
    query, reference : array-like or torch.Tensor, shape (N, d) / (M, d)
    block : int
        Tile size (memory ~ block²).
    device : str or torch.device

    Returns
    -------
    numpy.ndarray, shape (N,)
    """
    dev = resolve_device(device)
    dt = default_dtype(dev)
    q = query if isinstance(query, torch.Tensor) else torch.as_tensor(as_matrix(query, "query", 1), dtype=dt, device=dev)
    r = reference if isinstance(reference, torch.Tensor) else torch.as_tensor(as_matrix(reference, "reference", 1), dtype=dt, device=dev)
    best = torch.full((len(q),), float("inf"), dtype=q.dtype, device=q.device)
    arg = torch.zeros(len(q), dtype=torch.long, device=q.device)
    for i0, j0, d in distance_tiles(q, r, block):
        rows = slice(i0, i0 + d.shape[0])
        val, idx = d.min(1)
        better = val < best[rows]
        best[rows] = torch.where(better, val, best[rows])
        arg[rows] = torch.where(better, idx + j0, arg[rows])
    # the tiles use |q|^2 + |r|^2 - 2 q.r (fast, but inexact near 0): recompute the winners directly
    exact = torch.cat([(q[i : i + block] - r[arg[i : i + block]]).norm(dim=1) for i in range(0, len(q), block)])
    return exact.double().cpu().numpy()


def _prepare(train, fake, heldout, max_samples, rng):
    t = as_matrix(train, "train", 1)
    f = as_matrix(fake, "fake", 1)
    h = as_matrix(heldout, "heldout", 2)
    if not (t.shape[1] == f.shape[1] == h.shape[1]):
        raise ConfigError(f"memorisation: feature counts differ: train {t.shape[1]}, fake {f.shape[1]}, held-out {h.shape[1]}")
    if max_samples is not None:
        t, f, h = (a[np.sort(rng.choice(len(a), max_samples, replace=False))] if len(a) > max_samples else a for a in (t, f, h))
    mu, sd = t.mean(0), t.std(0)
    sd = np.where(sd > 0, sd, 1.0)
    return (t - mu) / sd, (f - mu) / sd, (h - mu) / sd


def memorisation(
    train,
    fake,
    heldout,
    *,
    quantile: float = 0.01,
    max_samples: int | None = 50000,
    block: int = 4096,
    seed: int | np.random.Generator = 0,
    device: str | torch.device = "auto",
) -> dict[str, float]:
    """Compare nearest-training-sample distances of generated and held-out real samples.

    Parameters
    ----------
    train : array-like, shape (N_train, d)
        The samples the generator was trained on (features or flattened samples).
    fake : array-like, shape (N_fake, d)
        Generated samples.
    heldout : array-like, shape (N_real, d)
        Real samples not used in training.
    quantile : float
        Held-out distance quantile below which a generated sample counts as a copy.
    max_samples : int or None
        Random subset cap per set.
    block : int
        Distance tile size.
    seed : int or numpy.random.Generator
    device : str or torch.device

    Returns
    -------
    dict
        ``ratio``, ``copy_fraction``, ``exact_copy_fraction``,
        ``median_fake_distance``, ``median_heldout_distance`` (standardised units).

    References
    ----------
    Meehan et al., arXiv:2004.05675.
    """
    t, f, h = _prepare(train, fake, heldout, max_samples, make_rng(seed))
    dev = resolve_device(device)
    dt = default_dtype(dev)
    tt = torch.as_tensor(t, dtype=dt, device=dev)
    d_fake = nearest_distances(torch.as_tensor(f, dtype=dt, device=dev), tt, block=block)
    d_held = nearest_distances(torch.as_tensor(h, dtype=dt, device=dev), tt, block=block)
    med_h = float(np.median(d_held))
    cut = float(np.quantile(d_held, quantile))
    return {
        "ratio": float(np.median(d_fake)) / med_h if med_h > 0 else float("inf"),
        "copy_fraction": float(np.mean(d_fake < cut)) if cut > 0 else float(np.mean(d_fake <= 0)),
        "exact_copy_fraction": float(np.mean(d_fake <= 1e-6 * med_h)),
        "median_fake_distance": float(np.median(d_fake)),
        "median_heldout_distance": med_h,
    }


def copied_mask(train, fake, heldout, *, quantile: float = 0.01, block: int = 4096, device: str | torch.device = "auto") -> np.ndarray:
    """Boolean mask over ``fake``: True where a sample is closer to the training set than
    the ``quantile`` of held-out real samples are (suspected copies). No subsampling.
    """
    t, f, h = _prepare(train, fake, heldout, None, make_rng(0))
    dev = resolve_device(device)
    dt = default_dtype(dev)
    tt = torch.as_tensor(t, dtype=dt, device=dev)
    d_fake = nearest_distances(torch.as_tensor(f, dtype=dt, device=dev), tt, block=block)
    d_held = nearest_distances(torch.as_tensor(h, dtype=dt, device=dev), tt, block=block)
    return d_fake < np.quantile(d_held, quantile)
