"""Physics checks of calorimeter data: positive incident energy, energy bookkeeping, empty showers.

Declared by the ``calo`` domain (``condition_bounds``, ``check_samples``) and applied by
:mod:`physgan.domains.checks` in ``physgan data info``, before training and on generation
conditions.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from physgan.domains.checks import Bound, Finding
from physgan.errors import PhysganError

__all__ = ["BOUNDS", "MAX_DEPOSIT_RATIO", "check_samples"]

#: physical domain of the conditions
BOUNDS = {"energy": Bound(0.0, None, lo_open=True, why="an incident energy is positive")}
#: a shower cannot deposit (much) more than its incident energy; above this ratio the units are wrong
#: (Geant4 CaloGAN showers: 0.994 +- 0.003 of the incident energy, ../shared/data/README.md)
MAX_DEPOSIT_RATIO = 2.0


def _energy_units(attrs: dict[str, Any], n_features: int) -> str | None:
    units = attrs.get("energy_units")
    if isinstance(units, bytes):
        units = units.decode(errors="replace")
    if units is None:
        from physgan.domains.calo.features import resolve_geometry

        try:
            units = resolve_geometry(attrs, n_features).energy_units
        except PhysganError:
            return None
    return str(units)


def check_samples(x: np.ndarray, c: np.ndarray, names: list[str], attrs: dict[str, Any]) -> list[Finding]:
    """All-zero showers and deposits far above the incident energy (a units hint).

    Parameters
    ----------
    x : ndarray, shape (N, n_cells)
        Showers in MeV.
    c : ndarray, shape (N, k)
        Conditions; ``energy`` is the incident energy in ``attrs['energy_units']`` (GeV or MeV).
    names : list of str
        Condition names.
    attrs : dict
        File attributes (``energy_units`` or a geometry).

    Returns
    -------
    list of Finding
        All-zero showers (fatal when every shower of the file is empty: nothing to learn) and showers
        depositing more than ``MAX_DEPOSIT_RATIO`` x the incident energy (fatal: energy is not
        conserved, the units are wrong).
    """
    flat = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    with np.errstate(invalid="ignore"):
        deposit = np.where(np.isfinite(flat), flat, 0.0).sum(1)
    empty = deposit == 0
    found = [Finding("all-zero showers (nothing deposited)", empty, fatal=False, fatal_if_all=True)]
    units = _energy_units(attrs, flat.shape[1])
    if "energy" in names and units in ("GeV", "MeV"):
        e_mev = np.asarray(c, dtype=np.float64)[:, names.index("energy")] * (1000.0 if units == "GeV" else 1.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            too_much = (e_mev > 0) & (deposit > MAX_DEPOSIT_RATIO * e_mev)
        label = (
            f"deposited energy above {MAX_DEPOSIT_RATIO:g}x the incident energy, which a shower cannot do: check the units "
            f"(cells must be MeV, incident energy {units}; GeV cells or MeV incident energies give factors near 1000)"
        )
        found.append(Finding(label, too_much))
    return found
