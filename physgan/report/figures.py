"""Figures of an evaluation: marginal histograms (real vs generated, with ratio panels) and the domain's plots."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import numpy as np

from physgan.evaluation.result import MAX_MARGINAL_FEATURES, Evaluation, _badness
from physgan.metrics.separation import auto_edges
from physgan.report.axes import set_ratio_axis

__all__ = ["marginal_figures", "worst_features", "domain_plots", "evaluation_figures"]



def marginal_figures(real: dict[str, np.ndarray], fake: dict[str, np.ndarray], max_per_figure: int = 12) -> list:
    """Histogram per feature (real filled, fake line) with a fake/real ratio panel below."""
    import matplotlib.pyplot as plt

    names = [n for n in real if n in fake]
    figs = []
    for start in range(0, len(names), max_per_figure):
        chunk = names[start : start + max_per_figure]
        ncol = min(4, len(chunk))
        nrow = math.ceil(len(chunk) / ncol)
        fig = plt.figure(figsize=(3.4 * ncol, 3.6 * nrow))
        grid = fig.add_gridspec(2 * nrow, ncol, height_ratios=[3, 1] * nrow, hspace=0.05 + 0.35 * (nrow > 1))
        for k, name in enumerate(chunk):
            r, f = np.asarray(real[name], np.float64), np.asarray(fake[name], np.float64)
            edges = auto_edges(r, max_bins=50)[1:-1]
            if len(edges) < 2:
                edges = np.array([r.min() - 0.5, r.max() + 0.5])
            hr, _ = np.histogram(r, edges)
            hf, _ = np.histogram(f, edges)
            wr, wf = hr / max(len(r), 1), hf / max(len(f), 1)
            row, col = divmod(k, ncol)
            ax = fig.add_subplot(grid[2 * row, col])
            axr = fig.add_subplot(grid[2 * row + 1, col], sharex=ax)
            ax.stairs(wr, edges, fill=True, alpha=0.4, label="real")
            ax.stairs(wf, edges, lw=1.5, label="generated")
            ax.set_title(name, fontsize=9)
            ax.tick_params(labelbottom=False, labelsize=7)
            if k == 0:
                ax.legend(fontsize=7)
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = np.where(hr > 0, wf / wr, np.nan)
                err = np.where((hr > 0) & (hf > 0), ratio * np.sqrt(1 / np.maximum(hf, 1) + 1 / np.maximum(hr, 1)), np.nan)
            centres = (edges[1:] + edges[:-1]) / 2
            axr.errorbar(centres, ratio, yerr=err, fmt=".", ms=2, lw=0.6)
            axr.axhline(1.0, color="k", lw=0.6)
            set_ratio_axis(axr, np.where(hr >= 0.01 * len(r), ratio, np.nan), err)
            axr.set_ylabel("gen/real", fontsize=7)
            axr.tick_params(labelsize=7)
        fig.subplots_adjust(left=0.06, right=0.98, top=0.95, bottom=0.06, wspace=0.3)
        plt.close(fig)
        figs.append(fig)
    return figs



def worst_features(ev: Evaluation, most: int = MAX_MARGINAL_FEATURES) -> dict[str, np.ndarray]:
    """The real features to draw: all when few, else the ``most`` furthest from the floor (by W1)."""
    if len(ev._feat_real) <= most:
        return ev._feat_real
    score = {n: _badness(ev.metrics[f"w1/{n}"]) if f"w1/{n}" in ev.metrics else -math.inf for n in ev._feat_real}
    keep = sorted(ev._feat_real, key=lambda n: score[n], reverse=True)[:most]
    return {n: ev._feat_real[n] for n in ev._feat_real if n in keep}



def domain_plots(ev: Evaluation, outdir: Path) -> list[tuple[str, Path]]:
    """The domain's figures of the evaluated samples, written into ``outdir``: ``[(title, path)]``."""
    outdir.mkdir(parents=True, exist_ok=True)
    real, fake = (ev._real.x, ev._real.c), (ev._fake.x, ev._fake.c)
    if getattr(ev._domain_obj, "physics_takes_features", False) and ev._domain_features is not None:
        real, fake = (*real, ev._domain_features[0]), (*fake, ev._domain_features[1])  # computed once, in evaluate
    out = ev._domain_obj.plots(real, fake, ev._real.attrs, outdir) or []
    return [(str(t), Path(p)) for t, p in out]



def evaluation_figures(ev: Evaluation, max_per_figure: int = 12) -> list:
    """Figures: marginal histograms real vs fake with ratio panels (at most 24 features, those furthest from
    the floor), then the domain's plots."""
    figs = marginal_figures(worst_features(ev), ev._feat_fake, max_per_figure)
    if ev._domain_obj is not None and ev._domain_obj.plots is not None and ev._real is not None:
        import matplotlib.image as mpimg
        import matplotlib.pyplot as plt

        with tempfile.TemporaryDirectory() as tmp:
            for title, path in domain_plots(ev, Path(tmp)):
                img = mpimg.imread(str(path))
                fig, ax = plt.subplots(figsize=(img.shape[1] / 100, img.shape[0] / 100), dpi=100)
                ax.imshow(img)
                ax.set_axis_off()
                ax.set_title(title)
                plt.close(fig)
                figs.append(fig)
    return figs
