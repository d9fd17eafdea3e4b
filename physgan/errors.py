"""Error types that the CLI turns into one clear message and a non-zero exit.

Every error a user can cause with bad input is a :class:`PhysganError`; anything
else escaping to the CLI is a bug in physgan.
"""

from __future__ import annotations

__all__ = ["PhysganWarning", "PhysganError", "DataError", "ConfigError", "CheckpointError", "OutputExistsError"]


class PhysganWarning(UserWarning):
    """Something the user should know that does not stop the work (the CLI prints it as one line)."""


class PhysganError(Exception):
    """Base class of every error caused by the user's input or environment."""

    exit_code = 2


class DataError(PhysganError):
    """A data file is unreadable or violates its layout.

    Parameters
    ----------
    file : str
        The file's path.
    problem : str
        What is wrong, in words a physicist understands.
    dataset : str, optional
        The HDF5 dataset (path inside the file) concerned.
    index : int or tuple, optional
        The first offending sample index (or element index).
    """

    def __init__(self, file: str, problem: str, dataset: str | None = None, index=None):
        self.file = str(file)
        self.dataset = dataset
        self.index = index
        self.problem = problem
        where = self.file
        if dataset is not None:
            where += f", dataset '{dataset}'"
        if index is not None:
            where += f", index {index}"
        super().__init__(f"{where}: {problem}")


class ConfigError(PhysganError):
    """A configuration value is unknown, of the wrong type, or impossible."""


class CheckpointError(PhysganError):
    """A checkpoint or run directory is missing, corrupt, unsafe or incompatible."""


class OutputExistsError(PhysganError):
    """An output path exists and ``overwrite`` was not requested."""
