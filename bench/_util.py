"""Timing helpers shared by the benchmarks: warm-up, interleaved repeats, medians, memory, environment.

Figures on a shared machine drift with the load; the helpers therefore time baseline and candidate
*interleaved in one process* (A B B A A B ...), take medians, and report ``os.getloadavg()`` next to
every figure. Memory: peak resident set size of a section (a thread polls ``/proc/self/statm``) and
``torch.cuda.max_memory_allocated``.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "add_common_args",
    "setup",
    "sync",
    "timed",
    "interleave",
    "median",
    "load",
    "rss_mb",
    "peak_rss_mb",
    "MemWatch",
    "env_info",
    "markdown_table",
]

ROOT = Path(__file__).resolve().parents[1]


def add_common_args(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """``--device cpu|cuda``, ``--quick``, ``--threads``, ``--rounds``."""
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="where the torch work runs")
    p.add_argument("--quick", action="store_true", help="smaller sizes and fewer repeats (a smoke run)")
    p.add_argument(
        "--threads", type=int, default=1, help="torch intra-op threads (default 1: on a loaded CPU more threads than free cores spin)"
    )
    p.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default: 3, 2 with --quick)")
    return p


def setup(args: argparse.Namespace):
    """Apply ``--threads``, check ``--device``; returns the torch device."""
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device available")
    if args.rounds is None:
        args.rounds = 2 if args.quick else 3
    return torch.device(args.device)


def sync(device: Any = None) -> None:
    """Wait for queued CUDA work (no-op on CPU)."""
    import torch

    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def timed(fn: Callable[[], Any], device: Any = None) -> tuple[float, Any]:
    """Seconds of one call of ``fn`` (CUDA synchronised before and after) and its result."""
    sync(device)
    t0 = time.perf_counter()
    out = fn()
    sync(device)
    return time.perf_counter() - t0, out


def interleave(cands: dict[str, Callable[[], Any]], rounds: int, device: Any = None, warmup: int = 1) -> dict[str, list[float]]:
    """Time each candidate ``rounds`` times, interleaved, the order reversed every other round.

    Parameters
    ----------
    cands : dict
        Name -> zero-argument callable. A callable returning a float uses that as its time
        (for candidates that time themselves, e.g. a difference of two runs); otherwise wall time.
    rounds : int
        Timed calls per candidate.
    device : optional
        CUDA device to synchronise around each call.
    warmup : int
        Untimed calls per candidate first.

    Returns
    -------
    dict
        Name -> list of seconds.
    """
    for _ in range(warmup):
        for fn in cands.values():
            fn()
    times: dict[str, list[float]] = {k: [] for k in cands}
    names = list(cands)
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            dt, out = timed(cands[name], device)
            times[name].append(float(out) if isinstance(out, float) else dt)
    return times


def median(xs) -> float:
    return float(np.median(np.asarray(xs, dtype=np.float64)))


def load() -> str:
    """The 1-minute load average and the CPU count, e.g. ``'load 7.9/2'``."""
    return f"load {os.getloadavg()[0]:.1f}/{os.cpu_count()}"


def rss_mb() -> float:
    """Current resident set size of this process in MiB."""
    with open("/proc/self/statm") as fh:
        pages = int(fh.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    """Peak resident set size of this process over its life in MiB (``ru_maxrss``)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class MemWatch:
    """Peak RSS (polled every ``interval`` s) and CUDA max allocated within a ``with`` block.

    Attributes after the block: ``peak_rss_mb``, ``start_rss_mb``, ``cuda_peak_mb`` (None on CPU).
    """

    def __init__(self, device: Any = None, interval: float = 0.01):
        self.device, self.interval = device, interval
        self.peak_rss_mb = self.start_rss_mb = 0.0
        self.cuda_peak_mb: float | None = None
        self._stop = threading.Event()

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.peak_rss_mb = max(self.peak_rss_mb, rss_mb())
            self._stop.wait(self.interval)

    def __enter__(self) -> MemWatch:
        import torch

        self.start_rss_mb = self.peak_rss_mb = rss_mb()
        if self.device is not None and torch.device(self.device).type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        import torch

        self._stop.set()
        self._thread.join()
        self.peak_rss_mb = max(self.peak_rss_mb, rss_mb())
        if self.device is not None and torch.device(self.device).type == "cuda":
            self.cuda_peak_mb = torch.cuda.max_memory_allocated(self.device) / 2**20

    def __str__(self) -> str:
        cuda = f", CUDA max allocated {self.cuda_peak_mb:.0f} MiB" if self.cuda_peak_mb is not None else ""
        return f"peak RSS {self.peak_rss_mb:.0f} MiB (start {self.start_rss_mb:.0f}){cuda}"


def env_info(device: Any = "cpu") -> str:
    """One line: date, commit, device, versions, threads, load."""
    import h5py
    import torch

    try:
        commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain"], capture_output=True, text=True).stdout.strip()
        commit += "+dirty" if dirty else ""
    except OSError:
        commit = "?"
    dev = str(device)
    if torch.device(device).type == "cuda":
        dev = torch.cuda.get_device_name(torch.device(device))
    else:
        dev = f"CPU {platform.processor() or platform.machine()} x{os.cpu_count()}"
    return (
        f"{time.strftime('%Y-%m-%d %H:%M')} commit {commit}; {dev}; torch {torch.__version__}, numpy {np.__version__}, "
        f"h5py {h5py.__version__}; torch threads {torch.get_num_threads()}; {load()}"
    )


def markdown_table(header: list[str], rows: list[list[Any]]) -> str:
    """A GitHub markdown table (floats to 4 significant digits)."""

    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)
