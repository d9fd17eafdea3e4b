"""Open, validate, read and write sample files through their :class:`Layout`.

``open_source(path)`` gives a lazily opened, picklable :class:`SampleSource`
(safe to hand to DataLoader workers: the h5py handle is opened on first use in
each process, never before a fork). :class:`SampleWriter` streams blocks into
a temporary file that is renamed into place only when complete.
"""

from __future__ import annotations

import contextlib
import gc
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from physgan.errors import DataError, PhysganError
from physgan.io.atomic import atomic_output
from physgan.io.layout import Header, Layout, detect_layout, get_layout
from physgan.io.probe import probe_hdf5

__all__ = ["open_h5", "SampleSource", "open_source", "read_all", "SampleWriter", "write_samples", "CHUNK_CACHE_BYTES"]

#: raw-data chunk cache per open file (h5py's default of 1 MiB thrashes on
#: block reads of large samples)
CHUNK_CACHE_BYTES = 64 << 20


def open_h5(path: str | os.PathLike, mode: str = "r") -> h5py.File:
    """Open an HDF5 file with a large chunk cache and a clear error if it is not one."""
    path = str(path)
    if mode == "r":
        if not os.path.exists(path):
            raise DataError(path, "file does not exist")
        if os.path.isdir(path):
            raise DataError(path, "is a directory, expected an HDF5 file")
        if os.path.getsize(path) == 0:
            raise DataError(path, "file is empty (0 bytes)")
        try:
            is_h5 = h5py.is_hdf5(path)
        except OSError as err:
            raise DataError(path, f"cannot be read: {err}") from err
        if not is_h5:
            from physgan.domains.base import import_hint

            raise DataError(path, "is not an HDF5 file (no HDF5 signature)" + import_hint(path))
        probe_hdf5(path)  # corrupted metadata can hang or crash HDF5: walk it in a child process first
    try:
        return h5py.File(path, mode, rdcc_nbytes=CHUNK_CACHE_BYTES, rdcc_nslots=10007)
    except OSError as err:
        raise DataError(path, f"cannot be opened as HDF5 (truncated or corrupted?): {err}") from err


class SampleSource:
    """A sample file seen as (x, c) blocks, opened lazily per process.

    Parameters
    ----------
    path : str or Path
        The HDF5 file.
    layout : Layout or str, optional
        Its layout; detected from the file when omitted.

    Attributes
    ----------
    header : Header
        Shapes, condition names and units, attributes.
    file_attrs : set of str
        Names of the attributes stored in the file's root; the other ``header.attrs`` were
        inferred by the layout (units, geometry, domain of a file without attributes).
    """

    def __init__(self, path: str | os.PathLike, layout: Layout | str | None = None):
        self.path = str(path)
        f = open_h5(self.path)
        try:
            if isinstance(layout, str):
                layout = get_layout(layout)
            try:
                self.layout: Layout = layout if layout is not None else detect_layout(f, self.path)
            except DataError:
                raise
            except (KeyError, ValueError, TypeError, OSError, RuntimeError) as err:  # h5py on corrupted metadata
                raise DataError(self.path, f"HDF5 structure is unreadable (corrupted?): {err}") from err
            try:
                self.header: Header = self.layout.describe(f)
            except DataError:
                raise
            except (KeyError, ValueError, TypeError, OSError, RuntimeError) as err:
                raise DataError(self.path, f"does not match layout '{self.layout.name}': {err}") from err
            self.file_attrs: set[str] = set(f.attrs.keys())  # the rest of header.attrs is inferred by the layout
            flag = f.attrs.get("complete", True)
            if isinstance(flag, (bool, np.bool_)) and not flag:
                raise DataError(
                    self.path,
                    "is incomplete: its writer (physgan generate or another SampleWriter) was interrupted; "
                    "generate it again (the attribute 'complete' is False)",
                )
        finally:
            f.close()
        # the domain hooks receive header.attrs: let them find the condition columns by name
        self.header.attrs.setdefault("condition_names", list(self.header.condition_names))
        self.header.attrs.setdefault("condition_units", list(self.header.condition_units))
        self._f: h5py.File | None = None
        self._pid: int | None = None

    # picklable for worker processes: never ship an open handle across a fork/spawn
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_f"] = None
        state["_pid"] = None
        return state

    def _file(self) -> h5py.File:
        if self._f is None or self._pid != os.getpid():
            self._f = open_h5(self.path)
            self._pid = os.getpid()
        return self._f

    def close(self) -> None:
        """Close the handle of this process (it reopens on next use)."""
        if self._f is not None and self._pid == os.getpid():
            self._f.close()
        self._f = None

    def __len__(self) -> int:
        return self.header.n

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return self.header.sample_shape

    @property
    def condition_names(self) -> list[str]:
        return self.header.condition_names

    def read(self, start: int, stop: int, check: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Samples ``[start, stop)`` as float32 ``(x, c)``; ``check`` validates values."""
        start, stop = max(0, int(start)), min(self.header.n, int(stop))
        try:
            x, c = self.layout.read_block(self._file(), self.header, start, stop)
        except DataError:
            raise
        except (OSError, KeyError, ValueError, TypeError, RuntimeError) as err:
            raise DataError(self.path, f"read of rows {start}:{stop} failed (corrupted file?): {err}") from err
        if check:
            check_values(self.path, self.header, self.layout, start, x, c)
        return x, c

    def blocks(self, block_rows: int | None = None, check: bool = True) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """Iterate ``(start, x, c)`` over the file in chunk-aligned blocks."""
        rows = block_rows or max(self.header.chunk_rows, 1) * max(1, 4096 // max(self.header.chunk_rows, 1))
        for start in range(0, self.header.n, rows):
            x, c = self.read(start, start + rows, check=check)
            yield start, x, c

    def __repr__(self) -> str:
        h = self.header
        return (
            f"SampleSource('{self.path}', layout={self.layout.name}, n={h.n}, "
            f"sample_shape={h.sample_shape}, conditions={h.condition_names})"
        )


def check_values(path: str, header: Header, layout: Layout, start: int, x: np.ndarray, c: np.ndarray) -> None:
    """Raise :class:`DataError` at the first NaN/Inf (or negative, where forbidden)."""
    if x.size and np.issubdtype(x.dtype, np.floating):
        lo, hi = x.min(), x.max()  # two reductions, no temporary array: NaN propagates into both
        clean = bool(np.isfinite(lo) and np.isfinite(hi)) and not (header.non_negative and lo < 0)
    else:
        clean = False
    if clean and (not c.size or np.isfinite(c).all()):
        layout.check_block(path, header, start, x, c)
        return
    if not np.isfinite(x).all():
        bad = np.argwhere(~np.isfinite(x))[0]
        raise DataError(path, f"non-finite sample value {x[tuple(bad)]}", dataset=_sample_ds(header), index=start + int(bad[0]))
    if c.size and not np.isfinite(c).all():
        row, col = np.argwhere(~np.isfinite(c))[0]
        raise DataError(
            path, f"non-finite condition value {c[row, col]}", dataset=header.condition_names[col], index=start + int(row)
        )
    if header.non_negative and x.size and (x < 0).any():
        bad = np.argwhere(x < 0)[0]
        raise DataError(
            path,
            f"negative value {x[tuple(bad)]:.6g} where values must be >= 0",
            dataset=_sample_ds(header),
            index=start + int(bad[0]),
        )
    layout.check_block(path, header, start, x, c)


def _sample_ds(header: Header) -> str:
    return header.datasets[0] if header.datasets else "samples"


def open_source(path: str | os.PathLike, layout: Layout | str | None = None) -> SampleSource:
    """Open a sample file (layout detected unless given). See :class:`SampleSource`."""
    return SampleSource(path, layout)


def read_all(source: SampleSource | str | os.PathLike, check: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Read a whole file into memory as float32 ``(x, c)``."""
    src = source if isinstance(source, SampleSource) else open_source(source)
    xs, cs = [], []
    for _, x, c in src.blocks(check=check):
        xs.append(x)
        cs.append(c)
    return np.concatenate(xs), np.concatenate(cs)


class SampleWriter:
    """Stream samples into a new file in ``layout``; renamed into place on success.

    Parameters
    ----------
    path : str or Path
        Output file. Refused if it exists unless ``overwrite``.
    layout : Layout or str
        Output layout.
    header : Header
        Total ``n``, sample shape, condition names/units, attributes.
    overwrite : bool
        Replace an existing file.
    compression : str, optional
        HDF5 filter (``gzip``, ``lzf``) or None.

    Examples
    --------
    >>> with SampleWriter("fake.h5", "array", header) as w:  # doctest: +SKIP
    ...     for x, c in blocks:
    ...         w.append(x, c)
    """

    def __init__(self, path, layout: Layout | str, header: Header, overwrite: bool = False, compression: str | None = None):
        self.path = Path(path)
        self.layout = get_layout(layout) if isinstance(layout, str) else layout
        self.header = header
        self.overwrite = overwrite
        self.compression = compression
        self.written = 0
        self._ctx = None
        self._f: h5py.File | None = None

    def _check_free_space(self) -> None:
        """Refuse up front when the (uncompressed) output cannot fit on its filesystem.

        Running out of space in the middle of an HDF5 write leaves the HDF5
        library in a state that can crash the process at exit, so a full disk
        is best caught before the first byte.
        """
        if self.compression is not None:
            return
        h = self.header
        itemsize = np.dtype(h.dtype or "float32").itemsize
        need = h.n * (int(np.prod(h.sample_shape, dtype=np.int64)) * itemsize + 4 * len(h.condition_names)) + (1 << 20)
        parent = self.path.parent if self.path.parent.exists() else Path(".")
        free = shutil.disk_usage(parent).free
        if need > free:
            raise PhysganError(
                f"{self.path}: needs about {need / 2**20:.1f} MiB but only {free / 2**20:.1f} MiB are free on that filesystem; "
                "free space, choose another --out, or pass --compression gzip"
            )

    def __enter__(self) -> SampleWriter:
        self._check_free_space()
        self._ctx = atomic_output(self.path, overwrite=self.overwrite)
        tmp = self._ctx.__enter__()
        try:
            self._f = h5py.File(tmp, "w")
            self.layout.create(self._f, self.header, compression=self.compression)
            self._f.attrs["complete"] = False  # set True only after the last block (never masquerades as complete)
        except BaseException as err:
            if self._f is not None:
                self._f.close()
            self._ctx.__exit__(type(err), err, err.__traceback__)
            if isinstance(err, OSError):
                raise PhysganError(f"{self.path}: could not create output: {err}") from err
            raise
        return self

    def append(self, x: np.ndarray, c: np.ndarray) -> None:
        """Write the next block of samples and their conditions."""
        if self._f is None:
            raise RuntimeError("SampleWriter used outside its 'with' block")
        x = np.asarray(x)
        c = np.asarray(c, dtype=np.float64).reshape(len(x), -1)  # cast to the file's condition dtype by the layout
        if self.written + len(x) > self.header.n:
            raise PhysganError(f"{self.path}: more samples written than the declared {self.header.n}")
        if tuple(x.shape[1:]) != tuple(self.header.sample_shape):
            raise PhysganError(f"{self.path}: block of shape {x.shape[1:]} does not match {self.header.sample_shape}")
        with _quiet_unraisable() as caught:
            try:
                self.layout.write_block(self._f, self.header, self.written, x, c)
            except OSError as err:
                raise _broken(PhysganError(f"{self.path}: write failed (disk full?): {str(err).splitlines()[0]}")) from err
        if caught:
            first = str(caught[0].exc_value).splitlines()[0] if caught[0].exc_value is not None else "unknown"
            raise _broken(PhysganError(f"{self.path}: write failed (disk full?): {first}"))
        self.written += len(x)

    def __exit__(self, exc_type, exc, tb) -> bool:
        f, self._f = self._f, None
        error: PhysganError | None = None
        if f is not None:
            with _quiet_unraisable():  # after a failed close (disk full) h5py reports every handle it frees
                try:
                    if exc_type is None and self.written != self.header.n:
                        error = PhysganError(f"{self.path}: only {self.written} of {self.header.n} samples were written")
                    f.attrs["complete"] = exc_type is None and error is None
                    f.close()
                except OSError as err:
                    error = _broken(PhysganError(f"{self.path}: could not finish writing (disk full?): {str(err).splitlines()[0]}"))
                    f = None
                    gc.collect()
        if exc_type is not None:
            self._ctx.__exit__(exc_type, exc, tb)  # removes the temporary; the caller re-raises
            return False
        if error is None:
            self._ctx.__exit__(None, None, None)  # fsync + rename into place
            return False
        try:
            raise error
        except PhysganError as err:
            self._ctx.__exit__(type(err), err, err.__traceback__)
            raise


def _broken(err: PhysganError) -> PhysganError:
    """Mark an error after which the HDF5 library may crash at interpreter exit (the CLI then exits hard)."""
    err.hdf5_state_broken = True
    return err


@contextlib.contextmanager
def _quiet_unraisable() -> Iterator[list]:
    """Collect 'Exception ignored in' reports instead of printing them.

    h5py reports a failed flush while freeing a handle (disk full) as an
    unraisable exception; the writer turns those into one clear error.
    """
    caught: list = []
    hook = sys.unraisablehook
    sys.unraisablehook = caught.append
    try:
        yield caught
    finally:
        sys.unraisablehook = hook


def write_samples(
    path,
    x: np.ndarray,
    c: np.ndarray,
    condition_names: list[str],
    layout: Layout | str = "array",
    condition_units: list[str] | None = None,
    attrs: dict[str, Any] | None = None,
    sample_units: str = "",
    non_negative: bool = False,
    overwrite: bool = False,
    compression: str | None = None,
    dtype: str = "float32",
) -> Path:
    """Write in-memory ``(x, c)`` to ``path`` in one go (atomically). Returns the path."""
    x = np.asarray(x)
    c = np.asarray(c, dtype=np.float32).reshape(len(x), -1)
    header = Header(
        n=len(x),
        sample_shape=tuple(x.shape[1:]),
        condition_names=list(condition_names),
        condition_units=list(condition_units or [""] * len(condition_names)),
        attrs=dict(attrs or {}),
        chunk_rows=0,
        sample_units=sample_units,
        non_negative=non_negative,
        dtype=dtype,
    )
    with SampleWriter(path, layout, header, overwrite=overwrite, compression=compression) as w:
        w.append(x, c)
    return Path(path)
