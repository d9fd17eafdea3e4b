"""The calorimeter generator's sampling path against an older checkout's, in one process, interleaved with GFlash.

::

    git archive OLD physgan | tar -x -C /tmp/old        # an older checkout's physgan/
    python -m bench.generation_ab --old /tmp/old [--preset default] [--set model.options.X=V] [--clock cpu]

Loads the older checkout's ``physgan/domains/calo/model.py`` (and its ``FiLM``) as a separate module, builds its
generator with the weights of a 2-step run of the current code (:func:`bench.generation.trained_run`; the parameter
names must match, i.e. options both versions know), and times per batch of 10^4 showers to memory, interleaved:

* ``gflash``: :func:`physgan.sim.gflash.simulate_showers` of 100 (``--quick``) or 400 showers;
* ``old``: the older generator's ``sample_model`` and the run's inverse transform, as the older engine sampled;
* ``new``: :meth:`physgan.run.Run.sample`'s path now (:func:`physgan.sampling.generate_batch`).

Before timing it checks that both give the same showers (exact zeros alike, values to ``1e-4`` relative). Reports
showers/s and the ratio to GFlash of each, and new / old.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import numpy as np

from bench._util import add_common_args, env_info, interleave, load, markdown_table, median, setup
from bench.generation import cpu_timed, trained_run
from bench.train_throughput import make_data


def load_module(name: str, path: Path):
    """The Python file ``path`` imported as module ``name`` (not registered under its package name)."""
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def main(argv: list[str] | None = None) -> int:
    import torch

    from physgan.domains.base import model_spec
    from physgan.domains.calo.geometry import calogan_geometry
    from physgan.run import load_run
    from physgan.sampling import generate_batch
    from physgan.sim.gflash import simulate_showers

    p = add_common_args(argparse.ArgumentParser(description=__doc__.splitlines()[0]))
    p.add_argument("--old", required=True, help="folder holding an older checkout's physgan/ package")
    p.add_argument("--preset", default="default", help="calo preset whose networks are timed")
    p.add_argument("--set", action="append", default=[], help="SECTION.KEY=VALUE config override of the timed run")
    p.add_argument("--clock", choices=["wall", "cpu"], default="cpu", help="time calls by wall clock or process CPU time")
    args = p.parse_args(argv)
    device = setup(args)
    print(env_info(device))
    old_root = Path(args.old) / "physgan"
    old_film = load_module("old_physgan_conditioning", old_root / "nn" / "conditioning.py")
    old_model = load_module("old_physgan_calo_model", old_root / "domains" / "calo" / "model.py")
    old_model.FiLM = old_film.FiLM  # the older generator with the older FiLM

    run = load_run(trained_run(args.preset, "cpu", make_data("calo", 1024), args.set), checkpoint="last", device="cpu")
    new_g = run.G
    spec = model_spec(run.info["model_shape"], run.condition_names, run.config.model, run.normaliser.state_dict(),
                      run.transform.stats, run.info.get("attrs", {}))
    old_g = old_model.build_generator(spec)
    old_g.load_state_dict(new_g.state_dict())
    old_g.eval()
    n = 10_000
    rng = np.random.default_rng(0)
    c_phys = torch.as_tensor(run.conditions(n, None, 0, False), dtype=torch.float32)
    gen = torch.Generator().manual_seed(0)
    z = torch.randn((n, *new_g.latent_shape()), generator=gen)

    def old_path() -> torch.Tensor:
        with torch.no_grad():
            return run.transform.inverse(old_g.sample_model(z, run.normaliser(c_phys)), c_phys)

    def new_path() -> torch.Tensor:
        return generate_batch(new_g, run.transform, run.normaliser, c_phys, z, run.config.train.precision)

    a, b = old_path(), new_path()
    same_zeros = bool(torch.equal(a == 0, b == 0))
    rel = float(((a - b).abs() / a.abs().clamp(min=1e-30)).max())
    print(f"- old vs new showers: exact zeros alike {same_zeros}, largest relative difference {rel:.2g}")
    if not same_zeros or rel > 1e-4:
        raise SystemExit("old and new sampling paths disagree")
    geom = calogan_geometry()
    n_sim = 100 if args.quick else 400
    energies = rng.uniform(1, 100, n_sim)
    cands = {"gflash": lambda: simulate_showers(geom, energies, "e+", seed=0), "old": old_path, "new": new_path}
    if args.clock == "cpu":
        cands = {k: cpu_timed(fn) for k, fn in cands.items()}
    times = interleave(cands, args.rounds, device, warmup=1)
    rate_sim = n_sim / median(times["gflash"])
    rows = []
    for name in ("gflash", "old", "new"):
        count = n_sim if name == "gflash" else n
        per_round = [count / t / (n_sim / g) for t, g in zip(times[name], times["gflash"])]
        rows.append([name, count, count / median(times[name]), count / median(times[name]) / rate_sim, median(per_round), load()])
    print(markdown_table(["what", "showers", "showers/s", "x gflash", "median round ratio", "load"], rows))
    speedup = [o / w for o, w in zip(times["old"], times["new"])]
    print(f"- clock {args.clock}; new / old speed, median of {args.rounds} rounds: {median(speedup):.2f}x; "
          f"preset '{args.preset}'{''.join(' --set ' + o for o in args.set)}: G {sum(q.numel() for q in new_g.parameters())} "
          f"parameters; old code from {args.old}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
