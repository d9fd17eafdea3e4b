"""Phase-fraction conditions that can exist: validation and default sampling (the domain's ``complete_conditions`` hook).

Phase fractions lie in [0, 1] and sum to at most 1, and to exactly 1 when every phase
has its own ``fraction_<k>`` column. A request such as three fractions of 0.5 each is
refused with a :class:`~physgan.errors.ConfigError` naming the row and the sum. Columns
the user did not give (drawn uniformly over the training range by the engine) are
redrawn here until each row is a valid combination: when every phase has a column the
last free column takes the remainder ``1 - sum(others)`` and the row is kept only when
that remainder lies in its own training range (rejection sampling), so default sampling
draws only valid combinations, uniformly over the valid part of the training box.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from physgan.domains.micro.fractions import fraction_targets
from physgan.errors import ConfigError

__all__ = ["TOL", "complete_conditions"]

#: tolerance on a sum of fractions (float32 conditions of finite images)
TOL = 1e-3
_MAX_TRIES = 2000


def _fail(names: list[str], cols: list[int], row: np.ndarray, i: int, problem: str) -> ConfigError:
    terms = " + ".join(f"{names[j]} ({row[j]:.4g})" for j in cols)
    return ConfigError(f"conditions row {i}: {terms} = {row[cols].sum():.4g}; {problem}")


def _check(names: list[str], c: np.ndarray, cols: list[int], complete: bool) -> None:
    sub = c[:, cols]
    bad = np.flatnonzero(((sub < -TOL) | (sub > 1 + TOL)).any(axis=1))
    if bad.size:
        i = int(bad[0])
        raise _fail(names, cols, c[i], i, "every phase fraction must lie in [0, 1]")
    s = sub.sum(axis=1)
    bad = np.flatnonzero(np.abs(s - 1) > TOL) if complete else np.flatnonzero(s > 1 + TOL)
    if bad.size:
        i = int(bad[0])
        need = "phase fractions of all phases must sum to 1" if complete else "phase fractions cannot sum to more than 1"
        raise _fail(names, cols, c[i], i, need)


def complete_conditions(
    names: list[str],
    c: np.ndarray,
    free: list[bool],
    ranges: list[tuple[float, float]],
    rng: np.random.Generator,
    attrs: dict[str, Any] | None = None,
) -> np.ndarray:
    """Make every row of physical conditions a possible set of phase fractions, or refuse.

    Parameters
    ----------
    names : list of str
        Condition names (``porosity`` = fraction of phase 0, ``fraction_<k>``).
    c : ndarray (n, k)
        Physical conditions; columns with ``free[j]`` were drawn by default and may be redrawn.
    free : list of bool
        Which columns the user left to the default draw.
    ranges : list of (lo, hi)
        Training range of every column (where free columns are drawn).
    rng : numpy Generator
        Source of the redraws.
    attrs : dict, optional
        Data attributes (``n_phases``).

    Returns
    -------
    ndarray (n, k)
        ``c`` with free fraction columns redrawn where needed.

    Raises
    ------
    ConfigError
        Given fractions outside [0, 1], summing to more than 1, or (all phases given) not to 1;
        or free columns for which no valid value exists in the training range.
    """
    n_phases = int((attrs or {}).get("n_phases") or 0)
    targets = fraction_targets(list(names), n_phases=n_phases or len(names) + 256, keep_all=True)
    cols = sorted(set(targets.values()))
    if not cols:
        return c
    c = np.array(c, dtype=np.float64, copy=True)
    complete = n_phases > 0 and len(targets) == n_phases
    free_cols = [j for j in cols if free[j]]
    fixed_cols = [j for j in cols if not free[j]]
    if not free_cols:
        _check(names, c, cols, complete)
        return c.astype(np.float32)
    _check(names, c, fixed_cols, complete=False)
    fixed_sum = c[:, fixed_cols].sum(axis=1)
    lo = np.array([ranges[j][0] for j in free_cols])
    hi = np.array([ranges[j][1] for j in free_cols])
    todo = np.arange(len(c))
    for _ in range(_MAX_TRIES):
        draw = rng.uniform(lo, hi, size=(len(todo), len(free_cols)))
        if complete:
            draw[:, -1] = 1.0 - fixed_sum[todo] - draw[:, :-1].sum(axis=1)
            ok = (draw[:, -1] >= lo[-1] - TOL) & (draw[:, -1] <= hi[-1] + TOL) & (draw[:, -1] >= 0)
        else:
            ok = fixed_sum[todo] + draw.sum(axis=1) <= 1.0 + TOL
        keep = todo[ok]
        c[np.ix_(keep, free_cols)] = draw[ok]
        todo = todo[~ok]
        if not todo.size:
            return c.astype(np.float32)
    i = int(todo[0])
    raise _fail(
        names,
        fixed_cols or cols,
        c[i],
        i,
        f"no values of {', '.join(names[j] for j in free_cols)} in their training range complete it to valid phase fractions",
    )
