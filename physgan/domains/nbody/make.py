"""``physgan data make nbody``: simulate a conditional dataset of density fields.

Examples
--------
::

    physgan data make nbody --sim lognormal --dim 2 --grid 32 --box 64 \\
        --omega-m 0.2:0.4 --sigma8 0.6:1.0 --n 2000 --seed 0 --out data/nbody.h5
    physgan data make nbody --sim pm --dim 3 --grid 64 --box 128 --n 50 --out pm.h5

Every sample is ``1 + delta`` (density in units of the mean, >= 0) on a
periodic grid; 2-D samples are slabs of ``--thickness`` Mpc/h through 3-D
boxes (``--slices-per-box`` slabs per simulated box, along the three axes
in turn, non-overlapping where the box allows). Conditions ``omega_m``,
``sigma8`` (and ``redshift`` when given as a range) are drawn uniformly per
box. The file uses physgan's ``array`` layout with ``attrs['domain'] =
'nbody'``, ``box_size`` (Mpc/h), ``grid``, ``dim``, ``redshift``,
``slice_thickness`` (Mpc/h, 2-D), ``field``, ``sim`` and ``provenance``.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from physgan.errors import ConfigError
from physgan.io.atomic import check_writable
from physgan.io.hdf5 import SampleWriter
from physgan.io.layout import Header
from physgan.progress import Progress
from physgan.sim import nbody as sim

__all__ = ["add_make_arguments", "make", "make_dataset", "parse_range", "box_slabs"]


def parse_range(text: str | float, name: str) -> tuple[float, float]:
    """``'0.2:0.4'`` -> (0.2, 0.4); ``'0.3'`` -> (0.3, 0.3)."""
    s = str(text)
    try:
        if ":" in s:
            lo, hi = (float(v) for v in s.split(":", 1))
        else:
            lo = hi = float(s)
    except ValueError:
        raise ConfigError(f"--{name.replace('_', '-')}: expected a number or lo:hi, got '{text}'") from None
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi < lo:
        raise ConfigError(f"--{name.replace('_', '-')}: need finite lo <= hi, got '{text}'")
    return lo, hi


def add_make_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``physgan data make nbody`` to ``parser``."""
    parser.add_argument("--sim", choices=["lognormal", "pm"], default="lognormal", help="simulator (default lognormal)")
    parser.add_argument("--dim", type=int, choices=[2, 3], default=2, help="2: slabs of 3-D boxes; 3: boxes")
    parser.add_argument("--grid", type=int, default=32, help="cells per side (default 32)")
    parser.add_argument("--box", type=float, default=64.0, help="box side in Mpc/h (default 64)")
    parser.add_argument("--omega-m", default="0.2:0.4", help="Omega_m value or lo:hi range (default 0.2:0.4)")
    parser.add_argument("--sigma8", default="0.6:1.0", help="sigma8 value or lo:hi range (default 0.6:1.0)")
    parser.add_argument("--redshift", default="0", help="redshift or lo:hi range; a range makes it a condition (default 0)")
    parser.add_argument("--thickness", type=float, default=None, help="2-D slab thickness in Mpc/h (default 4 cells)")
    parser.add_argument("--slices-per-box", type=int, default=None, help="2-D slabs per box (default 1 lognormal, 12 pm)")
    parser.add_argument("--n-steps", type=int, default=10, help="pm: kick-drift-kick steps (default 10)")
    parser.add_argument("--n", type=int, default=1000, help="number of samples (default 1000)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--out", required=True, help="output HDF5 file")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")


def box_slabs(box: np.ndarray, count: int, thickness_cells: int) -> list[np.ndarray]:
    """``count`` slabs of a 3-D box, along axes 0, 1, 2 in turn, evenly spaced (non-overlapping when possible)."""
    n = box.shape[0]
    per_axis = math.ceil(count / 3)
    stride = max(n // per_axis, 1)
    return [sim.slab(box, axis=i % 3, start=(i // 3) * stride, thickness=thickness_cells) for i in range(count)]


@functools.lru_cache(maxsize=4)
def _lognormal_spectrum(omega_m: float, sigma8: float, z: float, grid: int, box: float) -> tuple[np.ndarray, float]:
    """The Gaussian spectrum of one cosmology's lognormal boxes (cached: a fixed-cosmology file computes it once)."""
    cosmo = sim.Cosmology(omega_m=omega_m, sigma8=sigma8)
    return sim.lognormal_spectrum(lambda k: sim.linear_power(k, cosmo, z), grid, box, 3)


def _simulate_box(kind: str, omega_m: float, sigma8: float, z: float, grid: int, box: float, seed, n_steps: int) -> np.ndarray:
    if kind == "lognormal":
        spectrum = _lognormal_spectrum(omega_m, sigma8, z, grid, box)
        delta = sim.lognormal_field(None, grid, box, 3, seed, spectrum=spectrum)
        return (1.0 + delta).astype(np.float32)
    rho = sim.pm_simulation(omega_m, sigma8, z, grid=grid, box_size=box, seed=seed, n_steps=n_steps)
    return rho.astype(np.float32)


def make_dataset(
    out,
    *,
    sim_kind: str = "lognormal",
    dim: int = 2,
    grid: int = 32,
    box: float = 64.0,
    omega_m: tuple[float, float] = (0.2, 0.4),
    sigma8: tuple[float, float] = (0.6, 1.0),
    redshift: tuple[float, float] = (0.0, 0.0),
    thickness: float | None = None,
    slices_per_box: int | None = None,
    n_steps: int = 10,
    n: int = 1000,
    seed: int = 0,
    overwrite: bool = False,
    progress: bool | None = None,
) -> Path:
    """Simulate ``n`` density fields and stream them atomically into ``out``.

    Parameters
    ----------
    out : str or Path
        Output HDF5 file (``array`` layout, ``attrs['domain'] = 'nbody'``).
    sim_kind : {'lognormal', 'pm'}
        Simulator (see :mod:`physgan.sim.nbody`).
    dim : {2, 3}
        Sample dimension.
    grid : int
        Cells per side.
    box : float
        Box side in Mpc/h.
    omega_m, sigma8, redshift : tuple (lo, hi)
        Uniform ranges per box (lo == hi: fixed).
    thickness : float, optional
        Slab thickness in Mpc/h (2-D; default 4 cells).
    slices_per_box : int, optional
        2-D slabs per box (default 1 for lognormal, 12 for pm).
    n_steps : int
        PM steps.
    n : int
        Number of samples.
    seed : int
        Seed; box ``i`` uses the ``i``-th child of ``SeedSequence(seed)``.
    overwrite : bool
        Replace an existing file.
    progress : bool or str, optional
        :class:`physgan.progress.Progress` (default: a bar on a terminal, a line per ~10 % otherwise).

    Returns
    -------
    Path
        The written file.
    """
    if sim_kind not in ("lognormal", "pm"):
        raise ConfigError(f"--sim must be 'lognormal' or 'pm', got '{sim_kind}'")
    if dim not in (2, 3):
        raise ConfigError(f"--dim must be 2 or 3, got {dim}")
    if int(n) < 1:
        raise ConfigError(f"--n must be >= 1, got {n}")
    if int(grid) < 4 or box <= 0:
        raise ConfigError(f"--grid must be >= 4 and --box > 0, got grid={grid}, box={box}")
    for name, (lo, _hi) in (("omega_m", omega_m), ("sigma8", sigma8), ("redshift", redshift)):
        if name != "redshift" and lo <= 0:
            raise ConfigError(f"--{name.replace('_', '-')} must be positive, got {lo}")
    if redshift[0] < 0:
        raise ConfigError(f"--redshift must be >= 0, got {redshift[0]}")
    cell = box / grid
    thick_cells = 1
    if dim == 2:
        thick_cells = max(1, int(round((thickness if thickness is not None else 4 * cell) / cell)))
        if thick_cells > grid:
            raise ConfigError(f"--thickness {thickness} Mpc/h exceeds the box side {box} Mpc/h")
    spb = 1 if dim == 3 else int(slices_per_box or (1 if sim_kind == "lognormal" else 12))
    if spb < 1:
        raise ConfigError(f"--slices-per-box must be >= 1, got {slices_per_box}")
    out = check_writable(out, overwrite)
    vary_z = redshift[1] > redshift[0]
    names = ["omega_m", "sigma8"] + (["redshift"] if vary_z else [])
    shape = (grid,) * dim
    n_boxes = math.ceil(n / spb)
    import physgan

    provenance = {
        "generator": "physgan.sim.nbody",
        "sim": sim_kind,
        "seed": int(seed),
        "n_steps": int(n_steps) if sim_kind == "pm" else None,
        "linear_power": "Eisenstein-Hu 1998 no-wiggle, Planck18 h/omega_b/n_s",
        "physgan_version": getattr(physgan, "__version__", "unknown"),
    }
    attrs: dict[str, Any] = {
        "domain": "nbody",
        "box_size": float(box),
        "box_size_units": "Mpc/h",
        "grid": int(grid),
        "dim": int(dim),
        "redshift": float(redshift[0]) if not vary_z else json.dumps(list(redshift)),
        "slice_thickness": float(thick_cells * cell) if dim == 2 else None,
        "slices_per_box": int(spb) if dim == 2 else None,
        "field": "density",
        "field_units": "1 + delta (density in units of the mean)",
        "sim": sim_kind,
        "provenance": json.dumps(provenance),
    }
    header = Header(
        n=int(n),
        sample_shape=shape,
        condition_names=names,
        condition_units=["", "", ""][: len(names)],
        attrs=attrs,
        chunk_rows=0,
        sample_units="rho/rho_mean",
        non_negative=True,
    )
    seeds = np.random.SeedSequence(int(seed)).spawn(n_boxes)
    bar = Progress(int(n), f"nbody {sim_kind}", "sample", progress)
    block_x: list[np.ndarray] = []
    block_c: list[np.ndarray] = []
    block_rows = max(1, min(256, (16 << 20) // (4 * grid**dim)))
    written = 0
    with SampleWriter(out, "array", header, overwrite=overwrite) as w:
        for b in range(n_boxes):
            rng = np.random.default_rng(seeds[b])
            om = float(rng.uniform(*omega_m))
            s8 = float(rng.uniform(*sigma8))
            z = float(rng.uniform(*redshift))
            field = _simulate_box(sim_kind, om, s8, z, grid, box, rng, n_steps)
            samples = [field] if dim == 3 else box_slabs(field, spb, thick_cells)
            cond = [om, s8] + ([z] if vary_z else [])
            for s in samples:
                if written + len(block_x) >= n:
                    break
                block_x.append(s)
                block_c.append(cond)
            if len(block_x) >= block_rows or written + len(block_x) >= n:
                w.append(np.stack(block_x).astype(np.float32), np.asarray(block_c, np.float32))
                written += len(block_x)
                bar.update(len(block_x))
                block_x, block_c = [], []
            if written >= n:
                break
    bar.close()
    return Path(out)


def make(
    *, out: str, sim: str, dim: int, grid: int, box: float, omega_m: str, sigma8: str, redshift: str,
    thickness: float | None, slices_per_box: int | None, n_steps: int, n: int, seed: int, overwrite: bool,
) -> Path:
    """``physgan data make nbody`` with its options as keywords (:func:`add_make_arguments`); returns the written file."""
    return make_dataset(
        out,
        sim_kind=sim,
        dim=int(dim),
        grid=int(grid),
        box=float(box),
        omega_m=parse_range(omega_m, "omega_m"),
        sigma8=parse_range(sigma8, "sigma8"),
        redshift=parse_range(redshift, "redshift"),
        thickness=thickness,
        slices_per_box=slices_per_box,
        n_steps=int(n_steps),
        n=int(n),
        seed=int(seed),
        overwrite=bool(overwrite),
    )
