"""Axis helpers shared by the report figures."""

from __future__ import annotations

import numpy as np

__all__ = ["ratio_limits", "set_ratio_axis"]


def ratio_limits(ratio, err=None, *, base: tuple[float, float] = (0.5, 1.5), pad: float = 0.05) -> tuple[float, float, bool]:
    """Y range of a generated/real ratio panel that shows every finite point (with its error bar) and 1.

    Parameters
    ----------
    ratio : array-like
        Ratios (NaN/inf ignored).
    err : array-like, optional
        Their errors (bars drawn as ratio ± err).
    base : tuple of float
        The range used when every point fits in it.
    pad : float
        Fraction of the range added on both sides.

    Returns
    -------
    lo, hi : float
        Limits.
    log : bool
        True when the points span more than a factor 10 and are all positive
        (a log axis then shows 0.05 and 1 alike).
    """
    r = np.asarray(ratio, dtype=np.float64).ravel()
    e = np.zeros_like(r) if err is None else np.nan_to_num(np.asarray(err, dtype=np.float64).ravel(), nan=0.0, posinf=0.0)
    ok = np.isfinite(r)
    if not ok.any():
        return base[0], base[1], False
    lo_pts, hi_pts = r[ok] - e[ok], r[ok] + e[ok]
    pos = r[ok][r[ok] > 0]
    if pos.size == ok.sum() and pos.size and max(pos.max(), 1.0) / min(pos.min(), 1.0) > 10:
        lo, hi = min(pos.min(), 1.0), max(pos.max(), 1.0)
        return lo / 1.5, hi * 1.5, True
    lo = min(base[0], float(lo_pts.min()))
    hi = max(base[1], float(hi_pts.max()))
    span = hi - lo
    return lo - pad * span, hi + pad * span, False


def set_ratio_axis(ax, ratio, err=None, **kw) -> None:
    """Apply :func:`ratio_limits` to a matplotlib axis (log scale when it says so)."""
    lo, hi, log = ratio_limits(ratio, err, **kw)
    if log:
        ax.set_yscale("log")
    ax.set_ylim(lo, hi)
