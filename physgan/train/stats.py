"""Training statistics: stats.jsonl, optional TensorBoard, status lines and progress."""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any

from physgan.progress import Progress as CountProgress

__all__ = ["StatsWriter", "Progress", "RunLog"]


class StatsWriter:
    """Append JSON lines to ``stats.jsonl`` (and TensorBoard scalars when installed)."""

    def __init__(self, run_dir: Path, enabled: bool = True, tensorboard: bool = True):
        self.enabled = enabled
        self.path = Path(run_dir) / "stats.jsonl"
        self._tb = None
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(Path(run_dir) / "tensorboard"))
            except Exception:  # tensorboard not installed: JSONL only
                self._tb = None

    def write(self, step: int, values: dict[str, Any]) -> None:
        if not self.enabled:
            return
        clean = {
            k: (float(v) if isinstance(v, (int, float)) and math.isfinite(float(v)) else (None if isinstance(v, float) else v))
            for k, v in values.items()
        }
        with open(self.path, "a") as fh:
            fh.write(json.dumps({"step": step, "time": time.time(), **clean}) + "\n")
            fh.flush()
        if self._tb is not None:
            for k, v in values.items():
                if isinstance(v, (int, float)) and math.isfinite(float(v)):
                    self._tb.add_scalar(k, v, step)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def _duration(seconds: float) -> str:
    """``42 s``, ``12 min``, ``3.5 h``."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class Progress:
    """Training progress on :class:`physgan.progress.Progress`: a tqdm bar on a terminal, else a status line per tick.

    Between ticks, :meth:`heartbeat` (called every step, cheap) shows progress by the clock:
    a line after the first step and then every ``heartbeat_s`` seconds, so slow steps (64^3
    volumes on a CPU) never leave the user minutes without a sign of life.
    """

    def __init__(self, total: int, initial: int = 0, desc: str = "train", enabled: bool = True, heartbeat_s: float = 20.0):
        self.heartbeat_s = heartbeat_s
        self._shown = CountProgress(total, desc, "step", None if enabled else False, initial=initial)
        self.enabled = self._shown.enabled
        self._last_shown = time.time()
        self.total = total
        self.t0 = time.time()
        self.start_step = initial

    @property
    def _bar(self):
        return self._shown.bar

    def update(self, step: int, values: dict[str, float]) -> None:
        """A tick: the step and its statistics."""
        if not self.enabled:
            return
        if self._bar is not None:
            self._shown.set(step, {k.split("/")[-1]: f"{v:.3g}" for k, v in values.items()})
            return
        self._last_shown = time.time()
        rate = (step - self.start_step) / max(time.time() - self.t0, 1e-9)
        text = " ".join(f"{k}={v:.4g}" for k, v in values.items())
        print(f"step {step}/{self.total} {rate:.2f} steps/s {text}", file=sys.stderr, flush=True)

    def start(self) -> None:
        """The loop begins now: rates and estimates count from here, not from the set-up."""
        self.t0 = self._last_shown = time.time()

    def heartbeat(self, step: int) -> None:
        """Show progress by time between ticks: after the first step, then every ``heartbeat_s`` seconds."""
        if not self.enabled:
            return
        now = time.time()
        first = step == self.start_step + 1
        if not first and now - self._last_shown < (0.5 if self._bar is not None else self.heartbeat_s):
            return
        self._last_shown = now
        if self._bar is not None:
            self._shown.set(step)
            return
        per_step = (now - self.t0) / max(step - self.start_step, 1)
        eta = per_step * max(self.total - step, 0)
        print(f"step {step}/{self.total} ({per_step:.3g} s/step, about {_duration(eta)} left)", file=sys.stderr, flush=True)

    def message(self, text: str) -> None:
        """A message line (above the bar, or a plain line); nothing when disabled."""
        self._shown.write(text)

    def close(self) -> None:
        self._shown.close()


class RunLog:
    """Messages of a training run: ``log.txt`` (main process) and the progress display.

    Parameters
    ----------
    path : Path or None
        ``log.txt`` (appended to); None on the other ranks.
    progress : Progress
        Where messages show (above the bar, or as lines).
    """

    def __init__(self, path: Path | None, progress: Progress):
        self.progress = progress
        self._file = open(path, "a") if path is not None else None

    def log(self, text: str) -> None:
        """A line in log.txt and on the progress display."""
        self.progress.message(text)
        if self._file:
            self._file.write(time.strftime("%Y-%m-%d %H:%M:%S ") + text + "\n")
            self._file.flush()

    def notice(self, text: str) -> None:
        """A line the user must see even with --quiet (resume decisions): log.txt and stderr."""
        self.log(text)
        if self._file and not self.progress.enabled:
            print(f"physgan: {text}", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._file:
            self._file.close()
            self._file = None
