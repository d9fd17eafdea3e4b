"""Walk an HDF5 file's metadata in a child process first: corrupted files can hang or crash HDF5.

The HDF5 C library trusts a file's metadata. Random corruption of a few bytes
makes some reads raise, but others loop forever inside the library (e.g. a
corrupted attribute heap) or crash the process; neither can be interrupted
from Python. :func:`probe_hdf5` therefore opens the file in a forked child
(no re-import: the parent's h5py is inherited), visits every group, dataset
and attribute and reads the first and last row of every dataset; a child that
does not finish within ``timeout`` seconds is killed and the file reported as
corrupted (:class:`~physgan.errors.DataError`) instead of hanging the caller.

Results are cached per process by (path, size, mtime), so a file is probed
once. ``PHYSGAN_HDF5_PROBE=0`` disables the probe; ``PHYSGAN_HDF5_PROBE_TIMEOUT``
sets the timeout in seconds (default 60).
"""

from __future__ import annotations

import faulthandler
import os
import select
import signal
import sys
import time

from physgan.errors import DataError

__all__ = ["probe_hdf5"]

_CACHE: dict[tuple[str, int, int], None] = {}


def _walk(path: str) -> None:
    """Touch every object, attribute and the first/last row of every dataset (child side)."""
    import h5py
    import numpy as np

    def visit_attrs(obj) -> None:
        for key in obj.attrs.keys():
            obj.attrs.get(key)

    with h5py.File(path, "r") as f:
        visit_attrs(f)

        def visit(name, obj) -> None:
            visit_attrs(obj)
            if isinstance(obj, h5py.Dataset):
                _ = obj.dtype, obj.shape, obj.chunks
                if obj.shape and obj.shape[0] > 0 and obj.size > 0:
                    np.asarray(obj[:1])
                    np.asarray(obj[-1:])

        f.visititems(visit)


def _die_with_parent(parent: int) -> None:
    """Ask Linux to SIGKILL this (child) process when its parent dies: a hung walk never outlives the caller."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):  # pragma: no cover - not glibc
        pass
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def probe_hdf5(path: str | os.PathLike, timeout: float | None = None) -> None:
    """Raise :class:`DataError` when reading ``path``'s metadata fails, hangs or crashes.

    Parameters
    ----------
    path : path
        An existing file that has the HDF5 signature.
    timeout : float, optional
        Seconds the walk may take (default ``PHYSGAN_HDF5_PROBE_TIMEOUT`` or 60).
    """
    if os.environ.get("PHYSGAN_HDF5_PROBE", "1") == "0" or not hasattr(os, "fork") or sys.platform != "linux":
        return
    path = os.fspath(path)
    st = os.stat(path)
    key = (os.path.realpath(path), st.st_size, st.st_mtime_ns)
    if key in _CACHE:
        return
    timeout = float(timeout if timeout is not None else os.environ.get("PHYSGAN_HDF5_PROBE_TIMEOUT", 60))
    read_fd, write_fd = os.pipe()
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:  # child: walk, report, and leave without running the parent's cleanup
        code = 0
        try:
            os.close(read_fd)
            _die_with_parent(parent)
            faulthandler.disable()  # a crash is reported by the parent, not dumped by the child
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 2)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            try:
                _walk(path)
            except BaseException as err:  # noqa: BLE001 - everything is reported to the parent
                os.write(write_fd, f"{type(err).__name__}: {err}".encode(errors="replace")[:2000])
                code = 1
        finally:
            os._exit(code)
    os.close(write_fd)
    message = b""
    deadline = time.monotonic() + timeout
    status = None
    try:
        while True:
            ready, _, _ = select.select([read_fd], [], [], max(0.0, min(0.5, deadline - time.monotonic())))
            if ready:
                chunk = os.read(read_fd, 4096)
                message += chunk
                if not chunk:  # child closed its end: it has exited (or is exiting)
                    _, status = os.waitpid(pid, 0)
                    break
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                raise DataError(
                    path, f"reading the HDF5 metadata did not finish within {timeout:g} s: the file is corrupted (or on a hung filesystem)"
                )
    finally:
        os.close(read_fd)
    if os.WIFSIGNALED(status):
        raise DataError(path, f"reading the HDF5 metadata crashed the HDF5 library (signal {os.WTERMSIG(status)}): the file is corrupted")
    if os.WEXITSTATUS(status) != 0:
        text = message.decode(errors="replace").strip().splitlines()
        raise DataError(path, f"HDF5 metadata is unreadable (truncated or corrupted?): {text[0] if text else 'unknown error'}")
    _CACHE[key] = None
