"""Where a calorimeter training step spends its time: physgan's own trainer under the torch profiler.

::

    python -m bench.calo_step_profile --geometry calochallenge-ds2 --preset gpu --device cuda
    python -m bench.calo_step_profile --geometry calogan,calochallenge-ds2 --preset quick --batch 16 --steps 10  # CPU

For each geometry the script simulates a small GFlash file (``--n`` showers, in process), trains the preset with
:func:`physgan.train.loop.train` (validation and checkpoints off) and profiles ``--steps`` generator steps after
``--warmup`` ones: the trainer's objective is wrapped so that each generator loss advances the profiler's schedule,
so the profile covers whole training steps (``n_critic`` critic updates, one generator update, EMA, statistics) and
nothing of the start-up. Printed per geometry: wall seconds per step (median of the profiled steps), operator calls
per step, the device's busy time per step (the sum of the kernels' own times: far below the wall time means the step
is bound by the host, launching many small kernels, not by the device), and the operators with the largest own time
on the host and on the device. Issue 19 goal 5: the ``gpu`` preset made 2.3 steps/s on dataset 2 (6480 cells) on an
H200 shared with other jobs, against 5.5 on CaloGAN (507 cells); this tells which. Alone on an H200 (``bench/RESULTS.md`` §16,
seventeenth session) both were bound by the host: ~21 800 kernel launches per dataset-2 step, the device busy 9 % of it.
The profiler's own overhead slows the host further: on that node the whole run took ~6 minutes.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch

from bench._util import env_info
from bench.train_throughput import timing_overrides


def _make_data(geometry: str, n: int, seed: int, workdir: Path) -> Path:
    """``n`` GFlash e- showers at 1-1000 GeV (CaloChallenge) or e+ at 1-100 GeV (CaloGAN), cached in ``workdir``."""
    from physgan.domains.calo.make import make_dataset

    path = workdir / f"{geometry}-{n}-{seed}.h5"
    if not path.is_file():
        particle, energy = ("e+", (1.0, 100.0)) if geometry == "calogan" else ("e-", (1.0, 1000.0))
        make_dataset(path, geometry=geometry, particle=particle, energy_gev=energy, n=n, seed=seed, progress=False)
    return path


def profile_geometry(geometry: str, args: argparse.Namespace, workdir: Path) -> None:
    """Train ``args.preset`` on a small file of ``geometry`` and print the profile of ``args.steps`` steps."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile, schedule

    from physgan.config import resolve_config
    from physgan.train.loop import train
    from physgan.train.losses import make_objective

    data = _make_data(geometry, args.n, args.seed, workdir)
    total = args.warmup + args.steps
    overrides = [*timing_overrides(data, args.device, total, total), *args.set]
    if args.batch:
        overrides.append(f"train.batch_size={args.batch}")
    cfg = resolve_config("calo", args.preset, overrides=overrides)
    cuda = args.device == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    stamps: list[float] = []

    with profile(activities=activities, schedule=schedule(wait=0, warmup=args.warmup, active=args.steps, repeat=1)) as prof:

        t_cfg = cfg.train
        objective = make_objective(t_cfg.loss, t_cfg.gp_lambda, t_cfg.drift, t_cfg.clip)
        generator_loss = objective.generator_loss

        def stepping(D, fake, cond):  # each generator loss closes one training step for the profiler
            if cuda:
                torch.cuda.synchronize()
            stamps.append(time.perf_counter())
            prof.step()
            return generator_loss(D, fake, cond)

        objective.generator_loss = stepping
        run = Path(tempfile.mkdtemp(prefix="run-", dir=workdir))
        try:
            train(cfg, run, progress=False, objective=objective)
        finally:
            shutil.rmtree(run, ignore_errors=True)
    per_step = [b - a for a, b in zip(stamps[args.warmup : -1], stamps[args.warmup + 1 :])]
    wall = statistics.median(per_step) if per_step else float("nan")
    events = prof.key_averages()
    n_calls = sum(e.count for e in events if not e.key.startswith("ProfilerStep"))
    # the kernels' own time: device-side events only (an operator's row repeats its kernels' time)
    own_dev = sum(getattr(e, "self_device_time_total", 0.0) for e in events if e.device_type != DeviceType.CPU)
    launches = sum(e.count for e in events if e.key.startswith(("cudaLaunchKernel", "cuLaunchKernel")))
    print(f"\n## {geometry}, preset {args.preset}, batch {cfg.train.batch_size}, n_critic {cfg.train.n_critic}, device {args.device}")
    print(f"wall per step {wall * 1e3:.1f} ms ({1 / wall:.2f} steps/s), operator calls per step {n_calls / args.steps:.0f}", end="")
    if cuda:
        busy = own_dev / args.steps / 1e6
        print(f", kernel launches per step {launches / args.steps:.0f}, device busy per step {busy * 1e3:.1f} ms "
              f"({100 * busy / wall:.0f} % of the wall time)")
    else:
        print()
    key_dev = "self_device_time_total" if cuda and hasattr(events[0], "self_device_time_total") else "self_cuda_time_total"
    for key in (["self_cpu_time_total"] + ([key_dev] if cuda else [])):
        print(f"\n### top operators by {key}")
        print(events.table(sort_by=key, row_limit=args.top, max_name_column_width=60))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--geometry", default="calochallenge-ds2", help="comma-separated geometries (default calochallenge-ds2)")
    p.add_argument("--preset", default="gpu")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--batch", type=int, default=None, help="batch size (default: the preset's)")
    p.add_argument("--n", type=int, default=2048, help="showers simulated per geometry (default 2048)")
    p.add_argument("--steps", type=int, default=20, help="profiled generator steps (default 20)")
    p.add_argument("--warmup", type=int, default=5, help="steps before the profile (default 5)")
    p.add_argument("--top", type=int, default=20, help="operators listed (default 20)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workdir", default=None, help="where the data go (default: a temporary folder)")
    p.add_argument("--set", action="append", default=[], help="more config overrides, e.g. model.options.critic_spectrum=true")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(env_info(args.device))
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="calo-profile-"))
    workdir.mkdir(parents=True, exist_ok=True)
    for geometry in args.geometry.split(","):
        profile_geometry(geometry.strip(), args, workdir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
