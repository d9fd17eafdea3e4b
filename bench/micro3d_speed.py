"""3-D SliceGAN training speed on CPU (issue 14): generator steps per second, old preset vs new, in one process.

::

    OMP_NUM_THREADS=1 taskset -c 1 python -m bench.micro3d_speed                  # 32^3 and 64^3
    python -m bench.micro3d_speed --sides 32 --configs old,new --profile          # + torch profiler table

One *generator step* is what physgan's training loop does per step: ``n_critic`` critic
updates (fakes under ``no_grad``, Wasserstein loss + gradient penalty with its double
backward) and one generator update through the frozen critic
(:class:`physgan.train.losses.WassersteinGP`, Adam). Random one-hot volumes stand in for
data (speed does not depend on the values). Configurations (model options of the micro
domain's presets):

* ``old``: the ``default`` preset before issue 14 (z 16, width 64, up to 512 channels,
  batch 8, every slice of every axis through the critic);
* ``new``: the ``default`` preset now (see ``physgan.domains.micro.PRESETS``).

Each configuration is timed for ``--steps`` steps after one warm-up step (the old one,
which is slow, for ``--old-steps`` after its first, by default only its first step);
medians are reported with the load average, and the speed-up against the first
configuration at the same side.
"""

from __future__ import annotations

import argparse
import copy
import time
from typing import Any

import numpy as np
import torch

from bench._util import load, markdown_table

__all__ = ["CONFIGS", "build", "train_step", "main"]

OLD = {
    "model": {"z_dim": 16, "width": 64, "embed_dim": 32, "options": {"isotropic": True}},
    "train": {"batch_size": 8, "recipe": "gulrajani2017"},
}


def _new() -> dict[str, Any]:
    from physgan.domains.micro import PRESETS

    return copy.deepcopy(PRESETS["default"])


CONFIGS = {"old": lambda: copy.deepcopy(OLD), "new": _new}


def build(cfg: dict[str, Any], side: int, n_cond: int = 1):
    """G, D, optimisers and a batch of one-hot volumes for a preset dict at ``side``^3."""
    from physgan.config import recipe_settings
    from physgan.domains import ModelSpec
    from physgan.domains.micro.model import build_critic, build_generator
    from physgan.train.conditions import ConditionNormaliser

    m = cfg["model"]
    names = ["porosity"][:n_cond]
    norm = ConditionNormaliser(names).fit(np.linspace(0.2, 0.6, 16)[:, None][:, :n_cond])
    opts = {**m.get("options", {}), "condition_stats": norm.state_dict()}
    spec = ModelSpec(
        sample_shape=(2, side, side, side),
        n_cond=n_cond,
        condition_names=names,
        z_dim=m["z_dim"],
        width=m["width"],
        embed_dim=m["embed_dim"],
        options=opts,
    )
    torch.manual_seed(0)
    G, D = build_generator(spec), build_critic(spec)
    rec = recipe_settings(cfg["train"].get("recipe", "gulrajani2017"))
    opt_g = torch.optim.Adam(G.parameters(), rec["lr_g"], betas=tuple(rec["betas"]))
    opt_d = torch.optim.Adam(D.parameters(), rec["lr_d"], betas=tuple(rec["betas"]))
    b = int(cfg["train"]["batch_size"])
    lab = torch.randint(0, 2, (b, side, side, side))
    real = torch.nn.functional.one_hot(lab, 2).movedim(-1, 1).float()
    c = norm(torch.rand(b, n_cond) * 0.4 + 0.2)
    return G, D, opt_g, opt_d, real, c, int(rec["n_critic"])


def train_step(G, D, opt_g, opt_d, real, c, n_critic: int, objective) -> None:
    """One generator step as in :func:`physgan.train.loop.train` (n_critic critic updates, one G update)."""
    D.requires_grad_(True)
    for _ in range(n_critic):
        z = torch.randn((real.shape[0], *G.latent_shape(1)))
        with torch.no_grad():
            fake = G(z, c)
        loss_d, _ = objective.critic_loss(D, real, fake, c)
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
    D.requires_grad_(False)
    z = torch.randn((real.shape[0], *G.latent_shape(1)))
    loss_g, _ = objective.generator_loss(D, G(z, c), c)
    opt_g.zero_grad(set_to_none=True)
    loss_g.backward()
    opt_g.step()


def _time(parts, steps: int, objective) -> list[float]:
    out = []
    for _ in range(steps):
        t0 = time.perf_counter()
        train_step(*parts, objective=objective)
        out.append(time.perf_counter() - t0)
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sides", default="32,64")
    p.add_argument("--configs", default="old,new")
    p.add_argument("--steps", type=int, default=5, help="timed steps per configuration")
    p.add_argument("--old-steps", type=int, default=0, help="timed steps of 'old' after its first (0: the first step is the figure)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--profile", action="store_true", help="print a torch profiler table of one step per configuration")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    from physgan.train.losses import WassersteinGP

    objective = WassersteinGP(10.0)
    rows, res = [], {}
    for side in (int(s) for s in args.sides.split(",")):
        base = None
        for name in args.configs.split(","):
            cfg = CONFIGS[name]()
            parts = build(cfg, side)
            G, D = parts[0], parts[1]
            n_par = (sum(q.numel() for q in G.parameters()), sum(q.numel() for q in D.parameters()))
            t_first = _time(parts, 1, objective)[0]  # warm-up, and the latency of the first step
            steps = args.old_steps if name == "old" else args.steps
            ts = _time(parts, steps, objective) if steps else [t_first]
            med = float(np.median(ts))
            base = base or med
            res[f"{name}_{side}"] = {"s_per_step": med, "first_step_s": t_first, "params": n_par, "load": load()}
            rows.append([
                f"{side}^3", name, f"{n_par[0] / 1e6:.2f} M / {n_par[1] / 1e6:.2f} M", f"{t_first:.2f}", f"{med:.3f}",
                f"{1 / med:.2f}", f"{60 / med:.1f}", f"{base / med:.1f}x", load(),
            ])  # fmt: skip
            print(f"{side}^3 {name}: {med:.3f} s/step ({1 / med:.2f} steps/s) over {steps} steps", flush=True)
            if args.profile:
                from torch.profiler import ProfilerActivity, profile

                with profile(activities=[ProfilerActivity.CPU]) as prof:
                    train_step(*parts, objective=objective)
                print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))
    header = ["volume", "config", "params G / D", "first step s", "s / G step", "G steps / s", "G steps / min", "speed-up", "load"]
    print(markdown_table(header, rows))
    return res


if __name__ == "__main__":
    main()
