"""Physics checks of data and requested conditions, declared by each domain.

A domain declares the *physical* bounds of its conditions (``Domain.condition_bounds``:
an incident energy is positive, a porosity lies in [0, 1], sigma8 is positive) and
may add joint condition checks (phase fractions cannot sum to more than 1) and
per-sample checks of the data (an all-zero shower, deposits far above the incident
energy). This module applies them, the same way everywhere:

* :class:`PhysicsScan` accumulates findings over the blocks of a file for ``data info``;
* :func:`check_training_data` refuses training data with fatal findings (and returns the
  warnings) before any network sees it;
* :func:`check_requested_conditions` refuses generation conditions outside the physical
  domain, whatever ``--allow-extrapolation`` says (extrapolation may widen the
  training range, never leave physics).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from physgan.errors import ConfigError, DataError

__all__ = [
    "Bound",
    "Finding",
    "PhysicsScan",
    "condition_findings",
    "check_training_data",
    "check_requested_conditions",
    "domain_for_file",
]


@dataclass(frozen=True)
class Bound:
    """The physical domain of one condition.

    Attributes
    ----------
    lo, hi : float or None
        Lower / upper limit (None: unbounded).
    lo_open, hi_open : bool
        Whether the limit itself is excluded (an energy must be > 0, not >= 0).
    why : str
        The physics, in a few words (``"an incident energy is positive"``).
    """

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    why: str = ""

    def outside(self, values: np.ndarray) -> np.ndarray:
        """Boolean mask of the values outside the bound (NaN counts as outside)."""
        v = np.asarray(values, dtype=np.float64)
        bad = ~np.isfinite(v) if self.lo is not None or self.hi is not None else np.zeros(v.shape, bool)
        with np.errstate(invalid="ignore"):
            if self.lo is not None:
                bad |= (v <= self.lo) if self.lo_open else (v < self.lo)
            if self.hi is not None:
                bad |= (v >= self.hi) if self.hi_open else (v > self.hi)
        return bad

    def describe(self) -> str:
        """The interval in mathematical notation, e.g. ``(0, inf)`` or ``[0, 1]``."""
        lo = "-inf" if self.lo is None else f"{self.lo:g}"
        hi = "inf" if self.hi is None else f"{self.hi:g}"
        return f"{'(' if self.lo_open or self.lo is None else '['}{lo}, {hi}{')' if self.hi_open or self.hi is None else ']'}"


@dataclass
class Finding:
    """One physics problem found in a block of samples.

    Attributes
    ----------
    label : str
        What is wrong (the same text for every block, so counts add up).
    mask : ndarray of bool, shape (N,)
        The offending samples of the block.
    fatal : bool
        Training refuses the data (True), or only warns (False).
    fatal_if_all : bool
        Fatal when every sample of the whole file is affected (all-zero showers: nothing to learn).
    """

    label: str
    mask: np.ndarray
    fatal: bool = True
    fatal_if_all: bool = False


def condition_findings(domain, names: Sequence[str], c: np.ndarray) -> list[Finding]:
    """Findings of the domain's condition bounds and joint condition checks for conditions ``c`` (N, k)."""
    c = np.asarray(c, dtype=np.float64).reshape(len(c), len(names))
    out = []
    for j, name in enumerate(names):
        bound = (getattr(domain, "condition_bounds", None) or {}).get(name)
        if bound is None:
            continue
        mask = bound.outside(c[:, j])
        out.append(Finding(f"condition '{name}' outside its physical domain {bound.describe()} ({bound.why})", mask))
    joint = getattr(domain, "check_conditions", None)
    if joint is not None:
        out.extend(joint(list(names), c))
    return [f for f in out if f.mask.any()]


def _sample_findings(domain, x: np.ndarray, c: np.ndarray, names: Sequence[str], attrs: dict[str, Any]) -> list[Finding]:
    check = getattr(domain, "check_samples", None)
    found = check(x, np.asarray(c), list(names), dict(attrs or {})) if check is not None else []
    return [f for f in found if f.mask.any()]


class PhysicsScan:
    """Accumulate physics findings over the blocks of one file (first offending index, count).

    Parameters
    ----------
    domain : Domain
        The file's domain (see :func:`domain_for_file`).
    names : list of str
        Condition names.
    attrs : dict
        The file's attributes (units, geometry).
    """

    def __init__(self, domain, names: Sequence[str], attrs: dict[str, Any]):
        self.domain, self.names, self.attrs = domain, list(names), dict(attrs or {})
        self.found: dict[str, list] = {}  # label -> [first index, count, Finding of the first block]
        self.cmin = np.full(len(self.names), np.inf)
        self.cmax = np.full(len(self.names), -np.inf)
        self.n = 0

    def add(self, start: int, x: np.ndarray, c: np.ndarray) -> None:
        """Check one block whose first sample has index ``start``."""
        c = np.asarray(c, dtype=np.float64).reshape(len(x), len(self.names))
        for f in condition_findings(self.domain, self.names, c) + _sample_findings(self.domain, x, c, self.names, self.attrs):
            rec = self.found.setdefault(f.label, [start + int(np.argmax(f.mask)), 0, f])
            rec[1] += int(f.mask.sum())
        if self.names and len(c):
            with np.errstate(invalid="ignore"):
                self.cmin = np.fmin(self.cmin, np.nanmin(np.where(np.isfinite(c), c, np.nan), 0))
                self.cmax = np.fmax(self.cmax, np.nanmax(np.where(np.isfinite(c), c, np.nan), 0))
        self.n += len(x)

    def problems(self) -> list[tuple[str, bool]]:
        """``(text, fatal)`` per finding, constant conditions last (they make conditioning meaningless)."""
        out = [
            (f"{label}: {count} samples, first at index {first}", f.fatal or (f.fatal_if_all and count == self.n))
            for label, (first, count, f) in self.found.items()
        ]
        if self.n > 1:
            for name, lo, hi in zip(self.names, self.cmin, self.cmax):
                if math.isfinite(lo) and lo == hi:
                    out.append((f"condition '{name}' is constant ({lo:g}) in all {self.n} samples: the surrogate cannot learn it", False))
        return out


def check_training_data(
    domain, x: np.ndarray, c: np.ndarray, names: Sequence[str], attrs: dict[str, Any], path: str, block: int = 4096
) -> list[str]:
    """Refuse training data outside physics; return the non-fatal warnings.

    Scans in blocks of ``block`` samples, so the checks never copy the whole (in-memory) data set.

    Raises
    ------
    DataError
        Naming the file, the problem, its first index and count, for every fatal finding.
    """
    scan = PhysicsScan(domain, names, attrs)
    for s in range(0, len(x), block):
        scan.add(s, x[s : s + block], c[s : s + block])
    problems = scan.problems()
    fatal = [text for text, is_fatal in problems if is_fatal]
    if fatal:
        raise DataError(path, "cannot train on this data: " + "; ".join(fatal))
    return [text for text, _ in problems]


def check_requested_conditions(domain, names: Sequence[str], c: np.ndarray) -> None:
    """Refuse requested generation conditions outside the physical domain (extrapolation or not).

    Raises
    ------
    ConfigError
        Naming the condition, its physical domain and the offending value.
    """
    c = np.asarray(c, dtype=np.float64).reshape(len(c), len(names))
    for f in condition_findings(domain, names, c):
        row = int(np.argmax(f.mask))
        vals = ", ".join(f"{n}={v:g}" for n, v in zip(names, c[row]))
        raise ConfigError(
            f"{f.label}: requested {vals}; extrapolation may widen the training range but never leave the physical domain"
        )


def domain_for_file(header, layout_name: str):
    """The registered domain of an opened file: ``attrs['domain']``, a domain's ``detect``, its layout; else ``array``."""
    from physgan.domains.base import domains

    known = domains()
    name = (header.attrs or {}).get("domain")
    if isinstance(name, bytes):
        name = name.decode(errors="replace")
    if isinstance(name, str) and name in known:
        return known[name]
    for dom in known.values():
        if dom.name != "array" and dom.detect is not None and dom.detect(header):
            return dom
    for dom in known.values():
        if layout_name != "array" and layout_name in dom.layouts:
            return dom
    return known["array"]
