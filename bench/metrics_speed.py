"""Speed of the generic metrics on 10^5 random "showers" (20 high-level features each).

    python -m bench.metrics_speed                      # CPU or GPU (auto), 10^5 per set
    python -m bench.metrics_speed --n 20000 --device cpu

Prints seconds per metric (FPD with jetnet's defaults, KPD, the classifier
two-sample test with its default network, PRDC on 10^4, W1 + separation power).
The fake set differs from the real one by a small shift in two features, so
the numbers printed beside the times are also a sanity check.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from physgan.metrics import classifier_test, fpd, kpd, prdc, separation_power_samples, wasserstein_1d
from physgan.metrics._common import resolve_device


def showers(n: int, d: int, seed: int, shift: float = 0.0) -> np.ndarray:
    """Correlated log-normal "layer energies" (a stand-in for shower features)."""
    rng = np.random.default_rng(seed)
    mix = np.random.default_rng(123).normal(size=(d, d)) / np.sqrt(d)
    z = rng.normal(size=(n, d)) @ mix
    z[:, :2] += shift
    return np.exp(0.5 * z)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--d", type=int, default=20)
    p.add_argument("--device", default="auto")
    p.add_argument("--epochs", type=int, default=50)
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = resolve_device(args.device)
    real, fake = showers(args.n, args.d, 1), showers(args.n, args.d, 2, shift=0.1)
    print(f"n = {args.n} per set, d = {args.d}, device = {dev}, torch threads = {torch.get_num_threads()}")

    def timed(name, fn):
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        out = fn()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        dt = time.perf_counter() - t
        shown = {k: float(f"{v:.3g}") for k, v in out.items()} if len(out) <= 10 else f"{len(out)} values"
        print(f"{name:<28s} {dt:8.2f} s   {shown}")
        return dt

    timed("fpd (jetnet defaults)", lambda: fpd(real, fake, device=dev))
    timed("kpd (10 x 5000)", lambda: kpd(real, fake, device=dev))
    timed("classifier AUC", lambda: classifier_test(real, fake, epochs=args.epochs, device=dev))
    timed("prdc (10^4 subsets)", lambda: prdc(real, fake, device=dev))
    timed("w1 + separation", lambda: {**wasserstein_1d(real, fake), **separation_power_samples(real, fake)})


if __name__ == "__main__":
    main()
