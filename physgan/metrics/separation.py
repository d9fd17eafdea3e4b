"""Separation power (triangular discrimination) of two histograms.

``S = ½ Σ_i (h1_i − h2_i)² / (h1_i + h2_i)`` with both histograms normalised to
unit sum (empty bins in both are skipped): 0 for identical, 1 for disjoint
histograms. This is the CaloChallenge's histogram metric.

Automatic binning (:func:`auto_edges`), from the *reference* (real) sample only:
if the feature takes at most ``max_bins`` distinct values, each seen four
times on average (a discrete feature), one bin per value;
otherwise equal-width bins over the reference's 0.5–99.5 % quantile range with
the width given by the Freedman–Diaconis rule ``2 IQR n^(-1/3)`` (n reference
samples), the number of bins clipped to [10, ``max_bins`` = 100]; one bin
for each tail of the reference beyond those quantiles (up to its min / max),
and one underflow and one overflow bin (−inf, +inf) so that no sample of
either set is dropped (they hold only samples outside the reference's range). Finite samples bias S upwards (≈ bins / N for equal
distributions): compare with the noise floor.

References
----------
.. [1] C. Krause et al., "CaloChallenge 2022", arXiv:2410.21611, eq. for separation power.
.. [2] F. Topsøe, "Some inequalities for information divergence and related measures
   of discrimination", IEEE Trans. Inf. Theory 46, 1602 (2000) (triangular discrimination).
.. [3] D. Freedman, P. Diaconis, "On the histogram as a density estimator: L2 theory",
   Z. Wahrscheinlichkeitstheorie verw. Gebiete 57, 453 (1981).
"""

from __future__ import annotations

import numpy as np

from physgan.errors import ConfigError
from physgan.metrics._common import as_matrix

__all__ = ["separation_power", "auto_edges", "separation_power_samples"]


def separation_power(h1, h2) -> float:
    """Separation power of two histograms (any normalisation; normalised to unit sum here).

    Parameters
    ----------
    h1, h2 : array-like
        Bin contents (counts or densities times width) over the same bins.

    Returns
    -------
    float
        ``½ Σ (h1 − h2)² / (h1 + h2)`` on unit-sum histograms, in [0, 1].
    """
    a = np.asarray(h1, dtype=np.float64).ravel()
    b = np.asarray(h2, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ConfigError(f"separation_power: histograms of {a.size} and {b.size} bins")
    if (a < 0).any() or (b < 0).any() or a.sum() <= 0 or b.sum() <= 0:
        raise ConfigError("separation_power: histograms must be non-negative with a positive sum")
    a, b = a / a.sum(), b / b.sum()
    s = a + b
    m = s > 0
    return float(0.5 * np.sum((a[m] - b[m]) ** 2 / s[m]))


def auto_edges(reference, max_bins: int = 100, min_bins: int = 10) -> np.ndarray:
    """Bin edges for one feature from the reference sample (see module docstring).

    Returns
    -------
    numpy.ndarray
        Increasing edges, starting with -inf and ending with +inf.
    """
    x = np.asarray(reference, dtype=np.float64).ravel()
    x = x[np.isfinite(x)]
    if x.size == 0:
        raise ConfigError("auto_edges: empty reference sample")
    values = np.unique(x)
    if values.size <= max_bins and values.size <= x.size // 4:  # discrete: values repeat
        if values.size == 1:
            inner = np.array([values[0] - 0.5, values[0] + 0.5])
        else:
            mids = (values[1:] + values[:-1]) / 2
            inner = np.concatenate([[values[0] - (mids[0] - values[0])], mids, [values[-1] + (values[-1] - mids[-1])]])
        return np.concatenate([[-np.inf], inner, [np.inf]])
    lo, hi = np.quantile(x, [0.005, 0.995])
    if hi <= lo:
        lo, hi = float(x.min()), float(x.max())
    q1, q3 = np.quantile(x, [0.25, 0.75])
    width = 2.0 * (q3 - q1) * x.size ** (-1.0 / 3.0)
    n_bins = int(np.clip(np.ceil((hi - lo) / width) if width > 0 else max_bins, min_bins, max_bins))
    inner = np.linspace(lo, hi, n_bins + 1)
    # the reference's own tails get one bin each, so the open-ended bins hold only samples
    # outside the reference's support (disjoint samples then give S = 1)
    tails = [v for v in (float(x.min()),) if v < inner[0]] + list(inner) + [v for v in (float(x.max()),) if v > inner[-1]]
    return np.concatenate([[-np.inf], np.nextafter(tails[:1], -np.inf), tails[1:-1], np.nextafter(tails[-1:], np.inf), [np.inf]])


def separation_power_samples(
    real, fake, *, names: list[str] | None = None, edges: dict | None = None, max_bins: int = 100, **_ignored
) -> dict[str, float]:
    """Separation power of the histograms of each feature, real vs fake.

    Parameters
    ----------
    real, fake : array-like, shape (N, d) / (M, d)
    names : list of str, optional
        Feature names (default ``f0, f1, ...``).
    edges : dict, optional
        ``{name: edges}`` to override the automatic binning of some features.
    max_bins : int
        Upper bound on automatic bins.
    **_ignored
        ``seed``/``device`` (deterministic, CPU).

    Returns
    -------
    dict
        ``{name: S}``.
    """
    r, f = as_matrix(real, "real", 1), as_matrix(fake, "fake", 1)
    if r.shape[1] != f.shape[1]:
        raise ConfigError(f"separation_power: real has {r.shape[1]} features, fake has {f.shape[1]}")
    names = list(names) if names is not None else [f"f{i}" for i in range(r.shape[1])]
    edges = edges or {}
    out = {}
    for j, name in enumerate(names):
        e = np.asarray(edges[name]) if name in edges else auto_edges(r[:, j], max_bins=max_bins)
        h1, _ = np.histogram(r[:, j], bins=e)
        h2, _ = np.histogram(f[:, j], bins=e)
        out[name] = separation_power(h1, h2)
    return out
