"""Figures comparing real and generated microstructures (PNG files, written atomically).

:func:`plots` (the domain hook) writes: real vs generated slices side by side,
orthogonal mid-slices of 3-D volumes, S2(r) curves, chord-length histograms and a
tortuosity table (3-D, a few samples, TauFactor).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from physgan.domains.micro.metrics import as_labels, condition_columns, edge_profiles, mean_s2, n_phases_of
from physgan.io.atomic import atomic_output
from physgan.metrics.morphology import chord_lengths, tortuosity_factor

__all__ = [
    "plots",
    "plot_slices",
    "plot_conditioned_slices",
    "plot_fraction_control",
    "plot_orthogonal",
    "plot_s2",
    "plot_chords",
    "tortuosity_table",
    "plot_edge_profiles",
]


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


def _fraction(x: np.ndarray, phase: int) -> np.ndarray:
    return (x == phase).reshape(len(x), -1).mean(axis=1)


def plot_conditioned_slices(
    real: tuple[np.ndarray, np.ndarray],
    fake: tuple[np.ndarray, np.ndarray],
    path: Path,
    column: int,
    phase: int,
    name: str,
    n_phases: int = 2,
) -> Path:
    """Real (top) and generated (bottom) samples at three conditioned fractions (10/50/90 % of the real conditions).

    Each column shows the real and the generated sample whose condition ``column`` is
    nearest to the quantile, titled with the requested and the achieved fraction of ``phase``.
    """
    import matplotlib.pyplot as plt

    (rl, rc), (fl, fc) = real, fake
    targets = np.quantile(rc[:, column], [0.1, 0.5, 0.9])
    fig, axes = plt.subplots(2, 3, figsize=(7.2, 5.0), squeeze=False)
    for i, t in enumerate(targets):
        for row, (label, x, c) in enumerate((("real", rl, rc), ("generated", fl, fc))):
            j = int(np.argmin(np.abs(c[:, column] - t)))
            ax = axes[row, i]
            ax.imshow(_mid(x[j]), cmap="gray", vmin=0, vmax=max(n_phases - 1, 1), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"{name} {c[j, column]:.3f} -> {_fraction(x[j : j + 1], phase)[0]:.3f}", fontsize=8)
            if i == 0:
                ax.set_ylabel(label)
    fig.suptitle(f"real (top) vs generated (bottom) at three {name} conditions (asked -> achieved)")
    return _save(fig, path)


def plot_fraction_control(
    real: tuple[np.ndarray, np.ndarray], fake: tuple[np.ndarray, np.ndarray], path: Path, column: int, phase: int, name: str
) -> Path:
    """Achieved vs requested fraction of ``phase`` (condition ``column``), generated and real, with y = x."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.6, 4.4))
    lo = hi = None
    for label, (x, c), style in (("real", real, dict(marker="o", s=10, alpha=0.5)), ("generated", fake, dict(marker="x", s=14))):
        req, ach = c[:, column].astype(np.float64), _fraction(x, phase)
        slope = np.polyfit(req, ach, 1)[0] if len(req) > 1 and np.ptp(req) > 0 else float("nan")
        ax.scatter(req, ach, label=f"{label}: slope {slope:.3f}, MAE {np.mean(np.abs(ach - req)):.4f}", **style)
        lo = min(req.min(), ach.min()) if lo is None else min(lo, req.min(), ach.min())
        hi = max(req.max(), ach.max()) if hi is None else max(hi, req.max(), ach.max())
    ax.plot([lo, hi], [lo, hi], "k--", lw=1, label="y = x")
    ax.set_xlabel(f"requested {name}")
    ax.set_ylabel(f"achieved {name}")
    ax.legend(fontsize=7)
    ax.set_title(f"{name}: requested vs achieved")
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


def plot_edge_profiles(real: np.ndarray, fake: np.ndarray, path: Path, phase: int = 0) -> Path:
    """Phase fraction and in-layer interface density against the distance from the nearest face, plus a face slice.

    Real crops of a larger volume have flat profiles; a generator with edge artefacts does not
    (:func:`~physgan.domains.micro.metrics.edge_profiles`). The last panels show the outermost slice
    (normal to axis 0) of one real and one generated sample.
    """

    import matplotlib.pyplot as plt

    pr, pf = edge_profiles(real, phase), edge_profiles(fake, phase)
    fig, axes = plt.subplots(1, 4, figsize=(15, 3.2))
    fig.subplots_adjust(wspace=0.35)
    for ax, key, label in ((axes[0], "fraction", f"fraction of phase {phase}"), (axes[1], "interface", "interface density")):
        ax.plot(pr["distance"], pr[key], "k-o", ms=3, label="real")
        ax.plot(pf["distance"], pf[key], "r-s", ms=3, label="generated")
        ax.set_xlabel("distance from the nearest face (voxels)")
        ax.set_ylabel(label)
        ax.legend(fontsize=8)
    vmax = max(int(max(real.max(), fake.max())), 1)
    for ax, (name, data) in zip(axes[2:], (("real", real), ("generated", fake))):
        ax.imshow(data[0][0], cmap="gray", vmin=0, vmax=vmax, interpolation="nearest")
        ax.set_title(f"{name}: outermost slice")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("edge artefacts: profiles from the faces inwards")
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
    rc, fc = (np.asarray(v) if v is not None else np.zeros((0, 0)) for v in (real[1], fake[1]))
    for phase, column in condition_columns(attrs).items():
        if rc.ndim == 2 and fc.ndim == 2 and column < min(rc.shape[1], fc.shape[1]) and len(rc) == len(rl) and len(fc) == len(fl):
            name = "porosity" if attrs["condition_names"][column] == "porosity" else f"fraction of phase {phase}"
            tag = f"p{phase}"
            control = plot_fraction_control((rl, rc), (fl, fc), out / f"micro_control_{tag}.png", column, phase, name)
            sides = plot_conditioned_slices((rl, rc), (fl, fc), out / f"micro_cond_slices_{tag}.png", column, phase, name, P)
            figs.insert(1, (f"Requested vs achieved {name}", control))
            figs.insert(1, (f"Real vs generated at three {name} values", sides))
            break  # one conditioned fraction is enough for the two figures
    if rl.ndim == 4:
        figs.insert(1, ("Orthogonal slices (generated)", plot_orthogonal(fl[0], out / "micro_orthogonal.png", n_phases=P)))
        figs.append(("Edge profiles", plot_edge_profiles(rl, fl, out / "micro_edges.png")))
        if bool(attrs.get("tortuosity", True)):
            try:
                path, _ = tortuosity_table(rl, fl, out / "micro_tortuosity.png", n=int(attrs.get("tortuosity_samples", 2)))
                figs.append(("Tortuosity factors", path))
            except ImportError:  # taufactor absent: skip the table
                pass
    return figs
