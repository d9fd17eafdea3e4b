"""Per-feature marginal distances (1-D W1 and separation power) for the value and every bootstrap round at once.

For each feature, :func:`~physgan.metrics.wasserstein.wasserstein_1d` integrates
``|F_real − F_fake|`` over the merged sorted values, and
:func:`~physgan.metrics.separation.separation_power_samples` compares
histograms on fixed bins. A bootstrap round resamples the rows with
replacement, which only changes how many times each original row counts.
So :class:`Marginals` sorts the merged columns and bins every value once, and
evaluates each round from the row multiplicities: the empirical CDFs are
cumulative sums of the multiplicities in the fixed sorted order, the
histograms are weighted bin counts. The numbers equal those of the two
functions applied to the resampled rows (to rounding); no round sorts anything.

Reported per round: ``w1/<name>`` (feature units), ``separation/<name>``,
``w1_norm_mean`` (mean over features of W1 in units of the round's real
standard deviation) and ``separation_mean``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from physgan.errors import ConfigError
from physgan.metrics._common import as_matrix
from physgan.metrics.separation import auto_edges

__all__ = ["Marginals"]


class _Pair:
    """The sorted merged columns and the bin of every value, for one (real, fake) pair."""

    def __init__(self, r: np.ndarray, f: np.ndarray, edges: list[np.ndarray]):
        self.n, self.m, self.d = len(r), len(f), r.shape[1]
        both = torch.as_tensor(np.concatenate([r, f], axis=0)).T.contiguous()  # (d, n + m)
        vals, self.order = torch.sort(both, dim=1, stable=True)
        self.gaps = torch.diff(vals, dim=1)  # (d, n + m - 1)
        self.offsets = np.concatenate([[0], np.cumsum([len(e) - 1 for e in edges])])
        n_bins = int(self.offsets[-1])
        # bins as np.histogram's: [e_i, e_i+1), the last one closed; values outside the edges: bin n_bins (dropped).
        # In sorted order each bin is one run of positions, found by searching the edges in the sorted column.
        sorted_vals = vals.numpy()
        sorted_bins = np.full((self.d, self.n + self.m), n_bins, dtype=np.int64)
        for j, e in enumerate(edges):
            pos = np.searchsorted(sorted_vals[j], e, side="left")
            pos[-1] = np.searchsorted(sorted_vals[j], e[-1], side="right")
            sorted_bins[j, pos[0] : pos[-1]] = np.repeat(np.arange(len(e) - 1) + self.offsets[j], np.diff(pos))
        bins = torch.empty((self.d, self.n + self.m), dtype=torch.int64)
        bins.scatter_(1, self.order, torch.as_tensor(sorted_bins))  # back to the original rows
        self.bins_r, self.bins_f, self.n_bins = bins[:, : self.n].reshape(-1).numpy(), bins[:, self.n :].reshape(-1).numpy(), n_bins
        self.is_real = self.order < self.n
        self.r = r - r.mean(axis=0)  # centred: the round's variance without cancellation
        self.r2 = self.r * self.r

    def round(self, ca: np.ndarray, cb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """W1, separation power and the real standard deviation per feature, from row multiplicities."""
        na, nb = ca.sum(), cb.sum()
        # F_real - F_fake along each sorted column = cumulative sum of the signed, normalised multiplicities
        signed = torch.as_tensor(np.concatenate([ca / na, -cb / nb]))[self.order]  # (d, n + m), one gather
        diff = torch.cumsum(signed, dim=1)[:, :-1].abs_()
        w1 = torch.einsum("ij,ij->i", diff, self.gaps).numpy()
        size = self.n_bins + 1
        ha = np.bincount(self.bins_r, weights=np.tile(ca.astype(np.float64), self.d), minlength=size)[:-1]  # feature-major
        hb = np.bincount(self.bins_f, weights=np.tile(cb.astype(np.float64), self.d), minlength=size)[:-1]
        sep = np.empty(self.d)
        for j in range(self.d):
            a, b = ha[self.offsets[j] : self.offsets[j + 1]], hb[self.offsets[j] : self.offsets[j + 1]]
            if a.sum() <= 0 or b.sum() <= 0:
                raise ConfigError("separation_power: histograms must be non-negative with a positive sum")
            a, b = a / a.sum(), b / b.sum()
            s = a + b
            k = s > 0
            sep[j] = 0.5 * np.sum((a[k] - b[k]) ** 2 / s[k])
        mean = ca @ self.r / na
        sd = np.sqrt(np.maximum(ca @ self.r2 / na - mean * mean, 0.0))
        return w1, sep, sd


class Marginals:
    """W1 and separation power of every feature as a metric for
    :func:`~physgan.metrics.bootstrap.with_floor`, all rounds of a pair evaluated from one sort.

    Parameters
    ----------
    names : list of str
        Feature names (columns).
    edges : dict, optional
        ``{name: bin edges}``; features without edges get :func:`~physgan.metrics.separation.auto_edges`
        of the real set of each pair.
    """

    def __init__(self, names: Sequence[str], edges: dict[str, np.ndarray] | None = None):
        self.names = list(names)
        self.edges = dict(edges or {})

    def __call__(self, real, fake) -> dict[str, float]:
        return self.rounds(real, fake, [(None, None)])[0]

    def rounds(self, real, fake, rounds) -> list[dict[str, float]]:
        """Each round's numbers; a round is ``(real_rows, fake_rows)`` (indices, repeats allowed; None: all)."""
        r, f = as_matrix(real, "real", 1), as_matrix(fake, "fake", 1)
        if r.shape[1] != f.shape[1] or r.shape[1] != len(self.names):
            raise ConfigError(f"marginals: real has {r.shape[1]} features, fake {f.shape[1]}, names {len(self.names)}")
        edges = [np.asarray(self.edges[k]) if k in self.edges else auto_edges(r[:, j]) for j, k in enumerate(self.names)]
        pair = _Pair(r, f, edges)
        out = []
        for ia, ib in rounds:
            ca = np.ones(len(r), np.int64) if ia is None else np.bincount(np.asarray(ia), minlength=len(r))
            cb = np.ones(len(f), np.int64) if ib is None else np.bincount(np.asarray(ib), minlength=len(f))
            w1, sep, sd = pair.round(ca, cb)
            res = {f"w1/{k}": float(v) for k, v in zip(self.names, w1)}
            res.update({f"separation/{k}": float(v) for k, v in zip(self.names, sep)})
            res["w1_norm_mean"] = float(np.mean(np.where(sd > 0, w1 / np.where(sd > 0, sd, 1.0), w1)))
            res["separation_mean"] = float(np.mean(sep))
            out.append(res)
        return out
