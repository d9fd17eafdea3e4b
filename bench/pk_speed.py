"""Speed of physgan's P(k) against a bare ``numpy.fft.rfftn`` of the same field, in one process.

::

    .venv/bin/python bench/pk_speed.py [--grid 256] [--repeat 3]

Prints the best-of-``repeat`` times of ``numpy.fft.rfftn(field)`` and of
``power_spectrum(field, box)`` (first call builds the cached shell indices and
is timed separately) and their ratio. Target: ratio <= 2.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from physgan.metrics.spectra import power_spectrum


def _best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--grid", type=int, default=256)
    ap.add_argument("--box", type=float, default=500.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--window", default="cic")
    args = ap.parse_args(argv)
    field = np.random.default_rng(0).standard_normal((args.grid,) * 3)
    t0 = time.perf_counter()
    power_spectrum(field, args.box, window=args.window)
    first = time.perf_counter() - t0
    t_fft = _best(lambda: np.fft.rfftn(field), args.repeat)
    t_pk = _best(lambda: power_spectrum(field, args.box, window=args.window), args.repeat)
    print(f"grid {args.grid}^3 float64, window={args.window}, best of {args.repeat}")
    print(f"numpy.fft.rfftn        : {t_fft:8.3f} s")
    print(f"power_spectrum (cached): {t_pk:8.3f} s   first call incl. shell indices: {first:.3f} s")
    print(f"ratio power_spectrum / rfftn = {t_pk / t_fft:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
