"""Physical domain of microstructure conditions: porosity and phase fractions in [0, 1], summing to at most 1.

Declared by the ``micro`` domain (``condition_bounds``, ``check_conditions``) and applied by
:mod:`physgan.domains.checks`.
"""

from __future__ import annotations

import numpy as np

from physgan.domains.checks import Bound, Finding

__all__ = ["BOUNDS", "check_conditions"]

#: a fraction of the volume lies in [0, 1]; porespy's generator parameters are positive
BOUNDS = {
    "porosity": Bound(0.0, 1.0, why="a pore fraction lies in [0, 1]"),
    "blobiness": Bound(0.0, None, lo_open=True, why="porespy's blobiness is positive"),
    "radius": Bound(0.0, None, lo_open=True, why="a radius is positive"),
}
_FRACTION = Bound(0.0, 1.0, why="a phase fraction lies in [0, 1]")
#: rounding slack when the phase fractions of a sample are summed
_SUM_TOL = 1e-3


def check_conditions(names: list[str], c: np.ndarray) -> list[Finding]:
    """Phase fractions (``fraction_<k>``) each in [0, 1], and together at most 1.

    Parameters
    ----------
    names : list of str
        Condition names.
    c : ndarray, shape (N, k)
        Conditions.

    Returns
    -------
    list of Finding
    """
    cols = [j for j, n in enumerate(names) if n.startswith("fraction_")]
    if not cols:
        return []
    fr = np.asarray(c, dtype=np.float64)[:, cols]
    found = [Finding(f"condition '{names[j]}' outside its physical domain {_FRACTION.describe()} ({_FRACTION.why})",
                     _FRACTION.outside(fr[:, i])) for i, j in enumerate(cols)]
    found.append(Finding("phase fractions sum to more than 1 (the phases cannot fill the volume)", fr.sum(1) > 1 + _SUM_TOL))
    return found
