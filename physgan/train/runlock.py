"""One training process per run directory: an advisory lock that dies with its process.

``RUN/.lock`` is locked with ``flock`` (exclusive, non-blocking) for as long as
``physgan train`` runs, and holds the holder's pid and host. The kernel drops
the lock when the process ends in any way (even ``kill -9``), so a killed run
never blocks the next one; a second ``physgan train`` on the same run gets a
:class:`~physgan.errors.CheckpointError` naming the holder.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

from physgan.errors import CheckpointError

__all__ = ["RunLock", "LOCK_NAME"]

LOCK_NAME = ".lock"


class RunLock:
    """Exclusive lock of a run directory; a context manager.

    Parameters
    ----------
    run_dir : path
        The run directory (must exist).

    Raises
    ------
    CheckpointError
        When another live process holds the lock.
    """

    def __init__(self, run_dir: str | os.PathLike):
        self.path = Path(run_dir) / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        """Take the lock or raise :class:`CheckpointError` naming the holder."""
        try:
            import fcntl
        except ImportError:  # no flock on this platform (Windows): run unlocked
            return self
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise CheckpointError(f"{self.path.parent}: cannot create the run's lock file: {err.strerror or err}") from err
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "unknown pid"
            os.close(fd)
            raise CheckpointError(
                f"{self.path.parent}: another physgan train is using this run directory ({holder}); "
                "wait for it to finish (or stop it), or choose another --run"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        """Drop the lock (closing the file releases it)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
