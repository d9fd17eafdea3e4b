"""Cross-check physgan's P(k) against Pylians' ``Pk_library`` on the real Abacus particles (optional, not in CI).

Run with a Python that has Pylians (``pip install Pylians``, a ~5 min source build)::

    PYTHONPATH=. /path/to/pylians-python bench/pk_pylians.py [--grid 64] [--scheme CIC]

Paints the 64^3 particles of ``../shared/data/nbody/abacus_mini_N64_L32_z0_positions.npy``
(32 Mpc/h box) with Pylians' MAS and with ``physgan.metrics.spectra.paint``,
measures P(k) with both estimators (3-D and 2-D on a projected slab) and
prints the median and maximum ratio over the common bins (k <= k_N).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--grid", type=int, default=64)
    ap.add_argument("--scheme", default="CIC", choices=["NGP", "CIC", "TSC"])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "nbody" / "abacus_mini_N64_L32_z0_positions.npy"))
    args = ap.parse_args(argv)
    try:
        import MAS_library as MASL
        import Pk_library as PKL
    except ImportError:
        print("Pylians is not installed in this Python (pip install Pylians); nothing to compare", file=sys.stderr)
        return 1
    from physgan.metrics.spectra import paint, power_spectrum

    box = 32.0
    pos = np.load(args.data).astype(np.float32)
    delta = np.zeros((args.grid,) * 3, np.float32)
    MASL.MA(pos, delta, box, args.scheme, verbose=False)
    ours_rho = paint(pos, args.grid, box, args.scheme.lower())
    print(f"painting: max |physgan - Pylians| / mean = {np.abs(ours_rho - delta).max() / delta.mean():.2e}")
    delta /= delta.mean(dtype=np.float64)
    delta -= 1.0
    pk = PKL.Pk(delta, box, axis=0, MAS=args.scheme, threads=1, verbose=False)
    ours = power_spectrum(delta.astype(np.float64), box, window=args.scheme.lower())
    # match bins by their mean k (both use floor(|k| / kF) shells)
    ratios = []
    for j in range(len(ours.k)):
        i = int(np.argmin(np.abs(pk.k3D - ours.k[j])))
        if abs(pk.k3D[i] - ours.k[j]) < 1e-3 * ours.k[j]:
            ratios.append(ours.pk[j] / pk.Pk[i, 0])
    ratios = np.array(ratios)
    print(f"3-D {args.scheme} grid {args.grid}: {len(ratios)} common bins, "
          f"median ratio physgan/Pylians = {np.median(ratios):.5f}, max |ratio - 1| = {np.max(np.abs(ratios - 1)):.2e}")
    d2 = delta.mean(axis=0).astype(np.float32)
    pk2 = PKL.Pk_plane(d2, box, "None", 1, False)
    ours2 = power_spectrum(d2.astype(np.float64), box)
    r2 = []
    for j in range(len(ours2.k)):
        i = int(np.argmin(np.abs(pk2.k - ours2.k[j])))
        if abs(pk2.k[i] - ours2.k[j]) < 1e-3 * ours2.k[j]:
            r2.append(ours2.pk[j] / pk2.Pk[i])
    r2 = np.array(r2)
    med, worst = np.median(r2), np.max(np.abs(r2 - 1))
    print(f"2-D projection: {len(r2)} common bins, median ratio = {med:.5f}, max |ratio - 1| = {worst:.2e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
