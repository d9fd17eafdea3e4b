"""Resuming a run: which checkpoint, with which settings, on which data; never silently.

* :func:`resume_point` picks the checkpoint (``--resume auto``: the newest that loads, a damaged
  ``last.pt`` skipped and said so), refuses to mix runs (another model/domain, statistics of a run
  that left no checkpoint) and lists the settings that changed;
* :func:`saved_run_config` is the run's own config, the base a resumed run's settings start from
  (so it keeps its step target unless told otherwise);
* :func:`check_same_data` refuses other data (another shape always, another file of the same shape
  unless ``allow_new_data``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from physgan.config import Config, config_to_dict
from physgan.errors import CheckpointError
from physgan.train.checkpoint import latest_checkpoint, latest_intact_checkpoint, load_checkpoint

__all__ = ["resume_point", "saved_run_config", "config_changes", "data_identity", "check_same_data"]

#: sections whose change makes a checkpoint incompatible with the config
_FIXED_KEYS = ("domain", "model")


def resume_point(run_dir: Path, cfg: Config, resume: str | None) -> tuple[Path | None, dict[str, Any] | None, list[str]]:
    """The checkpoint to resume from and its state (or None), and notes for the user; refuse to mix runs.

    ``resume="auto"`` takes the newest checkpoint that loads (a damaged ``last.pt`` falls back to the
    newest intact snapshot, and says so). It never restarts silently: a run directory that holds
    statistics but no loadable checkpoint is an error, and a fresh one is announced as such.
    """
    notes: list[str] = []
    state = None
    if resume == "auto":
        found = latest_intact_checkpoint(run_dir)
        if found is None:
            _refuse_checkpointless_run(run_dir)
            return None, None, [f"--resume auto: {run_dir} holds no checkpoint yet; starting a new run at step 0"]
        ckpt, state, skipped = found
        if skipped:
            notes.append(f"skipped damaged checkpoint(s): {'; '.join(skipped)}")
            notes.append(f"resuming from the newest intact checkpoint instead: {ckpt} (step {int(state['step'])})")
    elif resume:
        ckpt = Path(resume)
        if not ckpt.is_file():
            raise CheckpointError(f"{ckpt}: checkpoint to resume from does not exist")
        state = load_checkpoint(ckpt)
    else:
        if latest_checkpoint(run_dir) is not None:
            raise CheckpointError(
                f"{run_dir}: already holds a training run; pass --resume auto to continue it, or choose a new --run directory"
            )
        _refuse_checkpointless_run(run_dir)
        return None, None, notes
    saved = state["config"]
    now = config_to_dict(cfg)
    for key in _FIXED_KEYS:
        if saved.get(key) != now.get(key):
            raise CheckpointError(
                f"{run_dir}: belongs to a different configuration: '{key}' was {saved.get(key)!r}, now {now.get(key)!r}; "
                f"use a new --run directory or the original settings"
            )
    changed = config_changes(saved, now)
    if changed:
        notes.append("settings changed since the checkpoint: " + ", ".join(changed))
    return ckpt, state, notes


def _refuse_checkpointless_run(run_dir: Path) -> None:
    """An earlier run in ``run_dir`` trained (stats.jsonl) but left no checkpoint: never start over silently."""
    if (run_dir / "stats.jsonl").is_file():
        raise CheckpointError(
            f"{run_dir}: holds the statistics of an earlier run that left no checkpoint, so there is nothing to resume; "
            "delete that directory to start again, or choose a new --run directory"
        )


def config_changes(saved: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """``section.key old -> new`` for every setting of ``now`` that differs from ``saved`` (paths excluded)."""
    out = []
    for section, values in now.items():
        before = saved.get(section)
        if not isinstance(values, dict) or not isinstance(before, dict):
            continue
        for key, value in values.items():
            if key != "path" and key in before and before[key] != value:
                out.append(f"{section}.{key} {before[key]!r} -> {value!r}")
    return out


def data_identity(path: str, header) -> dict[str, Any]:
    """What identifies a training file: resolved path, size in bytes, samples, shape, condition names."""
    p = Path(path)
    return {
        "path": str(p.resolve()),
        "size": p.stat().st_size if p.is_file() else None,
        "n": int(header.n),
        "sample_shape": list(header.sample_shape),
        "condition_names": list(header.condition_names),
    }


def check_same_data(run_dir: Path, saved_run: dict[str, Any], now: dict[str, Any], allow_new_data: bool) -> str | None:
    """Refuse to continue a run on other data (unless allowed); returns a note when the data changed.

    Data of another sample shape or other conditions can never continue a run; another file of the
    same shape only with ``allow_new_data`` (the original transform and normalisation are kept).
    """
    was = saved_run.get("data_identity") or {
        "path": saved_run.get("data"),
        "sample_shape": saved_run.get("sample_shape"),
        "condition_names": saved_run.get("condition_names"),
    }
    if list(was.get("sample_shape") or []) != now["sample_shape"] or list(was.get("condition_names") or []) != now["condition_names"]:
        raise CheckpointError(
            f"{run_dir}: was trained on samples of shape {tuple(was.get('sample_shape') or ())} with conditions "
            f"{was.get('condition_names')} ({was.get('path')}); {now['path']} holds shape {tuple(now['sample_shape'])} with "
            f"conditions {now['condition_names']}: a run cannot continue on data of another shape; use a new --run directory"
        )
    same = all(was.get(k) in (None, now[k]) for k in ("size", "n")) and (
        was.get("path") == now["path"] or was.get("size") is not None
    )
    if same:
        return None if was.get("path") == now["path"] else f"training data found at a new path: {now['path']} (was {was.get('path')})"
    what = f"{now['path']} ({now['n']} samples) is not the file this run was trained on ({was.get('path')}"
    what += f", {was['n']} samples)" if was.get("n") is not None else ")"
    if not allow_new_data:
        raise CheckpointError(f"{run_dir}: {what}; pass --allow-new-data to continue training on it")
    return f"continuing on new data: {what}; the original data's transform and condition normalisation are kept"


def saved_run_config(run_dir: str | Path) -> dict[str, Any] | None:
    """The config a run directory saved (``config.yaml``) as a dict, or None when it has none yet."""
    import yaml

    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        return None
    try:
        values = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise CheckpointError(f"{path}: unreadable run config: {err}") from err
    if not isinstance(values, dict):
        raise CheckpointError(f"{path}: not a physgan run config (not a mapping)")
    return values
