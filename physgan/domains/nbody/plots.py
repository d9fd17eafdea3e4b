"""Figures comparing real and generated density fields (PNG, matplotlib Agg).

``plots(real, fake, attrs, outdir)`` writes four figures and returns
``[(title, path), ...]``: slices side by side, P(k) with a ratio panel,
the density PDF of log(1 + delta), and the peak-height distribution.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from physgan.domains.nbody.metrics import _box, _fields, log_density, peak_heights, pk_ratio

__all__ = ["plots", "plot_slices", "plot_power_spectrum", "plot_pdf", "plot_peaks"]


def _plt():
    import matplotlib.pyplot as plt

    return plt


def _slice2d(f: np.ndarray) -> np.ndarray:
    return f if f.ndim == 2 else f[f.shape[0] // 2]


def plot_slices(real: np.ndarray, fake: np.ndarray, path: Path, n: int = 4) -> Path:
    """Real (top row) and generated (bottom row) fields, log(1 + delta) colour scale (3-D: middle slice)."""
    plt = _plt()
    n = max(1, min(n, len(real), len(fake)))
    ur = [log_density(_slice2d(f)) for f in real[:n]]
    uf = [log_density(_slice2d(f)) for f in fake[:n]]
    vmin, vmax = np.quantile(np.concatenate([u.ravel() for u in ur]), [0.01, 0.999])
    fig, axes = plt.subplots(2, n, figsize=(2.6 * n, 5.4), squeeze=False)
    for row, (us, label) in enumerate(((ur, "real"), (uf, "generated"))):
        for j, u in enumerate(us):
            ax = axes[row, j]
            ax.imshow(u, vmin=vmin, vmax=vmax, cmap="inferno", origin="lower")
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(label)
    fig.suptitle("log(1 + δ)")
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
    axr.set_ylim(0.5, 1.5)
    axr.set_xlabel("k [h/Mpc]")
    axr.set_ylabel("fake / real")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_pdf(real: np.ndarray, fake: np.ndarray, path: Path) -> Path:
    """Histogram of log(1 + delta) of all cells."""
    plt = _plt()
    ur, uf = log_density(real).ravel(), log_density(fake).ravel()
    bins = np.linspace(*np.quantile(ur, [0.001, 0.999]), 51)
    fig, ax = plt.subplots(figsize=(5.5, 4))
    ax.hist(ur, bins=bins, density=True, histtype="step", label="real")
    ax.hist(np.clip(uf, bins[0], bins[-1]), bins=bins, density=True, histtype="step", label="generated")
    ax.set_yscale("log")
    ax.set_xlabel("log(1 + δ)")
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
    box = _box(attrs, xr)
    return [
        ("Density fields: real vs generated", plot_slices(xr, xf, out / "nbody_slices.png")),
        ("Power spectrum and ratio", plot_power_spectrum(xr, xf, box, out / "nbody_power_spectrum.png")),
        ("Density PDF", plot_pdf(xr, xf, out / "nbody_pdf.png")),
        ("Peak counts", plot_peaks(xr, xf, out / "nbody_peaks.png")),
    ]
