"""What the N-body summary critic's optional features cost per critic step (one thread, CPU).

::

    python -m bench.nbody_critic_cost [--grid 64] [--batch 32] [--steps 5] [--rounds 3] [--quick]

Builds the default preset's summary critic (``critic_width 0``) on lognormal slabs through the domain's factory,
three times: the field summaries alone (``mf_summaries`` off: the baseline), with the soft Minkowski functionals (the
default preset), and with the one-cell excursion counts too (``mf_singletons``). Times, interleaved in one process,
the critic step's work that depends on them: one forward over ``cat([real, fake, x_hat])``, the gradient penalty's
input gradient with ``create_graph`` and the backward through both (what :class:`physgan.train.losses.WassersteinGP`
does). Prints seconds per critic step and the ratio to the baseline.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from bench._util import add_common_args, env_info, interleave, load, markdown_table, median, setup


def lognormal_slabs(n: int, grid: int, seed: int = 0) -> np.ndarray:
    """``n`` 2-D lognormal fields of a power law with a turnover, 2 Mpc/h cells: not the benchmark's cosmology (a 3-D
    linear spectrum on a 2-D grid has no lognormal field), but what a critic step costs does not depend on the fields."""
    from physgan.sim import nbody as sim

    def pk(k):
        return 2e3 * k / (1 + (k / 0.05) ** 2.5)

    return np.stack([1 + sim.lognormal_field(pk, grid, 2.0 * grid, 2, seed=seed + i) for i in range(n)]).astype(np.float32)


def critics(x: np.ndarray) -> dict[str, torch.nn.Module]:
    """The default preset's summary critic with each feature set, built by the domain's factory on ``x``'s fitted statistics."""
    from physgan.domains.base import ModelSpec
    from physgan.domains.nbody.model import build_critic
    from physgan.domains.nbody.transform import make_transform

    t = make_transform({"kind": "gauss", "eps": "auto"}).fit(x)
    base = {"critic_width": 0, "amp_degree": 2}
    arms = {"summaries": base, "+ Minkowski (default)": {**base, "mf_summaries": True},
            "+ Minkowski + singletons": {**base, "mf_summaries": True, "mf_singletons": True}}  # fmt: skip
    out = {}
    for name, opts in arms.items():
        spec = ModelSpec(sample_shape=(1,) + x.shape[1:], n_cond=2, condition_names=["omega_m", "sigma8"], z_dim=8, width=8,
                         depth=3, embed_dim=32, options={"data_stats": t.stats, **opts})  # fmt: skip
        torch.manual_seed(0)
        out[name] = build_critic(spec)
    return out


def critic_step(d: torch.nn.Module, real: torch.Tensor, fake: torch.Tensor, c: torch.Tensor, eps: torch.Tensor) -> None:
    """Forward, penalty gradient (create_graph) and backward of one fused WGAN-GP critic loss."""
    b = len(real)
    x_hat = (eps * real + (1 - eps) * fake).requires_grad_(True)
    out = d(torch.cat([real, fake, x_hat]), torch.cat([c, c, c]))
    (grad,) = torch.autograd.grad(out[2 * b :].sum(), x_hat, create_graph=True)
    loss = out[b : 2 * b].mean() - out[:b].mean() + 10 * (grad.flatten(1).norm(dim=1) - 1).pow(2).mean()
    d.zero_grad(set_to_none=True)
    loss.backward()


def main(argv: list[str] | None = None) -> int:
    p = add_common_args(argparse.ArgumentParser(description=__doc__.splitlines()[0]))
    p.add_argument("--grid", type=int, default=64)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=5, help="critic steps per timing")
    args = p.parse_args(argv)
    device = setup(args)
    grid = 32 if args.quick else args.grid
    x = lognormal_slabs(4 * args.batch, grid)
    ds = critics(x)
    from physgan.domains.nbody.transform import make_transform

    y = make_transform({"kind": "gauss", "eps": "auto"}).fit(x).forward(torch.from_numpy(x)).float()
    g = torch.Generator().manual_seed(1)
    real, fake = y[: args.batch], y[args.batch : 2 * args.batch]
    c = torch.randn(args.batch, 2, generator=g)
    eps = torch.rand(args.batch, 1, 1, 1, generator=g)
    cands = {name: (lambda d=d: [critic_step(d, real, fake, c, eps) for _ in range(args.steps)]) for name, d in ds.items()}
    times = interleave(cands, args.rounds, device, warmup=1)
    base = median(times["summaries"])
    rows = [[name, median(ts) / args.steps, median(ts) / base, len(ts)] for name, ts in times.items()]
    print(env_info(device))
    print(f"{grid}^2 lognormal slabs, batch {args.batch}, {args.steps} critic steps per timing, {load()}")
    print(markdown_table(["critic features", "s per critic step", "x summaries alone", "rounds"], rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
