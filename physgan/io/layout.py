"""HDF5 layouts: how one file format maps to (samples, conditions) arrays.

The engine sees every dataset as a float array of fixed-shape samples ``x`` of
shape ``(N, *sample_shape)`` and a table of named, real-valued conditions ``c``
of shape ``(N, k)``. A :class:`Layout` translates between that view and one
concrete file format (physgan's own ``array`` layout, CaloGAN, CaloChallenge,
...). Layouts register themselves with :func:`register_layout`; files are
matched to a layout by :func:`detect_layout`.

A layout implements four small hooks (``detect``, ``describe``, ``read_block``,
``create`` + ``write_block``); reading, validating, streaming and atomic writing
are shared (see :mod:`physgan.io.hdf5`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import h5py
import numpy as np

from physgan.errors import DataError

__all__ = [
    "Header",
    "Layout",
    "ArrayLayout",
    "register_layout",
    "get_layout",
    "layouts",
    "detect_layout",
]


@dataclass
class Header:
    """What a file holds, as read from its structure (no sample values read).

    Attributes
    ----------
    n : int
        Number of samples.
    sample_shape : tuple of int
        Shape of one sample in the engine's view.
    condition_names, condition_units : list of str
        Names and units of the conditions, in column order.
    attrs : dict
        Provenance and physics attributes (box size, voxel size, geometry, ...).
    chunk_rows : int
        Rows per HDF5 chunk along the sample axis (1 if contiguous); streaming
        readers read whole multiples of it.
    sample_units : str
        Unit of the sample values (e.g. ``MeV``).
    non_negative : bool
        Whether sample values must be >= 0 (energies, densities).
    dtype : str
        On-disk dtype of the samples (the engine always sees float32).
    condition_dtype : str
        On-disk dtype of the conditions (floating; written back the same by ``generate``).
    """

    n: int
    sample_shape: tuple[int, ...]
    condition_names: list[str]
    condition_units: list[str]
    attrs: dict[str, Any] = field(default_factory=dict)
    chunk_rows: int = 1
    sample_units: str = ""
    non_negative: bool = False
    dtype: str = "float32"
    datasets: list[str] = field(default_factory=list)
    condition_dtype: str = "float32"


def condition_dtype_of(*datasets) -> str:
    """The widest floating dtype among condition datasets (``'float32'`` when none is floating)."""
    floats = [np.dtype(d.dtype) for d in datasets if np.issubdtype(d.dtype, np.floating)]
    return str(max(floats, key=lambda t: t.itemsize)) if floats else "float32"


class Layout:
    """Base class of a file layout. Subclasses set ``name`` and the hooks."""

    name: str = ""
    #: value checks (NaN/Inf, negativity) are done by the shared reader on these
    #: datasets' blocks; a layout may add its own checks in ``check_block``.
    non_negative: bool = False

    def detect(self, f: h5py.File) -> bool:  # pragma: no cover - interface
        """Return True when the open file is in this layout."""
        raise NotImplementedError

    def describe(self, f: h5py.File) -> Header:  # pragma: no cover - interface
        """Check the file's structure and return its :class:`Header`.

        Raises :class:`~physgan.errors.DataError` naming file and dataset on
        missing datasets, wrong shapes or dtypes, mismatched N, empty files.
        """
        raise NotImplementedError

    def read_block(self, f: h5py.File, header: Header, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """Read samples ``[start, stop)`` as ``(x float32, c float32)``."""
        raise NotImplementedError  # pragma: no cover - interface

    def create(self, f: h5py.File, header: Header, compression: str | None = None) -> None:
        """Create empty datasets for ``header.n`` samples in a new file."""
        raise NotImplementedError  # pragma: no cover - interface

    def write_block(self, f: h5py.File, header: Header, start: int, x: np.ndarray, c: np.ndarray) -> None:
        """Write samples (engine view) at rows ``[start, start + len(x))``."""
        raise NotImplementedError  # pragma: no cover - interface

    def check_block(self, path: str, header: Header, start: int, x: np.ndarray, c: np.ndarray) -> None:
        """Layout-specific value checks on one block; raise DataError on failure."""


_LAYOUTS: dict[str, Layout] = {}


def register_layout(layout: Layout, *, first: bool = False) -> Layout:
    """Register a layout under ``layout.name`` (``first`` puts it ahead in detection)."""
    global _LAYOUTS
    if first:
        _LAYOUTS = {layout.name: layout, **{k: v for k, v in _LAYOUTS.items() if k != layout.name}}
    else:
        _LAYOUTS[layout.name] = layout
    return layout


def layouts() -> dict[str, Layout]:
    """All registered layouts, in detection order."""
    _load_builtin_layouts()
    return dict(_LAYOUTS)


def get_layout(name: str) -> Layout:
    """Return the registered layout called ``name``."""
    _load_builtin_layouts()
    try:
        return _LAYOUTS[name]
    except KeyError:
        raise DataError("<layout>", f"unknown layout '{name}'; known: {', '.join(_LAYOUTS)}") from None


def detect_layout(f: h5py.File, path: str) -> Layout:
    """Find the layout of an open file; the generic ``array`` layout is tried last."""
    _load_builtin_layouts()
    declared = f.attrs.get("physgan_layout")
    if isinstance(declared, bytes):
        declared = declared.decode()
    if declared and declared in _LAYOUTS:
        return _LAYOUTS[declared]
    candidates = [lay for name, lay in _LAYOUTS.items() if name != "array"] + [_LAYOUTS["array"]]
    for lay in candidates:
        if lay.detect(f):
            return lay
    names = ", ".join(sorted(f.keys())) or "(no datasets)"
    raise DataError(
        path,
        f"unknown layout: top-level entries are [{names}]; expected physgan's 'samples' + 'conditions', "
        f"CaloGAN ('energy', 'layer_0'..'layer_2'), CaloChallenge ('incident_energies', 'showers') or another "
        f"registered layout ({', '.join(_LAYOUTS)}); force one with --layout NAME, or write other files in the "
        f"'array' layout (samples + conditions/<name>)",
    )


_BUILTINS_LOADED = False


def _load_builtin_layouts() -> None:
    """Load the built-in domains, which register their layouts, through the domain registry (once)."""
    global _BUILTINS_LOADED
    if _BUILTINS_LOADED:
        return
    _BUILTINS_LOADED = True
    from physgan.domains.base import domains

    domains()


def _attr_str(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray) and value.shape == ():
        return _attr_str(value.item())
    return str(value)


def _attr_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (str, bytes)):
        return [s.strip() for s in _attr_str(value).split(",") if s.strip()]
    return [_attr_str(v) for v in np.asarray(value).ravel()]


def plain_attrs(obj: h5py.HLObject) -> dict[str, Any]:
    """HDF5 attributes as plain Python values (str, float, int, lists)."""
    out: dict[str, Any] = {}
    for k, v in obj.attrs.items():
        if isinstance(v, bytes):
            v = v.decode(errors="replace")
        elif isinstance(v, np.ndarray):
            v = [x.decode(errors="replace") if isinstance(x, bytes) else x for x in v.tolist()]
        elif isinstance(v, np.generic):
            v = v.item()
        out[k] = v
    return out


def write_attrs(obj: h5py.HLObject, attrs: dict[str, Any]) -> None:
    """Write plain attributes (None values skipped, dicts/nested lists as strings)."""
    for k, v in attrs.items():
        if v is None:
            continue
        if isinstance(v, dict):
            import json

            v = json.dumps(v)
        try:
            obj.attrs[k] = v
        except TypeError:
            obj.attrs[k] = str(v)


def chunk_rows_of(ds: h5py.Dataset) -> int:
    """Rows per chunk along axis 0 (1 for contiguous datasets)."""
    return int(ds.chunks[0]) if ds.chunks else 1


def default_chunk_rows(sample_shape: tuple[int, ...], itemsize: int = 4, target_bytes: int = 1 << 20) -> int:
    """Rows per chunk so that one chunk holds about ``target_bytes`` (1 MiB)."""
    per = int(np.prod(sample_shape, dtype=np.int64)) * itemsize
    return int(max(1, min(65536, target_bytes // max(per, 1))))


class ArrayLayout(Layout):
    """physgan's generic layout: any fixed-shape sample array plus named conditions.

    File structure::

        /samples                (N, *shape)  float; attrs: units, non_negative
        /conditions/<name>      (N,) or (N, 1) float; attrs: units
        (or /conditions         (N, k) float with attrs names=[...], units=[...])
        root attrs              physgan_layout='array', domain, provenance, physics attrs

    Other names are accepted with ``samples_key`` / ``conditions_key`` /
    ``condition_keys`` (each a dataset path of shape (N,) or (N, 1)).

    Parameters
    ----------
    samples_key : str
        Dataset with the samples.
    conditions_key : str
        Group of 1-D condition datasets, or one (N, k) dataset.
    condition_keys : list of str, optional
        Explicit list of condition dataset paths (overrides ``conditions_key``).
    name : str
        Registry name (``array``).
    """

    def __init__(
        self,
        samples_key: str = "samples",
        conditions_key: str = "conditions",
        condition_keys: list[str] | None = None,
        name: str = "array",
        non_negative: bool = False,
    ):
        self.samples_key = samples_key
        self.conditions_key = conditions_key
        self.condition_keys = list(condition_keys) if condition_keys else None
        self.name = name
        self.non_negative = non_negative

    # -- reading -----------------------------------------------------------------
    def detect(self, f: h5py.File) -> bool:
        return self.samples_key in f and isinstance(f[self.samples_key], h5py.Dataset)

    def _condition_datasets(self, f: h5py.File, path: str, n: int) -> list[tuple[str, h5py.Dataset, int | None]]:
        """(name, dataset, column) for each condition."""
        out: list[tuple[str, h5py.Dataset, int | None]] = []
        if self.condition_keys is not None:
            for key in self.condition_keys:
                if key not in f:
                    raise DataError(path, "condition dataset is missing", dataset=key)
                out.append((key.rsplit("/", 1)[-1], f[key], None))
            return out
        if self.conditions_key not in f:
            return out  # unconditional data
        node = f[self.conditions_key]
        if isinstance(node, h5py.Group):
            order = _attr_list(node.attrs.get("order")) or sorted(node.keys())
            for name in order:
                if name not in node or not isinstance(node[name], h5py.Dataset):
                    raise DataError(
                        path, f"condition '{name}' named in 'order' is missing", dataset=f"{self.conditions_key}/{name}"
                    )
                out.append((name, node[name], None))
            return out
        if node.ndim == 1:
            return [(self.conditions_key.rsplit("/", 1)[-1], node, None)]
        if node.ndim != 2:
            raise DataError(path, f"conditions must be (N,) or (N, k), got shape {node.shape}", dataset=self.conditions_key)
        names = _attr_list(node.attrs.get("names")) or [f"c{i}" for i in range(node.shape[1])]
        if len(names) != node.shape[1]:
            raise DataError(
                path, f"attribute 'names' has {len(names)} entries for {node.shape[1]} columns", dataset=self.conditions_key
            )
        return [(nm, node, i) for i, nm in enumerate(names)]

    def describe(self, f: h5py.File) -> Header:
        path = f.filename
        if self.samples_key not in f:
            raise DataError(path, "sample dataset is missing", dataset=self.samples_key)
        ds = f[self.samples_key]
        if not isinstance(ds, h5py.Dataset):
            raise DataError(path, "expected a dataset, found a group", dataset=self.samples_key)
        if ds.ndim < 2:
            raise DataError(
                path, f"samples must have shape (N, ...) with at least one feature axis, got {ds.shape}", dataset=self.samples_key
            )
        if not (np.issubdtype(ds.dtype, np.floating) or np.issubdtype(ds.dtype, np.integer) or ds.dtype == bool):
            raise DataError(path, f"samples must be numeric, got dtype {ds.dtype}", dataset=self.samples_key)
        n = int(ds.shape[0])
        if n == 0:
            raise DataError(path, "file holds no samples (N = 0)", dataset=self.samples_key)
        names, units = [], []
        for name, cds, col in self._condition_datasets(f, path, n):
            key = cds.name
            if not np.issubdtype(cds.dtype, np.number):
                raise DataError(path, f"condition must be numeric, got dtype {cds.dtype}", dataset=key)
            if cds.shape[0] != n:
                raise DataError(path, f"has {cds.shape[0]} rows but '{self.samples_key}' has {n} samples", dataset=key)
            if col is None and not (cds.ndim == 1 or (cds.ndim == 2 and cds.shape[1] == 1)):
                raise DataError(path, f"condition must have shape (N,) or (N, 1), got {cds.shape}", dataset=key)
            names.append(name)
            if col is None:
                units.append(_attr_str(cds.attrs.get("units", "")))
            else:
                ulist = _attr_list(cds.attrs.get("units"))
                units.append(ulist[col] if col < len(ulist) else "")
        if len(set(names)) != len(names):
            raise DataError(path, f"condition names are not unique: {names}", dataset=self.conditions_key)
        attrs = plain_attrs(f)
        nonneg = bool(ds.attrs.get("non_negative", self.non_negative))
        return Header(
            n=n,
            sample_shape=tuple(int(s) for s in ds.shape[1:]),
            condition_names=names,
            condition_units=units,
            attrs=attrs,
            chunk_rows=chunk_rows_of(ds),
            sample_units=_attr_str(ds.attrs.get("units", "")),
            non_negative=nonneg,
            dtype=str(ds.dtype),
            datasets=[self.samples_key] + [c.name for _, c, _ in self._condition_datasets(f, path, n)],
            condition_dtype=condition_dtype_of(*(c for _, c, _ in self._condition_datasets(f, path, n))),
        )

    def read_block(self, f: h5py.File, header: Header, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        x = np.asarray(f[self.samples_key][start:stop], dtype=np.float32)
        cols = []
        for _, cds, col in self._condition_datasets(f, f.filename, header.n):
            v = cds[start:stop]
            v = v[:, col] if col is not None else v.reshape(len(v), -1)[:, 0]
            cols.append(np.asarray(v, dtype=np.float32))
        c = np.stack(cols, axis=1) if cols else np.zeros((stop - start, 0), np.float32)
        return x, c

    # -- writing -----------------------------------------------------------------
    def create(self, f: h5py.File, header: Header, compression: str | None = None) -> None:
        f.attrs["physgan_layout"] = self.name
        write_attrs(f, {k: v for k, v in header.attrs.items() if k != "physgan_layout"})
        rows = min(header.chunk_rows or default_chunk_rows(header.sample_shape), header.n)
        dtype = np.dtype(header.dtype) if header.dtype else np.float32
        ds = f.create_dataset(
            self.samples_key,
            shape=(header.n, *header.sample_shape),
            dtype=dtype,
            chunks=(max(rows, 1), *header.sample_shape),
            compression=compression,
        )
        ds.attrs["units"] = header.sample_units
        ds.attrs["non_negative"] = bool(header.non_negative)
        if header.condition_names:
            g = f.create_group(self.conditions_key)
            g.attrs["order"] = ",".join(header.condition_names)
            for name, unit in zip(header.condition_names, header.condition_units):
                cds = g.create_dataset(
                    name, shape=(header.n,), dtype=np.dtype(header.condition_dtype), chunks=(max(min(header.n, 65536), 1),)
                )
                cds.attrs["units"] = unit

    def write_block(self, f: h5py.File, header: Header, start: int, x: np.ndarray, c: np.ndarray) -> None:
        stop = start + len(x)
        ds = f[self.samples_key]
        if np.issubdtype(ds.dtype, np.integer):
            x = np.rint(x)
        f[self.samples_key][start:stop] = x.astype(ds.dtype, copy=False)
        for j, name in enumerate(header.condition_names):
            f[f"{self.conditions_key}/{name}"][start:stop] = c[:, j]


register_layout(ArrayLayout())
