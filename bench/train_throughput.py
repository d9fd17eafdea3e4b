"""Training throughput: physgan's trainer against a plain, textbook WGAN-GP loop of the same networks.

::

    python -m bench.train_throughput [--device cpu|cuda] [--quick] [--models calo,conv2d,conv3d] [--compile]

For each model (``calo``: the calorimeter domain's networks on GFlash showers in the CaloGAN geometry;
``conv2d``: the array domain's conv nets, width 32, on 16x16 Gaussian blobs; ``conv3d``: the same on 8^3
fields; sizes a loaded 2-core CPU can time in minutes, raise them on a GPU)
the script builds G and D once through the domain factories (exactly as the trainer does) and times,
interleaved in one process:

* ``textbook``: the loop of Gulrajani et al. (2017), Algorithm 1, as usually written: per critic step
  three separate critic forwards (real, fake, interpolates), ``autograd.grad(create_graph=True)``,
  Adam; fakes under ``no_grad``; the generator step through the frozen critic. Same batch, n_critic,
  learning rates, betas and the same (transformed) training tensor on the device.
* ``fused``: the same loop with one critic forward over ``cat([real, fake, x_hat])`` (what
  :class:`physgan.train.losses.WassersteinGP` does).
* ``split``: real and fake through one critic forward, the interpolates through a second one, so the
  double backward of the penalty covers only the interpolates (the suggested trainer change).
* ``func``: ``fused`` with the penalty's input gradient from :func:`torch.func.grad` of a
  :func:`torch.func.functional_call` (the form ``torch.compile`` can trace); ``--compile`` compiles
  the whole critic step.
* ``physgan``: :func:`physgan.train.loop.train` with validation and checkpoints off, timed as
  ``T(2N steps) - T(N steps)`` (start-up, data loading and the final checkpoint cancel), so it
  includes everything a real run does per step (EMA, gradient norms, stats, divergence checks, one
  status tick every ``train.log_every`` steps with its sample diagnostics).

Reported: generator steps/s, critic samples/s (``batch * n_critic * 3`` rows through the critic per
step), ratios to ``textbook`` (medians of interleaved rounds), load, peak memory.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bench._util import MemWatch, add_common_args, env_info, interleave, load, markdown_table, median, setup

WORKDIR = Path(tempfile.gettempdir()) / "physgan-bench"


def make_data(model: str, n: int) -> Path:
    """A training file for ``model`` (cached in the work folder)."""
    WORKDIR.mkdir(parents=True, exist_ok=True)
    path = WORKDIR / f"train-{model}-{n}.h5"
    if path.is_file():
        return path
    from physgan.io.hdf5 import write_samples

    if model == "calo":
        from physgan.domains.calo.make import make_dataset

        make_dataset(path, geometry="calogan", particle="e+", n=n, seed=0, progress=False)
    elif model == "conv2d":
        from physgan.sim.toy import gaussian_blobs

        x, c = gaussian_blobs(n, 16, seed=0)
        write_samples(path, x, c, ["width"], "array", attrs={"domain": "array"})
    elif model == "conv3d":
        rng = np.random.default_rng(0)
        amp = rng.uniform(0.5, 2.0, n).astype(np.float32)
        x = rng.standard_normal((n, 8, 8, 8)).astype(np.float32) * amp[:, None, None, None]
        write_samples(path, x, amp[:, None], ["amplitude"], "array", attrs={"domain": "array"})
    else:
        raise SystemExit(f"unknown model {model}")
    return path


def timing_overrides(data: Path, device: str, steps: int, log_every: int) -> list[str]:
    """Config overrides of a timed training run: ``steps`` steps on ``data`` in memory, no validation, no checkpoints."""
    return [f"data.path={data}", f"train.device={device}", f"train.steps={steps}", "train.val_every=0",
            "train.ckpt_every=1000000000", "train.keep_snapshots=0", f"train.log_every={log_every}", "data.in_memory=yes"]


def config(model: str, data: Path, device: str, steps: int, log_every: int):
    from physgan.config import resolve_config

    common = timing_overrides(data, device, steps, log_every)
    if model == "calo":
        return resolve_config("calo", "quick", overrides=common)
    opts = ["model.width=32", "model.depth=2", "model.z_dim=16", "model.embed_dim=16", "train.batch_size=64", "train.n_critic=5"]
    return resolve_config("array", overrides=[*opts, *common])


def prepared(cfg, device: torch.device):
    """G, D (fresh, seeded), the transformed training tensor and normalised conditions, as the trainer builds them."""
    from physgan.domains.base import get_domain
    from physgan.io.hdf5 import open_source, read_all
    from physgan.train.conditions import ConditionNormaliser
    from physgan.train.loop import build_models

    domain = get_domain(cfg.domain)
    src = open_source(cfg.data.path)
    x, c = read_all(src)
    transform = domain.make_transform(dict(cfg.data.transform))
    transform.fit(x[:50000], c[:50000], src.header.attrs)
    normaliser = ConditionNormaliser(src.header.condition_names, domain.condition_scales)
    normaliser.fit(c[:50000])
    xt = transform.forward(torch.as_tensor(x, device=device), torch.as_tensor(c, device=device)).float()
    ct = normaliser(torch.as_tensor(c, device=device)).float()
    torch.manual_seed(cfg.train.seed)
    G, D, _ = build_models(domain, src.header, transform, cfg, normaliser)
    return G.to(device), D.to(device), xt, ct


class PlainLoop:
    """A plain WGAN-GP loop (``textbook``, ``fused`` or ``func`` penalty form) with its own optimisers."""

    def __init__(self, G, D, x, c, cfg, form: str, device: torch.device, compile_step: bool = False):
        import copy

        self.G, self.D = copy.deepcopy(G), copy.deepcopy(D)
        self.x, self.c, self.form, self.device = x, c, form, device
        t = cfg.train
        self.batch, self.n_critic, self.lam = t.batch_size, t.n_critic, t.gp_lambda
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=t.lr_g, betas=tuple(t.betas))
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=t.lr_d, betas=tuple(t.betas))
        self.gen = torch.Generator(device=device).manual_seed(0)
        self.z_shape = self.G.latent_shape(1)
        self.critic_loss = {"textbook": self._textbook, "fused": self._fused, "split": self._split, "func": self._func}[form]
        if compile_step:
            self.critic_loss = torch.compile(self.critic_loss)

    def _batch(self):
        idx = torch.randint(len(self.x), (self.batch,), device=self.device, generator=self.gen)
        return self.x[idx], self.c[idx]

    def _eps(self, real):
        return torch.rand((real.shape[0],) + (1,) * (real.ndim - 1), device=self.device, generator=self.gen)

    def _textbook(self, real, fake, c, eps):
        d_real = self.D(real, c).mean()
        d_fake = self.D(fake, c).mean()
        x_hat = (eps * real + (1 - eps) * fake).requires_grad_(True)
        (grad,) = torch.autograd.grad(self.D(x_hat, c).sum(), x_hat, create_graph=True)
        gp = (grad.flatten(1).norm(dim=1) - 1).pow(2).mean()
        return d_fake - d_real + self.lam * gp

    def _fused(self, real, fake, c, eps):
        b = real.shape[0]
        x_hat = (eps * real + (1 - eps) * fake).requires_grad_(True)
        out = self.D(torch.cat([real, fake, x_hat]), torch.cat([c, c, c]))
        (grad,) = torch.autograd.grad(out[2 * b :].sum(), x_hat, create_graph=True)
        gp = (grad.flatten(1).norm(dim=1) - 1).pow(2).mean()
        return out[b : 2 * b].mean() - out[:b].mean() + self.lam * gp

    def _split(self, real, fake, c, eps):
        b = real.shape[0]
        out = self.D(torch.cat([real, fake]), torch.cat([c, c]))
        x_hat = (eps * real + (1 - eps) * fake).requires_grad_(True)
        (grad,) = torch.autograd.grad(self.D(x_hat, c).sum(), x_hat, create_graph=True)
        gp = (grad.flatten(1).norm(dim=1) - 1).pow(2).mean()
        return out[b:].mean() - out[:b].mean() + self.lam * gp

    def _func(self, real, fake, c, eps):
        from torch.func import functional_call, grad

        b = real.shape[0]
        params = dict(self.D.named_parameters())
        x_hat = eps * real + (1 - eps) * fake
        out = self.D(torch.cat([real, fake]), torch.cat([c, c]))
        g = grad(lambda xh: functional_call(self.D, params, (xh, c)).sum())(x_hat)
        gp = (g.flatten(1).norm(dim=1) - 1).pow(2).mean()
        return out[b:].mean() - out[:b].mean() + self.lam * gp

    def steps(self, n: int) -> None:
        for _ in range(n):
            self.D.requires_grad_(True)
            for _ in range(self.n_critic):
                real, c = self._batch()
                z = torch.randn((self.batch, *self.z_shape), device=self.device, generator=self.gen)
                with torch.no_grad():
                    fake = self.G(z, c)
                loss = self.critic_loss(real, fake, c, self._eps(real))
                self.opt_d.zero_grad(set_to_none=True)
                loss.backward()
                self.opt_d.step()
            self.D.requires_grad_(False)
            _, c = self._batch()
            z = torch.randn((self.batch, *self.z_shape), device=self.device, generator=self.gen)
            loss_g = -self.D(self.G(z, c), c).mean()
            self.opt_g.zero_grad(set_to_none=True)
            loss_g.backward()
            self.opt_g.step()


def physgan_time(model: str, data: Path, device: str, n: int, log_every: int) -> float:
    """Seconds for ``n`` generator steps of physgan's trainer: T(2n) - T(n), fresh run directories."""
    from physgan.train.loop import train

    times = []
    for steps in (n, 2 * n):
        run = Path(tempfile.mkdtemp(prefix="run-", dir=WORKDIR))
        try:
            t0 = time.perf_counter()
            train(config(model, data, device, steps, log_every), run, progress=False)
            if device == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
        finally:
            shutil.rmtree(run, ignore_errors=True)
    return times[1] - times[0]


def bench_model(model: str, args, device: torch.device) -> tuple[list, str]:
    n_data = 1024 if args.quick else 4096
    steps = {"calo": 10 if args.quick else 20, "conv2d": 2 if args.quick else 4, "conv3d": 1 if args.quick else 2}[model]
    if args.device == "cuda":
        steps *= 10
    log_every = steps  # one status tick per N steps (the engine's default is 50)
    data = make_data(model, n_data)
    cfg = config(model, data, args.device, steps, log_every)
    G, D, x, c = prepared(cfg, device)
    forms = ["textbook", "fused", "split", "func"]
    loops = {f: PlainLoop(G, D, x, c, cfg, f, device) for f in forms}
    cands = {f: (lambda lp=lp: lp.steps(steps)) for f, lp in loops.items()}
    if args.compile:
        loops["func+compile"] = PlainLoop(G, D, x, c, cfg, "func", device, compile_step=True)
        cands["func+compile"] = lambda: loops["func+compile"].steps(steps)
    cands["physgan"] = lambda: physgan_time(model, data, args.device, steps, log_every)
    with MemWatch(device) as mem:
        times = interleave(cands, args.rounds, device, warmup=1)
    t = cfg.train
    base = median(times["textbook"])
    rows = []
    for name, ts in times.items():
        sps = steps / median(ts)
        ratios = [b / s for b, s in zip(times["textbook"], ts)]  # per round: robust to drifting load
        rows.append([model, name, sps, sps * t.batch_size * t.n_critic * 3, base / median(ts), median(ratios), len(ts), load()])
    note = (
        f"{model}: samples {tuple(x.shape[1:])}, G {sum(p.numel() for p in G.parameters())} / "
        f"D {sum(p.numel() for p in D.parameters())} parameters, batch {t.batch_size}, n_critic {t.n_critic}, {steps} steps per "
        f"timing, {mem}"
    )
    return rows, note


def main(argv: list[str] | None = None) -> int:
    p = add_common_args(argparse.ArgumentParser(description=__doc__.splitlines()[0]))
    p.add_argument("--models", default="calo,conv2d,conv3d")
    p.add_argument("--compile", action="store_true", help="also time the func penalty under torch.compile")
    args = p.parse_args(argv)
    device = setup(args)
    print(env_info(device))
    rows, notes = [], []
    for model in args.models.split(","):
        r, note = bench_model(model, args, device)
        rows += r
        notes.append(note)
        print(markdown_table(["model", "loop", "steps/s", "critic samples/s", "x textbook", "median round ratio", "rounds", "load"], r),
              flush=True)
        print(note, flush=True)
    print()
    print(markdown_table(["model", "loop", "steps/s", "critic samples/s", "x textbook", "median round ratio", "rounds", "load"], rows))
    for note in notes:
        print(f"- {note}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
