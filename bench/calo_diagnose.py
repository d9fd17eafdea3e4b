"""Why do generated centres of energy collapse and tail cells stay empty? What the critic sees, what G expresses.

::

    python -m bench.calo_diagnose --data data/train.h5                     # critic-input scales only
    python -m bench.calo_diagnose --data data/train.h5 --run runs/calo-001 # + the trained critic and generator

1. **What the critic sees.** The critic's physics features (:meth:`CaloCritic.physics_features`) and the
   transform's summary coordinates, computed on real showers: the standard deviation of each over the data.
   A WGAN-GP critic has gradient norm about 1 in its input, so the score difference a feature can make
   between two showers that differ by one data standard deviation in that feature alone is at most about
   that standard deviation (times the feature's gain inside the critic). A column with a spread of 1e-3
   is invisible next to the O(1) summary coordinates.
2. **What the trained critic uses** (with ``--run``): the mean ``|dD/d phi_k| * std(phi_k)`` over real
   showers: the score change for a one-sigma change of feature ``k``.
3. **What the generator expresses** (with ``--run``): at the real conditions, the spread of each centre of
   energy and width (real vs generated), the cells that are non-zero in some real shower but zero in every
   generated one, and the numerical rank of ``d u / d z`` (the directions in which one shower can vary).
4. **How much per-cell noise it uses** (with ``--run``): per layer and energy third, the factor ``exp(shift)`` on
   the layer's noise scale and the spread of the hottest cells' log share, real vs generated (a trained dataset-2
   generator had switched its noise off: ``bench/RESULTS.md`` §13, fourteenth session).
5. **What pulls the noise** (with ``--run``): the generator loss's gradient on each layer's noise shift, split by
   the critic's input path (cell MLP, physics features, summary coordinates).

Prints markdown tables; nothing is asserted.
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np
import torch


def _critic_feature_names(geom: Any, n_summaries: int, transform_stats: dict[str, Any]) -> list[str]:
    from physgan.domains.calo.transform import lateral_moments

    _, col_layer = lateral_moments(geom)
    axes: list[str] = []
    for i, lay in enumerate(geom.layers):
        a = (["x", "y"] if geom.kind == "cartesian" or lay.n_alpha > 1 else []) + (["r"] if geom.kind == "cylindrical" else [])
        axes += [f"{ax}{i}" for ax in a]
    names = ["phys:log response (x ten)", "phys:depth"]
    names += [f"phys:log E_layer{i}/4" for i in range(geom.n_layers)]
    names += [f"phys:occupancy{i}" for i in range(geom.n_layers)]
    names += [f"phys:centre {a}" for a in axes] + [f"phys:width {a}" for a in axes]
    g = int(transform_stats.get("summary_groups", 0))
    summ = ["sum:log response"] + [f"sum:log share{k}" for k in range(g)]
    if transform_stats.get("summary_occupancy"):
        summ += [f"sum:occupancy{k}" for k in range(g)]
    if transform_stats.get("summary_lateral"):
        summ += [f"sum:centre {a}" for a in axes] + [f"sum:width {a}" for a in axes]
        summ += [f"sum:peak ratio{i}" for i in range(geom.n_layers)]
    return names + summ[:n_summaries]


def _group(name: str) -> str:
    """Feature group of a column name (digits dropped)."""
    return "".join(ch for ch in name if not ch.isdigit()).rstrip()


def noise_in_use(G: Any, x: np.ndarray, fake: np.ndarray, c: np.ndarray, cn: torch.Tensor, geom: Any, seed: int) -> None:
    """Print, per layer and incident-energy third, how much per-cell noise the trained generator uses.

    With the per-layer noise head, ``exp(shift)`` is the factor on every cell's noise scale of the layer (1 at the
    start; near 0: the noise is switched off). Beside it, the spread of ``log(cell / layer energy)`` of the layer's
    three hottest cells (by mean share), over the showers that hit them, real and generated: the fluctuation the
    noise is there to give.
    """
    shift = None
    if getattr(G, "noise_shift", None) is not None:
        got: dict[str, torch.Tensor] = {}
        hook = G.noise_shift.register_forward_hook(lambda mod, inp, out: got.setdefault("s", out))
        z = torch.randn((len(cn), *G.latent_shape(1)), generator=torch.Generator().manual_seed(seed))
        with torch.no_grad():
            G.physics(z, cn)
        hook.remove()
        floor = float(getattr(G, "noise_floor", 0.0))
        shift = (floor + (1.0 - floor) * torch.exp(got["s"])).numpy()
    log_e = np.log(c[:, 0])
    cuts = np.quantile(log_e, [1 / 3, 2 / 3])
    thirds = [log_e < cuts[0], (log_e >= cuts[0]) & (log_e < cuts[1]), log_e >= cuts[1]]
    print("\n## Per-cell noise in use (incident-energy thirds: low / mid / high)\n")
    print("| layer | exp(noise shift), median | hottest cells' log-share spread, real | generated |")
    print("|---|---|---|---|")
    for i in range(geom.n_layers):
        sl = geom.layer_slice(i)
        spreads = {}
        for name, arr in (("real", x), ("fake", fake)):
            cells = arr[:, sl]
            total = cells.sum(axis=1, keepdims=True)
            share = np.divide(cells, total, out=np.zeros_like(cells), where=total > 0)
            out = []
            for m in thirds:
                hot = np.argsort(share[m].mean(axis=0))[::-1][:3]
                sd = [np.log(share[m][share[m][:, j] > 0, j]).std() for j in hot if (share[m][:, j] > 0).sum() > 5]
                out.append(f"{np.mean(sd):.3f}" if sd else "n/a")
            spreads[name] = " / ".join(out)
        sh = " / ".join(f"{np.median(shift[m, i]):.3g}" for m in thirds) if shift is not None else "n/a"
        print(f"| {i} | {sh} | {spreads['real']} | {spreads['fake']} |")


def noise_pull(G: Any, critic: Any, cn: torch.Tensor, seed: int) -> None:
    """Print, per layer group, the gradient of the generator's loss ``-D(G(z))`` on the noise shift's bias, split by
    the critic's input path: its cell MLP (and spatial stream), its physics features (and layer stream, spectrum), its
    summary coordinates. A positive entry: a generator step lowers the layer's noise. The three add up to the total
    (the chain rule at one point), so the columns say which part of the critic switches the noise off.
    """
    if getattr(G, "noise_shift", None) is None:
        return
    G.requires_grad_(True)
    z = torch.randn((len(cn), *G.latent_shape(1)), generator=torch.Generator().manual_seed(seed))
    y = G(z, cn)
    nc = critic.n_cells_model
    cells, summ = y[:, :nc], y[:, nc:]
    paths = {"cell MLP": (cells, cells.detach(), summ.detach()),
             "physics features": (cells.detach(), cells, summ.detach()),
             "summary coordinates": (cells.detach(), cells.detach(), summ)}
    grads = {}
    for name, args in paths.items():
        (grads[name],) = torch.autograd.grad(-critic.score_by_path(*args, cn).mean(), G.noise_shift.bias, retain_graph=True)
    print("\n## What pulls the noise (d(-D(G)) / d(noise shift bias); positive: a generator step lowers the noise)\n")
    print("| group | " + " | ".join(grads) + " | total |")
    print("|---|" + "---|" * (len(grads) + 1))
    for k in range(len(G.noise_shift.bias)):
        row = [float(g[k]) for g in grads.values()]
        print(f"| {k} | " + " | ".join(f"{v:+.2e}" for v in row) + f" | {sum(row):+.2e} |")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="calorimeter HDF5 file (training data)")
    p.add_argument("--run", help="a trained run directory (critic gradients, generator spread)")
    p.add_argument("--checkpoint", default="last", help="checkpoint of --run (last, best, step-NNNNNNN)")
    p.add_argument("--n", type=int, default=4000, help="showers used")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-jacobian", action="store_true", help="skip the rank of d u / d z (slow at dataset 2's 6480 cells)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)

    from physgan.domains.base import ModelSpec
    from physgan.domains.calo import make_transform
    from physgan.domains.calo.features import resolve_geometry, shower_features
    from physgan.domains.calo.model import build_critic
    from physgan.io.hdf5 import open_source, read_all

    src = open_source(args.data)
    x, c = read_all(src)
    attrs = dict(src.header.attrs)
    src.close()
    x, c = x[: args.n].astype(np.float64), c[: args.n].astype(np.float64)
    geom = resolve_geometry(attrs, x.shape[1])

    run = state = None
    if args.run:
        from physgan.run import load_run
        from physgan.train.checkpoint import load_checkpoint
        from physgan.train.loop import model_spec

        run = load_run(args.run, checkpoint=args.checkpoint, device="cpu")
        state = load_checkpoint(run.run_dir / "checkpoints" / f"{args.checkpoint}.pt", map_location="cpu")
        transform = run.transform
        spec = model_spec(run.info["model_shape"], run.info["condition_names"], run.config.model, state["conditions"],
                          transform.stats, run.info.get("attrs", {}))
    else:
        transform = make_transform().fit(x, c, attrs)
        n_model = transform.model_shape((x.shape[1],))
        spec = ModelSpec(sample_shape=n_model, n_cond=1, condition_names=["energy"], z_dim=8, width=32, depth=2,
                         embed_dim=8, options={"data_stats": transform.stats}, attrs=geom.to_attrs())
    critic = build_critic(spec)
    if state is not None:
        critic.load_state_dict(state["D"])
    xt, ct = torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(c, dtype=torch.float32)
    y = transform.forward(xt, ct)
    n_cells = geom.n_features
    with torch.no_grad():
        phys = torch.cat([critic.physics_features(y[:, :n_cells]), y[:, n_cells:]], dim=1)
    names = _critic_feature_names(geom, y.shape[1] - n_cells, transform.stats)
    std = phys.std(dim=0).numpy()

    sens = None
    if run is not None:
        cn = run.normaliser(ct).float()
        phys_in = phys.clone().requires_grad_(True)
        cells = y[:, :n_cells]
        parts = [critic.cell_net(cells), critic.phys_net(phys_in)]
        if critic.spatial is not None:
            parts.append(critic.spatial.pooled(cells[:, : critic.n_cells, None] + 1.0))
        if critic.layer_stream is not None:
            parts.append(critic.layer_stream_features(phys_in[:, : phys.shape[1] - (y.shape[1] - n_cells)], cn))
        h = torch.cat(parts, dim=1)
        score = critic.head(critic.joint(h), critic.embed(cn))
        (grad,) = torch.autograd.grad(score.sum(), phys_in)
        sens = (grad.abs().mean(dim=0).numpy() * std)

    print(f"## What the critic sees ({len(x)} real showers of {args.data}, geometry {geom.name})\n")
    head = "| feature group | columns | data std (median, min-max) |"
    if sens is not None:
        head += " trained critic: score change per 1 sigma (median) |"
    print(head)
    print("|---|---|---|" + ("---|" if sens is not None else ""))
    groups: dict[str, list[int]] = {}
    for i, name in enumerate(names):
        groups.setdefault(_group(name), []).append(i)
    for gname, idx in groups.items():
        s = std[idx]
        row = f"| {gname} | {len(idx)} | {np.median(s):.3g} ({s.min():.2g}-{s.max():.2g}) |"
        if sens is not None:
            row += f" {np.median(sens[idx]):.3g} |"
        print(row)

    if run is None:
        return 0
    fake = run.sample(len(x), c, seed=args.seed)
    f_real, f_fake = shower_features(x, c, attrs), shower_features(fake, c, attrs)
    print("\n## What the generator expresses (same conditions)\n")
    print("| feature | real std | generated std | ratio |")
    print("|---|---|---|---|")
    for k in f_real:
        if k.startswith(("ec_", "width_", "sparsity_")) or k in ("e_ratio",):
            a, b = float(np.std(f_real[k])), float(np.std(f_fake[k]))
            print(f"| {k} | {a:.3g} | {b:.3g} | {b / a if a > 0 else float('nan'):.2f} |")
    hit_real = (x[:, : geom.n_cells] > 0).any(axis=0)
    hit_fake = (np.asarray(fake)[:, : geom.n_cells] > 0).any(axis=0)
    print("\n| layer | cells hit in some real shower | of those, zero in every generated shower |")
    print("|---|---|---|")
    for i in range(geom.n_layers):
        sl = geom.layer_slice(i)
        r, f = hit_real[sl], hit_fake[sl]
        print(f"| {i} | {int(r.sum())} | {int((r & ~f).sum())} ({(r & ~f).sum() / max(r.sum(), 1):.0%}) |")
    G = run.G
    noise_in_use(G, x, np.asarray(fake, dtype=np.float64), c, run.normaliser(ct).float(), geom, args.seed)
    noise_pull(G, critic, run.normaliser(ct[:1024]).float(), args.seed)
    if args.no_jacobian:
        return 0
    z = torch.randn((1, *G.latent_shape(1)), generator=torch.Generator().manual_seed(args.seed))
    cn1 = torch.zeros(1, G.embed.n_cond)
    jac = torch.autograd.functional.jacobian(lambda zz: G.physics(zz, cn1)["u"], z)[0, :, 0, :]
    sv = torch.linalg.svdvals(jac)
    rank = int((sv > 1e-3 * sv[0]).sum())
    print(f"\nnumerical rank of d u / d z at one shower (mid condition): {rank} of {jac.shape[0]} cells "
          f"(latent {tuple(G.latent_shape(1))})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
