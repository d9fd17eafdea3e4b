"""Figures comparing real and generated density fields (PNG, matplotlib Agg).

``plots(real, fake, attrs, outdir)`` writes the figures and returns
``[(title, path), ...]``: slices side by side at matching conditions, P(k)
with a ratio panel whose range follows the data, the density PDF of
log(1 + delta), the peak-height distribution and (when a condition varies)
the conditioning response P(k; high θ)/P(k; low θ) of simulator and generator.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.ticker import NullFormatter

from physgan.domains.nbody.metrics import _box, _fields, log_density, peak_heights, pk_ratio
from physgan.report.axes import set_ratio_axis

__all__ = [
    "plots",
    "plot_slices",
    "plot_power_spectrum",
    "pdf_histograms",
    "plot_pdf",
    "plot_peaks",
    "matched_pairs",
    "conditioning_response",
    "plot_conditioning_response",
]


def _plt():
    import matplotlib.pyplot as plt

    return plt


def _slice2d(f: np.ndarray) -> np.ndarray:
    return f if f.ndim == 2 else f[f.shape[0] // 2]


def matched_pairs(cr: np.ndarray | None, cf: np.ndarray | None, n_real: int, n_fake: int, n: int) -> list[tuple[int, int]]:
    """``n`` (real index, generated index) pairs at (nearly) the same conditions.

    Real fields are picked evenly over the range of the first condition; each gets the
    generated field whose conditions (standardised by the real spread) are nearest.
    Without conditions: the first ``n`` of each.
    """
    n = max(1, min(n, n_real, n_fake))
    if cr is None or cf is None or cr.size == 0 or cf.size == 0 or cr.shape[1] != cf.shape[1]:
        return [(i, i) for i in range(n)]
    order = np.argsort(cr[:, 0], kind="stable")
    picks = order[np.linspace(0, len(order) - 1, n).round().astype(int)]
    sd = cr.std(axis=0)
    sd = np.where(sd > 0, sd, 1.0)
    out = []
    for i in picks:
        j = int(np.argmin((((cf - cr[i]) / sd) ** 2).sum(axis=1)))
        out.append((int(i), j))
    return out


def plot_slices(
    real: np.ndarray, fake: np.ndarray, path: Path, n: int = 4, cr: np.ndarray | None = None, cf: np.ndarray | None = None,
    names: list[str] | None = None,
) -> Path:
    """Real (top row) and generated (bottom row) fields at matching conditions, log(1 + delta) colour scale
    (3-D: middle slice); each column titled with the two condition vectors."""
    plt = _plt()
    pairs = matched_pairs(cr, cf, len(real), len(fake), n)
    ur = [log_density(_slice2d(real[i])) for i, _ in pairs]
    uf = [log_density(_slice2d(fake[j])) for _, j in pairs]
    vmin, vmax = np.quantile(np.concatenate([u.ravel() for u in ur]), [0.01, 0.999])
    fig, axes = plt.subplots(2, len(pairs), figsize=(2.8 * len(pairs), 5.8), squeeze=False)

    def cond(c: np.ndarray | None, i: int) -> str:
        if c is None or c.size == 0:
            return ""
        labels = names or [f"c{k}" for k in range(c.shape[1])]
        return ", ".join(f"{lab}={v:.3g}" for lab, v in zip(labels, c[i]))

    for row, (us, label, c, idx) in enumerate(((ur, "real", cr, [p[0] for p in pairs]), (uf, "generated", cf, [p[1] for p in pairs]))):
        for col, u in enumerate(us):
            ax = axes[row, col]
            ax.imshow(u, vmin=vmin, vmax=vmax, cmap="inferno", origin="lower")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(cond(c, idx[col]), fontsize=7)
            if col == 0:
                ax.set_ylabel(label)
    fig.suptitle("log(1 + δ), real and generated at matching conditions")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def conditioning_response(
    xr: np.ndarray, cr: np.ndarray, xf: np.ndarray, cf: np.ndarray, box_size: float, column: int, quantile: float = 1 / 3
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """P(k; high θ) / P(k; low θ) of the simulator (real) and of the generator, for condition ``column``.

    "Low" and "high" are the fields with the condition below the real set's ``quantile`` and
    above its ``1 − quantile`` (the same thresholds for both sets).

    Returns
    -------
    (k, real ratio, its error, generated ratio, its error), or None when a group is empty
    or the condition does not vary.
    """
    lo_cut, hi_cut = np.quantile(cr[:, column], [quantile, 1 - quantile])
    if not hi_cut > lo_cut:
        return None
    groups = []
    for x, c in ((xr, cr), (xf, cf)):
        lo, hi = x[c[:, column] <= lo_cut], x[c[:, column] >= hi_cut]
        if len(lo) < 2 or len(hi) < 2:
            return None
        groups.append(pk_ratio(lo, hi, box_size))  # ratio = P(high) / P(low)
    r, f = groups
    return r.k, r.ratio, r.ratio_err, f.ratio, f.ratio_err


def plot_conditioning_response(
    xr: np.ndarray, cr: np.ndarray, xf: np.ndarray, cf: np.ndarray, box_size: float, names: list[str], path: Path
) -> Path | None:
    """One panel per varying condition: P(k; high)/P(k; low) of the simulator and of the generator."""
    plt = _plt()
    panels = []
    for j in range(cr.shape[1] if cr is not None and cr.ndim == 2 else 0):
        res = conditioning_response(xr, cr, xf, cf, box_size, j)
        if res is not None:
            panels.append((j, res))
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4), squeeze=False)
    for ax, (j, (k, rr, er, rf, ef)) in zip(axes[0], panels):
        ax.errorbar(k, rr, yerr=er, fmt="o-", ms=3, label="simulator (real)")
        ax.errorbar(k, rf, yerr=ef, fmt="s--", ms=3, label="generator")
        ax.axhline(1, color="k", lw=0.6)
        ax.set_xscale("log")
        set_ratio_axis(ax, np.concatenate([rr, rf]), np.concatenate([er, ef]), base=(1.0, 1.0))
        name = names[j] if j < len(names) else f"c{j}"
        ax.set_title(f"{name}: top third / bottom third", fontsize=9)
        ax.set_xlabel("k [h/Mpc]")
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_ylabel("P(k; high) / P(k; low)")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_power_spectrum(real: np.ndarray, fake: np.ndarray, box_size: float, path: Path) -> Path:
    """Mean P(k) of both sets (with standard errors) and the ratio fake/real below."""
    plt = _plt()
    pr = pk_ratio(real, fake, box_size)
    fig, (ax, axr) = plt.subplots(2, 1, figsize=(5.5, 5.5), sharex=True, gridspec_kw={"height_ratios": [3, 1.3]})
    ax.errorbar(pr.k, pr.pk_real, yerr=pr.err_real, fmt="o-", ms=3, label="real")
    ax.errorbar(pr.k, pr.pk_fake, yerr=pr.err_fake, fmt="s--", ms=3, label="generated")
    ax.set_xscale("log")
    ax.set_yscale("log")
    dim = np.asarray(real).ndim - 1
    ax.set_ylabel(f"P(k) [(Mpc/h)^{dim}]")
    ax.legend()
    axr.axhline(1, color="k", lw=0.8)
    axr.axvline(pr.k_nyquist / 2, color="grey", ls=":", lw=0.8)
    axr.errorbar(pr.k, pr.ratio, yerr=pr.ratio_err, fmt="o", ms=3)
    set_ratio_axis(axr, pr.ratio, pr.ratio_err)
    axr.set_xlabel("k [h/Mpc]")
    axr.set_ylabel("fake / real")
    axr.xaxis.set_minor_formatter(NullFormatter())
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def pdf_histograms(real: np.ndarray, fake: np.ndarray, n_bins: int = 50) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bin edges and normalised histograms of log(1 + delta) over all cells of ``real`` and ``fake``.

    The edges span the real cells' 0.1-99.9 % quantiles; the end bins hold every cell beyond them, real and generated
    alike (clipping only the generated cells drew spikes at both ends that the generator does not make).
    """
    ur, uf = log_density(real).ravel(), log_density(fake).ravel()
    edges = np.linspace(*np.quantile(ur, [0.001, 0.999]), n_bins + 1)
    hr, _ = np.histogram(np.clip(ur, edges[0], edges[-1]), bins=edges, density=True)
    hf, _ = np.histogram(np.clip(uf, edges[0], edges[-1]), bins=edges, density=True)
    return edges, hr, hf


def plot_pdf(real: np.ndarray, fake: np.ndarray, path: Path) -> Path:
    """Histogram of log(1 + delta) of all cells (:func:`pdf_histograms`)."""
    plt = _plt()
    edges, hr, hf = pdf_histograms(real, fake)
    fig, ax = plt.subplots(figsize=(5.5, 4))
    ax.stairs(hr, edges, label="real")
    ax.stairs(hf, edges, label="generated")
    ax.set_yscale("log")
    ax.set_xlabel("log(1 + δ)  (end bins: all cells beyond)")
    ax.set_ylabel("density")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_peaks(real: np.ndarray, fake: np.ndarray, path: Path) -> Path:
    """Distribution of peak heights log(1 + delta) (local maxima in a 3^d window)."""
    plt = _plt()
    hr = log_density(np.concatenate(peak_heights(real)))
    hf = log_density(np.concatenate(peak_heights(fake)))
    bins = np.linspace(*np.quantile(hr, [0.001, 0.999]), 31) if hr.size > 1 else 30
    fig, ax = plt.subplots(figsize=(5.5, 4))
    ax.hist(hr, bins=bins, histtype="step", label=f"real ({len(hr) / len(real):.1f} per field)")
    ax.hist(hf, bins=bins, histtype="step", label=f"generated ({len(hf) / len(fake):.1f} per field)")
    ax.set_yscale("log")
    ax.set_xlabel("peak height log(1 + δ)")
    ax.set_ylabel("peaks")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plots(real: tuple, fake: tuple, attrs: dict[str, Any], outdir) -> list[tuple[str, Path]]:
    """Write the nbody comparison figures into ``outdir``; return ``[(title, path), ...]``.

    Parameters
    ----------
    real, fake : tuple (x, c)
        Densities (units of the mean) and conditions.
    attrs : dict
        File attributes (``box_size`` in Mpc/h).
    outdir : str or Path
        Output folder (created).
    """
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    xr, xf = _fields(real[0], "real"), _fields(fake[0], "fake")
    cr = np.asarray(real[1], dtype=np.float64).reshape(len(xr), -1) if real[1] is not None else None
    cf = np.asarray(fake[1], dtype=np.float64).reshape(len(xf), -1) if fake[1] is not None else None
    names = [str(v) for v in (attrs or {}).get("condition_names", [])]
    box = _box(attrs, xr)
    slices = plot_slices(xr, xf, out / "nbody_slices.png", cr=cr, cf=cf, names=names)
    figs = [
        ("Density fields: real vs generated at matching conditions", slices),
        ("Power spectrum and ratio", plot_power_spectrum(xr, xf, box, out / "nbody_power_spectrum.png")),
        ("Density PDF", plot_pdf(xr, xf, out / "nbody_pdf.png")),
        ("Peak counts", plot_peaks(xr, xf, out / "nbody_peaks.png")),
    ]
    if cr is not None and cf is not None and cr.size and cr.shape == (len(xr), cf.shape[1]):
        resp = plot_conditioning_response(xr, cr, xf, cf, box, names, out / "nbody_conditioning.png")
        if resp is not None:
            figs.append(("Conditioning response: P(k; high θ) / P(k; low θ), simulator vs generator", resp))
    return figs
