"""Two-point correlation speed: physgan's S2 (periodic and non-periodic) vs a bare numpy rfftn.

Run: ``python bench/s2_speed.py [--n 256]``. Prints seconds and the ratios.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def _best(f, repeat: int = 3) -> float:
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        f()
        best = min(best, time.perf_counter() - t0)
    return best


def main(argv: list[str] | None = None) -> None:
    from physgan.metrics.morphology import two_point_correlation

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--n", type=int, default=256)
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args(argv)
    vol = np.random.default_rng(0).random((args.n,) * 3) < 0.3
    t_np = _best(lambda: np.fft.rfftn(vol), args.repeat)
    t_per = _best(lambda: two_point_correlation(vol, periodic=True), args.repeat)
    t_non = _best(lambda: two_point_correlation(vol, periodic=False), args.repeat)
    print(
        f"{args.n}^3: numpy rfftn {t_np:.3f} s; S2 periodic {t_per:.3f} s ({t_per / t_np:.2f}x); "
        f"S2 non-periodic (r_max = n/2) {t_non:.3f} s ({t_non / t_np:.2f}x)"
    )


if __name__ == "__main__":
    main()
