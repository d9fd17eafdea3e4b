"""One arm of a calorimeter A/B at quickstart size: train on a quickstart's data, evaluate on its held-out file.

::

    physgan quickstart calo --dir qs                                  # makes qs/data/{train,heldout}.h5 (and arm 0)
    python -m bench.calo_ab --data-dir qs/data --run ab/lateral --config arm.yaml   # one arm: train, generate, evaluate
    python -m bench.calo_ab --data-dir qs/data --run ab/lateral --no-train         # re-evaluate a finished arm

The arm trains ``physgan train calo --preset quick`` (plus ``--config``/``--set``) on ``train.h5``, generates one
shower per held-out condition with the best checkpoint (seed 3, as the quickstart) and evaluates it against
``heldout.h5`` with :func:`physgan.evaluation.evaluate` (the quickstart's call). It prints the separation powers
of the goal-3 observables (with the noise floor, training file vs held-out) and, per layer, the cells that some
held-out shower fills but no generated shower does, and writes them to ``<run>/ab.json``. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from pathlib import Path

import numpy as np

from bench._util import cpu_env, physgan_cmd


def dead_cells(real: np.ndarray, fake: np.ndarray, geom) -> list[dict[str, int]]:
    """Per layer: cells non-zero in some real shower, and how many of them are zero in every generated one."""
    out = []
    hit_r = (np.asarray(real)[:, : geom.n_cells] > 0).any(axis=0)
    hit_f = (np.asarray(fake)[:, : geom.n_cells] > 0).any(axis=0)
    for i in range(geom.n_layers):
        sl = geom.layer_slice(i)
        out.append({"filled_real": int(hit_r[sl].sum()), "dead_fake": int((hit_r[sl] & ~hit_f[sl]).sum())})
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", required=True, help="folder with train.h5 and heldout.h5 (a quickstart's data/)")
    p.add_argument("--run", required=True, help="run directory of this arm")
    p.add_argument("--config", help="YAML config merged over the quick preset")
    p.add_argument("--set", action="append", default=[], help="SECTION.KEY=VALUE override (repeatable)")
    p.add_argument("--preset", default="quick")
    p.add_argument("--no-train", action="store_true", help="evaluate an existing run")
    p.add_argument("--checkpoint", default="best", help="checkpoint evaluated: best (default), last or step-NNNNNNN")
    args = p.parse_args(argv)

    data, run_dir = Path(args.data_dir), Path(args.run)
    wall = None
    if not args.no_train:
        cmd = ["train", "calo", "--data", str(data / "train.h5"), "--run", str(run_dir), "--preset", args.preset, "--quiet"]
        if args.config:
            cmd += ["--config", args.config]
        for s in args.set:
            cmd += ["--set", s]
        t0 = time.perf_counter()
        subprocess.run(physgan_cmd(*cmd), check=True, env=cpu_env(1))
        wall = time.perf_counter() - t0

    import torch

    from physgan.domains.calo.features import resolve_geometry
    from physgan.evaluation import evaluate
    from physgan.io.hdf5 import open_source, read_all
    from physgan.run import load_run

    torch.set_num_threads(1)
    src = open_source(data / "heldout.h5")
    x_real, c_real = read_all(src)
    attrs = dict(src.header.attrs)
    src.close()
    run = load_run(run_dir, checkpoint=args.checkpoint, device="cpu")
    x_fake = run.sample(len(c_real), c_real, seed=3)
    ev = evaluate(str(data / "heldout.h5"), (x_fake, c_real, attrs), domain="calo", train=str(data / "train.h5"), seed=0, run=run_dir)
    m = ev.to_dict()["metrics"]
    geom = resolve_geometry(attrs, x_real.shape[1])
    dead = dead_cells(x_real, x_fake, geom)
    keys = sorted(k for k in m if k.startswith("physics/sep/") and "ebin" not in k)
    names = [k for k in [*keys, "auc_high", "fpd"] if k in m]
    np.save(run_dir / "fake.npy", x_fake)  # for later looks (features, per-feature classifiers)
    n_params = {"G": sum(p.numel() for p in run.G.parameters())}
    res = {"train_wall_s": wall, "step": run.step, "params": n_params, "metrics": {k: m[k]["value"] for k in names},
           "floors": {k: m[k].get("floor") for k in names}, "dead_cells": dead}
    (run_dir / ("ab.json" if args.checkpoint == "best" else f"ab-{args.checkpoint}.json")).write_text(json.dumps(res, indent=1))
    wall_text = "n/a" if wall is None else f"{wall / 60:.1f} min"
    print(f"arm {run_dir}: step {run.step} (checkpoint '{args.checkpoint}'), training wall {wall_text}, "
          f"parameters {n_params}")
    for k, v in res["metrics"].items():
        floor = res["floors"][k]
        print(f"  {k:40s} {'n/a' if v is None else f'{v:.4g}'}  (floor {'n/a' if floor is None else f'{floor:.2g}'})")
    print("  dead cells (filled in real, empty in every generated shower):", [f"{d['dead_fake']}/{d['filled_real']}" for d in dead])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
