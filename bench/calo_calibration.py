"""Calibration table of the GFlash simulator against the 51 real Geant4 CaloGAN e+ showers.

Run from the project root (needs ``../shared/data``)::

    python -m bench.calo_calibration --k 50 --seed 2024 --out datasets/calo_calibration.md

For every real shower it simulates ``k`` showers at the same incident energy and prints, per
incident-energy bin, the mean layer fractions, lateral containment, occupancy, overflow and
response of Geant4 and of the simulator, then the simulator's speed.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

from physgan.domains.calo.geometry import calogan_geometry
from physgan.io.hdf5 import read_all
from physgan.sim.gflash import default_params, simulate_showers

BINS = [(1, 10), (10, 30), (30, 60), (60, 100)]
COLUMNS = [
    ("f0", "E_0/E"), ("f1", "E_1/E"), ("f2", "E_2/E"),
    ("c0a", "L0 |y|<5mm"), ("c0b", "L0 |y|<10mm"), ("c1a", "L1 2x2"), ("c1b", "L1 4x4"),
    ("o0", "occ L0"), ("o1", "occ L1"), ("o2", "occ L2"), ("ov", "overflow/E_inc"), ("resp", "cells/E_inc"),
]


def shower_shapes(x: np.ndarray, e_gev: np.ndarray) -> dict[str, np.ndarray]:
    """Per-shower calibration quantities of CaloGAN showers (x: (N, 507) MeV, e_gev: (N,) GeV).

    Layer fractions E_i / sum of layers; containment = fraction of a layer's energy in the central
    strips (layer 0, |y| < 5 or 10 mm: the 2 or 4 central 5 mm columns) or central 2x2 / 4x4 cells
    (layer 1, 80 / 160 mm squares around the beam); occupancy = fraction of cells > 0; overflow and
    cell sums over the incident energy.
    """
    g = calogan_geometry()
    x = np.asarray(x, dtype=np.float64)
    s = g.layer_sums(x)
    l0 = x[:, :288].reshape(-1, 3, 96)
    l1 = x[:, 288:432].reshape(-1, 12, 12)
    out = {f"f{i}": s[:, i] / s.sum(1) for i in range(3)}
    out.update(
        c0a=l0[:, :, 47:49].sum((1, 2)) / s[:, 0], c0b=l0[:, :, 46:50].sum((1, 2)) / s[:, 0],
        c1a=l1[:, 5:7, 5:7].sum((1, 2)) / s[:, 1], c1b=l1[:, 4:8, 4:8].sum((1, 2)) / s[:, 1],
        ov=x[:, 504:].sum(1) / (e_gev * 1000.0), resp=x[:, :504].sum(1) / (e_gev * 1000.0),
    )
    for i, part in enumerate(g.split(x)):
        out[f"o{i}"] = (part > 0).mean(1)
    return out


def table(real: dict, sim: dict, e: np.ndarray, e_sim: np.ndarray) -> str:
    """Markdown table: per bin a Geant4 row (mean +- standard error) and a GFlash row."""
    head = "| bin (GeV) | source | N | " + " | ".join(t for _, t in COLUMNS) + " |"
    lines = [head, "|" + "---|" * (3 + len(COLUMNS))]
    for lo, hi in BINS + [(1, 100)]:
        m, ms = (e >= lo) & (e < hi), (e_sim >= lo) & (e_sim < hi)
        label = f"{lo}-{hi}" if (lo, hi) != (1, 100) else "all"
        g4 = [f"{real[k][m].mean():.4f} ± {real[k][m].std(ddof=1) / np.sqrt(m.sum()):.4f}" for k, _ in COLUMNS]
        gf = [f"{sim[k][ms].mean():.4f}" for k, _ in COLUMNS]
        lines.append(f"| {label} | Geant4 | {m.sum()} | " + " | ".join(g4) + " |")
        lines.append(f"| {label} | GFlash | {ms.sum()} | " + " | ".join(gf) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(Path(os.environ.get("PHYSGAN_SHARED_DATA", "../shared/data")) / "calo"
                                          / "geant4_eplus_calogan_51.h5"))
    ap.add_argument("--k", type=int, default=50, help="simulated showers per real shower (default 50)")
    ap.add_argument("--seed", type=int, default=2024)
    ap.add_argument("--speed-n", type=int, default=2000, help="showers for the speed measurement (uniform 1-100 GeV)")
    ap.add_argument("--out", help="also write the table (markdown) to this file")
    args = ap.parse_args(argv)
    if not Path(args.data).is_file():
        print(f"real Geant4 file {args.data} not found (needs ../shared/data)", file=sys.stderr)
        return 2
    geo = calogan_geometry()
    x_real, c = read_all(args.data)
    e = c[:, 0].astype(np.float64)
    e_sim = np.repeat(e, args.k)
    x_sim = simulate_showers(geo, e_sim, seed=args.seed)
    text = table(shower_shapes(x_real, e), shower_shapes(x_sim, e_sim), e, e_sim)
    e_speed = np.random.default_rng(args.seed).uniform(1, 100, args.speed_n)
    t0 = time.perf_counter()
    simulate_showers(geo, e_speed, seed=args.seed)
    rate = args.speed_n / (time.perf_counter() - t0)
    p = default_params(geo)
    params = ", ".join(f"{k}={getattr(p, k)}" for k in ("response", "response_sigma", "t_shift_x0", "alpha_scale", "core_scale",
                                                         "tail_scale", "max_radius_rm", "contain_longitudinal"))
    report = (f"{text}\n\nGFlash parameters: {params}; medium {p.medium.name}: Z_eff {p.medium.z_eff:.1f}, "
              f"X0 {p.medium.x0_mm:.2f} mm, R_M {p.medium.rm_mm:.2f} mm, E_c {p.medium.ec_mev:.2f} MeV.\n"
              f"Simulated {args.k} showers per real shower (seed {args.seed}). Speed: {rate:.0f} showers/s "
              f"(uniform 1-100 GeV, {args.speed_n} showers, this machine, {os.cpu_count()} CPUs).\n")
    print(report)
    if args.out:
        out = Path(args.out)
        intro = ""
        if out.is_file() and "## Table" in out.read_text():
            intro = out.read_text().split("## Table", 1)[0] + "## Table\n"
        out.write_text(intro + report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
