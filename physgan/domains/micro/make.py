"""``physgan data make micro``: synthetic conditional microstructures from porespy.

Example::

    physgan data make micro --generator blobs --porosity 0.3:0.6 --blobiness 1:2 \\
        --shape 64,64,64 --n 1000 --seed 0 --out data/micro.h5

Writes the ``micro`` layout (``labels`` uint8, 0 = pore, 1 = solid; conditions
``porosity`` (achieved) and ``blobiness`` or ``radius``) by streaming blocks into a
temporary file renamed into place at the end (never overwrites without
``--overwrite``). Progress: a bar on a terminal, a line per ~10 % otherwise.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from physgan.domains.micro.layout import micro_header
from physgan.errors import ConfigError
from physgan.io.hdf5 import SampleWriter
from physgan.progress import Progress
from physgan.sim.micro import MicroSpec, condition_names, iter_micro

__all__ = ["add_make_arguments", "make", "parse_range", "parse_shape"]


def parse_range(text: str | float | tuple, name: str) -> tuple[float, float]:
    """``'lo:hi'`` or a single value ``'v'`` -> ``(lo, hi)``; ConfigError naming the option otherwise."""
    if isinstance(text, (tuple, list)):
        vals = [float(v) for v in text]
    else:
        parts = str(text).split(":")
        try:
            vals = [float(p) for p in parts]
        except ValueError:
            raise ConfigError(f"--{name}: expected 'lo:hi' or a number, got '{text}'") from None
    if len(vals) == 1:
        vals = vals * 2
    if len(vals) != 2 or vals[0] > vals[1]:
        raise ConfigError(f"--{name}: expected 'lo:hi' with lo <= hi, got '{text}'")
    return vals[0], vals[1]


def parse_shape(text: str | tuple) -> tuple[int, ...]:
    """``'64,64,64'`` -> ``(64, 64, 64)`` (2 or 3 positive sides)."""
    try:
        shape = tuple(int(s) for s in (text.split(",") if isinstance(text, str) else text))
    except ValueError:
        raise ConfigError(f"--shape: expected comma-separated integers like 64,64,64, got '{text}'") from None
    if len(shape) not in (2, 3) or min(shape) < 2:
        raise ConfigError(f"--shape: expected 2 or 3 sides >= 2, got '{text}'")
    return shape


def add_make_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``physgan data make micro``."""
    parser.add_argument("--generator", choices=["blobs", "overlapping-spheres"], default="blobs", help="porespy generator")
    parser.add_argument("--porosity", default="0.3:0.6", help="pore fraction range lo:hi, drawn uniformly per sample")
    parser.add_argument(
        "--blobiness", default="0.5:1.5", help="blobs: blobiness range lo:hi (Gaussian sigma = mean(shape) / (40 blobiness) voxels)"
    )
    parser.add_argument("--radius", default="3:6", help="overlapping-spheres: sphere radius range lo:hi (voxels)")
    parser.add_argument("--shape", default="64,64,64", help="sample shape h,w or d,h,w (voxels)")
    parser.add_argument("--voxel-size", type=float, default=1.0, help="voxel side in metres (recorded as voxel_size_m)")
    parser.add_argument("--n", type=int, default=1000, help="number of samples")
    parser.add_argument("--seed", type=int, default=0, help="random seed (conditions and every sample)")
    parser.add_argument("--out", required=True, help="output HDF5 file")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
    parser.add_argument("--block", type=int, default=64, help="samples per written block")


def make(
    *, out: str, generator: str, porosity: str, blobiness: str, radius: str, shape: str, voxel_size: float, n: int,
    seed: int, overwrite: bool, block: int,
) -> Path:
    """``physgan data make micro`` with its options as keywords (:func:`add_make_arguments`): run the generator and
    write the file; returns its path."""
    spec = MicroSpec(
        generator=generator,
        shape=parse_shape(shape),
        porosity=parse_range(porosity, "porosity"),
        blobiness=parse_range(blobiness, "blobiness"),
        radius=parse_range(radius, "radius"),
    )
    n = int(n)
    if n < 1:
        raise ConfigError(f"--n must be >= 1, got {n}")
    from physgan import __version__

    names = condition_names(spec.generator)
    header = micro_header(
        n,
        spec.shape,
        names,
        condition_units=["", "voxel" if names[1] == "radius" else ""],
        n_phases=2,
        phase_values=[0, 1],
        phase_names=["pore", "solid"],
        voxel_size_m=float(voxel_size or 1.0),
        attrs={
            "periodic": bool(spec.generator == "blobs" and spec.periodic),
            "condition_names": names,
            "generator": f"porespy.generators.{spec.generator}",
            "porosity_range": list(spec.porosity),
            f"{names[1]}_range": list(getattr(spec, names[1])),
            "seed": int(seed),
            "physgan_version": __version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "command": " ".join(sys.argv),
        },
    )
    with (
        Progress(n, "micro", "sample", None) as bar,
        SampleWriter(out, "micro", header, overwrite=bool(overwrite)) as w,
    ):
        for labels, cond in iter_micro(spec, n, seed=int(seed), block=int(block or 64)):
            w.append(labels, cond)
            bar.update(len(labels))
    return Path(out)
