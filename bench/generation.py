"""Generation throughput of a calorimeter surrogate against the GFlash simulator, to memory and to HDF5.

::

    python -m bench.generation [--device cpu|cuda] [--quick] [--preset default|quick|gpu] [--set model.options.X=V]

Trains a calo run for a few steps (the speed of a generator does not depend on its weights) with the
networks of ``--preset`` on GFlash showers in the CaloGAN geometry, then times, interleaved in one
process:

* ``gflash``: :func:`physgan.sim.gflash.simulate_showers` (its default internal batch);
* ``memory bN``: :meth:`physgan.run.Run.sample` with ``batch_size=N`` for N = 1, 100, 10^4
  (physical units: the inverse transform is included; samples end as numpy arrays on the host);
* ``hdf5 bN``: :meth:`physgan.run.Run.generate` into a new file (atomic write with fsync);
* ``disk``: the same number of bytes written raw with ``numpy.ndarray.tofile`` + fsync (the disk's limit).

Reported: showers/s, ratio to GFlash, MB/s, load, peak memory. ``--clock cpu`` times each call by the process's CPU
time instead of wall time: on a core shared with other jobs the wall time of a call depends on what else ran
meanwhile, the CPU time much less (the disk write's fsync wait is not counted then).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bench._util import MemWatch, add_common_args, env_info, interleave, load, markdown_table, median, setup
from bench.train_throughput import WORKDIR, make_data


def trained_run(preset: str, device: str, data: Path, sets: list[str] | None = None) -> Path:
    """A 2-step run with the networks of ``preset`` (plus ``sets``), cached under a hash of its model config and the
    package's model code (a run cached by other code or options is not reused)."""
    import dataclasses

    import physgan.domains.calo.model as calo_model
    from physgan.config import resolve_config
    from physgan.train.loop import train

    overrides = [f"data.path={data}", f"train.device={device}", "train.steps=2", "train.val_every=0", "train.batch_size=64"]
    cfg = resolve_config("calo", preset, overrides=[*overrides, *(sets or [])])
    key = json.dumps(dataclasses.asdict(cfg.model), sort_keys=True, default=str) + Path(calo_model.__file__).read_text()
    run = WORKDIR / f"gen-run-{preset}-{device}-{hashlib.sha1(key.encode()).hexdigest()[:10]}"
    if (run / "checkpoints" / "last.pt").is_file():
        return run
    shutil.rmtree(run, ignore_errors=True)
    train(cfg, run, progress=False)
    return run


def cpu_timed(fn: Callable[[], Any]) -> Callable[[], float]:
    """``fn`` wrapped to return the process CPU seconds of its call (``interleave`` then takes that as its time)."""

    def call() -> float:
        t0 = time.process_time()
        fn()
        return time.process_time() - t0

    return call


def raw_write(path: Path, nbytes: int) -> None:
    block = np.ones(min(nbytes, 64 << 20) // 4, np.float32)
    with open(path, "wb") as fh:
        left = nbytes
        while left > 0:
            b = block[: max(1, min(len(block), left // 4))]
            b.tofile(fh)
            left -= b.nbytes
        fh.flush()
        os.fsync(fh.fileno())


def main(argv: list[str] | None = None) -> int:
    from physgan.domains.calo.geometry import calogan_geometry
    from physgan.run import load_run
    from physgan.sim.gflash import simulate_showers

    p = add_common_args(argparse.ArgumentParser(description=__doc__.splitlines()[0]))
    p.add_argument("--preset", default="default", help="calo preset whose networks are timed (quick, default, gpu)")
    p.add_argument("--set", action="append", default=[], help="SECTION.KEY=VALUE config override of the timed run (repeatable)")
    p.add_argument("--clock", choices=["wall", "cpu"], default="wall", help="time calls by wall clock or by process CPU time")
    p.add_argument("--out-dir", default=None, help="folder for the HDF5 files (default: the temp folder; put it on the disk to test)")
    args = p.parse_args(argv)
    device = setup(args)
    print(env_info(device))
    data = make_data("calo", 1024)
    run = load_run(trained_run(args.preset, args.device, data, args.set), checkpoint="last", device=args.device)
    geom = calogan_geometry()
    n_sim = 100 if args.quick else 400
    sizes = {1: 100 if args.quick else 300, 100: 2000 if args.quick else 10000, 10_000: 20_000 if args.quick else 100_000}
    if args.device == "cuda":
        sizes = {1: 2000, 100: 100_000, 10_000: 10**6 if args.quick else 10**7}
    out_dir = Path(args.out_dir or tempfile.mkdtemp(prefix="gen-", dir=WORKDIR))
    out_dir.mkdir(parents=True, exist_ok=True)
    row_bytes = int(np.prod(run.sample_shape)) * 4 + 4 * len(run.condition_names)
    energies = np.random.default_rng(1).uniform(1, 100, n_sim)

    def hdf5(n: int, b: int):
        path = out_dir / f"fake-{b}.h5"
        run.generate(path, n, seed=0, batch_size=b, overwrite=True, progress=False)

    cands = {"gflash": lambda: simulate_showers(geom, energies, "e+", seed=0)}
    for b, n in sizes.items():
        cands[f"memory b{b}"] = lambda n=n, b=b: run.sample(n, seed=0, batch_size=b)
        cands[f"hdf5 b{b}"] = lambda n=n, b=b: hdf5(n, b)
    big = sizes[10_000]
    cands["disk"] = lambda: raw_write(out_dir / "raw.bin", big * row_bytes)
    if args.clock == "cpu":
        cands = {k: cpu_timed(fn) for k, fn in cands.items()}
    with MemWatch(device) as mem:
        times = interleave(cands, args.rounds, device, warmup=1)
    counts = {"gflash": n_sim, "disk": big, **{f"{k} b{b}": n for b, n in sizes.items() for k in ("memory", "hdf5")}}
    rate_sim = n_sim / median(times["gflash"])
    rows = []
    for name, ts in times.items():
        rate = counts[name] / median(ts)
        per_round = [counts[name] / t / (n_sim / g) for t, g in zip(ts, times["gflash"])]
        rows.append([name, counts[name], rate, rate / rate_sim, median(per_round), rate * row_bytes / 1e6, load()])
    header = ["what", "showers", "showers/s", "x gflash", "median round ratio", "MB/s", "load"]
    print(markdown_table(header, rows))
    print(
        f"- clock: {args.clock}; calo preset '{args.preset}'{''.join(' --set ' + o for o in args.set)} networks: "
        f"G {sum(p.numel() for p in run.G.parameters())} parameters; "
        f"sample {run.sample_shape} float32 ({row_bytes} bytes with conditions); files in {out_dir}; {mem}"
    )
    if args.out_dir is None:
        shutil.rmtree(out_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
