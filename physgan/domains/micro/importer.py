"""``physgan data import micro``: segmented TIFF images/stacks -> crops in the ``micro`` layout.

Example::

    physgan data import micro berea.zip --crop 64 --stride 32 --voxel-size 1e-6 \\
        --conditions porosity --dim 3 --out data/berea64.h5

Reads a TIFF stack ``(d, h, w)``, a 2-D TIFF ``(h, w)`` / ``(1, h, w)``, or a ``.zip``
holding exactly one TIFF. The distinct grey values are the phases (at most
``--max-phases``; more means the image is not segmented) and are mapped in
increasing order to labels 0..P-1 (e.g. {0: pore, 255: grain} -> 0/1), recorded in
``attrs['phase_values']``. ``--dim 3`` cuts cubes, ``--dim 2`` cuts squares from the
slices normal to ``--axis`` (every ``--stride``-th slice of a stack). Conditions per
crop: ``porosity`` (fraction of label 0) or ``fractions`` (``fraction_<k>`` for every
phase) or ``none``.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from physgan.domains.micro.layout import micro_header
from physgan.errors import ConfigError, DataError
from physgan.io.hdf5 import SampleWriter

__all__ = ["add_import_arguments", "import_", "read_image", "detect_phases", "crop_positions", "iter_crops", "crop_conditions"]


def read_image(path: str | Path) -> np.ndarray:
    """Read a TIFF (2-D or stack) or a .zip holding one TIFF, as a numpy array."""
    import tifffile

    path = Path(path)
    if not path.exists():
        raise DataError(str(path), "file does not exist")
    try:
        if path.suffix.lower() == ".zip":
            with zipfile.ZipFile(path) as zf:
                tifs = [n for n in zf.namelist() if n.lower().endswith((".tif", ".tiff")) and not n.startswith("__MACOSX")]
                if len(tifs) != 1:
                    raise DataError(str(path), f"zip must hold exactly one .tif/.tiff, found {len(tifs)}: {tifs[:5]}")
                data = zf.read(tifs[0])
            return np.asarray(tifffile.imread(io.BytesIO(data)))
        return np.asarray(tifffile.imread(str(path)))
    except DataError:
        raise
    except (zipfile.BadZipFile, OSError, ValueError, tifffile.TiffFileError) as err:
        raise DataError(str(path), f"cannot be read as a TIFF (or zip of one): {err}") from err


def detect_phases(img: np.ndarray, max_phases: int = 16, path: str = "<image>") -> tuple[np.ndarray, list]:
    """Map the distinct values of a segmented image to labels ``0..P-1`` (in increasing order).

    Returns
    -------
    labels : ndarray of uint8, same shape
    values : list
        The original value of each label.
    """
    if img.dtype.kind not in "biu":
        if img.dtype.kind == "f" and np.all(np.isfinite(img)) and np.all(img == np.rint(img)):
            img = img.astype(np.int64)
        else:
            raise DataError(path, f"image is not segmented: dtype {img.dtype} with non-integer values")
    lo = int(img.min()) if img.size else 0
    if img.size and int(img.max()) - lo < 1 << 16:  # small integer range: a lookup table, no sort
        present = np.bincount((img.ravel() - lo).astype(np.int64)) > 0
        values = np.flatnonzero(present) + lo
        lut = np.cumsum(present) - 1
        inverse = lut[(img - lo).astype(np.int64)] if len(values) <= max_phases else None
    else:
        values, inverse = np.unique(img, return_inverse=True)
    if len(values) > max_phases:
        raise DataError(path, f"image has {len(values)} distinct values (> --max-phases {max_phases}); segment it into phases first")
    if len(values) < 2:
        raise DataError(path, f"image has a single value {values.tolist()}; need at least 2 phases")
    return np.asarray(inverse).reshape(img.shape).astype(np.uint8), [int(v) for v in values]


def crop_positions(n: int, crop: int, stride: int) -> list[int]:
    """Start offsets of crops of size ``crop`` every ``stride`` voxels along a side of ``n``."""
    return list(range(0, n - crop + 1, stride))


def _as_stack(labels: np.ndarray, path: str) -> np.ndarray:
    if labels.ndim == 2:
        return labels[None]
    if labels.ndim == 3:
        return labels
    squeezed = np.squeeze(labels)
    if squeezed.ndim in (2, 3):
        return squeezed if squeezed.ndim == 3 else squeezed[None]
    raise DataError(path, f"expected a 2-D image or 3-D stack, got shape {labels.shape}")


def iter_crops(labels: np.ndarray, crop: int, stride: int, dim: int, axis: int = 0, path: str = "<image>") -> Iterator[np.ndarray]:
    """Yield crops ``(crop,)*dim`` of a label stack in scan order (see module docstring)."""
    vol = _as_stack(labels, path)
    if dim == 3:
        if min(vol.shape) < crop:
            raise DataError(path, f"volume {vol.shape} is smaller than --crop {crop} (use --dim 2 for images)")
        for i in crop_positions(vol.shape[0], crop, stride):
            for j in crop_positions(vol.shape[1], crop, stride):
                for k in crop_positions(vol.shape[2], crop, stride):
                    yield vol[i : i + crop, j : j + crop, k : k + crop]
    elif dim == 2:
        if vol.shape[0] == 1:
            planes = vol
        else:
            planes = np.moveaxis(vol, axis, 0)[::stride]
        if min(planes.shape[1:]) < crop:
            raise DataError(path, f"slices of shape {planes.shape[1:]} are smaller than --crop {crop}")
        for plane in planes:
            for j in crop_positions(plane.shape[0], crop, stride):
                for k in crop_positions(plane.shape[1], crop, stride):
                    yield plane[j : j + crop, k : k + crop]
    else:
        raise ConfigError(f"--dim must be 2 or 3, got {dim}")


def crop_conditions(crops: np.ndarray, mode: str, n_phases: int) -> tuple[np.ndarray, list[str]]:
    """Per-crop conditions: ``none``, ``porosity`` (fraction of label 0) or ``fractions``."""
    flat = crops.reshape(len(crops), -1)
    if mode == "none":
        return np.zeros((len(crops), 0), np.float32), []
    if mode == "porosity":
        return (flat == 0).mean(axis=1, dtype=np.float64)[:, None].astype(np.float32), ["porosity"]
    if mode == "fractions":
        fr = np.stack([(flat == k).mean(axis=1, dtype=np.float64) for k in range(n_phases)], axis=1)
        return fr.astype(np.float32), [f"fraction_{k}" for k in range(n_phases)]
    raise ConfigError(f"--conditions must be none, porosity or fractions, got '{mode}'")


def add_import_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``physgan data import micro``."""
    parser.add_argument("input", help="segmented TIFF (2-D image or 3-D stack) or a .zip holding one")
    parser.add_argument("--crop", type=int, default=64, help="crop side (voxels)")
    parser.add_argument("--stride", type=int, default=None, help="step between crops (default crop // 2)")
    parser.add_argument("--dim", type=int, choices=[2, 3], default=3, help="3: cubic crops; 2: square crops of slices")
    parser.add_argument("--axis", type=int, choices=[0, 1, 2], default=0, help="--dim 2 on a stack: slices normal to this axis")
    parser.add_argument("--voxel-size", type=float, default=None,
         help="voxel side in metres (recorded as voxel_size_m; recorded as 'unknown' when not given)")
    parser.add_argument("--conditions", choices=["none", "porosity", "fractions"], default="none", help="per-crop conditions")
    parser.add_argument("--phase-names", default=None, help="comma-separated names of the phases in label order, e.g. pore,grain")
    parser.add_argument("--max-phases", type=int, default=16, help="refuse images with more distinct values")
    parser.add_argument("--out", required=True, help="output HDF5 file")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")


def import_(
    *, input: str, out: str, crop: int, stride: int | None, dim: int, axis: int, voxel_size: float | None, conditions: str,
    phase_names: str | None, max_phases: int, overwrite: bool,
) -> Path:
    """``physgan data import micro`` with its options as keywords (:func:`add_import_arguments`): convert ``input``
    into a micro file at ``out``; returns its path."""
    path = str(input)
    crop = int(crop)
    stride = int(stride or max(crop // 2, 1))
    dim = int(dim)
    if crop < 2 or stride < 1:
        raise ConfigError(f"--crop must be >= 2 and --stride >= 1, got {crop}, {stride}")
    labels, values = detect_phases(read_image(path), int(max_phases or 16), path)
    n_phases = len(values)
    names = [s.strip() for s in phase_names.split(",")] if phase_names else None
    if names is not None and len(names) != n_phases:
        raise ConfigError(f"--phase-names gives {len(names)} names for {n_phases} phases (values {values})")
    axis = int(axis or 0)
    if voxel_size is not None and not voxel_size > 0:
        raise ConfigError(f"--voxel-size must be positive (metres), got {voxel_size}")
    n = sum(1 for _ in iter_crops(labels, crop, stride, dim, axis, path))
    if n == 0:
        raise DataError(path, f"no crop of side {crop} fits in shape {labels.shape}")
    mode = conditions or "none"
    _, cond_names = crop_conditions(np.zeros((1,) + (crop,) * dim, np.uint8), mode, n_phases)
    from physgan import __version__

    header = micro_header(
        n,
        (crop,) * dim,
        cond_names,
        n_phases=n_phases,
        phase_values=values,
        phase_names=names,
        voxel_size_m=float(voxel_size or 1.0),
        attrs={
            **({} if voxel_size else {"voxel_size_m": "unknown"}),  # never a made-up 1 m voxel
            "periodic": False,
            "condition_names": cond_names or None,
            "source": Path(path).name,
            "source_shape": list(labels.shape),
            "crop": crop,
            "stride": stride,
            "crop_dim": dim,
            "physgan_version": __version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "command": " ".join(sys.argv),
        },
    )
    block: list[np.ndarray] = []
    with SampleWriter(out, "micro", header, overwrite=bool(overwrite), compression="gzip") as w:
        for c in iter_crops(labels, crop, stride, dim, axis, path):
            block.append(c)
            if len(block) == 64:
                arr = np.stack(block)
                w.append(arr, crop_conditions(arr, mode, n_phases)[0])
                block = []
        if block:
            arr = np.stack(block)
            w.append(arr, crop_conditions(arr, mode, n_phases)[0])
    return Path(out)
