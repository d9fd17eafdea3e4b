"""Figures comparing real and generated calorimeter showers (matplotlib, Agg backend).

* average shower per layer, real vs generated, log colour scale (Cartesian layers as x-y images,
  cylindrical layers as polar (alpha, r) maps);
* histograms of the high-level features, real vs generated, with a generated/real ratio panel;
* energy response (mean E_tot/E_inc) and resolution (std/mean) vs incident energy;
* voxel-energy spectrum.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import LogNorm
from matplotlib.ticker import MaxNLocator, NullLocator

from physgan.domains.calo.features import incident_energy_mev, resolve_geometry, shower_features, voxel_energies
from physgan.domains.calo.metrics import real_binning
from physgan.io.atomic import atomic_output
from physgan.report.axes import set_ratio_axis

__all__ = [
    "plot_layer_profiles","plots", "plot_average_showers", "plot_feature_histograms", "plot_response", "plot_voxel_spectrum"]

REAL_STYLE = {"color": "k", "label": "real"}
FAKE_STYLE = {"color": "tab:red", "label": "generated"}


def _features(sample: tuple, geom) -> dict[str, np.ndarray]:
    """The high-level features of ``(x, c[, features])``: the ones given (computed once by the caller), else computed."""
    if len(sample) > 2 and sample[2] is not None:
        return sample[2]
    return shower_features(sample[0], sample[1], geom)


def _save(fig: plt.Figure, path: Path) -> Path:
    with atomic_output(path, overwrite=True) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return path


def _pick_layers(n: int, most: int = 6) -> list[int]:
    if n <= most:
        return list(range(n))
    return sorted({int(round(v)) for v in np.linspace(0, n - 1, most)})


def plot_average_showers(real: tuple, fake: tuple, attrs: Any, path: str | Path) -> Path:
    """Mean cell energy per layer (MeV, log colour), real (top row) vs generated (bottom row).

    Parameters
    ----------
    real, fake : tuple
        ``(x, c)`` showers (N, n_features) in MeV and conditions.
    attrs : dict or CaloGeometry
        Attributes with the geometry.
    path : str or Path
        PNG file to write (atomically).

    Returns
    -------
    Path
    """
    geom = resolve_geometry(attrs, np.asarray(real[0]).shape[-1])
    layers = _pick_layers(geom.n_layers)
    # the mean shower first (float64 accumulation), then split: no float64 copy of every shower
    means = [[a[0] for a in geom.split(np.asarray(x).mean(axis=0, dtype=np.float64)[None])] for x in (real[0], fake[0])]
    pos = np.concatenate([m[i][m[i] > 0] for m in means for i in layers])
    vmin, vmax = (float(pos.min()), float(pos.max())) if pos.size else (1e-3, 1.0)
    vmin = max(vmin, vmax * 1e-6)
    cyl = geom.kind == "cylindrical"
    fig = plt.figure(figsize=(3.2 * len(layers), 6.2), layout="constrained")  # titles clear of the row above's axis labels
    for row, (label, m) in enumerate(zip(("real", "generated"), means)):
        for col, i in enumerate(layers):
            lay = geom.layers[i]
            img = np.where(m[i] > 0, m[i], np.nan).reshape(lay.shape)
            if cyl:
                ax = fig.add_subplot(2, len(layers), row * len(layers) + col + 1, projection="polar")
                sub = max(1, math.ceil(64 / lay.n_alpha))  # split wide alpha bins so that they draw as sectors
                a_edges = np.linspace(-math.pi, math.pi, lay.n_alpha * sub + 1)
                r_edges = np.asarray(lay.r_edges_mm)
                mesh = ax.pcolormesh(a_edges, r_edges, np.repeat(img, sub, axis=0).T, norm=LogNorm(vmin, vmax),
                                     cmap="viridis", shading="flat")
                ax.set_xticklabels([])
                ax.set_yticklabels([])
                ax.set_xlabel(f"r < {r_edges[-1]:g} mm", fontsize=8)
            else:
                ax = fig.add_subplot(2, len(layers), row * len(layers) + col + 1)
                mesh = ax.imshow(img, norm=LogNorm(vmin, vmax), cmap="viridis", aspect="auto", interpolation="nearest")
                ax.set_xlabel("y bin")
                ax.set_ylabel("x bin")
            ax.set_title(f"{label}, layer {lay.index}", fontsize=9)
    fig.colorbar(mesh, ax=fig.axes, shrink=0.8, label="mean cell energy [MeV]")
    return _save(fig, Path(path))


def _label(name: str) -> tuple[str, bool]:
    """Axis label and whether the feature is plotted in log10."""
    if name.startswith("e_layer_"):
        return f"log10 E_layer {name.rsplit('_', 1)[1]} [MeV]", True
    if name.startswith(("ec_", "width_")):
        return f"{name} [mm]", False
    return name, False


def plot_feature_histograms(real: tuple, fake: tuple, attrs: Any, path: str | Path, names: list[str] | None = None,
                            per_page: int = 12, max_features: int = 48) -> list[Path]:
    """Histograms of high-level features (real binning, see :mod:`.metrics`) with a generated/real ratio panel.

    Parameters
    ----------
    real, fake : tuple
        ``(x, c)`` showers and conditions.
    attrs : dict or CaloGeometry
        Attributes with the geometry.
    path : str or Path
        First PNG file; further pages get ``_2``, ``_3``, ... before the suffix.
    names : list of str, optional
        Features to draw (default: all of :func:`~physgan.domains.calo.features.shower_features`).
    per_page : int
        Panels per figure.
    max_features : int
        Without ``names`` and with more features than this (e.g. 45 layers), only the global ones and the
        layer energies are drawn; per-layer centres and widths are in :func:`plot_layer_profiles`.

    Returns
    -------
    list of Path
    """
    geom = resolve_geometry(attrs, np.asarray(real[0]).shape[-1])
    fr, ff = _features(real, geom), _features(fake, geom)
    if names is None and len(fr) > max_features:
        names = [n for n in fr if not n.rsplit("_", 1)[-1].isdigit() or n.startswith("e_layer_")]
    names = list(names or fr)
    path = Path(path)
    out = []
    for page in range(0, len(names), per_page):
        chunk = names[page : page + per_page]
        ncol = min(4, len(chunk))
        nrow = math.ceil(len(chunk) / ncol)
        fig = plt.figure(figsize=(4 * ncol, 4.2 * nrow))
        # per row of panels: histogram (3), ratio (1), empty spacer (1.1) for the axis label and the next title
        grid = fig.add_gridspec(3 * nrow, ncol, height_ratios=[3, 1, 1.1] * nrow, hspace=0.08, wspace=0.3)
        for k, name in enumerate(chunk):
            r, c = divmod(k, ncol)
            label, log = _label(name)
            edges, floor = real_binning(fr[name], log=log)
            vals = []
            for v in (fr[name], ff[name]):
                v = np.asarray(v, dtype=np.float64)
                v = np.log10(np.maximum(v, floor)) if log else v
                vals.append(np.histogram(np.clip(v[np.isfinite(v)], edges[0], edges[-1]), bins=edges)[0].astype(float))
            dens = [h / max(h.sum(), 1) for h in vals]
            ax = fig.add_subplot(grid[3 * r, c])
            axr = fig.add_subplot(grid[3 * r + 1, c], sharex=ax)
            for d, style in zip(dens, (REAL_STYLE, FAKE_STYLE)):
                ax.stairs(d, edges, **style)
            ax.set_title(name, fontsize=9)
            ax.tick_params(labelbottom=False)
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = np.where(dens[0] > 0, dens[1] / dens[0], np.nan)
            axr.stairs(ratio, edges, color=FAKE_STYLE["color"])
            axr.axhline(1.0, color="k", lw=0.8)
            set_ratio_axis(axr, np.where(dens[0] > 0.01, ratio, np.nan))  # bins with >= 1 % of the real showers
            axr.set_xlabel(label, fontsize=8)
            if c == 0:
                axr.set_ylabel("gen/real", fontsize=8)
            if k == 0:
                ax.legend(fontsize=8)
        p = path if page == 0 else path.with_name(f"{path.stem}_{page // per_page + 1}{path.suffix}")
        out.append(_save(fig, p))
    return out


def plot_response(real: tuple, fake: tuple, attrs: Any, path: str | Path, n_bins: int = 8) -> Path:
    """Mean E_tot/E_inc and resolution (std/mean) in log-spaced incident-energy bins, real vs generated.

    Parameters
    ----------
    real, fake : tuple
        ``(x, c)`` showers and conditions.
    attrs : dict or CaloGeometry
        Attributes with the geometry.
    path : str or Path
        PNG file to write.
    n_bins : int
        Number of incident-energy bins (edges from the real energies).

    Returns
    -------
    Path
    """
    geom = resolve_geometry(attrs, np.asarray(real[0]).shape[-1])
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    er = incident_energy_mev(real[1], geom)
    lo, hi = float(er.min()), float(er.max())
    edges = np.geomspace(lo, hi * (1 + 1e-9), n_bins + 1) if hi > lo > 0 else np.array([lo, hi + 1.0])
    centres = np.sqrt(edges[1:] * edges[:-1]) / 1000.0
    for sample, style, shift in ((real, REAL_STYLE, 0.98), (fake, FAKE_STYLE, 1.02)):
        e = incident_energy_mev(sample[1], geom)
        resp = _features(sample, geom)["e_tot_over_e_inc"]
        b = np.digitize(e, edges) - 1
        mean, err, res = (np.full(len(centres), np.nan) for _ in range(3))
        for k in range(len(centres)):
            v = resp[b == k]
            if len(v) >= 2:
                mean[k], err[k] = v.mean(), v.std(ddof=1) / math.sqrt(len(v))
                res[k] = v.std(ddof=1) / v.mean() if v.mean() else np.nan
        ax1.errorbar(centres * shift, mean, yerr=err, fmt="o", ms=4, capsize=2, **style)
        ax2.plot(centres * shift, res, "o-", ms=4, **style)
    for ax, lab in ((ax1, "mean E_tot / E_inc"), (ax2, "resolution std/mean of E_tot / E_inc")):
        ax.set_xscale("log")
        # ticks at the bin centres: a log axis spanning less than a decade would show no labelled tick
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xticks(centres, [f"{v:.3g}" for v in centres])
        ax.set_xlabel("incident energy [GeV]")
        ax.set_ylabel(lab)
        ax.legend(fontsize=8)
    ax1.set_title("energy response")
    ax2.set_title("energy resolution")
    fig.tight_layout()
    return _save(fig, Path(path))


def _layer_profile(feats: dict[str, np.ndarray], prefix: str, n_layers: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Layers that have ``prefix<l>``, the mean over showers (non-empty layers for positions/widths) and its error."""
    layers, mean, err = [], [], []
    for lay in range(n_layers):
        v = feats.get(f"{prefix}{lay}")
        if v is None:
            continue
        v = np.asarray(v, np.float64)
        if not prefix.startswith("e_layer_"):
            e = np.asarray(feats.get(f"e_layer_{lay}", np.ones_like(v)), np.float64)
            v = v[e > 0]
        layers.append(lay)
        mean.append(v.mean() if v.size else np.nan)
        err.append(v.std(ddof=1) / math.sqrt(v.size) if v.size > 1 else np.nan)
    return np.asarray(layers), np.asarray(mean), np.asarray(err)


def plot_layer_profiles(real: tuple, fake: tuple, attrs: Any, path: str | Path) -> Path:
    """Per layer, real vs generated: mean layer energy (with a generated/real ratio panel), mean centre of
    energy and mean width (over showers with energy in the layer), each with the error of the mean. Cartesian
    centres (about 0 mm, either sign) get a generated - real panel in mm instead of a ratio.

    Parameters
    ----------
    real, fake : tuple
        ``(x, c)`` showers and conditions.
    attrs : dict or CaloGeometry
        Attributes with the geometry.
    path : str or Path
        PNG file to write.

    Returns
    -------
    Path
    """
    geom = resolve_geometry(attrs, np.asarray(real[0]).shape[-1])
    fr, ff = _features(real, geom), _features(fake, geom)
    n_layers = len(geom.layers)
    fig = plt.figure(figsize=(13, 4.6))
    grid = fig.add_gridspec(2, 3, height_ratios=[3, 1.2], hspace=0.08, wspace=0.3)
    pos = "ec_r_" if "ec_r_0" in fr else "ec_x_"
    wid = "width_r_" if "width_r_0" in fr else "width_x_"
    # the lower panel: gen/real, except for Cartesian centres (about 0, either sign: a ratio is noise), gen - real
    panels = (("e_layer_", "mean layer energy [MeV]", True), (pos, f"mean {pos[:-1]} [mm]", False),
              (wid, f"mean {wid[:-1]} [mm]", False))
    for col, (prefix, label, log) in enumerate(panels):
        difference = prefix == "ec_x_"
        ax = fig.add_subplot(grid[0, col])
        axr = fig.add_subplot(grid[1, col], sharex=ax)
        lr, mr, er = _layer_profile(fr, prefix, n_layers)
        lf, mf, ef = _layer_profile(ff, prefix, n_layers)
        ax.errorbar(lr, mr, yerr=er, fmt="o-", ms=3, **REAL_STYLE)
        ax.errorbar(lf + 0.15, mf, yerr=ef, fmt="s--", ms=3, **FAKE_STYLE)
        if log and np.nanmin(np.concatenate([mr, mf, [1.0]])) > 0:
            ax.set_yscale("log")
        ax.set_ylabel(label, fontsize=9)
        ax.tick_params(labelbottom=False)
        ax.legend(fontsize=8)
        same = len(mf) == len(mr)
        if difference:
            diff = mf - mr if same else np.full(len(mr), np.nan)
            derr = np.hypot(er, ef) if same else diff
            axr.errorbar(lr, diff, yerr=derr, fmt="o", ms=3, color=FAKE_STYLE["color"])
            axr.axhline(0.0, color="k", lw=0.8)
            reach = np.nan_to_num(np.abs(diff) + derr, nan=0.0)
            top = 1.15 * max(float(reach.max()) if reach.size else 0.0, 0.1)
            axr.set_ylim(-top, top)
            axr.set_ylabel("gen - real [mm]", fontsize=8)
        else:
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = mf / mr if same else np.full(len(mr), np.nan)
                rerr = np.abs(ratio) * np.sqrt((er / mr) ** 2 + (ef / mf) ** 2) if same else ratio
            axr.errorbar(lr, ratio, yerr=rerr, fmt="o", ms=3, color=FAKE_STYLE["color"])
            axr.axhline(1.0, color="k", lw=0.8)
            set_ratio_axis(axr, ratio, rerr)
            axr.set_ylabel("gen/real", fontsize=8)
        axr.set_xlabel("layer")
        axr.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle("Per-layer profiles: energy, centre of energy, width", fontsize=10)
    return _save(fig, Path(path))


def plot_voxel_spectrum(real: tuple, fake: tuple, attrs: Any, path: str | Path) -> Path:
    """Voxel-energy spectrum (cells above threshold, log10 MeV, 50 real-fixed bins), real vs generated."""
    geom = resolve_geometry(attrs, np.asarray(real[0]).shape[-1])
    vr, vf = voxel_energies(real[0], geom), voxel_energies(fake[0], geom)
    edges, floor = real_binning(vr, 50, log=True)
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for v, style in ((vr, REAL_STYLE), (vf, FAKE_STYLE)):
        lv = np.clip(np.log10(np.maximum(v, floor)), edges[0], edges[-1]) if v.size else v
        h = np.histogram(lv, bins=edges)[0].astype(float)
        ax.stairs(h / max(h.sum(), 1), edges, **style)
    ax.set_yscale("log")
    ax.set_xlabel("log10 voxel energy [MeV]")
    ax.set_ylabel("fraction of voxels")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, Path(path))


def plots(real: tuple, fake: tuple, attrs: Any, outdir: str | Path) -> list[tuple[str, Path]]:
    """All calorimeter figures into ``outdir``.

    Parameters
    ----------
    real, fake : tuple
        ``(x, c)``: (N, n_features) showers in MeV and (N, k) physical conditions; or ``(x, c, features)``
        with the :func:`~physgan.domains.calo.features.shower_features` of the same rows (not computed again).
    attrs : dict or CaloGeometry
        Attributes with the geometry.
    outdir : str or Path
        Folder for the PNG files (created).

    Returns
    -------
    list of (str, Path)
        ``(title, png path)`` per figure.
    """
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    # the first four are the headline figures of the report's first screen
    out: list[tuple[str, Path]] = [
        ("Energy response and resolution vs incident energy", plot_response(real, fake, attrs, outdir / "calo_response.png")),
        ("Per-layer energy, centre of energy and width", plot_layer_profiles(real, fake, attrs, outdir / "calo_layer_profiles.png")),
        ("Average shower per layer (real vs generated)", plot_average_showers(real, fake, attrs, outdir / "calo_average_shower.png")),
        ("Voxel-energy spectrum", plot_voxel_spectrum(real, fake, attrs, outdir / "calo_voxel_spectrum.png")),
    ]
    for k, p in enumerate(plot_feature_histograms(real, fake, attrs, outdir / "calo_features.png")):
        out.append((f"High-level features, page {k + 1}", p))
    return out
