"""Weak scaling of data-parallel training: steps/s per process for 1 and 2 (or more) processes under torchrun.

::

    python -m bench.scaling [--device cpu|cuda] [--quick] [--procs 1,2] [--model conv2d|calo]

Runs ``torchrun --standalone --nproc-per-node P -m physgan train ...`` alternately for each P (same
per-process batch: weak scaling; gloo on CPU with one intra-op thread per process, nccl on GPU) and
reads the trainer's own ``Timing/steps_per_s`` from ``stats.jsonl`` (median over the ticks after the
first, so start-up and the first, slow steps are excluded). Reported: steps/s per process, samples/s
through the critic summed over processes, efficiency ``steps/s(P) / steps/s(1)``, load.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bench._util import add_common_args, env_info, load, markdown_table, median, setup
from bench.train_throughput import WORKDIR, config, make_data


def run_once(procs: int, model: str, data: Path, device: str, steps: int, log_every: int) -> tuple[float, int]:
    """Median steps/s of one torchrun training run with ``procs`` processes, and the batch per process."""
    cfg = config(model, data, device, steps, log_every)
    run = Path(tempfile.mkdtemp(prefix=f"ddp{procs}-", dir=WORKDIR))
    sets = [f"--set=train.{k}={getattr(cfg.train, k)}" for k in ("batch_size", "n_critic", "val_every", "ckpt_every", "log_every")]
    sets += [f"--set=model.{k}={getattr(cfg.model, k)}" for k in ("width", "depth", "z_dim", "embed_dim")]
    sets += ["--set=data.in_memory=yes"]
    preset = ["--preset", "quick"] if model == "calo" else []
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={procs}", "-m", "physgan", "train",
           cfg.domain, "--data", str(data), "--run-dir", str(run / "r"), "--steps", str(steps), "--device", device, "--quiet",
           *preset, *sets]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if r.returncode != 0:
            raise SystemExit(f"torchrun failed ({r.returncode}):\n{r.stderr[-4000:]}")
        ticks = [json.loads(line) for line in (run / "r" / "stats.jsonl").read_text().splitlines()]
        rates = [t["Timing/steps_per_s"] for t in ticks if "Timing/steps_per_s" in t][1:]
        return median(rates), cfg.train.batch_size * cfg.train.n_critic * 3
    finally:
        shutil.rmtree(run, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    p = add_common_args(argparse.ArgumentParser(description=__doc__.splitlines()[0]))
    p.add_argument("--procs", default="1,2", help="process counts to compare")
    p.add_argument("--model", default="conv2d", choices=["calo", "conv2d", "conv3d"])
    args = p.parse_args(argv)
    setup(args)
    print(env_info(args.device))
    procs = [int(v) for v in args.procs.split(",")]
    steps, log_every = (40, 10) if args.quick else (150, 25)
    data = make_data(args.model, 2048)
    rates: dict[int, list[float]] = {k: [] for k in procs}
    per_step = 0
    for r in range(args.rounds):
        for k in procs if r % 2 == 0 else procs[::-1]:
            sps, per_step = run_once(k, args.model, data, args.device, steps, log_every)
            rates[k].append(sps)
            print(f"round {r}: {k} process(es): {sps:.3g} steps/s per process ({load()})", flush=True)
    base = median(rates[procs[0]])
    rows = [[k, median(rates[k]), median(rates[k]) * per_step * k, median(rates[k]) / base, len(rates[k]), load()] for k in procs]
    print(markdown_table(["processes", "steps/s per process", "critic samples/s (all)", "efficiency", "runs", "load"], rows))
    print(f"- model {args.model}, {steps} steps per run, ticks of {log_every} steps, one intra-op thread per process, "
          f"{'gloo' if args.device == 'cpu' else 'nccl'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
