"""Tortuosity of TauFactor's 500^3 benchmark volume with physgan's ``tortuosity_factor``.

Known over-converged values (TauFactor 2 paper, tldr-group/taufactor docs/paper):
1.1513, 1.3905, 4.2431 in the three directions. Prints tau per axis for centred
crops of growing size and the full volume, with time and iterations, so the
convergence with size and with the solver criterion can be read off.

Run (GPU strongly advised for the full volume; minutes per axis on a CPU at 128^3)::

    python bench/tortuosity_benchmark.py [--data ../shared/data/micro/tortuosity_benchmark_500.zip]
        [--sizes 64,128,256,500] [--conv-crit 1e-2,1e-3] [--device cuda]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

KNOWN = (1.1513, 1.3905, 4.2431)


def main(argv: list[str] | None = None) -> None:
    import torch

    from physgan.domains.micro.importer import read_image
    from physgan.metrics.morphology import tortuosity_factor

    root = Path(__file__).resolve().parents[1]
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(root.parent / "shared" / "data" / "micro" / "tortuosity_benchmark_500.zip"))
    p.add_argument("--sizes", default="64,128,256,500")
    p.add_argument("--conv-crit", default="1e-2")
    p.add_argument("--iter-limit", type=int, default=100000)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args(argv)
    vol = read_image(args.data) == 255  # the percolating phase (30 %)
    print(f"volume {vol.shape}, conducting fraction {vol.mean():.4f}, device {args.device}")
    print(f"known full-volume tau (sorted): {sorted(KNOWN)}")
    print("size  conv_crit  axis  tau        iterations  converged  seconds")
    for size in [int(s) for s in args.sizes.split(",")]:
        lo = (vol.shape[0] - size) // 2
        crop = vol[lo : lo + size, lo : lo + size, lo : lo + size]
        for crit in [float(c) for c in args.conv_crit.split(",")]:
            taus = []
            for axis in range(3):
                t0 = time.perf_counter()
                r = tortuosity_factor(crop, axis=axis, device=args.device, conv_crit=crit, iter_limit=args.iter_limit)
                dt = time.perf_counter() - t0
                taus.append(r.tau)
                print(
                    f"{size:4d}  {crit:9.0e}  {axis:4d}  {r.tau:9.4f}  {r.iterations:10d}  {r.converged!s:9}  {dt:7.1f}",
                    flush=True,
                )
            if size == vol.shape[0]:
                err = np.abs(np.sort(taus) - np.sort(KNOWN)) / np.sort(KNOWN)
                print(
                    f"full volume, conv_crit {crit:g}: tau per axis {np.round(taus, 4).tolist()}; "
                    f"relative error vs known (sorted) {np.round(err, 4).tolist()}"
                )


if __name__ == "__main__":
    main()
