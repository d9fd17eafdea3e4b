"""Mode dropping on the ring of 8 and the 5 x 5 grid of Gaussians: the classic objectives against WGAN-GP.

::

    python -m bench.mode_dropping                       # ring: minimax vs wgan-gp, 800 steps each, seed 0
    python -m bench.mode_dropping --losses minimax,nonsaturating,wgan-gp --steps 1500 --seeds 0,1,2
    python -m bench.mode_dropping --toy grid --losses minimax,wgan-gp   # the grid, 5000 steps each
    python -m bench.mode_dropping --toy grid --losses wgan-gp --activation leaky_relu --critic-norm layer

Every objective gets the same networks, optimiser, data, critic steps and seed; only the loss
differs. Each toy has its settings (``TOY_SETTINGS``; any of them can be overridden from the command
line):

* ring: 8 Gaussians of sigma 0.1 on a circle of radius 2; the array domain's default MLPs (64 x 3,
  leaky ReLU, LayerNorm in the critic), z 8, one critic step, lambda 1, Adam 1e-3 (0.5, 0.9),
  EMA 0.999, 800 steps.
* grid: 25 Gaussians of sigma 0.1, spacing 2. A Gaussian-latent generator must tear its mass into 25
  separated clusters. ReLU MLPs (64 x 3), a 2-D latent, no LayerNorm in the critic, 5 critic
  steps, lambda 1, Adam 1e-3, EMA 0.99, 5000 steps. ReLU lets the generator flatten whole latent
  regions onto a mode, and LayerNorm would discard the magnitude of a 2-D critic's pre-activations:
  these two choices decide the result. The latent size and the EMA length matter little with these
  networks (z 8 and EMA 0.999 also cover all 25 modes, one seed each).
  With the defaults, no setting tried covered more than 12 of the 25 modes in 6000 steps
  (bench/RESULTS.md section 8, "5 x 5 grid"). ``tests/test_objectives.py`` runs the WGAN-GP row as
  a test.

Printed per run: the share of samples of the sampling (EMA) generator within 3 sigma of each mode,
the number of modes holding at least a quarter of their fair share, the share of samples farther
than 6 sigma from every mode, and the trainer's own diagnostics (coverage over training against the
real noise floor, health warnings with their step).

References
----------
.. [1] L. Metz, B. Poole, D. Pfau, J. Sohl-Dickstein, "Unrolled generative adversarial networks",
   ICLR 2017, arXiv:1611.02163 (the ring of 8 Gaussians and mode collapse of the minimax GAN).
.. [2] I. Gulrajani et al., "Improved Training of Wasserstein GANs", NeurIPS 2017, arXiv:1704.00028.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from physgan.nn.generic import ACTIVATIONS, CRITIC_NORMS

SIGMA = 0.1
RADIUS = 2.0


def toy_centres(toy: str) -> np.ndarray:
    """Mode centres of the toy: the ring of 8 (radius 2) or the 5 x 5 grid (spacing 2)."""
    from physgan.sim.toy import grid_modes, ring_modes

    return ring_modes(RADIUS) if toy == "ring" else grid_modes(RADIUS)


def modes_report(x: np.ndarray, sigma: float = SIGMA, toy: str = "ring") -> dict:
    """Per-mode share within 3 sigma, modes covered (>= 1/4 of a fair share), share beyond 6 sigma."""
    centres = toy_centres(toy)
    d = np.linalg.norm(x[:, None, :] - centres[None], axis=2)
    near = d.min(1) < 3 * sigma
    share = np.bincount(d.argmin(1)[near], minlength=len(centres)) / len(x)
    return {
        "share": share.tolist(),
        "modes_covered": int((share >= 0.25 / len(centres)).sum()),
        "within_3sigma": float(near.mean()),
        "beyond_6sigma": float((d.min(1) > 6 * sigma).mean()),
    }


#: Per-toy settings (``--toy``): everything but the objective, the seed and the steps is shared by all objectives.
TOY_SETTINGS: dict[str, dict] = {
    # the ring: leaky-ReLU MLPs with LayerNorm in the critic (the array domain's defaults), one critic step
    "ring": {
        "steps": 800, "width": 64, "z_dim": 8, "activation": "leaky_relu", "critic_norm": "layer",
        "n_critic": 1, "gp_lambda": 1.0, "lr": 1e-3, "batch": 256, "ema_beta": 0.999,
    },
    # the grid: ReLU MLPs, a 2-D latent, no LayerNorm, a short weight average (bench/RESULTS.md section 8)
    "grid": {
        "steps": 5000, "width": 64, "z_dim": 2, "activation": "relu", "critic_norm": "none",
        "n_critic": 5, "gp_lambda": 1.0, "lr": 1e-3, "batch": 256, "ema_beta": 0.99,
    },
}  # fmt: skip


def run(loss: str, seed: int, steps: int | None, workdir: Path, toy: str = "ring", hp: dict | None = None) -> dict:
    """Train one objective on the toy; report mode coverage of the sampling generator and the trainer's diagnostics.

    ``hp`` overrides entries of ``TOY_SETTINGS[toy]``; ``steps=None`` takes the toy's.
    """
    from physgan.config import resolve_config
    from physgan.io.hdf5 import write_samples
    from physgan.run import load_run
    from physgan.sim.toy import sample_modes
    from physgan.train.diagnostics import DiagnosticWarning
    from physgan.train.loop import train

    hp = {**TOY_SETTINGS[toy], **{k: v for k, v in (hp or {}).items() if v is not None}}
    steps = steps or hp["steps"]
    cond_name = "radius" if toy == "ring" else "spacing"
    data = workdir / f"{toy}.h5"
    if not data.exists():
        x, c = sample_modes(8000 if toy == "grid" else 4000, toy, sigma=SIGMA, radius_range=(RADIUS, RADIUS), seed=0)
        write_samples(data, x, c, [cond_name], "array", attrs={"domain": "array"})
    run_dir = workdir / f"{toy}-{loss}-seed{seed}"
    shutil.rmtree(run_dir, ignore_errors=True)
    cfg = resolve_config(
        "array",
        overrides=[
            f"data.path={data}",
            f"train.loss={loss}",
            *(f"model.width={hp['width']}", "model.depth=3", f"model.z_dim={hp['z_dim']}", "model.embed_dim=8"),
            f"model.options.activation={hp['activation']}",
            f"model.options.critic_norm={hp['critic_norm']}",
            f"train.ema_beta={hp['ema_beta']}",
            *(f"train.steps={steps}", f"train.batch_size={hp['batch']}", f"train.n_critic={hp['n_critic']}"),
            f"train.gp_lambda={hp['gp_lambda']}",
            *(f"train.lr_g={hp['lr']}", f"train.lr_d={hp['lr']}", "train.betas=[0.5,0.9]", "train.device=cpu", f"train.seed={seed}"),
            *("train.val_every=0", f"train.log_every={max(1, steps // 8)}", f"train.ckpt_every={steps}"),
        ],
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DiagnosticWarning)  # collected from diagnostics.json below
        t0 = time.perf_counter()
        train(cfg, run_dir, progress=False)
        wall = time.perf_counter() - t0
    xs = load_run(run_dir, checkpoint="last", device="cpu").sample(4000, {cond_name: RADIUS}, seed=1)
    rows = [json.loads(s) for s in (run_dir / "stats.jsonl").read_text().splitlines()]
    diag = json.loads((run_dir / "diagnostics.json").read_text())
    return {
        "loss": loss,
        "seed": seed,
        "steps": steps,
        "settings": {k: v for k, v in hp.items() if k != "steps"},
        "wall_s": wall,
        **modes_report(xs, toy=toy),
        "coverage_history": [(r["step"], round(r["Diag/coverage"], 2)) for r in rows if "Diag/coverage" in r],
        "coverage_floor": rows[-1].get("Diag/coverage_floor"),
        "warnings": [w["message"] for w in diag["warnings"]],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--losses", default="minimax,wgan-gp")
    p.add_argument("--seeds", default="0")
    p.add_argument("--toy", default="ring", choices=list(TOY_SETTINGS), help="ring of 8 or 5 x 5 grid of Gaussians")
    p.add_argument("--steps", type=int, help="generator steps (default: the toy's, see TOY_SETTINGS)")
    p.add_argument("--width", type=int, help="hidden units of G and D")
    p.add_argument("--n-critic", type=int, help="critic steps per generator step")
    p.add_argument("--gp-lambda", type=float, help="gradient-penalty weight")
    p.add_argument("--activation", choices=ACTIVATIONS, help="MLP activation")
    p.add_argument("--ema-beta", type=float, help="EMA of the generator's weights (0: none)")
    p.add_argument("--lr", type=float, help="Adam learning rate of G and D")
    p.add_argument("--z-dim", type=int, help="latent dimension")
    p.add_argument("--critic-norm", choices=CRITIC_NORMS, help="MLP critic normalisation")
    p.add_argument("--batch", type=int, help="batch size")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--workdir", default="bench/_mode_dropping")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    for seed in (int(s) for s in args.seeds.split(",")):
        for loss in args.losses.split(","):
            hp = {k: getattr(args, k) for k in TOY_SETTINGS[args.toy] if k != "steps"}  # None: the toy's
            r = run(loss, seed, args.steps, workdir, args.toy, hp)
            print(f"{args.toy}, {r['steps']} steps, {r['wall_s']:.0f} s, settings {r['settings']}")
            print(
                f"{loss:14s} seed {seed}: modes covered {r['modes_covered']}/{len(r['share'])}, within 3 sigma {r['within_3sigma']:.2f}, "
                f"beyond 6 sigma {r['beyond_6sigma']:.2f}, per-mode share {np.round(r['share'], 3).tolist()}"
            )
            print(f"    coverage over training (real floor {r['coverage_floor']:.2f}): {r['coverage_history']}")
            for w in r["warnings"]:
                print(f"    warning: {w}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
