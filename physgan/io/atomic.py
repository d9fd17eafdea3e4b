"""Atomic file output: write to a temporary file beside the target, fsync, rename.

A reader never sees a half-written file: either the old file (or none) or the
complete new one. Interrupted writes leave only ``.<name>.tmp-*`` files, which
:func:`sweep_temporaries` removes.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

from physgan.errors import OutputExistsError, PhysganError

__all__ = [
    "atomic_output",
    "atomic_directory",
    "fsync_directory",
    "sweep_temporaries",
    "sweep_stale",
    "check_writable",
    "probe_writable_dir",
]

TMP_MARK = ".tmp-"
_HOST = socket.gethostname().replace("/", "_") or "host"


def fsync_directory(directory: str | os.PathLike) -> None:
    """Flush a directory entry to disk so a rename inside it survives a crash."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def check_writable(path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Refuse an existing output unless ``overwrite``; make its parent directory.

    Returns the path as a :class:`~pathlib.Path`.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path}: exists already; pass --overwrite (overwrite=True) to replace it")
    if path.is_dir():
        raise OutputExistsError(f"{path}: is a directory, expected a file path")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise PhysganError(f"{path.parent}: cannot create output directory: {err.strerror}") from err
    return path


def probe_writable_dir(directory: str | os.PathLike) -> Path:
    """Create ``directory`` (and parents) and prove a file can be written in it, before long work.

    Raises
    ------
    PhysganError
        Naming the directory and the reason (read-only, permission denied, a file in the way).
    """
    d = Path(directory)
    try:
        d.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=".physgan-probe-", dir=d)
        os.close(fd)
        os.unlink(name)
    except OSError as err:
        raise PhysganError(f"{d}: cannot write output there ({err.strerror or err}); choose another location") from err
    return d


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path; on success, fsync it and rename it onto ``path``.

    On any exception the temporary file is removed and ``path`` is untouched.

    Examples
    --------
    >>> with atomic_output("out.h5", overwrite=True) as tmp:  # doctest: +SKIP
    ...     write_everything(tmp)
    """
    path = check_writable(path, overwrite)
    sweep_stale(path)
    tmp = path.with_name(f".{path.name}{TMP_MARK}{_HOST}-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        yield tmp
        if not tmp.exists():
            raise PhysganError(f"{path}: nothing was written")
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        if path.exists():
            with contextlib.suppress(OSError):
                os.chmod(tmp, path.stat().st_mode & 0o777)
        os.replace(tmp, path)
        fsync_directory(path.parent)
    except OSError as err:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise PhysganError(f"{path}: could not write: {err.strerror or err}") from err
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike, overwrite: bool = False, what: str = "directory") -> Iterator[Path]:
    """Yield a temporary directory beside ``path``; on success, fsync its files and rename it onto ``path``.

    A reader sees the old directory (or none) or the complete new one. An existing ``path`` is
    replaced only with ``overwrite`` (moved aside, then removed once the new one is in place). On
    any exception the temporary directory is removed and ``path`` is untouched.

    Parameters
    ----------
    path : path
        The directory to produce.
    overwrite : bool
        Replace an existing directory.
    what : str
        What it is, for messages (``report``).

    Raises
    ------
    OutputExistsError
        ``path`` exists (without ``overwrite``) or is a file.
    PhysganError
        Writing failed (disk full, permissions), naming ``path``.
    """
    target = Path(path)
    if target.exists() and not overwrite:
        raise OutputExistsError(f"{target}: exists already; pass --overwrite (overwrite=True) to replace it")
    if target.exists() and not target.is_dir():
        raise OutputExistsError(f"{target}: is a file, expected a {what} directory")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.parent / f".{target.name}{TMP_MARK}{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
    except OSError as err:
        raise PhysganError(f"{target}: could not write the {what}: {err}") from err
    try:
        yield tmp
        for p in tmp.rglob("*"):
            if p.is_file():
                with open(p, "rb") as fh:
                    os.fsync(fh.fileno())
        old = None
        if target.exists():
            old = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(target, old)
        os.replace(tmp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        fsync_directory(target.parent)
    except OSError as err:
        shutil.rmtree(tmp, ignore_errors=True)
        raise PhysganError(f"{target}: could not write the {what}: {err}") from err
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def sweep_temporaries(directory: str | os.PathLike) -> list[Path]:
    """Remove temporary files left by interrupted atomic writes in ``directory``."""
    removed = []
    directory = Path(directory)
    if not directory.is_dir():
        return removed
    for p in directory.iterdir():
        if p.name.startswith(".") and TMP_MARK in p.name and p.is_file():
            with contextlib.suppress(OSError):
                p.unlink()
                removed.append(p)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: exists, owned by someone else
        return True
    return True


def sweep_stale(path: str | os.PathLike) -> list[Path]:
    """Remove temporaries of ``path`` left by writers on this host that died (kill -9, crash, power loss).

    Temporaries are named ``.<name>.tmp-<host>-<pid>-<random>``; one whose
    process no longer runs on this host can never be completed. Temporaries of
    live processes and of other hosts (shared filesystems) are left alone.
    """
    path = Path(path)
    prefix = f".{path.name}{TMP_MARK}{_HOST}-"
    removed = []
    try:
        entries = list(path.parent.iterdir())
    except OSError:
        return removed
    for p in entries:
        if not p.name.startswith(prefix):
            continue
        pid_text = p.name[len(prefix) :].split("-", 1)[0]
        if pid_text.isdigit() and int(pid_text) != os.getpid() and not _alive(int(pid_text)) and p.is_file():
            with contextlib.suppress(OSError):
                p.unlink()
                removed.append(p)
    return removed
