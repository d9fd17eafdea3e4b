"""FPD/KPD with few showers in CaloChallenge dataset-2 geometry: per-call scaling (before) vs one reference scale (now).

    python -m bench.fpd_small                 # 100 vs 100 GFlash showers, 10-100 GeV (~1 min on one core)
    python -m bench.fpd_small --n 200 --scale 1.3

Simulates 3 x N showers; "same" compares two independent sets, "scaled" a set whose cell
energies are multiplied by ``--scale``. Before (the evaluation up to commit 6aee422): FPD/KPD
divide every feature by max |x| of whichever set plays "real" in that call, so the noise floor
(two halves of the real set) uses another scale than the value. Now: one scale from all real
samples, near-constant features left out, and with fewer than 4 samples per feature the leading
N/4 principal components of the scaled real features (:mod:`physgan.metrics.scaling`).
"""

from __future__ import annotations

import argparse

import numpy as np

from bench._util import env_info
from physgan.domains.base import get_domain
from physgan.domains.calo.make import resolve_geometry
from physgan.metrics import fpd, kpd, with_floor
from physgan.metrics.scaling import reference_scale
from physgan.sim import gflash


def features(dom, x: np.ndarray, e_mev: np.ndarray, attrs: dict) -> np.ndarray:
    f = dom.features(x, e_mev[:, None], attrs)
    return np.stack([np.asarray(v, np.float64) for v in f.values()] + [np.log10(e_mev)], axis=1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=100)
    p.add_argument("--scale", type=float, default=2.0)
    p.add_argument("--seed", type=int, default=7)
    args = p.parse_args()
    print(env_info())
    geo = resolve_geometry("calochallenge-ds2")
    e = np.random.default_rng(args.seed).uniform(10.0, 100.0, 3 * args.n)
    x = np.concatenate([b for _, b in gflash.iter_showers(geo, e, seed=args.seed, batch=3 * args.n)])
    dom, attrs, n = get_domain("calo"), geo.to_attrs(), args.n
    real = features(dom, x[:n], 1000 * e[:n], attrs)
    sets = {"same": features(dom, x[n : 2 * n], 1000 * e[n : 2 * n], attrs),
            f"cells x{args.scale:g}": features(dom, x[2 * n :] * args.scale, 1000 * e[2 * n :], attrs)}  # fmt: skip
    scaling = reference_scale(real, max_components=max(2, (n // 2) // 4))
    print(f"{n} vs {n} showers, {real.shape[1]} features; now: {len(scaling.dropped)} near-constant left out, "
          f"{scaling.n_components} components")  # fmt: skip
    print("| comparison | metric | before: value ± err | before: floor | now: value ± err | now: floor |")
    print("|---|---|---|---|---|---|")
    for label, fake in sets.items():
        for metric in (fpd, kpd):
            name = metric.__name__
            old = with_floor(lambda a, b, m=metric: m(a, b, seed=0, device="cpu"), real, fake, method="intrinsic", seed=0)[name]
            new = with_floor(lambda a, b, m=metric: m(a, b, normalise=None, seed=0, device="cpu"), scaling(real), scaling(fake),
                             method="intrinsic", seed=0)[name]  # fmt: skip
            print(f"| {label} | {name} | {old.value:.3g} ± {old.error:.2g} | {old.floor:.3g} ± {old.floor_error:.2g} "
                  f"| {new.value:.3g} ± {new.error:.2g} | {new.floor:.3g} ± {new.floor_error:.2g} |")  # fmt: skip


if __name__ == "__main__":
    main()
