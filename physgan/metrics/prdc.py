"""Precision, recall, density and coverage (k-nearest-neighbour manifolds).

With ``r_i`` the distance of real sample ``X_i`` to its k-th nearest other real
sample and ``s_j`` the same for fake ``Y_j`` among fakes (N real, M fake):

* precision = (1/M) Σ_j 1[∃ i: |Y_j − X_i| ≤ r_i]   (fakes inside the real manifold)
* recall    = (1/N) Σ_i 1[∃ j: |X_i − Y_j| ≤ s_j]   (reals inside the fake manifold)
* density   = (1/(kM)) Σ_j Σ_i 1[|Y_j − X_i| ≤ r_i]  (≈ 1 for identical distributions)
* coverage  = (1/N) Σ_i 1[min_j |X_i − Y_j| ≤ r_i]

Balls are closed (``≤``) in all four, as in the papers' formulas; Naeem et al.'s
reference code uses ``<``, which differs only on exact ties (duplicated or
discrete samples, where ``<`` would put a sample outside its own manifold).
This module is the one implementation: the trainer's diagnostics
(:func:`physgan.train.diagnostics.manifold_scores`) call :func:`manifold`.

Many rounds at once
-------------------
An evaluation needs PRDC on the full sets and on many random subsets of them
(half-sampling errors). :func:`prdc_rounds` shares the work between rounds:

1. each set's ``neighbours`` nearest other rows (squared distances and indices)
   are found once, tile by tile. Within a subset, the k-th nearest other member
   of a row is the k-th member in that row's list, exactly, whenever the list
   holds at least k members of the subset; the few rows where it does not are
   searched again, exactly, against the subset alone;
2. one pass over the real-fake distances keeps the pairs closer than the
   largest radius either row or column has in any round (sparse), and every
   round's four numbers follow from those pairs. A tile with more such pairs
   than the budget allows (fakes far broader than the reals make every ball
   huge) is evaluated round by round on the spot instead. Both ways give the
   numbers of the definitions above on each subset, computed in the same space.

All pairwise distances are visited in tiles (bounded memory). Cost is
O((N + M)² d) once, instead of once per round.

References
----------
.. [1] M. F. Naeem, S. J. Oh, Y. Uh, Y. Choi, J. Yoo, "Reliable fidelity and
   diversity metrics for generative models", ICML 2020, arXiv:2002.09797.
.. [2] T. Kynkäänniemi et al., "Improved precision and recall metric for assessing
   generative models", NeurIPS 2019, arXiv:1904.06991.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from physgan.errors import ConfigError
from physgan.metrics._common import (
    as_matrix,
    distance_tiles,
    make_rng,
    normalise_pair,
    resolve_device,
)

__all__ = ["prdc", "prdc_rounds", "manifold", "neighbour_lists", "PRDC"]

KEYS = ("precision", "recall", "density", "coverage")
Round = tuple[np.ndarray | None, np.ndarray | None]


def neighbour_lists(x: torch.Tensor, n: int, block: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``n`` nearest *other* rows of every row of ``x``, nearest first (chunked).

    Parameters
    ----------
    x : torch.Tensor, shape (N, d)
    n : int
        List length (at most N - 1).
    block : int
        Tile size (memory ~ block²).

    Returns
    -------
    d2 : torch.Tensor, shape (N, n)
        Squared distances, ascending along each row.
    idx : torch.Tensor, shape (N, n), int64
        The rows they belong to.
    """
    n = min(int(n), len(x) - 1)
    if n < 1:
        raise ConfigError(f"k-NN lists need at least 2 samples, got {len(x)}")
    best_d = torch.full((len(x), n), float("inf"), dtype=x.dtype, device=x.device)
    best_i = torch.zeros((len(x), n), dtype=torch.long, device=x.device)
    for i0, j0, d2 in distance_tiles(x, x, block, squared=True):
        if i0 == j0:  # the row itself is no neighbour
            d2.diagonal().fill_(float("inf"))
        rows = slice(i0, i0 + len(d2))
        v, i = torch.topk(d2, min(n, d2.shape[1]), dim=1, largest=False, sorted=False)
        v, i = torch.cat([best_d[rows], v], 1), torch.cat([best_i[rows], i + j0], 1)
        v, pos = torch.topk(v, n, dim=1, largest=False, sorted=True)
        best_d[rows], best_i[rows] = v, torch.gather(i, 1, pos)
    return best_d, best_i


def _subset_radii2(x: torch.Tensor, lists: tuple[torch.Tensor, torch.Tensor], member: torch.Tensor | None, k: int,
                   block: int) -> torch.Tensor:
    """Squared k-NN radius of each member row within the subset ``member`` (bool mask; None: all rows);
    -1 for rows outside the subset (so that no distance is ever within their radius)."""
    d2, idx = lists
    if member is None:
        if d2.shape[1] < k:
            raise ConfigError(f"k-NN with k={k} needs more than {k} samples, got {len(x)}")
        return d2[:, k - 1].clone()
    inside = member[idx]  # (N, n): which listed neighbours are members
    count = torch.cumsum(inside.to(torch.int32), dim=1)
    hit = inside & (count == k)  # exactly one position per row that has k members listed
    found = hit.any(1)
    at = torch.gather(d2, 1, hit.to(torch.uint8).argmax(1, keepdim=True)).squeeze(1)
    r2 = torch.where(found, at, torch.full_like(at, -1.0))
    lacking = torch.nonzero(member & ~found).flatten()
    if len(lacking):  # rows whose list holds fewer than k members: exact search within the subset
        members = torch.nonzero(member).flatten()
        if len(members) <= k:
            raise ConfigError(f"k-NN with k={k} needs more than {k} samples, got {len(members)}")
        sub = x[members]
        for s0 in range(0, len(lacking), block):
            rows = lacking[s0 : s0 + block]
            best = None
            for _, j0, t in distance_tiles(x[rows], sub, block, squared=True):
                t = t.masked_fill(members[j0 : j0 + t.shape[1]][None, :] == rows[:, None], float("inf"))
                v = torch.topk(t, min(k, t.shape[1]), dim=1, largest=False).values
                best = v if best is None else torch.topk(torch.cat([best, v], 1), k, dim=1, largest=False).values
            r2[rows] = best[:, k - 1]
    return torch.where(member, r2, torch.full_like(r2, -1.0))


class _Tally:
    """Per-round counts of the four statistics, filled from pairs or from dense tiles."""

    def __init__(self, n_rounds: int, na: int, nb: int, device: torch.device):
        self.prec = torch.zeros((n_rounds, nb), dtype=torch.bool, device=device)  # fake j inside some real ball
        self.dens = torch.zeros((n_rounds, nb), dtype=torch.int64, device=device)  # real balls holding fake j
        self.rec = torch.zeros((n_rounds, na), dtype=torch.bool, device=device)  # real i inside some fake ball
        self.cov = torch.zeros((n_rounds, na), dtype=torch.bool, device=device)  # real ball i holds some fake

    def add_pairs(self, rho: int, ii: torch.Tensor, jj: torch.Tensor, in_a: torch.Tensor, in_b: torch.Tensor) -> None:
        ja, ia = jj[in_a], ii[in_a]
        self.prec[rho, ja] = True
        self.dens[rho].index_add_(0, ja, torch.ones_like(ja))
        self.cov[rho, ia] = True
        self.rec[rho, ii[in_b]] = True

    def add_tile(self, rho: int, rows: slice, cols: slice, in_a: torch.Tensor, in_b: torch.Tensor) -> None:
        self.prec[rho, cols] |= in_a.any(0)
        self.dens[rho, cols] += in_a.sum(0)
        self.cov[rho, rows] |= in_a.any(1)
        self.rec[rho, rows] |= in_b.any(1)


def prdc_rounds(
    real: torch.Tensor,
    fake: torch.Tensor,
    rounds: Sequence[Round],
    *,
    k: int = 5,
    block: int = 4096,
    neighbours: int = 16,
    pair_budget: int = 20_000_000,
    lists: tuple | None = None,
) -> list[dict[str, float]]:
    """PRDC of many subsets of one real and one fake set, sharing the k-NN searches (see the module docstring).

    Parameters
    ----------
    real, fake : torch.Tensor, shapes (N, d), (M, d)
        Features in the space the distances are measured in (no scaling is applied here).
    rounds : sequence of (real_rows, fake_rows)
        Row indices (distinct) of each round's subsets; None takes the whole set.
    k : int
        Neighbour rank of the radii.
    block : int
        Tile size of the distance computations.
    neighbours : int
        Length of the nearest-neighbour list kept per row (>= k); longer lists make the exact
        re-search of rows whose list holds fewer than k members of a subset rarer.
    pair_budget : int
        Most real-fake pairs kept; tiles beyond it are evaluated round by round.
    lists : tuple, optional
        ``(real_lists, fake_lists)`` from :func:`neighbour_lists` (computed when None).

    Returns
    -------
    list of dict
        ``precision``, ``recall``, ``density``, ``coverage`` per round.
    """
    if neighbours < k:
        raise ConfigError(f"prdc: the neighbour lists ({neighbours}) must be at least k={k} long")
    dev = real.device
    la, lb = lists if lists is not None else (None, None)
    la = la if la is not None else neighbour_lists(real, neighbours, block)
    lb = lb if lb is not None else neighbour_lists(fake, neighbours, block)

    def mask(rows, n):
        if rows is None:
            return None
        rows = np.asarray(rows)
        if len(np.unique(rows)) != len(rows):
            raise ConfigError("prdc: a round's rows repeat; k-NN statistics need distinct rows (half-sampling, not the bootstrap)")
        m = torch.zeros(n, dtype=torch.bool, device=dev)
        m[torch.as_tensor(rows, dtype=torch.long, device=dev)] = True
        return m

    masks_a = [mask(ra, len(real)) for ra, _ in rounds]
    masks_b = [mask(rb, len(fake)) for _, rb in rounds]
    ra2 = torch.stack([_subset_radii2(real, la, m, k, block) for m in masks_a])  # (R, N), -1 outside the subset
    rb2 = torch.stack([_subset_radii2(fake, lb, m, k, block) for m in masks_b])  # (R, M)
    full_a = torch.ones(len(real), dtype=torch.bool, device=dev)
    full_b = torch.ones(len(fake), dtype=torch.bool, device=dev)
    masks_a = [m if m is not None else full_a for m in masks_a]
    masks_b = [m if m is not None else full_b for m in masks_b]
    max_a, max_b = ra2.max(0).values, rb2.max(0).values
    tally = _Tally(len(rounds), len(real), len(fake), dev)
    pairs: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
    kept = 0
    for i0, j0, d2 in distance_tiles(real, fake, block, squared=True):
        rows, cols = slice(i0, i0 + d2.shape[0]), slice(j0, j0 + d2.shape[1])
        near = (d2 <= max_a[rows, None]) | (d2 <= max_b[None, cols])
        n_near = int(torch.count_nonzero(near))
        if kept + n_near <= pair_budget:
            ii, jj = torch.nonzero(near, as_tuple=True)
            pairs.append((ii + i0, jj + j0, d2[ii, jj]))
            kept += n_near
            continue
        for rho in range(len(rounds)):  # too many pairs: this tile round by round
            in_a = (d2 <= ra2[rho, rows, None]) & masks_b[rho][None, cols]
            in_b = (d2 <= rb2[rho, None, cols]) & masks_a[rho][rows, None]
            tally.add_tile(rho, rows, cols, in_a, in_b)
    if pairs:
        ii, jj, dd = (torch.cat(p) for p in zip(*pairs))
        for rho in range(len(rounds)):
            both = masks_a[rho][ii] & masks_b[rho][jj]
            tally.add_pairs(rho, ii, jj, both & (dd <= ra2[rho, ii]), both & (dd <= rb2[rho, jj]))
    out = []
    for rho in range(len(rounds)):
        na, nb = int(masks_a[rho].sum()), int(masks_b[rho].sum())
        out.append({
            "precision": float(tally.prec[rho].sum()) / nb,
            "recall": float(tally.rec[rho].sum()) / na,
            "density": float(tally.dens[rho].sum()) / (k * nb),
            "coverage": float(tally.cov[rho].sum()) / na,
        })  # fmt: skip
    return out


def manifold(real, fake, *, k: int = 5, block: int = 4096, dtype: torch.dtype = torch.float64) -> dict[str, float]:
    """PRDC of two feature sets as given (no subsampling, no scaling): the definitions in the module docstring.

    Parameters
    ----------
    real, fake : array-like or torch.Tensor, shapes (N, d), (M, d)
    k : int
    block : int
    dtype : torch.dtype
        Precision of the distances (float64: exact comparisons; float32: about twice as fast).

    Returns
    -------
    dict
        ``precision``, ``recall``, ``density``, ``coverage``.
    """
    a = real if isinstance(real, torch.Tensor) else torch.as_tensor(as_matrix(real, "real", k + 1))
    b = fake if isinstance(fake, torch.Tensor) else torch.as_tensor(as_matrix(fake, "fake", k + 1), device=a.device)
    a, b = a.to(dtype), b.to(dtype=dtype, device=a.device)
    if a.shape[1] != b.shape[1]:
        raise ConfigError(f"prdc: real has {a.shape[1]} features, fake has {b.shape[1]}")
    if len(a) <= k or len(b) <= k:
        raise ConfigError(f"prdc: k-NN with k={k} needs more than {k} samples per set, got {len(a)} and {len(b)}")
    return prdc_rounds(a, b, [(None, None)], k=k, block=block, neighbours=k)[0]


def prdc(
    real,
    fake,
    *,
    k: int = 5,
    max_samples: int | None = 10000,
    normalise: str | None = "std",
    block: int = 4096,
    seed: int | np.random.Generator = 0,
    device: str | torch.device = "auto",
) -> dict[str, float]:
    """Precision, recall, density and coverage of ``fake`` with respect to ``real``.

    Parameters
    ----------
    real, fake : array-like, shape (N, d) and (M, d)
        Per-sample features.
    k : int
        Neighbour rank defining the manifold radii (5 as in Naeem et al.).
    max_samples : int or None
        Random subset size per set (None: use all; cost grows as N²).
    normalise : {'std', 'max', None}
        Feature scaling from the real sample ('std' by default: features in
        different units would otherwise be dominated by the largest).
    block : int
        Tile size for distances (memory ~ block²).
    seed : int or numpy.random.Generator
        Subset selection.
    device : str or torch.device

    Returns
    -------
    dict
        ``precision``, ``recall``, ``density``, ``coverage``.

    References
    ----------
    Naeem et al., ICML 2020, arXiv:2002.09797.
    """
    r = as_matrix(real, "real", min_rows=k + 1)
    f = as_matrix(fake, "fake", min_rows=k + 1)
    if r.shape[1] != f.shape[1]:
        raise ConfigError(f"prdc: real has {r.shape[1]} features, fake has {f.shape[1]}")
    rng = make_rng(seed)
    if max_samples is not None:
        r, f = (a[np.sort(rng.choice(len(a), size=max_samples, replace=False))] if len(a) > max_samples else a for a in (r, f))
    r, f = normalise_pair(r, f, normalise)
    dev = resolve_device(device)
    # float32: radii comparisons need no more (features are standardised); twice as fast as float64 on CPU
    return manifold(torch.as_tensor(r, device=dev), torch.as_tensor(f, device=dev), k=k, block=block, dtype=torch.float32)


class PRDC:
    """PRDC as a metric for :func:`~physgan.metrics.bootstrap.with_floor` that evaluates all its rounds at once.

    The features are used as given (scale them once for every comparison beforehand, e.g. with
    :func:`~physgan.metrics.scaling.reference_scale`, so that the value, the floor and every
    half-sample round measure distances with the same ruler). Each set is first cut to a random
    subset of ``max_samples`` rows (drawn once, so the rounds are subsets of it); the k-NN lists
    of a set are computed once and reused by every call that passes the same array object.

    Parameters
    ----------
    k, block, neighbours, pair_budget
        See :func:`prdc_rounds`.
    max_samples : int or None
        Rows kept per set (None: all).
    seed : int
        Seed of the row subsets.
    device : str or torch.device
    dtype : torch.dtype
        Precision of the distances.
    """

    def __init__(self, *, k: int = 5, max_samples: int | None = 10000, block: int = 4096, neighbours: int = 16,
                 pair_budget: int = 20_000_000, seed: int = 0, device: str | torch.device = "auto",
                 dtype: torch.dtype = torch.float32):
        self.k, self.max_samples, self.block, self.neighbours, self.pair_budget = k, max_samples, block, neighbours, pair_budget
        self.seed, self.device, self.dtype = int(seed), resolve_device(device), dtype
        self._sets: dict[int, tuple[np.ndarray, np.ndarray, torch.Tensor, tuple]] = {}

    def _prepare(self, a: np.ndarray, name: str) -> tuple[np.ndarray, torch.Tensor, tuple]:
        """(rows kept, their features on the device, their k-NN lists), cached per array object."""
        got = self._sets.get(id(a))
        if got is not None and got[0] is a:
            return got[1], got[2], got[3]
        m = as_matrix(a, name, self.k + 1)
        keep = np.arange(len(m))
        if self.max_samples is not None and len(m) > self.max_samples:
            keep = np.sort(make_rng(self.seed + len(self._sets)).choice(len(m), self.max_samples, replace=False))
        x = torch.as_tensor(m[keep], dtype=self.dtype, device=self.device)
        lists = neighbour_lists(x, self.neighbours, self.block)
        self._sets[id(a)] = (a, keep, x, lists)  # the array itself is held, so its id is not reused
        return keep, x, lists

    def __call__(self, real, fake) -> dict[str, float]:
        return self.rounds(real, fake, [(None, None)])[0]

    def rounds(self, real, fake, rounds: Sequence[Round]) -> list[dict[str, float]]:
        """Each round's PRDC; a round's row indices refer to ``real`` / ``fake`` and are
        restricted to the kept subsets (a half of the full set is then a half of the subset)."""
        ka, xa, la = self._prepare(real, "real")
        kb, xb, lb = self._prepare(fake, "fake")
        if xa.shape[1] != xb.shape[1]:
            raise ConfigError(f"prdc: real has {xa.shape[1]} features, fake has {xb.shape[1]}")

        sub = [(_local(ra, ka), _local(rb, kb)) for ra, rb in rounds]
        return prdc_rounds(xa, xb, sub, k=self.k, block=self.block, neighbours=self.neighbours,
                           pair_budget=self.pair_budget, lists=(la, lb))


def _local(rows, keep: np.ndarray) -> np.ndarray | None:
    """Positions within ``keep`` (sorted original row numbers) of the original ``rows`` that were kept."""
    if rows is None:
        return None
    rows = np.asarray(rows)
    pos = np.searchsorted(keep, rows)
    ok = (pos < len(keep)) & (keep[np.minimum(pos, len(keep) - 1)] == rows)
    return np.unique(pos[ok])
