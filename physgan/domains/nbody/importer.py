"""``physgan data import nbody``: particle snapshots (Gadget-4 / SWIFT HDF5, or plain position arrays) -> density grids.

Examples
--------
::

    physgan data import nbody snap_010.hdf5 --grid 64 --scheme cic --cond sigma8=0.81 --out boxes.h5
    physgan data import nbody pos.npy --box 32 --cond omega_m=0.315 --cond sigma8=0.81 --out boxes.h5
    physgan data import nbody snap_010.0.hdf5 snap_010.1.hdf5 --dim 2 --thickness 4 --out slabs.h5

Reads ``<PartType>/Coordinates`` (default ``PartType1``, dark matter) and the
``Header`` attributes ``BoxSize``, ``Redshift``, ``Omega0`` / ``Omega_m``,
``HubbleParam`` (also looked up in the ``Parameters`` and ``Cosmology``
groups). Files of one multi-file snapshot (``name.<i>.hdf5`` with
``NumFilesPerSnapshot > 1``) are painted into one box; every other file is
its own box. Conditions are ``omega_m`` and ``sigma8`` (values missing from
the file, e.g. sigma8, come from ``--cond name=value``; extra ``--cond``
names become extra conditions). ``redshift`` is a condition when it differs
between boxes. Plain arrays (``.npy``/``.npz``/text, one particle per row,
:mod:`.positions`) have no header: ``--box`` gives the box side.

Lengths: ``--length-unit auto`` reads ``UnitLength_in_cm`` (Gadget
``Parameters``/``Header``, SWIFT ``Units``) when present (kpc -> /1000),
else treats ``BoxSize > 5000`` as kpc/h; SWIFT files (``Cosmology`` group or
``Code = SWIFT``) store h-free lengths, multiplied by ``h`` to get Mpc/h.
"""

from __future__ import annotations

import argparse
import json
import re
from collections import OrderedDict
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from physgan.domains.nbody.positions import check_inside_box, is_plain, plain_header, read_positions
from physgan.errors import ConfigError, DataError
from physgan.io.atomic import check_writable
from physgan.io.hdf5 import SampleWriter, open_h5
from physgan.io.layout import Header
from physgan.metrics.spectra import paint

__all__ = ["add_import_arguments", "import_", "import_snapshots", "read_snapshot_header"]

KPC_CM = 3.085678e21
MPC_CM = 3.085678e24


def add_import_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``physgan data import nbody`` to ``parser``."""
    parser.add_argument(
        "inputs", nargs="+", help="Gadget-4 / SWIFT HDF5 snapshot file(s), or plain (N, 3) position arrays (.npy/.npz/text)"
    )
    parser.add_argument("--box", type=float, default=None, help="box side in Mpc/h (required for plain position arrays)")
    parser.add_argument("--grid", type=int, default=64, help="cells per side (default 64)")
    parser.add_argument("--scheme", choices=["ngp", "cic", "tsc"], default="cic", help="mass assignment (default cic)")
    parser.add_argument("--dim", type=int, choices=[2, 3], default=3, help="3: boxes; 2: slabs (default 3)")
    parser.add_argument("--thickness", type=float, default=None, help="2-D slab thickness in Mpc/h (default 4 cells)")
    parser.add_argument(
        "--slices-per-box", type=int, default=None, help="2-D slabs per box (default: all non-overlapping x 3 axes)"
    )
    parser.add_argument("--parttype", default="PartType1", help="particle group (default PartType1)")
    parser.add_argument(
        "--length-unit", choices=["auto", "kpc", "mpc"], default="auto", help="unit of BoxSize/Coordinates (per h)"
    )
    parser.add_argument(
        "--cond", action="append", default=[], metavar="NAME=VALUE", help="condition value (repeatable)"
    )
    parser.add_argument("--out", required=True, help="output HDF5 file")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")


def _scalar(v: Any) -> float:
    arr = np.asarray(v, dtype=np.float64).ravel()
    return float(arr[0])


def _find_attr(f: h5py.File, names: tuple[str, ...]) -> Any:
    for group in ("Header", "Parameters", "Cosmology", "/"):
        if group in f or group == "/":
            attrs = f[group].attrs
            for nm in names:
                if nm in attrs:
                    return attrs[nm]
    return None


def read_snapshot_header(path: str, length_unit: str = "auto") -> dict[str, Any]:
    """Box size (Mpc/h), redshift, Omega_m, h, sigma8 and the length factor to Mpc/h of one snapshot file.

    Raises
    ------
    DataError
        When the file has no ``Header`` group or no ``BoxSize``.
    """
    with open_h5(path) as f:
        if "Header" not in f:
            raise DataError(path, "not a Gadget/SWIFT snapshot: group 'Header' is missing", dataset="Header")
        box = _find_attr(f, ("BoxSize",))
        if box is None:
            raise DataError(path, "Header attribute 'BoxSize' is missing", dataset="Header")
        box = _scalar(box)
        if not box > 0:
            raise DataError(path, f"BoxSize must be positive, got {box}", dataset="Header")
        z = _find_attr(f, ("Redshift",))
        om = _find_attr(f, ("Omega0", "Omega_m", "OmegaMatter"))
        h = _find_attr(f, ("HubbleParam", "h"))
        s8 = _find_attr(f, ("Sigma8", "sigma8", "sigma_8"))
        nfiles = _find_attr(f, ("NumFilesPerSnapshot", "NumFilesPerSnapshot_Total"))
        code = _find_attr(f, ("Code",))
        code = code.decode() if isinstance(code, bytes) else (str(code) if code is not None else "")
        swift = "Cosmology" in f or "swift" in code.lower()
        unit_cm = _find_attr(f, ("UnitLength_in_cm",))
        if unit_cm is None and "Units" in f:
            unit_cm = f["Units"].attrs.get("Unit length in cgs (U_L)")
    factor = 1.0
    if length_unit == "kpc":
        factor = 1e-3
    elif length_unit == "mpc":
        factor = 1.0
    elif unit_cm is not None:
        factor = _scalar(unit_cm) / MPC_CM
    elif box > 5000:
        factor = 1e-3
    hval = _scalar(h) if h is not None else None
    if swift and hval:
        factor *= hval  # SWIFT lengths carry no 1/h
    return {
        "box_size": box * factor,
        "length_factor": factor,
        "redshift": _scalar(z) if z is not None else None,
        "omega_m": _scalar(om) if om is not None else None,
        "h": hval,
        "sigma8": _scalar(s8) if s8 is not None else None,
        "n_files": int(_scalar(nfiles)) if nfiles is not None else 1,
        "code": "SWIFT" if swift else (code or "Gadget"),
    }


def _group_snapshots(paths: list[str]) -> list[list[str]]:
    groups: OrderedDict[str, list[str]] = OrderedDict()
    for p in paths:
        m = re.match(r"^(.*)\.(\d+)\.hdf5$", str(p))
        key = m.group(1) if m else str(p)
        groups.setdefault(key, []).append(str(p))
    return list(groups.values())


def _paint_files(
    files: list[str], parttype: str, grid: int, box_mpch: float, factor: float, scheme: str
) -> tuple[np.ndarray, int]:
    rho = np.zeros((grid,) * 3)
    total = 0
    for path in files:
        if is_plain(path):
            pos = read_positions(path) * factor
            check_inside_box(path, pos, box_mpch)
            rho += paint(pos % box_mpch, grid, box_mpch, scheme)
            total += len(pos)
            continue
        with open_h5(path) as f:
            key = f"{parttype}/Coordinates"
            if key not in f:
                raise DataError(
                    path, f"particle coordinates are missing (is --parttype {parttype} right?)", dataset=key
                )
            ds = f[key]
            if ds.ndim != 2 or ds.shape[1] != 3:
                raise DataError(path, f"coordinates must have shape (N, 3), got {ds.shape}", dataset=key)
            step = 1 << 22
            for s in range(0, ds.shape[0], step):
                pos = np.asarray(ds[s : s + step], dtype=np.float64) * factor
                if not np.all(np.isfinite(pos)):
                    bad = int(np.argwhere(~np.isfinite(pos))[0, 0])
                    raise DataError(path, "non-finite particle coordinate", dataset=key, index=s + bad)
                rho += paint(pos % box_mpch, grid, box_mpch, scheme)
                total += len(pos)
    if total == 0:
        raise DataError(files[0], "snapshot holds no particles", dataset=f"{parttype}/Coordinates")
    return rho * (grid**3 / total), total


def _parse_conds(items: list[str]) -> dict[str, float]:
    out: dict[str, float] = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"--cond expects NAME=VALUE, got '{item}'")
        name, value = item.split("=", 1)
        try:
            out[name.strip()] = float(value)
        except ValueError:
            raise ConfigError(f"--cond {name}: '{value}' is not a number") from None
    return out


def import_snapshots(
    inputs: list[str],
    out,
    *,
    grid: int = 64,
    scheme: str = "cic",
    dim: int = 3,
    thickness: float | None = None,
    slices_per_box: int | None = None,
    parttype: str = "PartType1",
    length_unit: str = "auto",
    conditions: dict[str, float] | None = None,
    overwrite: bool = False,
    box: float | None = None,
) -> Path:
    """Paint snapshot particles onto grids and write an nbody dataset (atomic).

    Parameters
    ----------
    inputs : list of str
        Snapshot files (multi-file snapshots are grouped into one box).
    out : str or Path
        Output HDF5 (``array`` layout, ``attrs['domain'] = 'nbody'``).
    grid : int
        Cells per side.
    scheme : {'ngp', 'cic', 'tsc'}
        Mass assignment.
    dim : {2, 3}
        3-D boxes or 2-D slabs.
    thickness : float, optional
        Slab thickness in Mpc/h (default 4 cells).
    slices_per_box : int, optional
        Slabs per box (default: every non-overlapping slab along the 3 axes).
    parttype : str
        Particle group.
    length_unit : {'auto', 'kpc', 'mpc'}
        Unit of the file's lengths (per h).
    conditions : dict, optional
        Condition values overriding / completing the file (e.g. ``{'sigma8': 0.81}``).
    overwrite : bool
        Replace an existing output.
    box : float, optional
        Box side (Mpc/h, or kpc/h with ``length_unit='kpc'``) of plain position arrays, which carry no header.

    Returns
    -------
    Path
        The written file.
    """
    from physgan.domains.nbody.make import box_slabs

    if not inputs:
        raise ConfigError("data import nbody: give at least one snapshot file")
    if int(grid) < 4:
        raise ConfigError(f"--grid must be >= 4, got {grid}")
    out = check_writable(out, overwrite)
    conds = dict(conditions or {})
    boxes = []
    for files in _group_snapshots(list(inputs)):
        hdr = plain_header(files[0], box, length_unit) if is_plain(files[0]) else read_snapshot_header(files[0], length_unit)
        values = {"omega_m": hdr["omega_m"], "sigma8": hdr["sigma8"], "redshift": hdr["redshift"]}
        values.update(conds)
        for need in ("omega_m", "sigma8"):
            if values.get(need) is None:
                raise ConfigError(f"{files[0]}: the snapshot does not state {need}; pass --cond {need}=VALUE")
        boxes.append((files, hdr, values))
    box0 = boxes[0][1]["box_size"]
    for files, hdr, _ in boxes[1:]:
        if not np.isclose(hdr["box_size"], box0, rtol=1e-6):
            raise DataError(
                files[0],
                f"box size {hdr['box_size']} Mpc/h differs from {box0} Mpc/h of {boxes[0][0][0]}",
                dataset="Header",
            )
    redshifts = {v.get("redshift") for _, _, v in boxes}
    vary_z = len(redshifts) > 1
    extra = sorted(k for k in conds if k not in ("omega_m", "sigma8", "redshift"))
    names = ["omega_m", "sigma8"] + (["redshift"] if vary_z else []) + extra
    cell = box0 / grid
    thick_cells = max(1, int(round((thickness if thickness is not None else 4 * cell) / cell)))
    if dim == 2:
        spb = int(slices_per_box or 3 * max(grid // thick_cells, 1))
    else:
        spb = 1
    n_total = len(boxes) * spb
    z0 = boxes[0][2].get("redshift")
    attrs = {
        "domain": "nbody",
        "box_size": float(box0),
        "box_size_units": "Mpc/h",
        "grid": int(grid),
        "dim": int(dim),
        "redshift": float(z0) if (z0 is not None and not vary_z) else None,
        "slice_thickness": float(thick_cells * cell) if dim == 2 else None,
        "field": "density",
        "field_units": "1 + delta (density in units of the mean)",
        "mass_assignment": scheme,
        "sim": "import",
        "provenance": json.dumps(
            {
                "importer": "physgan.domains.nbody.importer",
                "inputs": [str(p) for p in inputs],
                "code": boxes[0][1]["code"],
                "length_factor_to_mpc_h": boxes[0][1]["length_factor"],
                "parttype": parttype,
            }
        ),
    }
    header = Header(
        n=n_total,
        sample_shape=(grid,) * dim,
        condition_names=names,
        condition_units=[""] * len(names),
        attrs=attrs,
        chunk_rows=0,
        sample_units="rho/rho_mean",
        non_negative=True,
    )
    with SampleWriter(out, "array", header, overwrite=overwrite) as w:
        for files, hdr, values in boxes:
            rho, _ = _paint_files(files, parttype, grid, box0, hdr["length_factor"], scheme)
            samples = [rho] if dim == 3 else box_slabs(rho, spb, thick_cells)
            c = np.array(
                [[values[nm] if values.get(nm) is not None else np.nan for nm in names]] * len(samples), np.float32
            )
            w.append(np.stack(samples).astype(np.float32), c)
    return Path(out)


def import_(
    *, inputs: list[str], out: str, box: float | None, grid: int, scheme: str, dim: int, thickness: float | None,
    slices_per_box: int | None, parttype: str, length_unit: str, cond: list[str], overwrite: bool,
) -> Path:
    """``physgan data import nbody`` with its options as keywords (:func:`add_import_arguments`); returns the file."""
    return import_snapshots(
        list(inputs),
        out,
        grid=int(grid),
        scheme=scheme,
        dim=int(dim),
        thickness=thickness,
        slices_per_box=slices_per_box,
        parttype=parttype,
        length_unit=length_unit,
        conditions=_parse_conds(cond),
        overwrite=bool(overwrite),
        box=box,
    )
