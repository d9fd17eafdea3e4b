"""High-level features of calorimeter showers (CaloChallenge and CaloGAN definitions).

A shower is the engine's flat float vector ``(n_features,)`` in MeV: the cells of
all layers in order, then ``geometry.n_extra`` trailing entries (CaloGAN: the
overflow energy of each layer). The condition ``c[:, 0]`` is the incident energy
in ``geometry.energy_units`` (GeV for CaloGAN, MeV for CaloChallenge).

Definitions (per layer ``l`` with cell energies ``E_v`` and cell centres ``x_v, y_v, r_v`` in mm)
--------------------------------------------------------------------------------------------
* ``e_tot_over_e_inc``: sum of all *cells* (extras not included) / incident energy, both MeV.
* ``e_extra_over_e_inc`` (only if the geometry has extras): sum of the extras / incident energy.
* ``e_layer_{l}``: sum of the layer's cells, MeV.
* ``ec_x_{l}``, ``ec_y_{l}``: centre of energy ``sum(x_v E_v) / (sum(E_v) + 1e-16)`` in mm. For cylindrical
  layers ``x = r cos(alpha)``, ``y = r sin(alpha)`` (CaloChallenge's ``EC_eta`` / ``EC_phi``) and only for
  layers with more than one angular bin, as in the CaloChallenge.
* ``width_x_{l}``, ``width_y_{l}``: ``sqrt(max(sum(x^2 E)/(sum E + 1e-16) - ec_x^2, 0))`` in mm.
* ``ec_r_{l}``, ``width_r_{l}`` (cylindrical layers only): the same with the radial bin centres.
* ``sparsity_{l}``: fraction of the layer's cells *above* the voxel threshold (CaloGAN's convention;
  the CaloChallenge histograms ``1 - this``; separation powers on [0, 1] are identical for both).
* ``shower_depth``: CaloGAN's energy-weighted layer position ``sum(l E_l) / E_tot`` (layer positions 0, 1, 2, ...)
  and ``shower_depth_width = sqrt(max(sum(l^2 E_l)/E_tot - depth^2, 0))``.
* ``e_ratio``: in layer 0, ``(E_max1 - E_max2) / (E_max1 + E_max2)`` of its two hottest cells.

Empty layers (zero energy) are NaN-safe: the ``+ 1e-16`` of the CaloChallenge code makes their centre,
width, depth and ``e_ratio`` exactly 0, never NaN.

The voxel threshold ``geometry.voxel_threshold_mev`` (CaloChallenge: 1 MeV for DS1, 15.15 keV for DS2/3;
CaloGAN: 0) is applied to the cells before every feature, to real and generated showers alike
(``apply_threshold=False`` switches it off).

References
----------
.. [1] M. Paganini, L. de Oliveira, B. Nachman, "CaloGAN", Phys. Rev. D 97, 014021 (2018), arXiv:1712.10321
   (``analysis/feats1d.py``: shower depth, its width, E_ratio, sparsity).
.. [2] C. Krause et al., "CaloChallenge 2022", arXiv:2410.21611 (``code/HighLevelFeatures.py``, ``code/evaluate.py``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from physgan.domains.calo.geometry import CaloGeometry, calogan_geometry, geometry_for_voxels, geometry_from_attrs
from physgan.errors import ConfigError, DataError

__all__ = [
    "resolve_geometry",
    "incident_energy_mev",
    "apply_threshold",
    "shower_features",
    "voxel_energies",
    "TINY",
]

#: Added to every energy denominator, as in the CaloChallenge's HighLevelFeatures (MeV).
TINY = 1e-16


def resolve_geometry(attrs: Any, n_features: int | None = None) -> CaloGeometry:
    """The geometry of a file from its attributes (or, failing that, from the sample length).

    Parameters
    ----------
    attrs : dict or CaloGeometry or None
        File attributes holding the geometry's ``to_attrs()`` (key ``geometry``), or a geometry.
    n_features : int, optional
        Length of one flat sample, used when ``attrs`` names no geometry: 507 is CaloGAN,
        368 / 533 / 6480 / 40500 are the CaloChallenge datasets.

    Returns
    -------
    CaloGeometry
    """
    if isinstance(attrs, CaloGeometry):
        return attrs
    attrs = dict(attrs or {})
    if "geometry" in attrs:
        return geometry_from_attrs(attrs)
    if n_features is None:
        raise ConfigError("calorimeter attributes name no 'geometry' and the sample length is unknown")
    if int(n_features) == calogan_geometry().n_features:
        return calogan_geometry()
    return geometry_for_voxels(int(n_features))


def incident_energy_mev(c: np.ndarray, geometry: CaloGeometry) -> np.ndarray:
    """Incident energy in MeV, shape (N,), from the conditions (column 0 = ``energy``).

    Parameters
    ----------
    c : numpy.ndarray
        (N,) or (N, k) physical conditions; column 0 is the incident energy in ``geometry.energy_units``.
    geometry : CaloGeometry

    Returns
    -------
    numpy.ndarray
        float64 (N,) incident energies in MeV.
    """
    c = np.asarray(c, dtype=np.float64)
    e = c[:, 0] if c.ndim == 2 else c.reshape(-1)
    unit = str(geometry.energy_units)
    if unit.lower() == "gev":
        return e * 1000.0
    if unit.lower() == "mev":
        return e
    raise ConfigError(f"geometry '{geometry.name}': unknown energy unit '{unit}' (expected GeV or MeV)")


def _check(x: np.ndarray, geometry: CaloGeometry, c: np.ndarray | None = None) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[1] != geometry.n_features:
        raise DataError("<showers>", f"expected showers of shape (N, {geometry.n_features}) for geometry "
                        f"'{geometry.name}', got {x.shape}")
    if c is not None and len(np.asarray(c)) != len(x):
        raise DataError("<showers>", f"{len(x)} showers but {len(np.asarray(c))} conditions")
    return x


def apply_threshold(x: np.ndarray, threshold_mev: float) -> np.ndarray:
    """Set cells below the readout threshold to exactly 0 (a copy; extras untouched is the caller's job).

    Parameters
    ----------
    x : numpy.ndarray
        Cell energies, MeV.
    threshold_mev : float
        Cells with ``E < threshold_mev`` become 0 (CaloChallenge ``args.min_energy``).

    Returns
    -------
    numpy.ndarray
    """
    if threshold_mev <= 0:
        return np.asarray(x)
    return np.where(x < threshold_mev, 0.0, x).astype(np.asarray(x).dtype, copy=False)


def _moments(e: np.ndarray, coord: np.ndarray, total: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Energy-weighted mean and width of ``coord`` (CaloChallenge convention, NaN-free)."""
    mean = e @ coord / (total + TINY)
    second = e @ (coord * coord) / (total + TINY)
    return mean, np.sqrt(np.maximum(second - mean * mean, 0.0))


def shower_features(x: np.ndarray, c: np.ndarray, attrs: Any, apply_threshold_cut: bool = True) -> dict[str, np.ndarray]:
    """High-level features of every shower (definitions in the module docstring).

    Parameters
    ----------
    x : numpy.ndarray
        (N, n_features) showers in MeV, the engine's flat view.
    c : numpy.ndarray
        (N, k) physical conditions; column 0 is the incident energy in ``geometry.energy_units``.
    attrs : dict or CaloGeometry
        File attributes with the geometry (``geometry_from_attrs``) or the geometry itself.
    apply_threshold_cut : bool
        Apply the geometry's voxel threshold to the cells first (default True, as the official evaluation).

    Returns
    -------
    dict of str to numpy.ndarray
        ``{name: (N,) float64}`` in physical units (MeV, mm, fractions); keys in a fixed order.

    References
    ----------
    arXiv:2410.21611 (CaloChallenge ``HighLevelFeatures.py``); arXiv:1712.10321 (CaloGAN shower shapes).
    """
    geom = resolve_geometry(attrs, np.asarray(x).shape[-1])
    x = _check(x, geom, c).astype(np.float64, copy=False)
    e_inc = incident_energy_mev(c, geom)
    thr = float(geom.voxel_threshold_mev) if apply_threshold_cut else 0.0
    out: dict[str, np.ndarray] = {}
    layers = [apply_threshold(a, thr) for a in geom.split(x)]
    e_layer = np.stack([a.sum(axis=1) for a in layers], axis=1)  # (N, L)
    e_tot = e_layer.sum(axis=1)
    out["e_tot_over_e_inc"] = e_tot / e_inc
    if geom.n_extra:
        out["e_extra_over_e_inc"] = x[:, geom.extra_slice].sum(axis=1) / e_inc
    for i in range(geom.n_layers):
        out[f"e_layer_{i}"] = e_layer[:, i]
    for i, (lay, a) in enumerate(zip(geom.layers, layers)):
        if geom.kind == "cartesian" or lay.n_alpha > 1:
            out[f"ec_x_{i}"], out[f"width_x_{i}"] = _moments(a, lay.x_mm, e_layer[:, i])
            out[f"ec_y_{i}"], out[f"width_y_{i}"] = _moments(a, lay.y_mm, e_layer[:, i])
        if geom.kind == "cylindrical":
            out[f"ec_r_{i}"], out[f"width_r_{i}"] = _moments(a, lay.r_mm, e_layer[:, i])
    for i, a in enumerate(layers):
        out[f"sparsity_{i}"] = np.mean(a > max(thr, 0.0), axis=1)
    pos = np.arange(geom.n_layers, dtype=np.float64)
    depth = e_layer @ pos / (e_tot + TINY)
    out["shower_depth"] = depth
    out["shower_depth_width"] = np.sqrt(np.maximum(e_layer @ (pos * pos) / (e_tot + TINY) - depth * depth, 0.0))
    first = layers[0]
    if first.shape[1] >= 2:
        top2 = -np.partition(-first, 1, axis=1)[:, :2]
        out["e_ratio"] = (top2[:, 0] - top2[:, 1]) / (top2[:, 0] + top2[:, 1] + TINY)
    else:
        out["e_ratio"] = np.ones(len(x))
    return out


def voxel_energies(x: np.ndarray, attrs: Any, max_values: int | None = 4_000_000) -> np.ndarray:
    """Energies (MeV) of all cells above the voxel threshold, flat: the voxel-energy spectrum.

    Parameters
    ----------
    x : numpy.ndarray
        (N, n_features) showers in MeV.
    attrs : dict or CaloGeometry
        Attributes with the geometry.
    max_values : int, optional
        Use only the first ``ceil(max_values / n_cells)`` showers (deterministic), to bound time and
        memory for the large CaloChallenge geometries; None uses all.

    Returns
    -------
    numpy.ndarray
        float64 1-D array of cell energies ``> threshold`` (``> 0`` when the threshold is 0), MeV.
    """
    geom = resolve_geometry(attrs, np.asarray(x).shape[-1])
    x = _check(x, geom)
    if max_values is not None:
        x = x[: max(1, -(-int(max_values) // geom.n_cells))]
    cells = np.asarray(x[:, : geom.n_cells], dtype=np.float64).ravel()
    thr = float(geom.voxel_threshold_mev)
    return cells[cells > thr] if thr > 0 else cells[cells > 0]
