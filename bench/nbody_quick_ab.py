"""A/B of N-body model settings at the quickstart's size (issue 17, goal 3).

Runs exactly the steps of ``physgan quickstart nbody`` (the quickstart's simulated training and held-out
files, seeds 1 and 2; the ``quick`` preset; generation at the held-out conditions with seed 3; evaluation
against the held-out set with the training file beside it) once per arm, with the arm's config overrides,
and prints goal 3's figures side by side::

    OMP_NUM_THREADS=1 taskset -c 1 python -m bench.nbody_quick_ab --workdir /tmp/nqa \\
        --arm base --arm steps1600:train.steps=1600 --arm logc:@log_conditions

An arm is ``NAME[:KEY=VALUE[,KEY=VALUE...]]`` (``--set``-style overrides of the resolved config); the token
``@log_conditions`` normalises Omega_m and sigma8 on a log scale (the domain's ``condition_scales``) for that arm.
Data and finished arms are reused from ``--workdir``: delete an arm's folder to rerun it.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from bench._util import env_info

GOAL_KEYS = (
    "pk_ratio_max_dev",
    "pk_ratio_mean_dev",
    "mean_density_ratio",
    "pk_sigma8_response_ratio",
    "pdf_separation",
    "peak_separation",
    "mf_v1_dev",
    "mf_chi_dev",
)


def _parse_arm(text: str) -> tuple[str, dict[str, str], bool]:
    name, _, rest = text.partition(":")
    sets: dict[str, str] = {}
    log_conditions = False
    for item in filter(None, rest.split(",")):
        if item == "@log_conditions":
            log_conditions = True
            continue
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"arm '{text}': '{item}' is not KEY=VALUE")
        sets[key] = value
    return name, sets, log_conditions


def _data(workdir: Path) -> tuple[Path, Path]:
    from physgan.datamake import make_data
    from physgan.domains.base import get_domain
    from physgan.quickstart import heldout_size

    qs = get_domain("nbody").quickstart
    opts = dict(qs["make"])
    files = []
    for name, seed, n in (("train.h5", 1, int(opts["n"])), ("heldout.h5", 2, heldout_size(qs, int(opts["n"])))):
        path = workdir / "data" / name
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            make_data("nbody", path, **{**opts, "seed": seed, "n": n, "overwrite": True})
        files.append(path)
    return files[0], files[1]


def run_arm(workdir: Path, name: str, sets: dict[str, str], log_conditions: bool, train_file: Path, held_file: Path) -> dict:
    """Train, generate and evaluate one arm; returns its goal figures (cached in ``workdir/name/result.json``)."""
    from physgan.config import resolve_config
    from physgan.domains.base import get_domain
    from physgan.evaluation import evaluate
    from physgan.io.hdf5 import read_all
    from physgan.run import load_run
    from physgan.train.checkpoint import latest_checkpoint, load_checkpoint
    from physgan.train.loop import train

    out = workdir / name
    cached = out / "result.json"
    if cached.exists() and all(k in json.loads(cached.read_text()) for k in GOAL_KEYS):
        return json.loads(cached.read_text())
    dom = get_domain("nbody")
    scales = dict(dom.condition_scales)
    if log_conditions:
        dom.condition_scales = {**scales, "omega_m": "log", "sigma8": "log"}
    try:
        values = {"data": {"path": str(train_file)}, "train": {"device": "cpu"}}
        cfg = resolve_config("nbody", "quick", values=values, overrides=[f"{k}={v}" for k, v in sets.items()])
        t0 = time.process_time()
        last = latest_checkpoint(out / "run") if (out / "run").exists() else None
        if last is None or int(load_checkpoint(last)["step"]) < cfg.train.steps:  # else: trained, evaluate again
            train(cfg, out / "run", progress=False, **({"resume": "auto"} if last is not None else {}))
        train_cpu = time.process_time() - t0
        if cached.exists():  # trained before: keep that run's training time
            train_cpu = json.loads(cached.read_text()).get("train_cpu_s", train_cpu)
    finally:
        dom.condition_scales = scales
    run = load_run(out / "run", device="cpu")
    _, c_held = read_all(held_file)
    fake = run.generate(out / "generated.h5", len(c_held), c_held, seed=3, overwrite=True, progress=False, allow_extrapolation=True)
    ev = evaluate(str(held_file), str(fake), domain="nbody", train=str(train_file), seed=0, run=out / "run", progress=False)
    metrics = ev.to_dict()["metrics"]
    res = {"arm": name, "sets": sets, "log_conditions": log_conditions, "steps": cfg.train.steps, "train_cpu_s": train_cpu}
    for key in GOAL_KEYS:
        m = metrics.get(f"physics/{key}", {})
        res[key] = [m.get("value", float("nan")), m.get("error", float("nan")), m.get("floor", float("nan"))]
    cached.write_text(json.dumps(res, indent=1))
    return res


def _fmt(v: list[float]) -> str:
    value, err, floor = v
    if not np.isfinite(value):
        return "n/a"
    s = f"{value:.3f}"
    if np.isfinite(err):
        s += f" ± {err:.3f}"
    if np.isfinite(floor):
        s += f" ({floor:.3f})"
    return s


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", type=Path, required=True)
    ap.add_argument("--arm", action="append", default=[], help="NAME[:KEY=VALUE,...] (repeatable; default: base)")
    args = ap.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    print(env_info("cpu"), flush=True)
    train_file, held_file = _data(args.workdir)
    rows = [run_arm(args.workdir, *_parse_arm(a), train_file, held_file) for a in (args.arm or ["base"])]
    print("| arm | overrides | steps | train CPU s | " + " | ".join(GOAL_KEYS) + " |")
    print("|---" * (4 + len(GOAL_KEYS)) + "|")
    for r in rows:
        sets = ", ".join(f"{k}={v}" for k, v in r["sets"].items()) + (" log conditions" if r["log_conditions"] else "")
        print(f"| {r['arm']} | {sets or '-'} | {r['steps']} | {r['train_cpu_s']:.0f} | " + " | ".join(_fmt(r[k]) for k in GOAL_KEYS) + " |")


if __name__ == "__main__":
    main()
