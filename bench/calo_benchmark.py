"""Calorimeter benchmark (issues 3, 19): train on simulated GFlash showers, evaluate on independent ones.

::

    python -m bench.calo_benchmark                                   # 100k train, 20k eval, 20k floor, 60 min, preset default
    python -m bench.calo_benchmark --n-train 20000 --n-eval 5000 --train-minutes 10   # a quicker look
    python -m bench.calo_benchmark --device cuda --preset gpu --train-minutes 120       # on a GPU node
    python -m bench.calo_benchmark --geometry calochallenge-ds2 --n-eval 10000           # issue 19 goal 2 (30k train,
                                                              # preset calochallenge, 5000 steps or 60 min)

Steps, each timed and each skipped when its output already exists in ``--workdir`` (so an
interrupted benchmark resumes; training resumes from its last checkpoint):

1. ``physgan data make calo`` (GFlash; CaloGAN geometry, e+ at 1-100 GeV, or with ``--geometry
   calochallenge-ds2`` the CaloChallenge dataset-2 binning, e- at 1-1000 GeV log-uniform): the training
   file (``--n-train``, seed 1), the evaluation file (``--n-eval``, seed 2) and a second independent
   file of the same size for the noise floor (seed 3). The training file's wall time gives the
   simulator's showers/s.
2. ``physgan train calo --preset P`` in a subprocess with a *wall-clock* budget: after
   ``--train-minutes`` the benchmark sends SIGTERM, which physgan answers like a preempted batch job
   (checkpoint, exit 0). The training budget reported is steps, wall time and device.
3. The run's own best checkpoint (selected on its validation split of the *training* file, never on
   the evaluation file; ``--checkpoint step-0004000.pt`` evaluates another of a trained workdir)
   generates one shower per evaluation condition; :func:`physgan.evaluate` then
   reports every separation power (with its noise floor from the two independent simulator files),
   the low- and high-level classifier AUCs, FPD and KPD, and the per-energy-bin figures. The HTML
   report (plots: average shower per layer, feature histograms with ratio panels, response vs
   incident energy) goes to ``<workdir>/report``.
4. Generation speed of the trained generator to memory at batch 1, 100 and 10 000 against the GFlash
   simulator at 1, 100 and 1000 showers per call, in the same process and thread count.

The goals (:data:`GOALS`; issue 19 goal 1, CaloGAN: separation power < 5e-3 for E_tot/E_inc and each E_layer,
< 0.01 for every centre of energy, width, sparsity and the shower depth and its width, < 0.02 for E_ratio and the
voxel spectrum; high-level AUC < 0.80; coverage > 0.8; goal 2, dataset 2: E_layer < 0.01, centres and widths < 0.02,
AUC < 0.90) are printed next to the measured values (:func:`goal`); nothing here asserts them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench._util import (
    add_checkpoint_arg,
    add_training_args,
    checkpoint_suffix,
    checkpoint_to_load,
    cpu_env,
    env_info,
    load,
    paired_rates,
    paired_rates_line,
    physgan_cmd,
    train_with_budget,
)

#: Issue 19's goals per geometry: goal 1 (CaloGAN, 100k e+ at 1-100 GeV) and goal 2 (CaloChallenge dataset 2, 30k e-
#: at 1-1000 GeV log-uniform: E_layer < 0.01, centres and widths < 0.02, AUC < 0.90; the rest is not asked there).
GOALS: dict[str, dict[str, float]] = {
    "calogan": {"e_tot": 5e-3, "e_layer": 5e-3, "lateral": 0.01, "shape": 0.01, "spectrum": 0.02,
                "auc_high": 0.80, "coverage": 0.8},
    "calochallenge-ds2": {"e_layer": 0.01, "lateral": 0.02, "auc_high": 0.90},
}
#: The goal family of each separation-power name prefix.
GOAL_FAMILY = {"e_tot": "e_tot", "e_layer": "e_layer", "ec_": "lateral", "width_": "lateral", "sparsity_": "shape",
               "shower_depth": "shape", "e_ratio": "spectrum", "voxel_energy": "spectrum"}
#: What each geometry's files hold: particle, energy range (GeV), default training showers; and the default preset and
#: step cap of its training (CaloGAN: the default preset until the time budget; dataset 2: the ``calochallenge`` preset,
#: the recipe measured there, for 5000 steps or the time budget, whichever comes first: 57.5 min on one core of the
#: thirty-ninth session's machine, where 5000 steps against 4000 gave AUC 0.891 -> 0.850 (seed 0, calibrated post hoc)
#: and 0.891 -> 0.883 (seed 2, end to end), every layer's energy < 0.005 either way; bench/RESULTS.md §13).
SETUPS: dict[str, dict[str, Any]] = {
    "calogan": {"particle": "e+", "energy": "1:100", "n_train": 100_000, "preset": "default", "max_steps": 1_000_000},
    "calochallenge-ds2": {"particle": "e-", "energy": "1:1000", "n_train": 30_000, "preset": "calochallenge",
                          "max_steps": 5000},
}


def goal(name: str, geometry: str = "calogan") -> str:
    """The issue's goal for a metric name in a geometry (``''`` when it has none)."""
    g = GOALS[geometry]
    if name in ("auc_high", "coverage"):
        return f"{'<' if name == 'auc_high' else '>'} {g[name]}" if name in g else ""
    sep = name.removeprefix("physics/sep/")
    if sep == name or "ebin" in name:
        return ""
    family = next((f for prefix, f in GOAL_FAMILY.items() if sep.startswith(prefix)), None)
    return f"< {g[family]:g}" if family in g else ""


def make_file(out: Path, n: int, seed: int, threads: int, geometry: str = "calogan") -> float | None:
    """Simulate ``n`` showers of ``geometry`` (:data:`SETUPS`) into ``out`` (skipped if it exists); returns the wall
    time, or None if skipped."""
    if out.exists():
        return None
    setup = SETUPS[geometry]
    argv = ["data", "make", "calo", "--geometry", geometry, "--particle", setup["particle"], "--energy", setup["energy"]]
    argv += ["--n", str(n), "--seed", str(seed), "--out", str(out)]
    t0 = time.perf_counter()
    subprocess.run(physgan_cmd(*argv), check=True, env=cpu_env(threads), stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def generation_speed(run, conditions: np.ndarray, threads: int, seed: int, geometry: str = "calogan") -> list[dict[str, Any]]:
    """Showers/s of the trained generator (to memory) and of GFlash, in this process; ``conditions`` (N, k) as the
    evaluation file stores them (CaloGAN: GeV, CaloChallenge: MeV)."""
    import torch

    from physgan.domains.calo.features import incident_energy_mev
    from physgan.domains.calo.make import resolve_geometry
    from physgan.sim.gflash import simulate_showers

    torch.set_num_threads(threads)
    geom = resolve_geometry(geometry)
    particle = SETUPS[geometry]["particle"]
    e_file = np.asarray(conditions, dtype=np.float64).reshape(len(conditions), -1)
    energies = incident_energy_mev(e_file, geom) / 1000.0  # GFlash takes GeV
    rows = []
    for batch, reps in ((1, 200), (100, 30), (10000, 3)):
        c = e_file[:batch] if batch <= len(e_file) else np.resize(e_file[:, 0], batch)[:, None]
        run.sample(batch, c, seed=seed, batch_size=batch)  # warm-up
        t0 = time.perf_counter()
        for i in range(reps):
            run.sample(batch, c, seed=seed + i, batch_size=batch)
        rows.append({"what": "physgan G", "batch": batch, "per_s": batch * reps / (time.perf_counter() - t0)})
    for batch, reps in ((1, 20), (100, 3), (1000, 1)):
        e_gev = np.resize(energies, batch)
        simulate_showers(geom, e_gev[: min(batch, 10)], particle, seed=seed)  # warm-up
        t0 = time.perf_counter()
        for i in range(reps):
            simulate_showers(geom, e_gev, particle, seed=seed + i)
        rows.append({"what": "GFlash", "batch": batch, "per_s": batch * reps / (time.perf_counter() - t0)})
    return rows


def paired_gflash_ratio(
    run, conditions: np.ndarray, seed: int, geometry: str = "calogan", rounds: int = 3, batch: int = 10_000, n_gflash: int = 1000
) -> dict[str, Any]:
    """Generator showers/s (batch ``batch``) over GFlash's (``n_gflash`` showers per call), timed in alternation (goal 4).

    The two are timed back to back ``rounds`` times (:func:`bench._util.interleave`), so a load on the machine that
    comes and goes moves both: single timings put the ratio anywhere in 97-135x in one session. The median of
    the per-round ratios is the figure reported. ``conditions`` as the evaluation file stores them.
    """
    from physgan.domains.calo.features import incident_energy_mev
    from physgan.domains.calo.make import resolve_geometry
    from physgan.sim.gflash import simulate_showers

    geom = resolve_geometry(geometry)
    e_file = np.asarray(conditions, dtype=np.float64).reshape(len(conditions), -1)
    c = e_file[:batch] if batch <= len(e_file) else np.resize(e_file[:, 0], batch)[:, None]
    e_gev = np.resize(incident_energy_mev(e_file, geom) / 1000.0, n_gflash)
    count = iter(range(10**9))
    return {
        "batch": batch,
        **paired_rates(
            lambda: run.sample(batch, c, seed=seed + next(count), batch_size=batch),
            lambda: simulate_showers(geom, e_gev, SETUPS[geometry]["particle"], seed=seed + next(count)),
            batch, n_gflash, rounds,
        ),
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--geometry", choices=sorted(SETUPS), default="calogan",
                   help="calogan (goal 1: e+ 1-100 GeV) or calochallenge-ds2 (goal 2: e- 1-1000 GeV log-uniform)")
    p.add_argument("--n-train", type=int, help="training showers (default 100000 calogan, 30000 calochallenge-ds2)")
    p.add_argument("--n-eval", type=int, default=20_000, help="evaluation showers (and as many for the noise floor)")
    # the goal 1 is stated for the default preset; the defaults below are the geometry's (SETUPS)
    add_training_args(p, preset="the geometry's: default on calogan, calochallenge on calochallenge-ds2")
    p.set_defaults(preset=None, max_steps=None)
    p.add_argument("--workdir", default="bench/_calo_benchmark")
    add_checkpoint_arg(p)
    p.add_argument("--out", help="write the results as JSON here (default <workdir>/results.json; results_<name>.json with --checkpoint)")
    args = p.parse_args(argv)

    args.n_train = args.n_train or SETUPS[args.geometry]["n_train"]
    args.preset = args.preset or SETUPS[args.geometry]["preset"]
    args.max_steps = args.max_steps or SETUPS[args.geometry]["max_steps"]
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    files = {"train": work / "train.h5", "eval": work / "eval.h5", "floor": work / "floor.h5"}
    timing_path = work / "simulation_times.json"
    sim_times = json.loads(timing_path.read_text()) if timing_path.exists() else {}
    print(f"[1/4] simulating {args.n_train} training showers (GFlash)", flush=True)
    t = make_file(files["train"], args.n_train, 1, args.threads, args.geometry)
    if t is not None:
        sim_times["train"] = {"n": args.n_train, "wall_s": t}
        timing_path.write_text(json.dumps(sim_times))

    run_dir = work / "run"
    run_dir.parent.mkdir(exist_ok=True)
    # the evaluation files are simulated on the other core while training runs
    side = None
    if not (files["eval"].exists() and files["floor"].exists()):
        side = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from bench.calo_benchmark import make_file; from pathlib import Path; "
                f"make_file(Path({str(files['eval'])!r}), {args.n_eval}, 2, 1, {args.geometry!r}); "
                f"make_file(Path({str(files['floor'])!r}), {args.n_eval}, 3, 1, {args.geometry!r})",
            ],
        )
    print(f"[2/4] training (preset {args.preset}, {args.train_minutes:g} min budget, {args.threads} thread(s), {args.device})", flush=True)
    budget = train_with_budget("calo", files["train"], run_dir, args)
    if side is not None and side.wait() != 0:
        raise SystemExit("simulating the evaluation files failed")

    import torch

    from physgan.evaluation import evaluate
    from physgan.io.hdf5 import open_source, read_all
    from physgan.run import load_run

    torch.set_num_threads(len(os.sched_getaffinity(0)) if args.device == "cpu" else args.threads)  # the cores this process may use
    print("[3/4] generating and evaluating", flush=True)
    ckpt = checkpoint_to_load(run_dir, args.checkpoint)
    run = load_run(run_dir, checkpoint=ckpt, device=args.device)
    src = open_source(files["eval"])
    x_eval, c_eval = read_all(src)
    attrs = dict(src.header.attrs)
    src.close()
    t0 = time.perf_counter()
    x_fake = run.sample(len(x_eval), c_eval, seed=args.seed + 1)
    gen_wall = time.perf_counter() - t0
    ev = evaluate(files["eval"], (x_fake, c_eval, attrs), domain="calo", real2=files["floor"], seed=args.seed, run=run_dir)
    ev.to_html(work / f"report{checkpoint_suffix(args.checkpoint)}", overwrite=True)
    metrics = ev.to_dict()["metrics"]

    print("[4/4] generation speed", flush=True)
    speed = generation_speed(run, c_eval, args.threads, args.seed, args.geometry)
    speed_vs_gflash = paired_gflash_ratio(run, c_eval, args.seed, args.geometry)

    results = {
        "env": env_info(),
        "load": load(),
        "geometry": args.geometry,
        "n_train": args.n_train,
        "n_eval": args.n_eval,
        "checkpoint": ckpt,
        "checkpoint_step": run.step,
        "budget": budget,
        "simulation": sim_times,
        "generate_eval_wall_s": gen_wall,
        "metrics": metrics,
        "speed": speed,
        "speed_vs_gflash": speed_vs_gflash,
    }
    default_out = work / f"results{checkpoint_suffix(args.checkpoint)}.json"  # best's kept
    Path(args.out or default_out).write_text(json.dumps(results, indent=1))
    print(report(results))
    return 0


def report(results: dict[str, Any]) -> str:
    """Markdown tables of the benchmark's headline figures."""
    m = results["metrics"]
    b = results["budget"]
    geometry = results.get("geometry", "calogan")

    def val(name: str) -> str:
        e = m.get(name)
        if e is None or e["value"] is None:
            return "n/a"
        err = f" ± {e['error']:.2g}" if e.get("error") is not None else ""
        floor = f" (floor {e['floor']:.2g})" if e.get("floor") is not None else ""
        return f"{e['value']:.4g}{err}{floor}"

    lines = [
        f"training: {b['steps']} generator steps, {b['wall_s'] / 60:.1f} min wall, preset {b['preset']}, device {b['device']}, "
        f"{b['threads']} thread(s); evaluated checkpoint '{results['checkpoint']}' (step {results['checkpoint_step']}); "
        f"{results['n_train']} training / {results['n_eval']} evaluation showers",
    ]
    sim = results["simulation"].get("train")
    if sim:
        lines.append(f"GFlash: {sim['n']} showers in {sim['wall_s'] / 60:.1f} min ({sim['n'] / sim['wall_s']:.0f} showers/s)")
    lines += ["", "| metric | value ± error (noise floor) | goal |", "|---|---|---|"]
    sep_names = [k for k in m if k.startswith("physics/sep/") and ("e_tot" in k or "e_layer" in k) and "ebin" not in k]
    for k in ["auc_high", "auc_low", "fpd", "kpd", "coverage", *sep_names]:
        lines.append(f"| {k} | {val(k)} | {goal(k, geometry)} |")
    others = sorted(k for k in m if k.startswith("physics/sep/") and k not in sep_names and "ebin" not in k)
    for k in others:
        lines.append(f"| {k} | {val(k)} | {goal(k, geometry)} |")
    for k in ("physics/response_real", "physics/response_fake", "physics/resolution_real", "physics/resolution_fake"):
        lines.append(f"| {k} | {val(k)} | |")
    lines += ["", "| generator | batch | showers/s |", "|---|---|---|"]
    lines += [f"| {r['what']} | {r['batch']} | {r['per_s']:.4g} |" for r in results["speed"]]
    q = results.get("speed_vs_gflash")
    if q:
        lines += ["", paired_rates_line(q, f"Generator (batch {q['batch']})", "GFlash")]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
