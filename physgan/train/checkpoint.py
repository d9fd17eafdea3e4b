"""Checkpoints: full training state, written atomically, loaded without pickle code.

A checkpoint is a ``torch.save`` dict of tensors and plain Python values only,
so :func:`load_checkpoint` can use ``weights_only=True``: a file cannot run code
when loaded (a malicious pickle is refused with :class:`CheckpointError`).

Run directory::

    RUN/config.yaml  run.json  stats.jsonl  log.txt
    RUN/checkpoints/last.pt  best.pt  step-000500.pt ...
"""

from __future__ import annotations

import os
import pickle
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from physgan.errors import CheckpointError, PhysganError
from physgan.io.atomic import atomic_output, sweep_temporaries

__all__ = [
    "save_checkpoint",
    "load_checkpoint",
    "latest_checkpoint",
    "latest_intact_checkpoint",
    "checkpoint_names",
    "rng_state",
    "set_rng_state",
    "prune_snapshots",
]

_SNAPSHOT = re.compile(r"^step-(\d+)\.pt$")


def rng_state() -> dict[str, Any]:
    """Every global RNG state (torch CPU/CUDA, numpy, python) as tensors and plain values."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "key": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "gauss": [int(np_state[3]), float(np_state[4])],
        },
        "python": _py_state_to_plain(random.getstate()),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` saved."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["key"].numpy().astype(np.uint32), n["pos"], n["gauss"][0], n["gauss"][1]))
    random.setstate(_py_state_from_plain(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        try:
            torch.cuda.set_rng_state_all(state["cuda"])
        except (RuntimeError, IndexError):  # fewer GPUs now than when saved
            pass


def _py_state_to_plain(s):
    return [s[0], list(s[1]), s[2]]


def _py_state_from_plain(s):
    return (s[0], tuple(s[1]), s[2])


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``state`` to ``path`` atomically (temp file, fsync, rename, fsync dir)."""
    path = Path(path)
    try:
        with atomic_output(path, overwrite=True) as tmp:
            torch.save(state, tmp)
    except RuntimeError as err:  # torch's zip writer reports a full disk / failed write as RuntimeError
        free = _free_bytes(path.parent)
        hint = f" ({free / 2**20:.1f} MiB free on that filesystem)" if free is not None else ""
        raise CheckpointError(
            f"{path}: could not write the checkpoint{hint}; the previous checkpoint is intact: {str(err).splitlines()[0]}"
        ) from err
    except PhysganError as err:  # OSError from atomic_output (disk full, read-only, ...)
        raise CheckpointError(f"{err}; the previous checkpoint is intact") from err
    return path


def _free_bytes(directory: Path) -> int | None:
    try:
        return shutil.disk_usage(directory).free
    except OSError:
        return None


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint safely (``weights_only=True``); clear errors on bad files."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"{path}: refused to load: the file contains objects other than tensors and plain values "
            f"(possibly a malicious or foreign pickle): {str(err).splitlines()[0]}"
        ) from err
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        raise CheckpointError(
            f"{path}: not a readable physgan checkpoint (truncated or corrupted?): {str(err).splitlines()[0]}"
        ) from err


def latest_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    """``checkpoints/last.pt`` if present, else the newest numbered snapshot, else None."""
    ckdir = Path(run_dir) / "checkpoints"
    sweep_temporaries(ckdir)
    last = ckdir / "last.pt"
    if last.is_file():
        return last
    snaps = sorted((int(m.group(1)), p) for p in ckdir.glob("step-*.pt") if (m := _SNAPSHOT.match(p.name)))
    return snaps[-1][1] if snaps else None


def _candidates(run_dir: str | os.PathLike) -> list[Path]:
    """Checkpoints of a run, newest first: ``last.pt``, the numbered snapshots, then ``best.pt``."""
    ckdir = Path(run_dir) / "checkpoints"
    sweep_temporaries(ckdir)
    snaps = sorted((int(m.group(1)), p) for p in ckdir.glob("step-*.pt") if (m := _SNAPSHOT.match(p.name)))
    named = [ckdir / "last.pt", *(p for _, p in reversed(snaps)), ckdir / "best.pt"]
    return [p for p in named if p.is_file()]


def latest_intact_checkpoint(
    run_dir: str | os.PathLike, map_location: str | torch.device = "cpu"
) -> tuple[Path, dict[str, Any], list[str]] | None:
    """The newest checkpoint of a run that loads, skipping damaged ones (a truncated ``last.pt``).

    Parameters
    ----------
    run_dir : path
        The run directory.
    map_location : str or torch.device
        Where tensors are loaded.

    Returns
    -------
    (path, state, skipped) or None
        ``skipped`` holds one line per damaged newer checkpoint (path and why); None when the
        run holds no checkpoint at all.

    Raises
    ------
    CheckpointError
        When checkpoints exist but none of them loads.
    """
    skipped: list[str] = []
    for path in _candidates(run_dir):
        try:
            return path, load_checkpoint(path, map_location), skipped
        except CheckpointError as err:
            skipped.append(str(err))
    if skipped:
        raise CheckpointError(f"{run_dir}: no checkpoint of this run loads: " + "; ".join(skipped))
    return None


def checkpoint_names(run_dir: str | os.PathLike) -> list[str]:
    """File names of the checkpoints in ``RUN/checkpoints`` (for error messages)."""
    ckdir = Path(run_dir) / "checkpoints"
    return sorted(p.name for p in ckdir.glob("*.pt")) if ckdir.is_dir() else []


def prune_snapshots(ckdir: str | os.PathLike, keep: int) -> None:
    """Delete all but the ``keep`` newest ``step-*.pt`` snapshots."""
    snaps = sorted((int(m.group(1)), p) for p in Path(ckdir).glob("step-*.pt") if (m := _SNAPSHOT.match(p.name)))
    for _, p in snaps[: max(len(snaps) - keep, 0)]:
        try:
            p.unlink()
        except OSError:
            pass
