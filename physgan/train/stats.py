"""Training statistics: stats.jsonl, optional TensorBoard, status lines and progress."""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["StatsWriter", "Progress"]


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


class Progress:
    """A tqdm bar when stderr is a terminal, else a plain status line per tick."""

    def __init__(self, total: int, initial: int = 0, desc: str = "train", enabled: bool = True):
        self.enabled = enabled
        self.interactive = enabled and sys.stderr.isatty()
        self._bar = None
        if self.interactive:
            from tqdm import tqdm

            self._bar = tqdm(total=total, initial=initial, desc=desc, dynamic_ncols=True)
        self.total = total
        self.t0 = time.time()
        self.start_step = initial

    def update(self, step: int, values: dict[str, float]) -> None:
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.n = step
            self._bar.set_postfix({k.split("/")[-1]: f"{v:.3g}" for k, v in values.items()}, refresh=False)
            self._bar.refresh()
            return
        rate = (step - self.start_step) / max(time.time() - self.t0, 1e-9)
        text = " ".join(f"{k}={v:.4g}" for k, v in values.items())
        print(f"step {step}/{self.total} {rate:.2f} steps/s {text}", file=sys.stderr, flush=True)

    def message(self, text: str) -> None:
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.write(text, file=sys.stderr)
        else:
            print(text, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
