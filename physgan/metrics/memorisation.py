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

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from physgan.errors import ConfigError
from physgan.metrics._common import as_matrix, default_dtype, distance_tiles, make_rng, resolve_device

__all__ = ["nearest_distances", "train_distances", "search_space", "SearchSpace", "memorisation_stats", "memorisation", "copied_mask"]


def nearest_distances(
    query, reference, *, block: int = 4096, device: str | torch.device = "auto", candidates: int = 4, fast: bool = True
) -> np.ndarray:
    """Euclidean distance of each query row to its nearest reference row (chunked matrix products).

    The search runs tile by tile as ``|q|² + |r|² − 2 q·r`` (one matrix product
    per tile), in float32 when ``fast`` (twice the speed of float64 on CPU);
    the ``candidates`` nearest rows found that way are then re-measured exactly
    in float64 as ``|q − r|``, so exact copies come out at distance 0 even
    though the fast search is inexact near 0. ``candidates=1`` keeps only the
    running minimum per tile (cheaper than a top-k); a copy is then still found
    unless the training set holds another row within the float32 rounding of
    the distances (~1e-3 standardised units) of it.

    Parameters
    ----------
    query, reference : array-like or torch.Tensor, shape (N, d) / (M, d)
    block : int
        Tile size (memory ~ block²).
    device : str or torch.device
    candidates : int
        Rows per query re-measured exactly (>= 1).
    fast : bool
        Search in float32 (else in the device's default precision).

    Returns
    -------
    numpy.ndarray, shape (N,)
    """
    dev = resolve_device(device)
    exact_dt = torch.float64 if dev.type == "cpu" else torch.float32
    search_dt = torch.float32 if fast else default_dtype(dev)

    def tensor(a, name):
        if isinstance(a, torch.Tensor):
            return a.to(device=dev, dtype=exact_dt)
        return torch.as_tensor(as_matrix(a, name, 1), dtype=exact_dt, device=dev)

    q, r = tensor(query, "query"), tensor(reference, "reference")
    qs, rs = q.to(search_dt), r.to(search_dt)
    k = max(1, min(int(candidates), len(r)))
    best = torch.full((len(q), k), float("inf"), dtype=search_dt, device=dev)
    arg = torch.zeros((len(q), k), dtype=torch.long, device=dev)
    for i0, j0, d in distance_tiles(qs, rs, block, squared=True, clamp=False):  # the winners are re-measured exactly
        rows = slice(i0, i0 + d.shape[0])
        if k == 1:
            val, idx = torch.min(d, dim=1)
            better = val < best[rows, 0]
            best[rows, 0] = torch.where(better, val, best[rows, 0])
            arg[rows, 0] = torch.where(better, idx + j0, arg[rows, 0])
            continue
        kk = min(k, d.shape[1])
        val, idx = torch.topk(d, kk, dim=1, largest=False)
        merged_v = torch.cat([best[rows], val], 1)
        merged_i = torch.cat([arg[rows], idx + j0], 1)
        top_v, pos = torch.topk(merged_v, k, dim=1, largest=False)
        best[rows] = top_v
        arg[rows] = torch.gather(merged_i, 1, pos)
    out = []
    step = max(1, min(block, 2**22 // max(1, k * q.shape[1])))  # bounded memory for the (b, k, d) gather
    for i in range(0, len(q), step):
        qb = q[i : i + step]
        cand = r[arg[i : i + step]]  # (b, k, d)
        out.append((qb[:, None, :] - cand).norm(dim=2).min(1).values)
    return torch.cat(out).double().cpu().numpy() if out else np.zeros(0)


@dataclass
class SearchSpace:
    """The affine map ``z = x @ weight + bias`` into the memorisation search space: the training
    rows standardised (mean, std) and, when they have more than ``dim`` features, projected onto
    their leading ``dim`` principal components."""

    weight: np.ndarray
    bias: np.ndarray
    variance_kept: float = 1.0

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Rows of ``x`` (N, d) in the search space (N, dim)."""
        return np.asarray(x, dtype=np.float64) @ self.weight + self.bias


def search_space(fit_rows: np.ndarray, dim: int | None) -> SearchSpace:
    """Fit the search space on training rows (at most a few thousand are needed).

    Parameters
    ----------
    fit_rows : numpy.ndarray, shape (n, d)
        Training rows (random ones of the training set).
    dim : int or None
        Principal components kept when ``d > dim`` (None: standardise only).

    Returns
    -------
    SearchSpace
    """
    a = as_matrix(fit_rows, "train", 1)
    mu, sd = a.mean(0), a.std(0)
    sd = np.where(sd > 0, sd, 1.0)
    if dim is None or a.shape[1] <= dim:
        return SearchSpace(np.diag(1.0 / sd), -mu / sd, 1.0)
    z = torch.as_tensor((a - mu) / sd, dtype=torch.float64)
    _, sv, vt = torch.linalg.svd(z - z.mean(0), full_matrices=False)
    basis = vt[:dim].T.numpy()
    var = sv.numpy() ** 2
    kept = float(var[:dim].sum() / var.sum()) if var.sum() > 0 else 1.0
    weight = basis / sd[:, None]
    return SearchSpace(weight, -(mu / sd) @ basis, kept)


def train_distances(
    train,
    queries: dict[str, object],
    *,
    max_train: int | None = 50000,
    dim: int | None = 128,
    block: int = 4096,
    seed: int | np.random.Generator = 0,
    device: str | torch.device = "auto",
    n_fit: int = 5000,
    max_queries: int | None = None,
    embed: Callable[[np.ndarray, SearchSpace | None], np.ndarray] | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Distance of every row of every query set to its nearest training row.

    The training set is searched once per query set; everything the memorisation
    check reports (and its errors, by resampling these distances) follows from
    the distances, because the training set stays fixed.

    Parameters
    ----------
    train : array-like, shape (N_train, d)
    queries : dict of array-like, each (N_q, d)
        E.g. ``{'fake': ..., 'heldout': ...}``.
    max_train : int or None
        Random subset of the training set searched (None: all). A subset makes
        every distance a little larger, for fakes and held-out reals alike, so
        the ratio and the copy fraction stay comparable; an exact copy of a
        training sample outside the subset is then missed (the exact-copy
        fraction is a lower bound scaled by ``max_train / N_train``).
    dim : int or None
        Principal components kept (of the standardised training set) when ``d``
        is larger: distances in the leading subspace, ~``d / dim`` times faster.
        Exact copies stay at distance 0.
    block : int
        Tile size of the search.
    seed : int or numpy.random.Generator
        Training subset and the rows the search space is fitted on.
    device : str or torch.device
    n_fit : int
        Training rows (random) the standardisation and the principal components are fitted on.
    max_queries : int or None
        Random subset of each query set searched (None: all); the distances returned are those
        of the subset (statistics of them then carry the error of that many samples).
    embed : callable, optional
        ``embed(rows, space)``: the representation of the training rows ``rows`` (indices into
        ``train``, which is then only asked for its length) when ``space`` is None, else their
        coordinates in ``space`` directly (e.g. one matrix product from the raw samples, without
        forming the representation of the whole training set).

    Returns
    -------
    distances : dict of numpy.ndarray
        Per query set, ``(N_q,)`` nearest-training distances in standardised units.
    info : dict
        ``n_train`` (rows searched), ``dim`` (dimension searched), ``variance_kept``.
    """
    rng = make_rng(seed)
    if embed is None:
        t = as_matrix(train, "train", 1)

        def embed(rows, space):
            return t[rows] if space is None else space(t[rows])

    n = len(train)
    rows = np.arange(n)
    if max_train is not None and n > max_train:
        rows = np.sort(rng.choice(n, max_train, replace=False))
    space = search_space(embed(rows[np.sort(rng.permutation(len(rows))[:n_fit])], None), dim)
    dev = resolve_device(device)
    tt = torch.as_tensor(embed(rows, space), device=dev)
    out = {}
    for name, q in queries.items():
        qm = as_matrix(q, name, 1)
        if qm.shape[1] != space.weight.shape[0]:
            raise ConfigError(f"memorisation: {name} has {qm.shape[1]} features, train has {space.weight.shape[0]}")
        if max_queries is not None and len(qm) > max_queries:
            qm = qm[np.sort(rng.choice(len(qm), max_queries, replace=False))]
        out[name] = nearest_distances(torch.as_tensor(space(qm), device=dev), tt, block=block, candidates=1)
    info = {"n_train": float(len(rows)), "dim": float(tt.shape[1]), "variance_kept": space.variance_kept}
    if max_queries is not None:
        info["max_queries"] = float(max_queries)
    return out, info


def memorisation_stats(d_heldout: np.ndarray, d_fake: np.ndarray, quantile: float = 0.01) -> dict[str, float]:
    """The memorisation check's numbers from nearest-training distances of held-out reals and fakes.

    Parameters
    ----------
    d_heldout, d_fake : numpy.ndarray
        Nearest-training distances (e.g. from :func:`train_distances`).
    quantile : float
        Held-out distance quantile below which a generated sample counts as a copy.

    Returns
    -------
    dict
        ``ratio``, ``copy_fraction``, ``exact_copy_fraction``, ``median_fake_distance``,
        ``median_heldout_distance`` (see the module docstring).
    """
    d_heldout = np.asarray(d_heldout, dtype=np.float64)
    d_fake = np.asarray(d_fake, dtype=np.float64)
    med_h = float(np.median(d_heldout))
    cut = float(np.quantile(d_heldout, quantile))
    return {
        "ratio": float(np.median(d_fake)) / med_h if med_h > 0 else float("inf"),
        "copy_fraction": float(np.mean(d_fake < cut)) if cut > 0 else float(np.mean(d_fake <= 0)),
        "exact_copy_fraction": float(np.mean(d_fake <= 1e-6 * med_h)),
        "median_fake_distance": float(np.median(d_fake)),
        "median_heldout_distance": med_h,
    }


def memorisation(
    train,
    fake,
    heldout,
    *,
    quantile: float = 0.01,
    max_samples: int | None = 50000,
    dim: int | None = None,
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
    dim : int or None
        Search in the training set's leading principal components (see :func:`train_distances`).
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
    rng = make_rng(seed)
    f = as_matrix(fake, "fake", 1)
    h = as_matrix(heldout, "heldout", 2)
    t = as_matrix(train, "train", 1)
    if not (t.shape[1] == f.shape[1] == h.shape[1]):
        raise ConfigError(f"memorisation: feature counts differ: train {t.shape[1]}, fake {f.shape[1]}, held-out {h.shape[1]}")
    if max_samples is not None:
        f, h = (a[np.sort(rng.choice(len(a), max_samples, replace=False))] if len(a) > max_samples else a for a in (f, h))
    d, _ = train_distances(t, {"fake": f, "heldout": h}, max_train=max_samples, dim=dim, block=block, seed=rng, device=device)
    return memorisation_stats(d["heldout"], d["fake"], quantile)


def copied_mask(train, fake, heldout, *, quantile: float = 0.01, block: int = 4096, device: str | torch.device = "auto") -> np.ndarray:
    """Boolean mask over ``fake``: True where a sample is closer to the training set than
    the ``quantile`` of held-out real samples are (suspected copies). No subsampling.
    """
    d, _ = train_distances(train, {"fake": fake, "heldout": heldout}, max_train=None, dim=None, block=block, device=device)
    return d["fake"] < np.quantile(d["heldout"], quantile)
