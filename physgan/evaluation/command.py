"""``physgan evaluate`` on the command line: its options, and the run that prints the summary and writes the report."""

from __future__ import annotations

import sys
from pathlib import Path

from physgan.errors import ConfigError, OutputExistsError
from physgan.evaluation.result import normalise_thresholds
from physgan.evaluation.runner import evaluate

__all__ = ["add_arguments", "main"]


def add_arguments(parser) -> None:
    """Add the ``physgan evaluate`` options to an argparse parser."""
    parser.add_argument("--real", required=True, help="held-out real samples (HDF5)")
    parser.add_argument("--fake", required=True, help="generated samples (HDF5)")
    parser.add_argument("--train", default=None, help="training samples, for the memorisation check")
    parser.add_argument("--real2", default=None, help="second independent real sample for the noise floor (default: halves of --real)")
    parser.add_argument("--report", default=None, help="report directory (metrics.json, figures, index.html)")
    parser.add_argument("--domain", default=None, help="domain name (default: the files' 'domain' attribute, else 'array')")
    parser.add_argument("--run", default=None, help="run directory of the generator: adds its training curves and diagnostics")
    parser.add_argument(
        "--fail-on",
        action="append",
        default=[],
        metavar="RULE",
        help="exit with status 1 if a rule holds, e.g. 'auc_low>0.9' or 'coverage<0.5' (repeatable)",
    )
    parser.add_argument("--n-boot", type=int, default=10, help="bootstrap rounds (default 10)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--max-samples", type=int, default=None, help="random subset cap per input file")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing report directory")
    parser.add_argument("--quiet", action="store_true", help="no per-stage progress lines on stderr")



def main(args) -> int:
    """Run ``physgan evaluate``: print the summary, write the report; 1 if a --fail-on rule holds."""
    rules = normalise_thresholds(list(args.fail_on or []))
    if args.report and Path(args.report).exists() and not args.overwrite:
        raise OutputExistsError(f"{args.report}: exists already; pass --overwrite to replace it")
    if args.report:  # before minutes of work, not after
        from physgan.io.atomic import probe_writable_dir

        probe_writable_dir(Path(args.report).parent)
    ev = evaluate(
        args.real,
        args.fake,
        domain=args.domain,
        train=args.train,
        real2=args.real2,
        seed=args.seed,
        device=args.device,
        n_boot=args.n_boot,
        thresholds=rules,
        max_samples=args.max_samples,
        run=args.run,
        progress=not getattr(args, "quiet", False),
    )
    print(ev.format_summary())
    if args.report:
        if not args.quiet:
            print(f"evaluate: writing the report to {args.report} ...", file=sys.stderr, flush=True)
        path = ev.to_html(args.report, overwrite=args.overwrite)
        print(f"report written to {path}/index.html")
    unknown = ev.unknown_threshold_metrics()
    if unknown:
        raise ConfigError(f"--fail-on names unknown metric(s) {unknown}; known: {', '.join(ev.metrics)}")
    fails = ev.failures()
    for line in fails:
        print(f"FAIL: {line}", file=sys.stderr)
    return 1 if fails else 0

