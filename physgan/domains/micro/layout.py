"""The ``micro`` HDF5 layout: segmented images/volumes as integer phase labels.

File structure::

    /labels                 (N, [d,] h, w) uint8, values 0..n_phases-1
    /conditions/<name>      (N,) float32, attrs units (as in physgan's ``array`` layout)
    root attrs              physgan_layout='micro', domain='micro', n_phases,
                            phase_values (original grey values of labels 0..P-1),
                            phase_names (optional), voxel_size_m, provenance

The engine sees the labels as float32 ``(N, [d,] h, w)``.
"""

from __future__ import annotations

from typing import Any

import h5py
import numpy as np

from physgan.errors import DataError
from physgan.io.layout import ArrayLayout, Header, register_layout

__all__ = ["MicroLayout", "LABELS", "micro_header"]

LABELS = "labels"


class MicroLayout(ArrayLayout):
    """Integer phase labels plus named conditions (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__(samples_key=LABELS, conditions_key="conditions", name="micro", non_negative=True)

    def detect(self, f: h5py.File) -> bool:
        return LABELS in f and isinstance(f[LABELS], h5py.Dataset)

    def describe(self, f: h5py.File) -> Header:
        header = super().describe(f)
        path = f.filename
        ds = f[LABELS]
        if not (np.issubdtype(ds.dtype, np.integer) or ds.dtype == bool):
            raise DataError(path, f"phase labels must be integers, got dtype {ds.dtype}", dataset=LABELS)
        if len(header.sample_shape) not in (2, 3):
            raise DataError(path, f"labels must be (N, h, w) or (N, d, h, w), got {ds.shape}", dataset=LABELS)
        if "n_phases" not in header.attrs:
            raise DataError(path, "root attribute 'n_phases' is missing (number of phase labels)", dataset=LABELS)
        n_phases = int(header.attrs["n_phases"])
        if n_phases < 2 or n_phases > 255:
            raise DataError(path, f"attribute n_phases = {n_phases} must be in 2..255", dataset=LABELS)
        header.attrs["n_phases"] = n_phases
        header.attrs.setdefault("phase_values", list(range(n_phases)))
        header.attrs.setdefault("voxel_size_m", 1.0)
        header.attrs.setdefault("domain", "micro")
        header.sample_units = header.sample_units or "phase label"
        return header

    def check_block(self, path: str, header: Header, start: int, x: np.ndarray, c: np.ndarray) -> None:
        n_phases = int(header.attrs["n_phases"])
        bad = (x < 0) | (x > n_phases - 1) | (x != np.rint(x))
        if bad.any():
            i = np.argwhere(bad)[0]
            raise DataError(
                path,
                f"label {x[tuple(i)]} is not an integer in 0..{n_phases - 1} (n_phases = {n_phases})",
                dataset=LABELS,
                index=start + int(i[0]),
            )

    def create(self, f: h5py.File, header: Header, compression: str | None = None) -> None:
        header.dtype = "uint8"
        header.sample_units = header.sample_units or "phase label"
        if "n_phases" not in header.attrs:
            raise DataError(str(f.filename), "cannot write micro labels without attrs['n_phases']", dataset=LABELS)
        super().create(f, header, compression=compression)
        f.attrs["physgan_layout"] = self.name

    def write_block(self, f: h5py.File, header: Header, start: int, x: np.ndarray, c: np.ndarray) -> None:
        n_phases = int(header.attrs["n_phases"])
        x = np.clip(np.rint(np.asarray(x, dtype=np.float64)), 0, n_phases - 1)
        super().write_block(f, header, start, x, c)


def micro_header(
    n: int,
    shape: tuple[int, ...],
    condition_names: list[str],
    condition_units: list[str] | None = None,
    n_phases: int = 2,
    phase_values: list[int] | None = None,
    phase_names: list[str] | None = None,
    voxel_size_m: float = 1.0,
    attrs: dict[str, Any] | None = None,
) -> Header:
    """A :class:`Header` for writing a micro file with :class:`~physgan.io.hdf5.SampleWriter`."""
    a = {
        "domain": "micro",
        "n_phases": int(n_phases),
        "phase_values": list(phase_values if phase_values is not None else range(n_phases)),
        "voxel_size_m": float(voxel_size_m),
    }
    if phase_names:
        a["phase_names"] = list(phase_names)
    a.update(attrs or {})
    return Header(
        n=int(n),
        sample_shape=tuple(int(s) for s in shape),
        condition_names=list(condition_names),
        condition_units=list(condition_units or [""] * len(condition_names)),
        attrs=a,
        chunk_rows=0,
        sample_units="phase label",
        non_negative=True,
        dtype="uint8",
    )


register_layout(MicroLayout())
