"""Cost of the domains' physics checks (issue 16): training-time check and ``data info``, against reading the file.

::

    python -m bench.physics_checks [--n 50000] [--quick] [--rounds 3]

Writes ``--n`` synthetic CaloGAN showers (507 cells, float32, 60 % zeros, energies 1-100 GeV) to a
temporary HDF5 file, then times, interleaved in one process: ``read_all`` of the file (what
training does anyway; the baseline), :func:`physgan.domains.checks.check_training_data` on the
arrays in memory, and ``physgan data info``'s :func:`~physgan.io.info.inspect_file` with and
without the physics scan. Prints a markdown table of medians and ratios to the baseline.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from bench._util import add_common_args, interleave, load, median, setup
from physgan.domains import checks
from physgan.domains.base import get_domain
from physgan.io.hdf5 import open_source, read_all, write_samples
from physgan.io.info import inspect_file


def _showers(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    e = rng.uniform(1.0, 100.0, (n, 1))
    x = rng.lognormal(0.0, 2.0, (n, 507)).astype(np.float32) * (rng.uniform(size=(n, 507)) > 0.6)
    x *= (0.99 * 1000.0 * e / np.maximum(x.sum(1, keepdims=True), 1e-9)).astype(np.float32)  # deposit 0.99 E_inc (MeV)
    return x, e


def main(argv: list[str] | None = None) -> int:
    ap = add_common_args(argparse.ArgumentParser(description=__doc__.splitlines()[0]))
    ap.add_argument("--n", type=int, default=50000, help="showers (default 50000)")
    args = ap.parse_args(argv)
    setup(args)
    n = 5000 if args.quick else args.n
    x, e = _showers(n)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "calo.h5"
        write_samples(path, x, e, ["energy"], "calogan")
        header = open_source(path).header
        calo, plain = get_domain("calo"), get_domain("array")
        real_domain_for_file = checks.domain_for_file

        def info_without_physics():
            checks.domain_for_file = lambda h, layout: plain
            try:
                return inspect_file(str(path))
            finally:
                checks.domain_for_file = real_domain_for_file

        cands = {
            "read_all (baseline)": lambda: read_all(open_source(path)),
            "check_training_data (in memory)": lambda: checks.check_training_data(
                calo, x, e, header.condition_names, header.attrs, str(path)
            ),
            "data info without physics scan": info_without_physics,
            "data info with physics scan": lambda: inspect_file(str(path)),
        }
        times = interleave(cands, args.rounds)
    base = median(times["read_all (baseline)"])
    print(f"{n} CaloGAN showers (507 cells, float32, {x.nbytes / 2**20:.0f} MiB), {args.rounds} rounds, {load()}")
    print()
    print("| step | median s | ratio to read_all |")
    print("|---|---:|---:|")
    for name, ts in times.items():
        print(f"| {name} | {median(ts):.3f} | {median(ts) / base:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
