"""Porosity conditioning of microstructure GANs (issue 14): why it is compressed, and the A/B of the fix.

::

    OMP_NUM_THREADS=1 taskset -c 1 python -m bench.micro_conditioning                     # 2-D 32^2, 400 steps per variant
    python -m bench.micro_conditioning --shape 64,64 --steps 600 --variants softmax,exact
    python -m bench.micro_conditioning --quick                                             # smoke run (60 steps)

For each variant (model options / transform options below) the same data, seed and
preset (``quick``) are trained in this process, then the EMA generator is measured on
conditions of a **held-out** file (another seed):

* requested vs achieved porosity over the held-out conditions: slope and intercept of a
  least-squares line, mean absolute error (MAE), residual standard deviation;
* the scatter of achieved porosity at fixed conditions (``--n-fixed`` samples at each of
  three porosities, blobiness at mid-range): the std per condition, max over the three;
* each of three hardenings of the same generated probabilities (``HARDENINGS``):
  per-voxel ``argmax``, fraction-keeping ``rank`` and ``vote`` (rank of the
  neighbour-blended score, the default);
* speckle and morphology against the held-out real images (one-voxel chord fraction,
  one-voxel islands per image, surface area, S2, chord separation), with the noise floor
  (two halves of the real set);
* diagnosis of the compression: the *critic's* implied porosity. For each held-out real
  image x with porosity phi, the condition phi' in a grid over the training range that
  maximises D(x, phi') (blobiness at its true value); the slope of implied vs true phi says
  whether the critic's projection term can even tell porosities apart. Also the training
  data's coverage of the porosity range (quantiles);
* blobiness, the other condition: :func:`physgan.domains.micro.metrics.blobiness_estimate` (porespy's filter width from
  the interface crossings by Rice's formula) of generated and real images regressed on the
  requested blobiness (slopes fake / real) and the mean |estimate fake - estimate real| at
  the same conditions, beside the real images' scatter about their own line; and, precise enough
  to judge a slope of 0.98-1.02, the same on ``--n-blob`` (4096) fresh porespy images over the
  training ranges and generated ones at their conditions, in requested units
  (:func:`blobiness_control`: the estimator calibrated on the real images).

Training variants: ``softmax`` (before issue 14: plain softmax output), ``exact``
(:func:`physgan.domains.micro.fractions.match_fractions` in the generator), ``exact+blur`` (and option
``scale_blur``: the output logits blurred with a width that follows the conditions), ``exact+stats``
(and image statistics in the critic's projection, option ``critic_stats``), ``exact+moments`` (and
conditional moment matching, degree 2, of the interface density and S2(r): :mod:`physgan.domains.micro.summaries`).
Hardenings also include ``calibrated``: the vote weight fitted on ``--n-calib`` training images so that the
generated interface density matches theirs (:mod:`physgan.domains.micro.calibration`).
Prints markdown tables and writes ``<workdir>/conditioning.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench._util import load, markdown_table
from physgan.domains.micro.metrics import blobiness_estimate

__all__ = [
    "VARIANTS", "HARDENINGS", "line_fit", "blobiness_estimate", "blobiness_reference", "blobiness_control", "critic_implied", "main",
]  # fmt: skip

VARIANTS: dict[str, list[str]] = {
    "softmax": ["model.options.exact_fractions=false"],
    "exact": ["model.options.exact_fractions=true"],
    "exact+stats": ["model.options.exact_fractions=true", "model.options.critic_stats=true"],
    # a Gaussian blur of the output logits whose width follows the conditions (option scale_blur)
    "exact+blur": ["model.options.exact_fractions=true", "model.options.scale_blur=true"],
    # conditional moment matching of interface density and S2(r) (physgan.domains.micro.summaries); weight: --moment-weight
    "exact+moments": ["model.options.exact_fractions=true", "train.moment_degree=2"],
    # the same summaries of the hardened labels (straight-through gradient)
    "exact+moments-hard": ["model.options.exact_fractions=true", "train.moment_degree=2", "model.options.moment_hard=true"],
}

#: how generated probabilities become labels (the transform's options); no retraining needed
HARDENINGS: dict[str, dict[str, Any]] = {
    "argmax": {"hardening": "argmax"},
    "rank": {"hardening": "fraction", "neighbour_weight": 0.0},
    "vote": {"hardening": "fraction", "neighbour_weight": 0.4},
    # the vote weight fitted to the run's own training data (physgan.domains.micro.calibration)
    "calibrated": {"hardening": "fraction", "neighbour_weight": None},
}


def line_fit(requested: np.ndarray, achieved: np.ndarray) -> dict[str, float]:
    """Slope, intercept, MAE and residual std of achieved vs requested."""
    slope, icpt = np.polyfit(requested, achieved, 1)
    resid = achieved - (slope * requested + icpt)
    return {
        "slope": float(slope),
        "intercept": float(icpt),
        "mae": float(np.mean(np.abs(achieved - requested))),
        "resid_std": float(np.std(resid)),
    }


def blobiness_reference(shape: tuple[int, ...], porosity: str, blobiness: str, n: int, seed: int) -> dict[str, Any]:
    """Fresh porespy images at conditions drawn uniformly over the training ranges, and their blobiness estimates.

    The ceiling of blobiness control: what the statistic reads on real images made with the requested
    parameter. ``n`` is large (thousands at 32^2) because one image's estimate scatters by ~0.04 about its
    parameter, so a slope known to +-0.01 needs thousands of images per set.
    """
    from physgan.domains.micro.make import parse_range
    from physgan.sim.micro import generate_micro

    x, c, _ = generate_micro(
        "blobs", n, shape, porosity=parse_range(porosity, "porosity"), blobiness=parse_range(blobiness, "blobiness"), seed=seed
    )
    return {"c": c, "est": blobiness_estimate(x)}


def blobiness_control(ref: dict[str, Any], fake_est: np.ndarray, n_boot: int = 200, seed: int = 0) -> dict[str, float]:
    """Blobiness control of generated images at the conditions of :func:`blobiness_reference`, in requested units.

    Estimates are mapped to blobiness units through the real images' line (estimate against request), so the
    real images have slope 1 by construction. Returns the generated set's calibrated slope (fake / real raw
    slopes) with its bootstrap standard error (pairs resampled), and for real and fake: per-image MAE against
    the request, residual std about their own line (the scatter at a fixed condition), and the conditional-mean
    error: mean over 10 bins of the request of |bin mean - bin mean request|.
    """
    b = np.asarray(ref["c"][:, 1], dtype=np.float64)
    er, ef = np.asarray(ref["est"], dtype=np.float64), np.asarray(fake_est, dtype=np.float64)
    ok = np.isfinite(er) & np.isfinite(ef)
    b, er, ef = b[ok], er[ok], ef[ok]
    sr, ir = np.polyfit(b, er, 1)
    sf = np.polyfit(b, ef, 1)[0]
    rng = np.random.default_rng(seed)
    boot = []
    for _ in range(n_boot):
        i = rng.integers(0, len(b), len(b))
        boot.append(np.polyfit(b[i], ef[i], 1)[0] / np.polyfit(b[i], er[i], 1)[0])
    bins = np.quantile(b, np.linspace(0, 1, 11))
    which = np.clip(np.searchsorted(bins, b, side="right") - 1, 0, 9)
    out: dict[str, float] = {"n": int(ok.sum()), "estimator_slope_real": float(sr), "slope_real": 1.0}
    out["slope_fake"] = float(sf / sr)
    out["slope_fake_se"] = float(np.std(boot))
    for tag, est in (("real", er), ("fake", ef)):
        cal = (est - ir) / sr
        out[f"image_mae_{tag}"] = float(np.mean(np.abs(cal - b)))
        out[f"resid_std_{tag}"] = float(np.std(cal - np.polyval(np.polyfit(b, cal, 1), b)))
        out[f"bin_mae_{tag}"] = float(np.mean([abs(cal[which == k].mean() - b[which == k].mean()) for k in range(10)]))
    return out


def _porosity(x: np.ndarray) -> np.ndarray:
    return (np.rint(x) == 0).reshape(len(x), -1).mean(axis=1)


def _make(out: Path, args: argparse.Namespace, n: int, seed: int) -> Path:
    from physgan.domains.micro.make import make

    if out.exists():
        return out
    return Path(make(
        generator="blobs", shape=args.shape, porosity=args.porosity, blobiness=args.blobiness, radius="3:6",
        voxel_size=1.0, n=n, seed=seed, out=str(out), overwrite=False, block=64,
    ))  # fmt: skip


def critic_implied(run_dir: Path, x: np.ndarray, c: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Porosity maximising the last checkpoint's critic ``D(x, (phi', blobiness))`` per image."""
    import torch

    from physgan.run import load_run
    from physgan.train.checkpoint import load_checkpoint

    run = load_run(run_dir, checkpoint="last", device="cpu")
    state = load_checkpoint(run_dir / "checkpoints" / "last.pt", map_location="cpu")
    from physgan.train.loop import model_spec

    spec = model_spec(
        run.info["model_shape"],
        run.info["condition_names"],
        run.config.model,
        state["conditions"],
        run.transform.stats,
        run.info.get("attrs", {}),
    )
    D = run.domain.build_critic(spec)
    D.load_state_dict(state["D"])
    D.eval()
    xm = run.transform.forward(torch.as_tensor(x), torch.as_tensor(c))
    best = np.zeros(len(x))
    with torch.no_grad():
        scores = []
        for g in grid:
            cc = torch.as_tensor(c.copy())
            cc[:, 0] = float(g)
            scores.append(D(xm, run.normaliser(cc)).numpy())
        best = grid[np.argmax(np.stack(scores, 1), axis=1)]
    return best


def calibrate(run, x: np.ndarray, c: np.ndarray, seed: int) -> dict[str, Any]:
    """Fit the run's vote weight on training samples ``x`` at their conditions ``c`` (fixed latents)."""
    import torch

    from physgan.domains.micro.calibration import calibrate_transform

    g = torch.Generator().manual_seed(seed)

    def generate(cb: torch.Tensor) -> torch.Tensor:
        z = torch.randn((len(cb), *run.G.latent_shape(1)), generator=g)
        with torch.no_grad():
            return run.G(z, run.normaliser(cb))

    table = calibrate_transform(run.transform, generate, x, c)
    return {"weight": run.transform.stats["neighbour_weight"], "target": run.transform.stats["interface_density_real"], "table": table}


def _variant(
    name: str, args: argparse.Namespace, work: Path, train_file: Path, held: tuple, attrs: dict, train_sub: tuple,
    blob_real: dict[str, Any] | None = None,
) -> dict[str, Any]:
    import torch

    from physgan.config import resolve_config
    from physgan.domains.micro.metrics import physics_metrics
    from physgan.run import load_run
    from physgan.train.loop import train

    tag = (f"_w{args.moment_weight:g}" if "moments" in name else "") + (f"_{args.preset}" if args.preset != "quick" else "")
    tag += "".join("_" + o.split(".")[-1].replace("=", "") for o in args.set)
    run_dir = work / f"run_{name}{tag}"
    overrides = [f"data.path={train_file}", "train.device=cpu", f"train.steps={args.steps}", f"train.seed={args.seed}"]
    overrides += VARIANTS[name] + list(args.set)
    if "moments" in name:
        overrides.append(f"train.moment_weight={args.moment_weight}")
    cfg = resolve_config("micro", args.preset, overrides=overrides)
    t0 = time.time()
    if not (run_dir / "checkpoints" / "last.pt").exists():
        torch.manual_seed(args.seed)
        train(cfg, run_dir, progress=False)
    t_train = time.time() - t0
    run = load_run(run_dir, checkpoint="last", device="cpu")
    xh, ch = held
    out: dict[str, Any] = {"variant": name, "train_s": t_train, "load": load(), "hardenings": {}}
    lo, hi = float(ch[:, 0].min()), float(ch[:, 0].max())
    b_mid = float(np.median(ch[:, 1]))
    half = len(xh) // 2
    out["floor"] = physics_metrics((xh[:half], ch[:half]), (xh[half:], ch[half:]), attrs)
    out["calibration"] = calibrate(run, *train_sub, seed=args.seed + 30)
    print(f"{name}: calibrated vote weight {out['calibration']['weight']:.3f}", flush=True)
    for hname, opts in HARDENINGS.items():
        run.transform.options.update(opts)
        fake = run.sample(len(ch), ch, seed=args.seed + 10)
        h: dict[str, Any] = {"heldout": line_fit(ch[:, 0].astype(np.float64), _porosity(fake))}
        fixed = {}
        for t in np.linspace(lo, hi, 5)[1:4]:
            ph = _porosity(run.sample(args.n_fixed, {"porosity": float(t), "blobiness": b_mid}, seed=args.seed + 20))
            fixed[f"{t:.3f}"] = {"mean": float(ph.mean()), "std": float(ph.std())}
        h["fixed"] = fixed
        h["fixed_std_max"] = max(v["std"] for v in fixed.values())
        h["metrics"] = physics_metrics((xh, ch), (fake, ch), attrs)
        b_real, b_fake = blobiness_estimate(xh), blobiness_estimate(fake)
        ok = np.isfinite(b_real) & np.isfinite(b_fake)
        req = ch[ok, 1].astype(np.float64)
        h["blobiness"] = {
            "real": line_fit(req, b_real[ok]),
            "fake": line_fit(req, b_fake[ok]),
            "mae_fake_vs_real": float(np.mean(np.abs(b_fake[ok] - b_real[ok]))),
            "real_scatter": float(np.std(b_real[ok] - (np.polyval(np.polyfit(req, b_real[ok], 1), req)))),
        }
        if blob_real is not None:
            fe = blobiness_estimate(run.sample(len(blob_real["c"]), blob_real["c"], seed=args.seed + 40))
            h["blobiness"]["levels"] = blobiness_control(blob_real, fe)
        out["hardenings"][hname] = h
    grid = np.linspace(run.normaliser.min[0], run.normaliser.max[0], 41)
    imp = critic_implied(run_dir, xh[: args.n_implied], ch[: args.n_implied], grid)
    out["critic_implied"] = line_fit(ch[: args.n_implied, 0].astype(np.float64), imp)
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workdir", default="bench_out/micro_conditioning")
    p.add_argument("--shape", default="32,32")
    p.add_argument("--porosity", default="0.2:0.6")
    p.add_argument("--blobiness", default="0.3:0.6")
    p.add_argument("--n", type=int, default=1024, help="training images")
    p.add_argument("--n-held", type=int, default=256, help="held-out images (another seed)")
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--set", action="append", default=[], help="extra config override of every variant, e.g. train.batch_size=16")
    p.add_argument("--preset", default="quick", help="micro preset trained (quick: 2-D; default: 3-D on a CPU core)")
    p.add_argument("--n-blob", type=int, default=4096, help="fresh porespy images and generated ones at their conditions (0: skip)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-fixed", type=int, default=20)
    p.add_argument("--n-implied", type=int, default=128)
    p.add_argument("--variants", default="softmax,exact")
    p.add_argument("--moment-weight", type=float, default=5.0, help="train.moment_weight of the exact+moments variant")
    p.add_argument("--n-calib", type=int, default=256, help="training images the vote weight is calibrated on")
    p.add_argument("--quick", action="store_true", help="smoke run: 60 steps, 256 images")
    args = p.parse_args(argv)
    if args.quick:
        args.steps, args.n, args.n_held, args.n_fixed, args.n_implied = 60, 256, 64, 8, 32
    import torch

    from physgan.io.hdf5 import read_all

    torch.set_num_threads(1)
    work = Path(args.workdir) / f"{args.shape.replace(',', 'x')}_s{args.steps}"
    (work).mkdir(parents=True, exist_ok=True)
    train_file = _make(work / "train.h5", args, args.n, seed=1)
    held_file = _make(work / "heldout.h5", args, args.n_held, seed=2)
    xt, ct = read_all(train_file)[:2]
    xh, ch = read_all(held_file)[:2]
    attrs = {"n_phases": 2, "condition_names": ["porosity", "blobiness"]}
    q = np.quantile(ct[:, 0], [0, 0.05, 0.5, 0.95, 1])
    res: dict[str, Any] = {"args": vars(args), "train_porosity_quantiles": q.tolist(), "variants": {}}
    print(f"training porosity quantiles 0/5/50/95/100 %: {np.round(q, 3).tolist()} (held-out file: seed 2)", flush=True)
    blob_real = None
    if args.n_blob > 0:
        shape = tuple(int(v) for v in args.shape.split(","))
        blob_real = blobiness_reference(shape, args.porosity, args.blobiness, args.n_blob, seed=1000)
        print(f"blobiness reference: {args.n_blob} fresh porespy images (seed 1000) over the training ranges", flush=True)
    for name in args.variants.split(","):
        sub = (xt[: args.n_calib], ct[: args.n_calib])
        res["variants"][name] = r = _variant(name, args, work, train_file, (xh, ch), attrs, sub, blob_real)
        print(f"{name}: trained in {r['train_s']:.0f} s; held-out slope {r['hardenings']['vote']['heldout']['slope']:.3f}", flush=True)
    rows = []
    for name, r in res["variants"].items():
        f = r["floor"]
        for hname, h in r["hardenings"].items():
            m = h["metrics"]
            rows.append([
                name, hname, f"{h['heldout']['slope']:.3f}", f"{h['heldout']['mae']:.4f}", f"{h['heldout']['resid_std']:.4f}",
                f"{h['fixed_std_max']:.4f}", f"{r['critic_implied']['slope']:.2f}",
                f"{m['one_voxel_chord_fraction_fake']:.3f} / {m['one_voxel_chord_fraction_real']:.3f}",
                f"{m['one_voxel_islands_fake']:.2f} / {m['one_voxel_islands_real']:.2f}",
                f"{(m['ssa_fake'] / m['ssa_real'] - 1) * 100:+.1f} % ({f['ssa_rel_err'] * 100:.1f} %)",
                f"{m['s2_max_abs_err']:.4f} ({f['s2_max_abs_err']:.4f})",
                f"{m['chord_separation_power']:.3f} ({f['chord_separation_power']:.3f})",
                f"{h['blobiness']['fake']['slope']:.2f} / {h['blobiness']['real']['slope']:.2f}",
                f"{h['blobiness']['mae_fake_vs_real']:.3f} ({h['blobiness']['real_scatter']:.3f})", f"{r['train_s']:.0f}",
            ])  # fmt: skip
    header = [
        "training", "hardening", "slope", "MAE", "resid std", "fixed-cond std (max)", "critic slope",
        "1-vox chord frac fake/real", "1-vox islands fake/real", "SSA fake/real - 1 (floor)", "S2 max err (floor)",
        "chord sep (floor)", "blobiness est. slope fake / real", "blob. est. MAE fake-real (real scatter)", "train s",
    ]  # fmt: skip
    print(markdown_table(header, rows))
    brows = []
    for name, r in res["variants"].items():
        for hname, h in r["hardenings"].items():
            lv = h["blobiness"].get("levels")
            if lv:
                slope = f"{lv['slope_fake']:.3f} ± {lv['slope_fake_se']:.3f} / 1"
                brows.append([name, hname, slope, f"{lv['estimator_slope_real']:.3f}"] + [
                    f"{lv[f'{k}_fake']:.4f} / {lv[f'{k}_real']:.4f}" for k in ("bin_mae", "image_mae", "resid_std")
                ])  # fmt: skip
    if brows:
        print(f"\nblobiness control over {args.n_blob} fresh porespy images and generated ones at their conditions, in requested "
              "units (the estimator calibrated on the real images: real slope 1 by construction):")  # fmt: skip
        print(markdown_table(["training", "hardening", "calibrated slope fake ± se / real", "raw estimator slope (real)",
                              "cond.-mean MAE (10 bins) fake / real", "image MAE fake / real", "resid std fake / real"],
                             brows))  # fmt: skip
    (work / "conditioning.json").write_text(json.dumps(res, indent=1, default=float))
    return res


if __name__ == "__main__":
    main()
