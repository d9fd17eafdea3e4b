"""The four GAN objectives on the calorimeter domain with equal budgets: physics metrics and training diagnostics.

::

    python -m bench.objectives                          # calo: GFlash showers (CaloGAN geometry), 3000 updates each
    python -m bench.objectives --updates 600 --n 6000   # a quicker look
    python -m bench.objectives --domain array           # the ring of 8 Gaussians instead (no calorimeter needed)
    python -m bench.objectives --data calo.h5 --heldout heldout.h5 --out bench/objectives.json

Each objective trains with its own paper recipe (``wgan-gp``: Gulrajani et al. 2017, Adam 1e-4
(0, 0.9), n_critic 5, lambda 10; ``wgan-clip``: Arjovsky et al. 2017, RMSProp 5e-5, c = 0.01,
n_critic 5; ``minimax`` and ``nonsaturating``: Goodfellow et al. 2014 with DCGAN Adam 2e-4
(0.5, 0.999), one critic step) and the same networks, data, batch and seed. The *budget* is a
number of network updates (critic steps + generator steps), so a recipe with five critic steps per
generator step gets a sixth of the generator steps of a one-critic-step recipe: equal compute, not
equal generator steps. Reported per objective: the domain's physics score and metrics of the EMA
generator on a held-out file (same seed, same conditions), the run's last training diagnostics
(Wasserstein estimate or D(x)/D(G(z)), gradient norms, diversity and coverage against the real
noise floor, fraction of clipped weights), the number of health warnings, and wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

OBJECTIVES = {
    "wgan-gp": "gulrajani2017",
    "wgan-clip": "arjovsky2017",
    "minimax": "goodfellow2014",
    "nonsaturating": "goodfellow2014",
}


def make_data(domain: str, out: Path, n: int, seed: int) -> Path:
    """Training/held-out file through the CLI's simulators (``physgan data make``)."""
    from physgan.cli import main

    if out.exists():
        return out
    argv = ["data", "make", domain, "--n", str(n), "--seed", str(seed), "--out", str(out)]
    if domain == "array":
        argv += ["--toy", "ring", "--cond-range", "1.5:2.5"]
    if main(argv) != 0:
        raise SystemExit(f"physgan data make {domain} failed")
    return out


def run_objective(domain: str, loss: str, data: Path, heldout: Path, workdir: Path, args) -> dict[str, Any]:
    """Train one objective within the update budget; evaluate the EMA generator on the held-out file."""
    from physgan.config import RECIPES, resolve_config
    from physgan.domains.base import get_domain
    from physgan.io.hdf5 import open_source, read_all
    from physgan.run import load_run
    from physgan.train.diagnostics import DiagnosticWarning
    from physgan.train.loop import train

    recipe = OBJECTIVES[loss]
    n_critic = RECIPES[recipe]["n_critic"]
    steps = max(1, args.updates // (n_critic + 1))
    overrides = [
        f"data.path={data}",
        f"train.loss={loss}",  # minimax shares goodfellow2014's optimiser; for the others it restates the recipe's
        f"train.steps={steps}",
        f"train.batch_size={args.batch_size}",
        f"train.seed={args.seed}",
        f"train.device={args.device}",
        f"train.log_every={max(1, steps // 10)}",
        f"train.val_every={max(1, steps // 2)}",
        f"train.ckpt_every={steps}",
    ]
    if domain == "array":
        overrides += ["model.width=64", "model.depth=3", "model.z_dim=8", "model.embed_dim=8"]
    preset = args.preset if domain != "array" else None
    cfg = resolve_config(domain, preset=preset, recipe=recipe, overrides=overrides)
    run_dir = workdir / f"run-{loss}"
    t0 = time.time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DiagnosticWarning)  # they are counted in diagnostics.json
        res = train(cfg, run_dir, progress=not args.quiet)
    wall = time.time() - t0
    dom = get_domain(domain)
    src = open_source(heldout)
    x_real, c_real = read_all(src)
    attrs = dict(src.header.attrs)
    src.close()
    run = load_run(run_dir, checkpoint="last", device=args.device)
    x_fake = run.sample(len(x_real), c_real, seed=args.seed + 1)
    metrics = dict(dom.physics_metrics((x_real, c_real), (x_fake, c_real), attrs)) if dom.physics_metrics else {}
    score = float(dom.score(metrics)) if dom.score else float("nan")
    diag = json.loads((run_dir / "diagnostics.json").read_text())
    return {
        "loss": loss,
        "recipe": recipe,
        "n_critic": cfg.train.n_critic,
        "lr": [cfg.train.lr_g, cfg.train.lr_d],
        "betas": list(cfg.train.betas),
        "optimizer": cfg.train.optimizer,
        "generator_steps": res.step,
        "updates": res.step * (cfg.train.n_critic + 1),
        "wall_s": wall,
        "score": score,
        "metrics": {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))},
        "diagnostics": diag["last"],
        "floor": diag.get("floor", {}).get("floor", {}),
        "warnings": [w["message"] for w in diag["warnings"]],
    }


def table(results: list[dict[str, Any]]) -> str:
    """Markdown table of the headline numbers."""

    def f(v: Any, fmt: str = ".3g") -> str:
        return "n/a" if v is None or (isinstance(v, float) and not np.isfinite(v)) else format(v, fmt)

    head = (
        "| objective (recipe) | G steps | wall s | physics score | W or D(x)/D(G(z)) | grad G / D | diversity | coverage "
        "| clipped | warnings |\n|---|---|---|---|---|---|---|---|---|---|\n"
    )
    rows = []
    for r in results:
        d = r["diagnostics"]
        bal = f(d.get("Loss/W")) if "Loss/W" in d else f"{f(d.get('D/real'))} / {f(d.get('D/fake'))}"
        fl = r["floor"]
        div = f(d.get("Diag/diversity")) + (f" (real {f(fl['diversity'][0])})" if "diversity" in fl else "")
        cov = f(d.get("Diag/coverage")) + (f" (real {f(fl['coverage'][0])})" if "coverage" in fl else "")
        recipe = f"{r['recipe']}: n_critic {r['n_critic']}, {r['optimizer']} {f(r['lr'][0])}"
        rows.append(
            f"| {r['loss']} ({recipe}) | {r['generator_steps']} | {r['wall_s']:.0f} | {f(r['score'])} | {bal} "
            f"| {f(d.get('Grad/G_norm'))} / {f(d.get('Grad/D_norm'))} | {div} | {cov} | {f(d.get('Clip/fraction'), '.2f')} "
            f"| {len(r['warnings'])} |"
        )
    return head + "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--domain", default="calo", help="calo (default) or array (ring of 8 Gaussians)")
    p.add_argument("--data", help="training file (default: simulated into --workdir)")
    p.add_argument("--heldout", help="held-out file for the metrics (default: simulated with another seed)")
    p.add_argument("--n", type=int, default=10000, help="simulated training samples (default 10000)")
    p.add_argument("--updates", type=int, default=3000, help="network updates (critic + generator steps) per objective")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--preset", default="quick", help="domain preset for the networks (calo: quick)")
    p.add_argument("--objectives", default=",".join(OBJECTIVES), help="comma-separated subset")
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (keep the shared machine usable)")
    p.add_argument("--workdir", default="bench/_objectives", help="data and run directories (replaced runs)")
    p.add_argument("--out", help="write the results as JSON here")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    from physgan.domains.base import get_domain

    domain = args.domain
    if domain == "calo" and get_domain("calo").make is None:
        print("the calorimeter simulator (physgan data make calo) is not available: running on the ring toy", file=sys.stderr)
        domain = "array"
    workdir = Path(args.workdir) / domain
    workdir.mkdir(parents=True, exist_ok=True)
    data = Path(args.data) if args.data else make_data(domain, workdir / "train.h5", args.n, args.seed)
    heldout = Path(args.heldout) if args.heldout else make_data(domain, workdir / "heldout.h5", min(args.n, 4000), args.seed + 1)
    results = []
    for loss in args.objectives.split(","):
        if loss not in OBJECTIVES:
            raise SystemExit(f"unknown objective '{loss}'; choose from {', '.join(OBJECTIVES)}")
        run_dir = workdir / f"run-{loss}"
        if run_dir.exists():
            import shutil

            shutil.rmtree(run_dir)
        r = run_objective(domain, loss, data, heldout, workdir, args)
        results.append(r)
        print(f"{loss}: score {r['score']:.4g}, {r['generator_steps']} G steps in {r['wall_s']:.0f} s", file=sys.stderr)
    print(f"\n{domain}: {args.updates} updates per objective, batch {args.batch_size}, seed {args.seed}, load {os.getloadavg()[0]:.1f}\n")
    print(table(results))
    for r in results:
        for w in r["warnings"]:
            print(f"  {r['loss']}: {w}")
    if args.out:
        Path(args.out).write_text(json.dumps({"domain": domain, "updates": args.updates, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
