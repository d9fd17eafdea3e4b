"""Time of ``physgan evaluate`` per stage, against an older implementation run by the same script.

    python -m bench.evaluate_speed --real R.h5 --fake F.h5 --train T.h5 --real2 R2.h5
    python -m bench.evaluate_speed --real R.h5 --fake F.h5 --train T.h5 --real2 R2.h5 --baseline 6aee422

The current code runs in this process (progress lines on stderr, stage times
from ``metrics.json``'s ``timings_s`` (wall) and ``timings_cpu_s`` (this
process's CPU seconds: the work done, whatever else loads a shared machine);
``report`` is the time of writing the report, ``load`` figures are printed at
the start and end of each run). With ``--baseline REV``, the tree of
git revision REV is exported (``git archive``, read-only for the repository)
into a temporary folder and ``python -m physgan evaluate`` of that tree runs on
the same files, with the same seed and bootstrap rounds, in a child process
of this script right after; its ``timings_s`` give the old time per stage.
Stage names changed between implementations: the training set's low-level
representation moved from ``memorisation`` into ``features``, and the new
nearest-neighbour search is ``memorisation_search``; the table therefore also
prints ``features + memorisation`` summed for both.

Make the calorimeter files of issue 18 (CaloChallenge dataset-2 geometry, 10-100 GeV) with::

    physgan data make calo --geometry calochallenge-ds2 --energy 10:100 --n 20000 --seed 1 --out real.h5
    (seed 2 → real2, seed 3 → fake 20000, seed 4 → train 60000)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from bench._util import env_info

ROOT = Path(__file__).resolve().parents[1]
MERGED = ("features", "memorisation_search", "memorisation")


def _load() -> str:
    return "load {:.1f}/{:.1f}/{:.1f}".format(*os.getloadavg())


def run_new(args, report: Path) -> tuple[dict[str, float], dict[str, float]]:
    """Evaluate with the code of this checkout, in this process; wall and CPU seconds per stage."""
    from physgan.evaluation import evaluate

    print(f"new code: start, {_load()}", flush=True)
    ev = evaluate(
        args.real, args.fake, train=args.train, real2=args.real2, seed=args.seed, n_boot=args.n_boot,
        device=args.device, max_samples=args.max_samples, progress=True,
    )  # fmt: skip
    wall, cpu = dict(ev.info["timings_s"]), dict(ev.info.get("timings_cpu_s", {}))
    t0, c0 = time.perf_counter(), time.process_time()
    ev.to_html(report, overwrite=True)
    wall["report"], cpu["report"] = time.perf_counter() - t0, time.process_time() - c0
    print(ev.headline())
    print(f"new code: done, {_load()}", flush=True)
    return wall, cpu


def run_baseline(args, rev: str, report: Path) -> dict[str, float]:
    """Export revision ``rev`` and time its ``physgan evaluate`` on the same inputs (child process)."""
    with tempfile.TemporaryDirectory(prefix="physgan-baseline-") as tmp:
        archive = subprocess.run(["git", "-C", str(args.repo), "archive", rev, "physgan"], check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        cmd = [sys.executable, "-m", "physgan", "evaluate", "--real", args.real, "--fake", args.fake, "--report", str(report),
               "--overwrite", "--seed", str(args.seed), "--n-boot", str(args.n_boot), "--device", args.device]  # fmt: skip
        for opt in ("train", "real2", "max_samples"):
            val = getattr(args, opt)
            if val is not None:
                cmd += [f"--{opt.replace('_', '-')}", str(val)]
        env = {**os.environ, "PYTHONPATH": tmp}
        print(f"old code ({rev}): start, {_load()}", flush=True)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, env=env, cwd=tmp, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        print(f"old code ({rev}): done, {_load()}", flush=True)
    timings = json.loads((report / "metrics.json").read_text())["timings_s"]
    timings["report"] = wall - timings.get("total", 0.0)  # the child's wall beyond its evaluation: start-up and report
    timings["wall (child process)"] = wall
    timings["cpu (child process)"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return timings


def table(new: dict[str, float], cpu: dict[str, float], old: dict[str, float] | None) -> str:
    """Markdown table: stage, new wall and CPU seconds, old wall seconds, old / new (wall)."""
    for t in (new, cpu, old):
        if t is not None:
            t["features + memorisation"] = sum(t.get(k, 0.0) for k in MERGED)
    stages = list(new) + [k for k in (old or {}) if k not in new]
    lines = ["| stage | new wall [s] | new CPU [s] | old wall [s] | old / new |", "|---|---|---|---|---|"]
    for k in stages:
        a, c, b = new.get(k), cpu.get(k), (old or {}).get(k)
        ratio = f"{b / a:.1f}x" if a and b else ""
        cells = ["" if v is None else f"{v:.1f}" for v in (a, c, b)]
        lines.append(f"| {k} | {' | '.join(cells)} | {ratio} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--real", required=True)
    p.add_argument("--fake", required=True)
    p.add_argument("--train", default=None)
    p.add_argument("--real2", default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-boot", type=int, default=10)
    p.add_argument("--device", default="cpu")
    p.add_argument("--max-samples", type=int, default=None)
    p.add_argument("--baseline", default=None, metavar="REV", help="git revision of the implementation to compare with")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    p.add_argument("--repo", default=str(ROOT), help="git repository holding --baseline (default: this checkout)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(env_info(args.device))
    with tempfile.TemporaryDirectory(prefix="physgan-evaluate-speed-") as tmp:
        t0, c0 = time.perf_counter(), time.process_time()
        new, cpu = run_new(args, Path(tmp) / "new")
        new["wall (this process)"], cpu["wall (this process)"] = time.perf_counter() - t0, time.process_time() - c0
        old = run_baseline(args, args.baseline, Path(tmp) / "old") if args.baseline else None
    print(table(new, cpu, old))


if __name__ == "__main__":
    main()
