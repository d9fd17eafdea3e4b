"""Figures comparing real and generated microstructures (PNG files, written atomically).

:func:`plots` (the domain hook) writes: real vs generated slices side by side,
orthogonal mid-slices of 3-D volumes, S2(r) curves, chord-length histograms and a
tortuosity table (3-D, a few samples, TauFactor).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from physgan.domains.micro.metrics import as_labels, mean_s2, n_phases_of
from physgan.io.atomic import atomic_output
from physgan.metrics.morphology import chord_lengths, tortuosity_factor

__all__ = ["plots", "plot_slices", "plot_orthogonal", "plot_s2", "plot_chords", "tortuosity_table"]


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    with atomic_output(path, overwrite=True) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def _mid(im: np.ndarray, axis: int = 0) -> np.ndarray:
    return np.take(im, im.shape[axis] // 2, axis=axis) if im.ndim == 3 else im


def plot_slices(real: np.ndarray, fake: np.ndarray, path: Path, n: int = 4, n_phases: int = 2) -> Path:
    """Rows real / generated, ``n`` samples each (mid-slice along axis 0 for volumes)."""

    import matplotlib.pyplot as plt

    n = max(1, min(n, len(real), len(fake)))
    fig, axes = plt.subplots(2, n, figsize=(2.2 * n, 4.6), squeeze=False)
    for row, (name, data) in enumerate((("real", real), ("generated", fake))):
        for i in range(n):
            ax = axes[row, i]
            ax.imshow(_mid(data[i]), cmap="gray", vmin=0, vmax=max(n_phases - 1, 1), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_ylabel(name)
    fig.suptitle("slices: real (top) vs generated (bottom)")
    return _save(fig, path)


def plot_orthogonal(vol: np.ndarray, path: Path, title: str = "generated", n_phases: int = 2) -> Path:
    """Three orthogonal mid-slices of one volume."""

    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(7.5, 2.8))
    for a in range(3):
        axes[a].imshow(_mid(vol, a), cmap="gray", vmin=0, vmax=max(n_phases - 1, 1), interpolation="nearest")
        axes[a].set_title(f"normal to axis {a}")
        axes[a].set_xticks([])
        axes[a].set_yticks([])
    fig.suptitle(f"orthogonal slices ({title})")
    return _save(fig, path)


def plot_s2(real: np.ndarray, fake: np.ndarray, path: Path, phase: int = 0, periodic: bool = False, voxel_size: float = 1.0) -> Path:
    """Sample-averaged S2(r) of ``phase``, real vs generated."""

    import matplotlib.pyplot as plt

    r, sr = mean_s2(real, phase, periodic=periodic)
    _, sf = mean_s2(fake, phase, periodic=periodic)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(r, sr, "k-", label="real")
    ax.plot(r, sf, "r--", label="generated")
    ax.axhline(sr[0] ** 2, color="gray", lw=0.5)
    ax.set_xlabel("r [voxel]")
    ax.set_ylabel(f"S2 (phase {phase})")
    ax.legend()
    return _save(fig, path)


def plot_chords(real: np.ndarray, fake: np.ndarray, path: Path, phase: int = 0) -> Path:
    """Chord-length histograms of ``phase`` along each axis, real vs generated."""

    import matplotlib.pyplot as plt

    nd = real.ndim - 1
    fig, axes = plt.subplots(1, nd, figsize=(3.6 * nd, 3.0), squeeze=False)
    for a in range(nd):
        r = np.concatenate([chord_lengths(im == phase, axis=a) for im in real])
        f = np.concatenate([chord_lengths(im == phase, axis=a) for im in fake])
        hi = max(r.max() if r.size else 1, f.max() if f.size else 1)
        edges = np.arange(0.5, hi + 1.5)
        ax = axes[0, a]
        ax.hist(r, bins=edges, density=True, histtype="step", color="k", label="real")
        ax.hist(f, bins=edges, density=True, histtype="step", color="r", label="generated")
        ax.set_xlabel(f"chord length along axis {a} [voxel]")
        ax.set_yscale("log")
    axes[0, 0].legend()
    return _save(fig, path)


def tortuosity_table(
    real: np.ndarray, fake: np.ndarray, path: Path, n: int = 2, phase: int = 0, iter_limit: int = 3000
) -> tuple[Path, dict[str, list[float]]]:
    """Tortuosity factors of ``phase`` along each axis for ``n`` real and ``n`` generated volumes.

    Returns the figure path and ``{'real': [...], 'generated': [...]}`` (mean over samples per axis).
    """

    import matplotlib.pyplot as plt

    nd = real.ndim - 1
    rows = {}
    for name, data in (("real", real), ("generated", fake)):
        taus = [[tortuosity_factor(im == phase, axis=a, iter_limit=iter_limit).tau for a in range(nd)] for im in data[:n]]
        rows[name] = np.mean(np.asarray(taus, dtype=float), axis=0).tolist()
    fig, ax = plt.subplots(figsize=(5, 1.4))
    ax.axis("off")
    ax.table(
        cellText=[[f"{v:.3f}" for v in rows[k]] for k in rows],
        rowLabels=list(rows),
        colLabels=[f"tau axis {a}" for a in range(nd)],
        loc="center",
    )
    ax.set_title(f"tortuosity factor of phase {phase} (mean of {min(n, len(real), len(fake))} samples, TauFactor)")
    return _save(fig, path), rows


def plot_porosity(
    rl: np.ndarray, cr: np.ndarray, fl: np.ndarray, cf: np.ndarray, column: int, path: Path
) -> Path:
    """Requested (the ``porosity`` condition) vs achieved porosity (fraction of label 0), real and generated.

    The real samples show how closely the data meet their own label (1:1 for porosities measured on
    the crops); the generated ones show how well the generator obeys the condition.
    """
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4.5))
    for labels, c, style, name in ((rl, cr, "o", "real"), (fl, cf, "s", "generated")):
        achieved = (labels.reshape(len(labels), -1) == 0).mean(axis=1)
        requested = np.asarray(c, np.float64)[:, column]
        rmse = float(np.sqrt(np.mean((achieved - requested) ** 2)))
        ax.plot(requested, achieved, style, ms=3, alpha=0.6, label=f"{name} (rms deviation {rmse:.3f})")
    lo = min(float(np.min(cr[:, column])), float(np.min(cf[:, column])))
    hi = max(float(np.max(cr[:, column])), float(np.max(cf[:, column])))
    ax.plot([lo, hi], [lo, hi], "k-", lw=0.8, label="achieved = requested")
    ax.set_xlabel("requested porosity (condition)")
    ax.set_ylabel("achieved porosity (fraction of label 0)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def plots(
    real: tuple[np.ndarray, np.ndarray], fake: tuple[np.ndarray, np.ndarray], attrs: dict[str, Any] | None, outdir: Any
) -> list[tuple[str, Path]]:
    """Domain hook: write every figure into ``outdir``; returns ``[(title, path), ...]``."""
    attrs = attrs or {}
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    rl, fl = as_labels(real[0]), as_labels(fake[0])
    P = n_phases_of(attrs, rl, fl)
    periodic = False  # generated samples are not periodic even when the training data are
    figs = [
        ("Real vs generated slices", plot_slices(rl, fl, out / "micro_slices.png", n_phases=P)),
        ("Two-point correlation S2(r)", plot_s2(rl, fl, out / "micro_s2.png", periodic=periodic)),
        ("Chord-length distributions", plot_chords(rl, fl, out / "micro_chords.png")),
    ]
    names = [str(n) for n in attrs.get("condition_names", [])]
    cr, cf = real[1], fake[1]
    if "porosity" in names and cr is not None and cf is not None and np.size(cr) and np.size(cf):
        j = names.index("porosity")
        cr, cf = np.asarray(cr).reshape(len(rl), -1), np.asarray(cf).reshape(len(fl), -1)
        figs.insert(2, ("Requested vs achieved porosity", plot_porosity(rl, cr, fl, cf, j, out / "micro_porosity.png")))
    if rl.ndim == 4:
        figs.insert(1, ("Orthogonal slices (generated)", plot_orthogonal(fl[0], out / "micro_orthogonal.png", n_phases=P)))
        if bool(attrs.get("tortuosity", True)):
            try:
                path, _ = tortuosity_table(rl, fl, out / "micro_tortuosity.png", n=int(attrs.get("tortuosity_samples", 2)))
                figs.append(("Tortuosity factors", path))
            except ImportError:  # taufactor absent: skip the table
                pass
    return figs
