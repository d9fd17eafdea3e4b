"""Plain particle-position arrays (``.npy``, ``.npz``, text): what many N-body codes and converters write.

``physgan data import nbody positions.npy --box 32 --cond omega_m=0.3152 --cond sigma8=0.81 --out boxes.h5``
paints them like a Gadget/SWIFT snapshot (:mod:`.importer`); a plain array carries no header,
so the box size (``--box``, in Mpc/h unless ``--length-unit kpc``) and the cosmology (``--cond``)
come from the command line.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from physgan.errors import ConfigError, DataError

__all__ = ["PLAIN_SUFFIXES", "is_plain", "plain_header", "read_positions", "check_inside_box"]

#: file name endings read as plain position arrays
PLAIN_SUFFIXES = (".npy", ".npz", ".txt", ".dat", ".csv", ".ascii")
#: array names tried, in order, inside an .npz holding several arrays
_NPZ_KEYS = ("pos", "positions", "Position", "Coordinates", "x")


def is_plain(path: str | Path) -> bool:
    """Whether ``path`` is read as a plain position array (by its ending)."""
    return str(path).lower().endswith(PLAIN_SUFFIXES)


def read_positions(path: str | Path) -> np.ndarray:
    """Particle positions ``(N, 3)`` (float64, the file's length unit) from ``.npy``, ``.npz`` or text.

    Raises
    ------
    DataError
        Unreadable file, no (N, 3) array, non-finite values, no particles.
    """
    path = Path(path)
    low = path.name.lower()
    try:
        if low.endswith(".npy"):
            arr, key = np.load(path, mmap_mode="r", allow_pickle=False), None
        elif low.endswith(".npz"):
            with np.load(path, allow_pickle=False) as z:
                names = list(z.files)
                key = names[0] if len(names) == 1 else next((k for k in _NPZ_KEYS if k in names), None)
                if key is None:
                    raise DataError(str(path), f"holds arrays {names}: name the positions one of {list(_NPZ_KEYS)}")
                arr = z[key]
        else:
            arr, key = np.loadtxt(path, comments="#", delimiter="," if low.endswith(".csv") else None, ndmin=2), None
    except DataError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise DataError(str(path), f"not a readable position array: {reason}") from err
    if arr.ndim != 2 or arr.shape[1] != 3:
        hint = " (transposed? positions must be one particle per row)" if arr.ndim == 2 and arr.shape[0] == 3 else ""
        raise DataError(str(path), f"positions must have shape (N, 3), got {arr.shape}{hint}", dataset=key)
    if arr.shape[0] == 0:
        raise DataError(str(path), "holds no particles", dataset=key)
    pos = np.asarray(arr, dtype=np.float64)
    if not np.isfinite(pos).all():
        raise DataError(str(path), "non-finite particle position", dataset=key, index=int(np.argwhere(~np.isfinite(pos))[0, 0]))
    return pos


def plain_header(path: str | Path, box: float | None, length_unit: str) -> dict[str, Any]:
    """The snapshot header of a plain array: box from ``--box``, nothing else known.

    Raises
    ------
    ConfigError
        Without a positive ``box``.
    """
    if box is None:
        raise ConfigError(
            f"{path}: a plain position array has no header: pass --box (box side, Mpc/h) and --cond omega_m=.. --cond sigma8=.."
        )
    if not box > 0:
        raise ConfigError(f"--box must be positive, got {box}")
    factor = 1e-3 if length_unit == "kpc" else 1.0
    return {"box_size": float(box) * factor, "length_factor": factor, "redshift": None, "omega_m": None, "h": None,
            "sigma8": None, "n_files": 1, "code": "plain array"}


def check_inside_box(path: str | Path, pos: np.ndarray, box: float) -> None:
    """Refuse positions far outside ``[0, box)``: a wrong ``--box`` or length unit would wrap them into nonsense."""
    lo, hi = float(pos.min()), float(pos.max())
    slack = 1e-3 * box
    if lo < -slack or hi > box + slack:
        raise DataError(
            str(path), f"positions span [{lo:.6g}, {hi:.6g}] but the box is [0, {box:.6g}) Mpc/h: wrong --box or --length-unit?"
        )
