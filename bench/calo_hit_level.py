"""How many cells a trained calorimeter generator hits per layer, against the data, and the hit level behind it.

::

    python -m bench.calo_hit_level --run W/run --data W/eval.h5 [--layers 0 1 2] [--checkpoint last]

For each listed layer and each third of the log incident energy (the showers of ``--data``, generated at the same
energies): the 10 / 50 / 90 % quantiles of the number of hit cells (real, generated), the fraction of the showers
that hit the layer whose energy lies entirely in its innermost radial ring (real, generated), and the 5 / 50 / 95 %
quantiles of the generator's hit level for that layer's group (the occupancy shift that moves all its cells' hit
probits together; models with ``occupancy``; with ``occupancy_pinned`` the pinned groups' level is shown before its
mean at each energy is taken off, so it is not the level the hits see). On dataset 2, layer 1's outer rings are hit
too rarely after long training (``bench/RESULTS.md`` §13, thirty-sixth and thirty-seventh sessions).

Prints a markdown table; nothing is asserted.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch


def ring_only_and_hits(x: np.ndarray, geom, layer: int) -> tuple[np.ndarray, np.ndarray]:
    """Per shower: whether layer ``layer`` is hit with all of its energy in its innermost ring (bool, False when the
    layer is empty) and its number of hit cells; ``x`` (n, n_features) in the file's layout."""
    lay = geom.layers[layer]
    cells = x[:, geom.layer_slice(layer)]
    r = np.asarray(lay.r_mm, dtype=np.float64).reshape(-1)
    inner = np.isclose(r, r.min())
    total = cells.sum(axis=1)
    hit = cells > 0
    only_inner = (total > 0) & ~hit[:, ~inner].any(axis=1)
    return only_inner, hit.sum(axis=1)


def _hit_quantiles(n_hit: np.ndarray, sel: np.ndarray) -> str:
    """10 / 50 / 90 % quantiles of the hit counts of the selected showers that hit the layer."""
    v = n_hit[sel & (n_hit > 0)]
    return "/".join(f"{a:.0f}" for a in np.quantile(v, [0.1, 0.5, 0.9])) if len(v) else "-"


def _share(flag: np.ndarray, n_hit: np.ndarray, sel: np.ndarray) -> str:
    """Percentage of the selected showers that hit the layer for which ``flag`` holds."""
    return f"{100 * flag[sel].sum() / max(1, (sel & (n_hit > 0)).sum()):.1f} %"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", required=True)
    p.add_argument("--data", required=True, help="showers whose energies are generated and compared (e.g. the benchmark's eval.h5)")
    p.add_argument("--checkpoint", default="best")
    p.add_argument("--layers", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--n", type=int, default=10_000, help="showers (the first n of --data)")
    p.add_argument("--seed", type=int, default=5)
    args = p.parse_args(argv)

    from physgan.domains.calo.geometry import geometry_from_attrs
    from physgan.io.hdf5 import open_source, read_all
    from physgan.run import load_run

    src = open_source(args.data)
    x_real, c = read_all(src)
    geom = geometry_from_attrs(dict(src.header.attrs))
    src.close()
    x_real, c = x_real[: args.n].reshape(min(args.n, len(x_real)), -1), c[: args.n]
    run = load_run(args.run, checkpoint=args.checkpoint, device="cpu")
    g = run.G
    has_level = hasattr(g, "_level_sink") and getattr(g, "occupancy", False)
    if has_level:
        g._level_sink = []
    with torch.no_grad():
        x_fake = run.sample(len(c), c, seed=args.seed).reshape(len(c), -1)
    level = torch.cat(g._level_sink).numpy() if has_level else None
    if has_level:
        g._level_sink = None
    log_e = np.log(c[:, 0])
    edges = np.quantile(log_e, [0, 1 / 3, 2 / 3, 1])
    third = np.clip(np.searchsorted(edges, log_e, side="right") - 1, 0, 2)
    print(f"run {args.run} ({args.checkpoint}, step {run.step}); data {args.data}; {len(c)} showers, generation seed {args.seed}\n")
    print("| layer | energy third | hit cells 10/50/90 % real | generated | innermost ring only, real | generated | hit level 5/50/95 % |")
    print("|---|---|---|---|---|---|---|")
    for layer in args.layers:
        only_r, n_r = ring_only_and_hits(x_real, geom, layer)
        only_g, n_g = ring_only_and_hits(x_fake, geom, layer)
        for t, name in enumerate(("low", "middle", "top")):
            m = third == t
            lev = "/".join(f"{a:+.2f}" for a in np.quantile(level[m, layer], [0.05, 0.5, 0.95])) if level is not None else "-"
            print(f"| {layer} | {name} | {_hit_quantiles(n_r, m)} | {_hit_quantiles(n_g, m)} | {_share(only_r, n_r, m)} | "
                  f"{_share(only_g, n_g, m)} | {lev} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
