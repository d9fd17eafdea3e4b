"""Command line: argument parsing only; every command calls the library.

physgan data make calo --out data/calo.h5 --n 100000
physgan data info data/calo.h5
physgan train calo --data data/calo.h5 --run runs/calo-001
physgan generate runs/calo-001 --n 1000000 --cond energy=10:100 --out fake.h5
physgan evaluate --real data/heldout.h5 --fake fake.h5 --report report/
physgan quickstart [calo|nbody|micro|array]
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import warnings
from pathlib import Path

import physgan
from physgan.errors import PhysganError, PhysganWarning

__all__ = ["main", "build_parser"]


def _add_train_options(p: argparse.ArgumentParser) -> None:
    from physgan.config import RECIPES

    p.add_argument("--preset", help="domain preset (e.g. quick, gpu): sizes and schedules")
    p.add_argument(
        "--recipe",
        help=f"objective and optimiser: {', '.join(RECIPES)} (default: the preset's, else gulrajani2017); "
        "wins over the preset, --set/--loss win over it",
    )
    p.add_argument("--config", help="YAML config file (sections data, model, train)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override a config value (repeatable)",
    )
    p.add_argument("--steps", type=int, help="generator steps (train.steps)")
    p.add_argument("--batch-size", type=int, help="batch size per process (train.batch_size)")
    p.add_argument("--loss", help="wgan-gp (default) | wgan-clip | minimax | nonsaturating (train.loss)")
    p.add_argument("--device", help="auto | cpu | cuda (train.device)")
    p.add_argument("--seed", type=int, help="random seed (train.seed)")
    p.add_argument("--quiet", action="store_true", help="no progress output")


def _train_overrides(args) -> list[str]:
    out = list(args.overrides)
    for flag, key in (
        ("steps", "train.steps"),
        ("batch_size", "train.batch_size"),
        ("loss", "train.loss"),
        ("device", "train.device"),
        ("seed", "train.seed"),
    ):
        v = getattr(args, flag, None)
        if v is not None:
            out.append(f"{key}={v}")
    return out


def build_parser() -> argparse.ArgumentParser:
    from physgan.domains.base import domains

    doms = domains()
    parser = argparse.ArgumentParser(prog="physgan", description="Conditional WGAN-GP surrogates for scientific simulations.")
    parser.add_argument("--version", action="version", version=f"physgan {physgan.__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    # ---- data ----
    p_data = sub.add_parser("data", help="make, import, inspect and download datasets")
    dsub = p_data.add_subparsers(dest="data_command", required=True)
    p_make = dsub.add_parser("make", help="simulate a training dataset with a built-in simulator")
    msub = p_make.add_subparsers(dest="domain", required=True)
    for name, dom in doms.items():
        if dom.make is not None and dom.add_make_arguments is not None:
            dom.add_make_arguments(msub.add_parser(name, help=dom.description))
    p_imp = dsub.add_parser("import", help="convert foreign files (particle snapshots, TIFF stacks) to physgan HDF5")
    isub = p_imp.add_subparsers(dest="domain", required=True)
    for name, dom in doms.items():
        if dom.import_ is not None and dom.add_import_arguments is not None:
            dom.add_import_arguments(isub.add_parser(name, help=dom.description))
    p_info = dsub.add_parser("info", help="schema, conditions and ranges, statistics and problems of a file")
    p_info.add_argument("file")
    p_info.add_argument("--layout", help="force a layout instead of detecting it")
    from physgan.io import download

    download.add_arguments(dsub.add_parser("download", help="download a public dataset from its card (datasets/)"))

    # ---- train ----
    p_train = sub.add_parser("train", help="train a surrogate on an HDF5 file")
    p_train.add_argument("domain", choices=sorted(doms), help="physics domain (array: any fixed-shape samples)")
    p_train.add_argument("--data", required=True, help="training HDF5 file")
    p_train.add_argument(
        "--run",
        "--run-dir",
        dest="run",
        required=True,
        help="run directory (checkpoints, logs, config); under torchrun write --run-dir (torchrun mistakes --run for its --run-path)",
    )
    p_train.add_argument(
        "--resume", help="'auto' (latest checkpoint in --run; the run keeps its own settings and step target) or a checkpoint path"
    )
    p_train.add_argument(
        "--allow-new-data",
        action="store_true",
        help="let a resumed run continue on a different --data file of the same shape (refused otherwise)",
    )
    p_train.add_argument("--layout", help="force the file layout")
    _add_train_options(p_train)

    # ---- generate ----
    p_gen = sub.add_parser("generate", help="generate samples from a trained run into an HDF5 file")
    p_gen.add_argument("run", help="run directory")
    p_gen.add_argument(
        "--n",
        "--n-samples",
        dest="n",
        type=int,
        default=None,
        help="number of samples (under torchrun write --n-samples: torchrun mistakes --n for its own options); "
        "with --conditions-from: the file's count",
    )
    p_gen.add_argument(
        "--conditions-from",
        default=None,
        metavar="FILE",
        help="generate exactly at the conditions of FILE's samples (same order, same count), e.g. the evaluation file",
    )
    p_gen.add_argument(
        "--cond",
        action="append",
        default=[],
        metavar="NAME=VALUE|LO:HI|LO:HI:log",
        help="condition value or range (repeatable); unspecified: uniform over the training range",
    )
    p_gen.add_argument("--out", required=True, help="output HDF5 file (same layout as the training data)")
    p_gen.add_argument("--seed", type=int, default=0)
    p_gen.add_argument("--batch-size", type=int, default=4096)
    p_gen.add_argument("--checkpoint", default="best", help="best (default), last, or a file in checkpoints/")
    p_gen.add_argument("--device", default="auto")
    p_gen.add_argument("--compression", choices=["gzip", "lzf"], default=None)
    p_gen.add_argument(
        "--latent-scale", type=int, default=1, help="larger fields/volumes from a larger latent grid (conv domains)"
    )
    p_gen.add_argument(
        "--allow-extrapolation", action="store_true", help="allow conditions outside the training range (with a warning)"
    )
    p_gen.add_argument("--overwrite", action="store_true")
    p_gen.add_argument(
        "--merge",
        action="store_true",
        help="under torchrun: one real merged file instead of a virtual-dataset file over the per-rank shards",
    )
    p_gen.add_argument("--quiet", action="store_true")

    # ---- calibrate ----
    p_cal = sub.add_parser(
        "calibrate", help="calibrate a trained generator's own output statistics again, with more samples, in its checkpoint"
    )
    p_cal.add_argument("run", help="run directory (or a checkpoint file)")
    p_cal.add_argument("--checkpoint", default="best", help="best (default: the one generate reads), last, or a file in checkpoints/")
    p_cal.add_argument(
        "--scale", type=int, default=4, help="times the samples the training loop spends (default 4: N-body ~3.5 min at 64^2)"
    )
    p_cal.add_argument("--seed", type=int, default=0, help="seed of the calibration's latents")
    p_cal.add_argument("--device", default="cpu", help="cpu (default), cuda or auto")
    p_cal.add_argument("--force", action="store_true", help="calibrate again a checkpoint already calibrated so")

    # ---- evaluate ----
    from physgan import evaluation

    evaluation.add_arguments(sub.add_parser("evaluate", help="metrics and an HTML report comparing real and generated files"))

    # ---- quickstart ----
    p_q = sub.add_parser("quickstart", help="make a small dataset, train a few minutes on CPU, generate, evaluate, report")
    qs = [n for n, d in doms.items() if d.quickstart]
    p_q.add_argument("domain", nargs="?", default="calo" if "calo" in qs else "array", choices=qs)
    p_q.add_argument("--dir", default="quickstart", help="output folder (data, run, generated file, report)")
    p_q.add_argument("--steps", type=int, help="override the preset's training steps")
    p_q.add_argument("--n", type=int, help="override the dataset size")
    p_q.add_argument("--device", default="auto")
    p_q.add_argument("--overwrite", action="store_true", help="start again in an existing --dir")
    p_q.add_argument("--quiet", action="store_true")
    return parser


def cmd_data(args) -> int:
    from physgan.domains.base import get_domain

    if args.data_command in ("make", "import"):  # the domain's options, as its parser declared and filled them
        options = {k: v for k, v in vars(args).items() if k not in ("command", "data_command", "domain")}
        dom = get_domain(args.domain)
        path = dom.make(**options) if args.data_command == "make" else dom.import_(**options)
        print(f"wrote {path}")
        return 0
    if args.data_command == "info":
        from physgan.io.info import format_info, inspect_file

        info = inspect_file(args.file, args.layout)
        print(format_info(info))
        return 1 if info.problems else 0
    if args.data_command == "download":
        return importlib.import_module("physgan.io.download").main(args)
    raise AssertionError(args.data_command)


def cmd_train(args) -> int:
    from physgan.config import resolve_config
    from physgan.train.loop import train
    from physgan.train.resume import saved_run_config

    data = {"path": str(args.data), **({"layout": args.layout} if args.layout else {})}  # typed: no YAML parsing of paths
    base = saved_run_config(args.run) if args.resume else None
    cfg = resolve_config(args.domain, args.preset, args.config, _train_overrides(args), args.recipe, base=base, values={"data": data})
    result = train(cfg, args.run, resume=args.resume, progress=not args.quiet, allow_new_data=args.allow_new_data)
    if result.stopped_by:
        print(
            f"stopped by {result.stopped_by} at step {result.step}; continue with: physgan train ... --run {args.run} --resume auto"
        )
        return 130 if result.stopped_by == "SIGINT" else 0
    else:
        print(
            f"trained {result.step} steps; run in {args.run}"
            + (f" (best validation score {result.best_score:.4g})" if result.best_score is not None else "")
        )
    return 0


def cmd_generate(args) -> int:
    from physgan.generate_sharded import generate_sharded
    from physgan.run import check_sampling_args, load_run, parse_condition
    from physgan.train.distributed import launcher_env

    cond = dict(parse_condition(c) for c in args.cond)
    run = None
    if args.conditions_from is not None:
        from physgan.run import conditions_from_file

        if cond:
            raise PhysganError("--cond and --conditions-from exclude each other")
        if launcher_env()[2] > 1:
            raise PhysganError("--conditions-from is not supported under torchrun yet; generate in one process")
        run = load_run(args.run, checkpoint=args.checkpoint, device=args.device)
        cond = conditions_from_file(args.conditions_from, run.condition_names)
        if args.n is not None and args.n != len(cond):
            raise PhysganError(f"--n {args.n} differs from the {len(cond)} samples of --conditions-from {args.conditions_from}")
        args.n = len(cond)
    if args.n is None:
        raise PhysganError("--n is required (or --conditions-from FILE)")
    if args.n < 1:
        raise PhysganError("--n must be >= 1")
    check_sampling_args(args.n, args.seed, args.batch_size)
    if args.latent_scale < 1:
        raise PhysganError(f"--latent-scale must be >= 1 (got {args.latent_scale})")
    common = dict(
        seed=args.seed,
        batch_size=args.batch_size,
        overwrite=args.overwrite,
        compression=args.compression,
        progress=not args.quiet,
        allow_extrapolation=args.allow_extrapolation,
        latent_scale=args.latent_scale,
    )
    rank, _, world = launcher_env()
    if world > 1:  # torchrun / srun: one shard per rank, joined by rank 0
        where = dict(checkpoint=args.checkpoint, device=args.device, merge=args.merge)
        path = generate_sharded(args.run, args.out, args.n, cond, **where, **common)
        if rank == 0:
            print(f"wrote {args.n} samples from {world} ranks to {path}" + ("" if args.merge else " (virtual dataset over the shards)"))
        return 0
    run = run or load_run(args.run, checkpoint=args.checkpoint, device=args.device)
    path = run.generate(args.out, args.n, cond, **common)
    print(f"wrote {args.n} samples to {path}")
    return 0


def cmd_quickstart(args) -> int:
    from physgan.quickstart import quickstart

    report = quickstart(
        args.domain,
        Path(args.dir),
        steps=args.steps,
        n=args.n,
        device=args.device,
        overwrite=args.overwrite,
        progress=not args.quiet,
    )
    print(f"quickstart done: open {report}")
    return 0


def cmd_calibrate(args) -> int:
    from physgan.calibrate import calibrate_run

    res = calibrate_run(
        args.run, args.checkpoint, scale=args.scale, seed=args.seed, device=args.device, force=args.force,
        log=lambda line: print(line, flush=True),
    )  # fmt: skip
    if res["skipped"]:
        what = f"step {res['step']} with scale {res['scale']}, seed {res['seed']}"
        print(f"{res['checkpoint']}: already calibrated at {what} (--force to redo)")
        return 0
    rounds = res.get("report") or {}
    detail = "".join(f"; {k} by round: {', '.join(f'{v:.3g}' for v in vals)}" for k, vals in rounds.items())
    what = f"step {res['step']} (scale {res['scale']}, seed {res['seed']}) in {res['wall_s']:.0f} s"
    print(f"{res['checkpoint']}: calibrated at {what}{detail}")
    return 0


#: exit status when the reader of our output went away (``physgan data info F | head -3``): 128 + SIGPIPE, as the shell reports
EXIT_BROKEN_PIPE = 141


def _dispatch(argv: list[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "data":
        return cmd_data(args)
    if args.command == "train":
        return cmd_train(args)
    if args.command == "generate":
        return cmd_generate(args)
    if args.command == "calibrate":
        return cmd_calibrate(args)
    if args.command == "evaluate":
        return importlib.import_module("physgan.evaluation").main(args)
    if args.command == "quickstart":
        return cmd_quickstart(args)
    parser.error(f"unknown command {args.command}")
    return 2


def _format_warning(message, category, filename, lineno, line=None) -> str:
    """physgan's own warnings as one line, ``physgan: warning: ...``; others as Python writes them."""
    if issubclass(category, PhysganWarning):
        return f"physgan: warning: {message}\n"
    return _python_format_warning(message, category, filename, lineno, line)


_python_format_warning = warnings.formatwarning


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``physgan`` command; returns the exit code."""
    warnings.formatwarning = _format_warning
    try:
        code = _dispatch(argv)
        sys.stdout.flush()  # a closed pipe shows here, inside the handlers, not at interpreter exit
        return code
    except BrokenPipeError:
        # the reader stopped reading (| head): stop quietly; point stdout at /dev/null so the final flush cannot fail
        if argv is None:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except PhysganError as err:
        print(f"physgan: error: {err}", file=sys.stderr)
        if getattr(err, "hdf5_state_broken", False) and argv is None:
            # a write failed inside HDF5 (disk full): its library can crash while shutting down, so leave now
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(err.exit_code)
        return err.exit_code
    except KeyboardInterrupt:
        print("physgan: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
