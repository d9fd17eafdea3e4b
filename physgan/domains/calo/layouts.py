"""HDF5 layouts of the community calorimeter formats: CaloGAN and CaloChallenge 2022.

Both are seen by the engine as flat showers ``x`` of shape ``(N, n_features)`` in MeV
(float32) and one condition ``energy`` (incident energy; GeV for CaloGAN, MeV for
CaloChallenge, as stored in the files). ``Header.attrs`` carries the geometry
(:meth:`CaloGeometry.to_attrs`), ``energy_units`` and ``domain='calo'``.

File structures
---------------
CaloGAN (arXiv:1712.10321, Mendeley doi:10.17632/pvn3xc3wy5.1)::

    energy    (N, 1)      GeV  incident energy
    layer_0   (N, 3, 96)  MeV
    layer_1   (N, 12, 12) MeV
    layer_2   (N, 12, 6)  MeV
    overflow  (N, 3)      MeV  energy outside the 480 x 480 mm cells, per layer

CaloChallenge (arXiv:2410.21611)::

    incident_energies  (N, 1)         MeV
    showers            (N, n_voxels)  MeV, flattened (layer, alpha, radius)
"""

from __future__ import annotations

from typing import Any

import h5py
import numpy as np

from physgan.domains.calo.geometry import (
    CaloGeometry,
    apply_threshold,
    calogan_geometry,
    geometry_for_voxels,
    geometry_from_attrs,
)
from physgan.errors import ConfigError, DataError
from physgan.io.layout import (
    Header,
    Layout,
    chunk_rows_of,
    condition_dtype_of,
    default_chunk_rows,
    plain_attrs,
    register_layout,
    write_attrs,
)

__all__ = ["CaloGANLayout", "CaloChallengeLayout", "geometry_of", "apply_threshold", "CALOGAN_LAYERS"]

#: CaloGAN datasets holding cells, with their per-sample shapes, in flat order.
CALOGAN_LAYERS: tuple[tuple[str, tuple[int, int]], ...] = (("layer_0", (3, 96)), ("layer_1", (12, 12)), ("layer_2", (12, 6)))


def geometry_of(attrs: dict[str, Any]) -> CaloGeometry:
    """The geometry named in a calo file's attributes (``Header.attrs``).

    Parameters
    ----------
    attrs : dict
        Attributes with ``geometry`` (and ``binning_xml`` for custom binnings).

    Returns
    -------
    CaloGeometry
    """
    return geometry_from_attrs(attrs)


def _dataset(f: h5py.File, key: str) -> h5py.Dataset:
    path = f.filename
    if key not in f:
        raise DataError(path, "dataset is missing", dataset=key)
    ds = f[key]
    if not isinstance(ds, h5py.Dataset):
        raise DataError(path, "expected a dataset, found a group", dataset=key)
    if not (np.issubdtype(ds.dtype, np.floating) or np.issubdtype(ds.dtype, np.integer)):
        raise DataError(path, f"must be numeric, got dtype {ds.dtype}", dataset=key)
    return ds


def _check_energy(f: h5py.File, key: str, n: int | None) -> int:
    ds = _dataset(f, key)
    if not (ds.ndim == 1 or (ds.ndim == 2 and ds.shape[1] == 1)):
        raise DataError(f.filename, f"must have shape (N, 1) or (N,), got {ds.shape}", dataset=key)
    if n is not None and ds.shape[0] != n:
        raise DataError(f.filename, f"has {ds.shape[0]} rows but the showers have {n}", dataset=key)
    return int(ds.shape[0])


def _read_energy(f: h5py.File, key: str, start: int, stop: int) -> np.ndarray:
    e = np.asarray(f[key][start:stop], dtype=np.float32).reshape(stop - start, -1)[:, :1]
    return e


def _check_negative(path: str, key: str, start: int, a: np.ndarray) -> None:
    if a.size and (a < 0).any():
        bad = np.argwhere(a < 0)[0]
        raise DataError(path, f"negative energy {a[tuple(bad)]:.6g} MeV where cells must be >= 0", dataset=key,
                        index=start + int(bad[0]))


def _calo_attrs(f: h5py.File, geometry: CaloGeometry) -> dict[str, Any]:
    attrs = plain_attrs(f)
    attrs.update(geometry.to_attrs())
    attrs["energy_units"] = geometry.energy_units
    attrs["domain"] = "calo"
    attrs.setdefault("voxel_threshold_mev", geometry.voxel_threshold_mev)
    return attrs


class CaloGANLayout(Layout):
    """CaloGAN layout: ``energy`` (GeV) + ``layer_0..2`` + ``overflow`` (MeV) <-> flat (N, 507) showers.

    The engine view is ``x = concat(layer_0, layer_1, layer_2 flattened row-major, overflow)``
    (:func:`~physgan.domains.calo.geometry.calogan_geometry` order) and one condition ``energy`` in GeV.
    A file without ``overflow`` is read with zero overflow (``attrs['overflow_missing'] = True``).
    """

    name = "calogan"
    non_negative = True

    def detect(self, f: h5py.File) -> bool:
        return "energy" in f and "layer_0" in f

    def describe(self, f: h5py.File) -> Header:
        path = f.filename
        geometry = calogan_geometry()
        n = None
        for key, shape in CALOGAN_LAYERS:
            ds = _dataset(f, key)
            if ds.ndim != 3 or tuple(ds.shape[1:]) != shape:
                raise DataError(path, f"must have shape (N, {shape[0]}, {shape[1]}), got {ds.shape}", dataset=key)
            if n is None:
                n = int(ds.shape[0])
            elif ds.shape[0] != n:
                raise DataError(path, f"has {ds.shape[0]} showers but 'layer_0' has {n}", dataset=key)
        assert n is not None
        if n == 0:
            raise DataError(path, "file holds no showers (N = 0)", dataset="layer_0")
        _check_energy(f, "energy", n)
        datasets = [key for key, _ in CALOGAN_LAYERS]
        has_overflow = "overflow" in f
        if has_overflow:
            ds = _dataset(f, "overflow")
            if ds.shape != (n, 3):
                raise DataError(path, f"must have shape ({n}, 3), got {ds.shape}", dataset="overflow")
            datasets.append("overflow")
        attrs = _calo_attrs(f, geometry)
        if not has_overflow:
            attrs["overflow_missing"] = True
        return Header(
            n=n,
            sample_shape=(geometry.n_features,),
            condition_names=["energy"],
            condition_units=["GeV"],
            attrs=attrs,
            chunk_rows=chunk_rows_of(f["layer_0"]),
            sample_units="MeV",
            non_negative=True,
            dtype=str(f["layer_0"].dtype),
            datasets=datasets + ["energy"],
            condition_dtype=condition_dtype_of(f["energy"]),
        )

    def read_block(self, f: h5py.File, header: Header, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        m = stop - start
        parts = []
        for key, _ in CALOGAN_LAYERS:
            a = np.asarray(f[key][start:stop], dtype=np.float32).reshape(m, -1)
            _check_negative(f.filename, key, start, a)
            parts.append(a)
        if "overflow" in f:
            a = np.asarray(f["overflow"][start:stop], dtype=np.float32).reshape(m, 3)
            _check_negative(f.filename, "overflow", start, a)
            parts.append(a)
        else:
            parts.append(np.zeros((m, 3), np.float32))
        return np.concatenate(parts, axis=1), _read_energy(f, "energy", start, stop)

    def create(self, f: h5py.File, header: Header, compression: str | None = None) -> None:
        geometry = calogan_geometry()
        if tuple(header.sample_shape) != (geometry.n_features,):
            raise ConfigError(f"CaloGAN layout needs samples of shape ({geometry.n_features},), got {header.sample_shape}")
        if list(header.condition_names) != ["energy"]:
            raise ConfigError(f"CaloGAN layout needs exactly one condition 'energy' (GeV), got {header.condition_names}")
        f.attrs["physgan_layout"] = self.name
        attrs = {k: v for k, v in header.attrs.items() if k not in ("physgan_layout", "overflow_missing")}
        attrs.update(geometry.to_attrs())
        attrs.update(energy_units="GeV", domain="calo")
        write_attrs(f, attrs)
        dtype = np.dtype(header.dtype) if header.dtype else np.dtype(np.float32)
        if not np.issubdtype(dtype, np.floating):
            dtype = np.dtype(np.float32)
        rows = max(1, min(header.chunk_rows or default_chunk_rows((geometry.n_features,), dtype.itemsize), header.n))
        for key, shape in CALOGAN_LAYERS + (("overflow", (3,)),):
            ds = f.create_dataset(key, shape=(header.n, *shape), dtype=dtype, chunks=(rows, *shape), compression=compression)
            ds.attrs["units"] = "MeV"
        ds = f.create_dataset(
            "energy", shape=(header.n, 1), dtype=np.dtype(header.condition_dtype), chunks=(max(1, min(header.n, 65536)), 1)
        )
        ds.attrs["units"] = "GeV"

    def write_block(self, f: h5py.File, header: Header, start: int, x: np.ndarray, c: np.ndarray) -> None:
        geometry = calogan_geometry()
        x = np.asarray(x).reshape(len(x), -1)
        stop = start + len(x)
        for i, (key, shape) in enumerate(CALOGAN_LAYERS):
            f[key][start:stop] = x[:, geometry.layer_slice(i)].reshape(len(x), *shape)
        f["overflow"][start:stop] = x[:, geometry.extra_slice]
        f["energy"][start:stop] = np.asarray(c).reshape(len(x), -1)[:, :1]


class CaloChallengeLayout(Layout):
    """CaloChallenge layout: ``incident_energies`` (MeV) + ``showers`` (N, n_voxels) MeV.

    The geometry comes from the file attributes (``geometry``/``binning_xml``, as written by
    physgan) when present, else from the voxel count (368, 533, 6480, 40500 = DS1 photons,
    DS1 pions, DS2, DS3). Pass ``geometry`` to read a file of a custom binning without attributes.

    Parameters
    ----------
    geometry : CaloGeometry, optional
        Force this geometry (its cell count must match the file's).
    """

    name = "calochallenge"
    non_negative = True

    def __init__(self, geometry: CaloGeometry | None = None):
        self.geometry = geometry

    def detect(self, f: h5py.File) -> bool:
        return "incident_energies" in f and "showers" in f

    def _geometry(self, f: h5py.File, n_voxels: int) -> CaloGeometry:
        path = f.filename
        if self.geometry is not None:
            geometry = self.geometry
            source = "the geometry passed to the layout"
        elif "geometry" in f.attrs:
            try:
                geometry = geometry_from_attrs(plain_attrs(f))
            except ConfigError as err:
                raise DataError(path, f"cannot rebuild the geometry from the file attributes: {err}") from None
            source = f"attribute geometry='{geometry.name}'"
        else:
            try:
                return geometry_for_voxels(n_voxels)
            except ConfigError as err:
                raise DataError(path, f"wrong voxel count {n_voxels}: {err}", dataset="showers") from None
        if geometry.n_features != n_voxels:
            raise DataError(path, f"has {n_voxels} voxels but {source} has {geometry.n_features}", dataset="showers")
        return geometry

    def describe(self, f: h5py.File) -> Header:
        path = f.filename
        ds = _dataset(f, "showers")
        if ds.ndim != 2:
            raise DataError(path, f"must have shape (N, n_voxels), got {ds.shape}", dataset="showers")
        n, n_vox = int(ds.shape[0]), int(ds.shape[1])
        if n == 0:
            raise DataError(path, "file holds no showers (N = 0)", dataset="showers")
        _check_energy(f, "incident_energies", n)
        geometry = self._geometry(f, n_vox)
        return Header(
            n=n,
            sample_shape=(n_vox,),
            condition_names=["energy"],
            condition_units=["MeV"],
            attrs=_calo_attrs(f, geometry),
            chunk_rows=chunk_rows_of(ds),
            sample_units="MeV",
            non_negative=True,
            dtype=str(ds.dtype),
            datasets=["showers", "incident_energies"],
            condition_dtype=condition_dtype_of(f["incident_energies"]),
        )

    def read_block(self, f: h5py.File, header: Header, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        x = np.asarray(f["showers"][start:stop], dtype=np.float32)
        _check_negative(f.filename, "showers", start, x)
        return x, _read_energy(f, "incident_energies", start, stop)

    def create(self, f: h5py.File, header: Header, compression: str | None = None) -> None:
        if len(header.sample_shape) != 1:
            raise ConfigError(f"CaloChallenge layout needs flat samples (n_voxels,), got {header.sample_shape}")
        if list(header.condition_names) != ["energy"]:
            raise ConfigError(f"CaloChallenge layout needs exactly one condition 'energy' (MeV), got {header.condition_names}")
        n_vox = int(header.sample_shape[0])
        if self.geometry is not None:
            geometry = self.geometry
        elif "geometry" in header.attrs:
            geometry = geometry_from_attrs(header.attrs)
        else:
            geometry = geometry_for_voxels(n_vox)
        if geometry.n_features != n_vox:
            raise ConfigError(f"geometry '{geometry.name}' has {geometry.n_features} voxels, samples have {n_vox}")
        f.attrs["physgan_layout"] = self.name
        attrs = {k: v for k, v in header.attrs.items() if k not in ("physgan_layout", "binning_xml")}
        attrs.update(geometry.to_attrs())
        attrs.update(energy_units="MeV", domain="calo")
        write_attrs(f, attrs)
        dtype = np.dtype(header.dtype) if header.dtype else np.dtype(np.float32)
        if not np.issubdtype(dtype, np.floating):
            dtype = np.dtype(np.float32)
        rows = max(1, min(header.chunk_rows or default_chunk_rows((n_vox,), dtype.itemsize), header.n))
        ds = f.create_dataset("showers", shape=(header.n, n_vox), dtype=dtype, chunks=(rows, n_vox), compression=compression)
        ds.attrs["units"] = "MeV"
        rows_e = max(1, min(header.n, 65536))
        ds = f.create_dataset("incident_energies", shape=(header.n, 1), dtype=np.dtype(header.condition_dtype), chunks=(rows_e, 1))
        ds.attrs["units"] = "MeV"

    def write_block(self, f: h5py.File, header: Header, start: int, x: np.ndarray, c: np.ndarray) -> None:
        stop = start + len(x)
        f["showers"][start:stop] = np.asarray(x).reshape(len(x), -1)
        f["incident_energies"][start:stop] = np.asarray(c).reshape(len(x), -1)[:, :1]


register_layout(CaloGANLayout())
register_layout(CaloChallengeLayout())
