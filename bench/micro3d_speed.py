"""3-D SliceGAN training speed on CPU (issue 14): generator steps per second, old preset vs new, in one process.

::

    OMP_NUM_THREADS=1 taskset -c 1 python -m bench.micro3d_speed                  # 32^3 and 64^3
    python -m bench.micro3d_speed --sides 32 --configs old,new --profile          # + torch profiler table
    python -m bench.micro3d_speed --sides 64 --configs new --parts                # + the time of each piece of a step

One *generator step* is what physgan's training loop does per step, timed through the loop's
own functions (``physgan.train.loop._critic_steps`` / ``_generator_step``): ``n_critic`` critic
updates (fakes under ``no_grad``, Wasserstein loss + gradient penalty with its double
backward) and one generator update through the frozen critic
(:class:`physgan.train.losses.WassersteinGP`, Adam). Random one-hot volumes stand in for
data (speed does not depend on the values). Configurations (model options of the micro
domain's presets):

* ``old``: the ``default`` preset before issue 14 (z 16, width 64, up to 512 channels,
  batch 8, every slice of every axis through the critic);
* ``new``: the ``default`` preset now (see ``physgan.domains.micro.PRESETS``);
* ``lazy``, ``reuse``, ``lazy+reuse``: ``new`` with ``train.gp_every=2`` (the penalty on every
  second critic update at twice the weight) and / or ``train.reuse_fake`` (the generator update
  reuses the last critic update's fakes);
* ``bf16``: ``new`` with ``train.precision=bf16`` (bf16 autocast on the CPU: oneDNN's bf16
  convolutions, fast where the CPU has AVX512-BF16 or AMX; measured only on such a CPU).

Each configuration is timed for ``--steps`` steps after one warm-up step (the old one,
which is slow, for ``--old-steps`` after its first, by default only its first step);
medians are reported with the load average, and the speed-up against the first
configuration at the same side.
"""

from __future__ import annotations

import argparse
import copy
import time
from dataclasses import fields
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


def _variant(**train: Any):
    def make() -> dict[str, Any]:
        cfg = _new()
        cfg["train"].update(train)
        return cfg

    return make


CONFIGS = {
    "old": lambda: copy.deepcopy(OLD),
    "new": _new,
    "lazy": _variant(gp_every=2),
    "reuse": _variant(reuse_fake=True),
    "lazy+reuse": _variant(gp_every=2, reuse_fake=True),
    "bf16": _variant(precision="bf16"),
}


def build(cfg: dict[str, Any], side: int, n_cond: int = 1):
    """The training state (G, D, optimisers, a fixed batch of one-hot volumes), train config and objective of a preset
    dict at ``side``^3."""
    from physgan.config import TrainConfig, recipe_settings
    from physgan.domains import ModelSpec
    from physgan.domains.micro.model import build_critic, build_generator
    from physgan.train.conditions import ConditionNormaliser
    from physgan.train.losses import make_objective

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
    train = {**recipe_settings(cfg["train"].get("recipe", "gulrajani2017")), **cfg["train"]}
    t_cfg = TrainConfig(**{k: v for k, v in train.items() if k in {f.name for f in fields(TrainConfig)}})
    t_cfg.betas = tuple(t_cfg.betas)
    opt_g = torch.optim.Adam(G.parameters(), t_cfg.lr_g, betas=t_cfg.betas)
    opt_d = torch.optim.Adam(D.parameters(), t_cfg.lr_d, betas=t_cfg.betas)
    b = t_cfg.batch_size
    lab = torch.randint(0, 2, (b, side, side, side))
    real = torch.nn.functional.one_hot(lab, 2).movedim(-1, 1).float()
    c = norm(torch.rand(b, n_cond) * 0.4 + 0.2)
    objective = make_objective(t_cfg.loss, t_cfg.gp_lambda, t_cfg.drift, t_cfg.clip, t_cfg.gp_every)
    return train_state(G, D, opt_g, opt_d, real, c), t_cfg, objective


class _FixedBatches:
    """The sampler interface of the training loop over one fixed batch (speed does not depend on the values)."""

    def __init__(self, real: torch.Tensor, c: torch.Tensor):
        self.real, self.c = real, c

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.real, self.c

    def next_conditions(self) -> torch.Tensor:
        return self.c


def train_state(G, D, opt_g, opt_d, real, c):
    """A :class:`physgan.train.state.TrainState` of these networks over the fixed batch (no EMA, no monitor)."""
    from physgan.train.state import TrainState

    return TrainState(G, D, None, opt_g, opt_d, _FixedBatches(real, c), torch.Generator().manual_seed(0), None)


def train_step(ts, t_cfg, objective) -> None:
    """One generator step of :func:`physgan.train.loop.train`: its own critic updates and generator update."""
    from physgan.train.loop import _critic_steps, _generator_step

    device = torch.device("cpu")
    _, _, held = _critic_steps(ts, ts.G, ts.D, objective, t_cfg, device)
    _generator_step(ts, ts.G, objective, None, t_cfg, device, held)
    ts.step += 1


def _time(parts, steps: int) -> list[float]:
    out = []
    for _ in range(steps):
        t0 = time.perf_counter()
        train_step(*parts)
        out.append(time.perf_counter() - t0)
    return out


def part_times(ts, t_cfg, objective, reps: int = 5) -> dict[str, float]:
    """Median seconds of the pieces a generator step is made of (``--parts``), on the state's fixed batch:
    a generator forward under no_grad, the critic's Wasserstein terms with their backward, the penalty with its
    double backward (:func:`physgan.train.losses.penalty_at`), and the generator update's forward and backward
    through the frozen critic, each under the configuration's ``train.precision`` as in training. Nothing is stepped, so
    the networks do not change between pieces."""
    from physgan.device import autocast
    from physgan.train.losses import interpolate, penalty_at

    G, D, (real, c) = ts.G, ts.D, ts.sampler.next()
    z = torch.randn((real.shape[0], *G.latent_shape(1)), generator=torch.Generator().manual_seed(1))
    with torch.no_grad(), autocast(t_cfg.precision, torch.device("cpu")):
        fake = G(z, c).float()

    def g_forward():
        with torch.no_grad():
            G(z, c)

    def critic_w():
        D.requires_grad_(True)
        (D(fake, c).mean() - D(real, c).mean()).backward()

    def penalty():
        D.requires_grad_(True)
        gp, _ = penalty_at(D, interpolate(real, fake), c)
        (objective.gp_lambda * gp).backward()

    def g_update():
        D.requires_grad_(False)
        (-D(G(z, c), c).mean()).backward()

    out = {}
    for name, fn in [("G forward, no_grad", g_forward), ("critic W terms + backward", critic_w),
                     ("penalty + double backward", penalty), ("G update (G and D forward + backward)", g_update)]:  # fmt: skip
        with autocast(t_cfg.precision, torch.device("cpu")):
            fn()  # warm-up
            times = []
            for _ in range(reps):
                t0 = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t0)
        out[name] = float(np.median(times))
    for net in (G, D):
        net.zero_grad(set_to_none=True)
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sides", default="32,64")
    p.add_argument("--configs", default="old,new")
    p.add_argument("--steps", type=int, default=5, help="timed steps per configuration")
    p.add_argument("--old-steps", type=int, default=0, help="timed steps of 'old' after its first (0: the first step is the figure)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--profile", action="store_true", help="print a torch profiler table of one step per configuration")
    p.add_argument("--parts", action="store_true", help="print the median time of each piece of a step (part_times)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows, res = [], {}
    for side in (int(s) for s in args.sides.split(",")):
        base = None
        for name in args.configs.split(","):
            cfg = CONFIGS[name]()
            parts = build(cfg, side)
            G, D = parts[0].G, parts[0].D
            n_par = (sum(q.numel() for q in G.parameters()), sum(q.numel() for q in D.parameters()))
            t_first = _time(parts, 1)[0]  # warm-up, and the latency of the first step
            steps = args.old_steps if name == "old" else args.steps
            ts = _time(parts, steps) if steps else [t_first]
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
                    train_step(*parts)
                print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))
            if args.parts:
                pieces = part_times(*parts)
                res[f"{name}_{side}"]["parts_s"] = pieces
                print("  " + "; ".join(f"{k} {1000 * v:.0f} ms" for k, v in pieces.items()), flush=True)
    header = ["volume", "config", "params G / D", "first step s", "s / G step", "G steps / s", "G steps / min", "speed-up", "load"]
    print(markdown_table(header, rows))
    return res


if __name__ == "__main__":
    main()
