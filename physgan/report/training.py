"""Training section of a report: curves and diagnostics read from a run directory.

``physgan evaluate ... --run RUN`` (and the quickstart) add it to the HTML
report: the balance of critic and generator (Wasserstein estimate or D outputs,
penalty), gradient norms, diversity and coverage against the real data's noise
floor, the validation score, and the warnings the trainer raised.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from physgan.errors import CheckpointError

__all__ = ["read_training", "training_figure"]

#: (panel title, [stats keys]) in the order they are drawn
_PANELS = [
    ("critic / generator balance", ["Loss/W", "Loss/GP", "D/real", "D/fake"]),
    ("gradient norms", ["Grad/G_norm", "Grad/D_norm"]),
    ("diversity and coverage (dashed: real noise floor)", ["Diag/diversity", "Diag/coverage"]),
    ("validation score (lower is better)", ["Val/score"]),
]


def read_training(run_dir: str | Path) -> dict[str, Any]:
    """Curves (``stats.jsonl``) and the diagnostics summary (``diagnostics.json``) of a run.

    Returns
    -------
    dict
        ``{'run': str, 'curves': {key: [[step, value], ...]}, 'diagnostics': dict | None, 'summary': str | None}``.
    """
    run_dir = Path(run_dir)
    stats = run_dir / "stats.jsonl"
    if not stats.is_file():
        raise CheckpointError(f"{run_dir}: not a trained run (no stats.jsonl)")
    wanted = {k for _, keys in _PANELS for k in keys} | {f"{k}_floor" for k in ("Diag/diversity", "Diag/coverage")}
    curves: dict[str, list[list[float]]] = {}
    for line in stats.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut by a kill
        for k, v in rec.items():
            if k in wanted and isinstance(v, (int, float)):
                curves.setdefault(k, []).append([rec.get("step", 0), float(v)])
    diag, summary = None, None
    if (run_dir / "diagnostics.json").is_file():
        from physgan.train.diagnostics import format_summary

        diag = json.loads((run_dir / "diagnostics.json").read_text())
        try:
            summary = format_summary(diag)
        except (KeyError, TypeError, ValueError):
            summary = None
    return {"run": str(run_dir), "curves": curves, "diagnostics": diag, "summary": summary}


def training_figure(training: dict[str, Any]):
    """A 2 x 2 figure of the training curves (a matplotlib Figure, no pyplot state)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 7), layout="constrained")
    axes = fig.subplots(2, 2).ravel()
    curves = training["curves"]
    for ax, (title, keys) in zip(axes, _PANELS):
        drawn = False
        for k in keys:
            if k not in curves:
                continue
            steps, vals = zip(*curves[k])
            line = ax.plot(steps, vals, label=k)[0]
            drawn = True
            floor = curves.get(f"{k}_floor")
            if floor:
                ax.plot(*zip(*floor), ls="--", color=line.get_color(), alpha=0.7)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("generator step")
        if drawn:
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, "not recorded", ha="center", va="center", transform=ax.transAxes)
    return fig
