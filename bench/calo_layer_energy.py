"""Each layer's energy in a trained calorimeter generator's showers against the data: how often the layer holds energy
and how its energy is spread where it does, by third of the incident energy.

::

    python -m bench.calo_layer_energy --run W/run --data W/eval.h5 [--layers 0 1 2 34 40 44] [--checkpoint last]

Per listed layer: its ``e_layer`` separation power as the benchmark computes it (``physics_metrics``' binning, all
energies pooled), the percentage of showers that hold energy in it (real / generated, per energy third), and, over the
showers that do, the 10 / 50 / 90 % quantiles and the standard deviation of ``log10`` of its energy (MeV; cells under
the voxel threshold dropped, as the metrics do), real and generated, per energy third. On dataset 2 after long
training, the deep layers' energies spread too wide where they are hit while their hit rates are the data's
(``bench/RESULTS.md`` §13, thirty-ninth session).

Prints a markdown table; nothing is asserted.
"""

from __future__ import annotations

import argparse

import numpy as np

from bench.calo_hit_level import energy_thirds, showers_real_and_generated
from physgan.domains.calo.features import shower_features
from physgan.domains.calo.metrics import physics_metrics

THIRDS = ("low", "middle", "top")


def layer_energies(x: np.ndarray, c: np.ndarray, geom) -> np.ndarray:
    """(n, n_layers) layer energies (MeV) as the metrics read them (:func:`shower_features`: cells under the voxel
    threshold dropped), ``x`` (n, n_features) in the file's layout, ``c`` its conditions."""
    feats = shower_features(x, c, geom)
    return np.stack([feats[f"e_layer_{layer}"] for layer in range(len(geom.layers))], axis=1)


def _given_hit(e: np.ndarray) -> str:
    """10 / 50 / 90 % quantiles and the standard deviation of log10 of the positive values of ``e``."""
    v = np.log10(e[e > 0])
    if len(v) < 2:
        return "-"
    q = np.quantile(v, [0.1, 0.5, 0.9])
    return f"{q[0]:.2f} / {q[1]:.2f} / {q[2]:.2f}, sd {v.std():.2f}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", required=True)
    p.add_argument("--data", required=True, help="showers whose energies are generated and compared (e.g. the benchmark's eval.h5)")
    p.add_argument("--checkpoint", default="best")
    p.add_argument("--layers", type=int, nargs="+", default=None, help="layers (default: all)")
    p.add_argument("--n", type=int, default=10_000, help="showers (the first n of --data)")
    p.add_argument("--seed", type=int, default=5)
    args = p.parse_args(argv)

    x_real, x_fake, c, geom, run, _ = showers_real_and_generated(args.run, args.data, args.checkpoint, args.n, args.seed)
    sep = physics_metrics((x_real, c), (x_fake, c), geom)
    e_real, e_fake = layer_energies(x_real, c, geom), layer_energies(x_fake, c, geom)
    third = energy_thirds(c)
    layers = args.layers if args.layers is not None else list(range(len(geom.layers)))
    print(f"run {args.run} ({args.checkpoint}, step {run.step}); data {args.data}; {len(c)} showers, generation seed {args.seed}\n")
    print("| layer | e_layer sep. | energy third | holds energy, real / generated | log10 E (MeV) where held, real | generated |")
    print("|---|---|---|---|---|---|")
    for layer in layers:
        s = sep.get(f"sep/e_layer_{layer}", float("nan"))
        for t, name in enumerate(THIRDS):
            m = third == t
            held = f"{100 * (e_real[m, layer] > 0).mean():.0f} / {100 * (e_fake[m, layer] > 0).mean():.0f} %"
            print(f"| {layer} | {s:.4f} | {name} | {held} | {_given_hit(e_real[m, layer])} | {_given_hit(e_fake[m, layer])} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
