"""Timing helpers shared by the benchmarks: warm-up, interleaved repeats, medians, memory, environment.

Figures on a shared machine drift with the load; the helpers therefore time baseline and candidate
*interleaved in one process* (A B B A A B ...), take medians, and report ``os.getloadavg()`` next to
every figure. Memory: peak resident set size of a section (a thread polls ``/proc/self/statm``) and
``torch.cuda.max_memory_allocated``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import signal
import subprocess
import sys
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
    "paired_rates",
    "paired_rates_line",
    "median",
    "load",
    "rss_mb",
    "peak_rss_mb",
    "MemWatch",
    "env_info",
    "markdown_table",
    "physgan_cmd",
    "cpu_env",
    "add_training_args",
    "run_with_budget",
    "train_with_budget",
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


def paired_rates(fast: Callable[[], Any], slow: Callable[[], Any], n_fast: int, n_slow: int, rounds: int = 3) -> dict[str, Any]:
    """Items/s of ``fast`` over ``slow`` (a surrogate over its simulator), timed back to back ``rounds`` times.

    Both are timed in alternation (:func:`interleave`, one warm-up call each), so a load on the machine that comes
    and goes moves both: single timings put the same ratio anywhere in a 2x range here. ``n_fast`` / ``n_slow``:
    items made per call. Returns the per-round rates (``fast_per_s``, ``slow_per_s``), their ``ratios`` and the
    ``median_ratio`` reported.
    """
    times = interleave({"fast": fast, "slow": slow}, rounds)
    f = [n_fast / t for t in times["fast"]]
    s = [n_slow / t for t in times["slow"]]
    ratios = [a / b for a, b in zip(f, s)]
    return {"fast_per_s": f, "slow_per_s": s, "ratios": ratios, "median_ratio": median(ratios)}


def paired_rates_line(q: dict[str, Any], fast: str, slow: str, goal: float = 100.0) -> str:
    """One report line for :func:`paired_rates`: each round's rates and ratio, and the median against ``goal``."""
    per_round = ", ".join(f"{a:.4g} / {b:.3g} = {r:.0f}x" for a, b, r in zip(q["fast_per_s"], q["slow_per_s"], q["ratios"]))
    return f"{fast} over {slow}, timed in alternation: {per_round}; **median {q['median_ratio']:.0f}x** (goal ≥ {goal:g}x)"


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


# ---- trained-model benchmarks: the CLI in a subprocess with a wall-clock budget ----------------------------------


def physgan_cmd(*args: str) -> list[str]:
    """``python -m physgan ARGS`` with this interpreter."""
    return [sys.executable, "-m", "physgan", *args]


def cpu_env(threads: int) -> dict[str, str]:
    """The environment with ``OMP_NUM_THREADS``/``MKL_NUM_THREADS`` set (torch's intra-op threads in a subprocess)."""
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    return env


def add_training_args(p: argparse.ArgumentParser, preset: str = "quick", minutes: float = 60.0) -> argparse.ArgumentParser:
    """``--preset --train-minutes --max-steps --set --device --threads --seed`` for :func:`train_with_budget`."""
    p.add_argument("--preset", default=preset, help=f"domain preset for the networks and optimiser (default {preset})")
    p.add_argument("--train-minutes", type=float, default=minutes, help="wall-clock training budget")
    p.add_argument("--max-steps", type=int, default=1_000_000, help="generator steps if the budget is not reached first")
    p.add_argument("--set", action="append", default=[], help="extra config overrides, as physgan train --set")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--threads", type=int, default=1, help="CPU threads for training and timing")
    p.add_argument("--seed", type=int, default=0)
    return p


def add_checkpoint_arg(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """``--checkpoint``: which checkpoint of a trained workdir a benchmark evaluates (see :func:`checkpoint_suffix`)."""
    p.add_argument(
        "--checkpoint", default="best",
        help="checkpoint evaluated: best (default; else last), last, or a file in run/checkpoints (e.g. step-0004000.pt) "
        "of a trained workdir; other than best, the report, figures and results get the suffix _<name>",
    )  # fmt: skip
    return p


def checkpoint_to_load(run_dir: Path, requested: str) -> str:
    """The checkpoint :func:`physgan.run.load_run` is given: ``requested``, except ``best`` falls back to ``last``
    when the run kept no best (no validation split)."""
    if requested == "best" and not (Path(run_dir) / "checkpoints" / "best.pt").exists():
        return "last"
    return requested


def checkpoint_suffix(requested: str) -> str:
    """``""`` for the default ``best`` (its outputs keep their plain names), else ``_<stem>`` (``_last``,
    ``_step-0004000``): an evaluation of another checkpoint never overwrites the best's results."""
    return "" if requested == "best" else f"_{Path(requested).stem}"


def run_with_budget(cmd: list[str], env: dict[str, str], log: Any, minutes: float, grace_s: float = 300.0) -> tuple[bool, int]:
    """Run ``cmd`` (a ``physgan train`` command) to its end, sending it SIGTERM after ``minutes`` of wall time.

    A benchmark stopped by SIGTERM or Ctrl-C stops its training the same way first (SIGTERM: physgan checkpoints and
    exits, so a rerun resumes) and waits up to ``grace_s`` for it (then kills it). Killed alone, a benchmark left its
    training running with no budget on the core of the next run (bench/RESULTS.md §11, thirty-first session).

    Parameters
    ----------
    cmd : list of str
        The command.
    env : dict
        Its environment.
    log : file
        Where its output goes.
    minutes : float
        The wall-clock budget.
    grace_s : float
        How long a stopped child may take to checkpoint.

    Returns
    -------
    (bool, int)
        Whether the budget stopped it; its exit status.
    """

    def stop(signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        raise SystemExit(f"benchmark stopped by {name}; its training was told to checkpoint and stop (rerun to resume)")

    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    previous = signal.signal(signal.SIGTERM, stop) if threading.current_thread() is threading.main_thread() else None
    deadline = time.perf_counter() + 60 * minutes
    stopped = False
    try:
        while proc.poll() is None:
            if time.perf_counter() > deadline and not stopped:
                proc.send_signal(signal.SIGTERM)
                stopped = True
            time.sleep(0.2)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        if proc.poll() is None:  # the benchmark itself was stopped: so is its training (a repeated SIGTERM is harmless)
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    return stopped, proc.returncode


def train_with_budget(domain: str, data: Path, run_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    """``physgan train DOMAIN`` in a subprocess, stopped by SIGTERM after ``args.train_minutes``.

    SIGTERM is physgan's preemption path (checkpoint, exit 0), so the budget ends training the way a
    batch scheduler would. An existing ``last.pt`` is resumed and the wall time of every session is
    summed; ``benchmark_train.json`` in ``run_dir`` marks the step done: a rerun returns it, unless that training
    ended at its own ``--max-steps`` and this one asks for more steps, which trains on from the last checkpoint within
    what is left of ``args.train_minutes`` after the earlier sessions (so a finished run can be extended, e.g. 4000 ->
    6500 steps, by the same command with a larger ``--max-steps``).

    Returns
    -------
    dict
        ``command``, ``steps`` (from the final checkpoint, which stats may lag), ``wall_s`` (all
        sessions), ``sessions``, ``stopped_by_budget``, ``device``, ``preset``, ``threads``, ``overrides``.
    """
    done = run_dir / "benchmark_train.json"
    minutes = args.train_minutes
    if done.exists():
        record = json.loads(done.read_text())
        reached = not record.get("stopped_by_budget", True) and record.get("steps", 0) >= record.get("max_steps", record.get("steps", 0))
        minutes = args.train_minutes - record.get("wall_s", 0.0) / 60.0
        if not (reached and args.max_steps > record.get("steps", 0) and minutes > 0):
            return record
        print(f"training on from step {record['steps']} to {args.max_steps} ({minutes:.1f} of {args.train_minutes} min left)")
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    argv = ["train", domain, "--data", str(data), "--run", str(run_dir), "--preset", args.preset, "--steps", str(args.max_steps)]
    argv += ["--device", args.device, "--seed", str(args.seed), "--quiet"]
    argv += [f"--set={s}" for s in args.set]
    if (run_dir / "checkpoints" / "last.pt").exists():
        argv += ["--resume", "auto"]
    log_path = run_dir.parent / "train.out"
    t0 = time.perf_counter()
    usage0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    stopped = False
    with open(log_path, "a") as log:
        log.write("$ physgan " + " ".join(argv) + "\n")
        log.flush()
        stopped, returncode = run_with_budget(physgan_cmd(*argv), cpu_env(args.threads), log, minutes)
    wall = time.perf_counter() - t0
    usage1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (usage1.ru_utime + usage1.ru_stime) - (usage0.ru_utime + usage0.ru_stime)
    if returncode != 0:
        raise SystemExit(f"training failed (exit {returncode}); see {log_path}")
    sessions = run_dir / "benchmark_train_sessions.jsonl"
    with open(sessions, "a") as fh:
        fh.write(json.dumps({"wall_s": wall, "cpu_s": cpu, "stopped_by_budget": stopped}) + "\n")
    records = [json.loads(s) for s in sessions.read_text().splitlines() if s.strip()]
    walls = [r["wall_s"] for r in records]
    from physgan.train.checkpoint import latest_checkpoint, load_checkpoint

    stats = run_dir / "stats.jsonl"
    rows = [json.loads(s) for s in stats.read_text().splitlines() if s.strip()] if stats.exists() else []
    last = latest_checkpoint(run_dir)
    steps = max([r.get("step", 0) for r in rows] + ([int(load_checkpoint(last)["step"])] if last is not None else [0]))
    out = {
        "command": "physgan " + " ".join(argv),
        "steps": steps,
        "wall_s": sum(walls),
        "cpu_s": sum(r.get("cpu_s", float("nan")) for r in records),  # CPU time the training used (contention shows here)
        "sessions": len(walls),
        "stopped_by_budget": stopped,
        "max_steps": args.max_steps,
        "device": args.device,
        "preset": args.preset,
        "threads": args.threads,
        "overrides": list(args.set),
    }
    from physgan.io.atomic import atomic_output

    with atomic_output(done, overwrite=True) as tmp:
        Path(tmp).write_text(json.dumps(out))
    return out
