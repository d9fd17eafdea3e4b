"""Calorimeter readout geometries: CaloGAN (Cartesian) and CaloChallenge (cylindrical) binnings.

A :class:`CaloGeometry` says how the flat sample vector of one shower maps to
cells: which slice belongs to which readout layer, where each cell centre lies
(mm, relative to the shower axis at x = y = 0) and how deep each layer sits
behind the front face. The CaloChallenge binnings are built in as Python
constants (numbers from the official binning XMLs) and any binning XML a user
passes is parsed with :mod:`xml.etree`.

References
----------
M. Paganini, L. de Oliveira, B. Nachman, "CaloGAN", Phys. Rev. D 97, 014021 (2018), arXiv:1712.10321.
C. Krause et al., "CaloChallenge 2022: A Community Challenge for Fast Calorimeter Simulation",
arXiv:2410.21611; binning files ``code/binning_dataset_*.xml`` of github.com/CaloChallenge/homepage.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from physgan.errors import ConfigError

__all__ = [
    "LayerGeometry",
    "CaloGeometry",
    "calogan_geometry",
    "calochallenge_geometry",
    "geometry_from_attrs",
    "geometry_for_voxels",
    "parse_binning_xml",
    "apply_threshold",
    "CALOGAN_Z_EDGES_MM",
    "CALOGAN_HALF_WIDTH_MM",
    "CALOCHALLENGE_BINNINGS",
    "CALOCHALLENGE_THRESHOLD_MEV",
]

# --------------------------------------------------------------------------------------------------
# constants (facts from the detector descriptions; see module docstring)
# --------------------------------------------------------------------------------------------------

#: CaloGAN readout-layer boundaries along the beam (mm behind the front face): 90 / 347 / 43 mm thick.
CALOGAN_Z_EDGES_MM: tuple[float, ...] = (0.0, 90.0, 437.0, 480.0)
#: CaloGAN instrumented half width in x and y (mm); energy outside goes to ``overflow``.
CALOGAN_HALF_WIDTH_MM: float = 240.0
#: CaloGAN cell grids (rows = x bins, cols = y bins) per layer.
CALOGAN_SHAPES: tuple[tuple[int, int], ...] = ((3, 96), (12, 12), (12, 6))

#: Thickness of one CaloChallenge DS2/DS3 readout layer: 2 x (1.4 mm W + 0.3 mm Si) = 3.4 mm.
CALOCHALLENGE_DS23_LAYER_MM: float = 3.4

#: Voxel thresholds of the official CaloChallenge evaluation (MeV): DS1 1 MeV, DS2/3 0.5 keV / 0.033.
CALOCHALLENGE_THRESHOLD_MEV: dict[str, float] = {
    "ds1-photons": 1.0,
    "ds1-pions": 1.0,
    "ds2": 0.5e-3 / 0.033,
    "ds3": 0.5e-3 / 0.033,
}


def _edges(step: float, n: int) -> tuple[float, ...]:
    """``n + 1`` equally spaced edges ``0, step, ..., n*step`` rounded to the XML's decimals."""
    return tuple(round(k * step, 6) for k in range(n + 1))


_DS1_PHOTONS: tuple[tuple[int, tuple[float, ...], int], ...] = (
    (0, (0, 5, 10, 30, 50, 100, 200, 400, 600), 1),
    (1, (0, 2, 4, 6, 8, 10, 12, 15, 20, 30, 40, 50, 70, 90, 120, 150, 200), 10),
    (2, (0, 2, 5, 10, 15, 20, 25, 30, 40, 50, 60, 80, 100, 130, 160, 200, 250, 300, 350, 400), 10),
    (3, (0, 50, 100, 200, 400, 600), 1),
    (12, (0, 100, 200, 400, 1000, 2000), 1),
)
_DS1_PIONS: tuple[tuple[int, tuple[float, ...], int], ...] = (
    (0, (0, 5, 10, 30, 50, 100, 200, 400, 600), 1),
    (1, (0, 1, 4, 7, 10, 15, 30, 50, 90, 150, 200), 10),
    (2, (0, 5, 10, 20, 30, 50, 80, 130, 200, 300, 400), 10),
    (3, (0, 50, 100, 200, 400, 600), 1),
    (12, (0, 10, 20, 30, 50, 80, 100, 130, 160, 200, 250, 300, 350, 400, 1000, 2000), 10),
    (13, (0, 10, 20, 30, 50, 80, 100, 130, 160, 200, 250, 300, 350, 400, 600, 1000, 2000), 10),
    (14, (0, 50, 100, 150, 200, 250, 300, 400, 600, 1000, 2000), 1),
)
_DS2 = tuple((i, _edges(4.65, 9), 16) for i in range(45))
_DS3 = tuple((i, _edges(2.325, 18), 50) for i in range(45))

#: Built-in CaloChallenge binnings: name -> ((layer id, radial edges in mm, n_alpha), ...) for layers with cells.
CALOCHALLENGE_BINNINGS: dict[str, tuple[tuple[int, tuple[float, ...], int], ...]] = {
    "ds1-photons": _DS1_PHOTONS,
    "ds1-pions": _DS1_PIONS,
    "ds2": _DS2,
    "ds3": _DS3,
}

_ALIASES = {
    "ds1-photons": "ds1-photons", "ds1-photon": "ds1-photons", "1-photons": "ds1-photons", "ds1": "ds1-photons",
    "ds1-pions": "ds1-pions", "ds1-pion": "ds1-pions", "1-pions": "ds1-pions",
    "ds2": "ds2", "2": "ds2", "ds3": "ds3", "3": "ds3",
}


# --------------------------------------------------------------------------------------------------
# data classes
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LayerGeometry:
    """One readout layer: its cell grid and cell-centre positions.

    Attributes
    ----------
    index : int
        Layer number as in the file / binning XML (CaloChallenge DS1 skips empty layers).
    shape : tuple of int
        Cell grid as stored: CaloGAN (rows = x bins, cols = y bins); CaloChallenge (n_alpha, n_radial).
    x_mm, y_mm, r_mm, phi_rad : numpy.ndarray
        Cell centres, shape (n_cells,), flat in file order. For cylindrical layers
        x = r cos(alpha), y = r sin(alpha) (CaloChallenge's eta/phi axes, in mm).
    depth_mm : float
        Depth of the layer centre behind the calorimeter front face in mm (NaN if unknown,
        e.g. the ATLAS-based DS1 binnings and custom XMLs).
    thickness_mm : float
        Layer thickness along the shower axis in mm (NaN if unknown).
    x_edges_mm, y_edges_mm : numpy.ndarray or None
        Cartesian cell edges along rows (x) and columns (y), mm.
    r_edges_mm : numpy.ndarray or None
        Cylindrical radial bin edges, mm.
    n_alpha : int
        Number of angular bins (cylindrical), bins of equal width on [-pi, pi).
    """

    index: int
    shape: tuple[int, ...]
    x_mm: np.ndarray
    y_mm: np.ndarray
    r_mm: np.ndarray
    phi_rad: np.ndarray
    depth_mm: float
    thickness_mm: float = float("nan")
    x_edges_mm: np.ndarray | None = None
    y_edges_mm: np.ndarray | None = None
    r_edges_mm: np.ndarray | None = None
    n_alpha: int = 1

    @property
    def n_cells(self) -> int:
        """Number of cells of the layer."""
        return int(np.prod(self.shape))

    def locate(self, x_mm: np.ndarray, y_mm: np.ndarray) -> np.ndarray:
        """Flat cell index of points (x, y) in mm, or -1 outside the binned area.

        Parameters
        ----------
        x_mm, y_mm : numpy.ndarray
            Transverse positions relative to the shower axis, mm (same shape).

        Returns
        -------
        numpy.ndarray
            int64 indices in file order, -1 for points outside every cell.
        """
        x = np.asarray(x_mm, dtype=np.float64)
        y = np.asarray(y_mm, dtype=np.float64)
        if self.x_edges_mm is not None and self.y_edges_mm is not None:
            xe, ye = self.x_edges_mm, self.y_edges_mm
            ix = np.searchsorted(xe, x, side="right") - 1
            iy = np.searchsorted(ye, y, side="right") - 1
            ok = (ix >= 0) & (ix < len(xe) - 1) & (iy >= 0) & (iy < len(ye) - 1)
            return np.where(ok, ix * (len(ye) - 1) + iy, -1).astype(np.int64)
        if self.r_edges_mm is None:
            raise ConfigError(f"layer {self.index} has no cell edges; cannot locate points")
        re = self.r_edges_mm
        r = np.hypot(x, y)
        ir = np.searchsorted(re, r, side="right") - 1
        n_r = len(re) - 1
        alpha = np.arctan2(y, x)
        ia = np.floor((alpha + math.pi) / (2 * math.pi) * self.n_alpha).astype(np.int64)
        ia = np.clip(ia, 0, self.n_alpha - 1)
        ok = (ir >= 0) & (ir < n_r)
        return np.where(ok, ia * n_r + ir, -1).astype(np.int64)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LayerGeometry):
            return NotImplemented
        if (self.index, self.shape, self.n_alpha) != (other.index, other.shape, other.n_alpha):
            return False
        same_depth = (self.depth_mm == other.depth_mm) or (math.isnan(self.depth_mm) and math.isnan(other.depth_mm))
        if not same_depth:
            return False
        for a, b in ((self.x_mm, other.x_mm), (self.y_mm, other.y_mm), (self.r_edges_mm, other.r_edges_mm),
                     (self.x_edges_mm, other.x_edges_mm), (self.y_edges_mm, other.y_edges_mm)):
            if (a is None) != (b is None):
                return False
            if a is not None and (a.shape != b.shape or not np.allclose(a, b, rtol=0, atol=1e-9)):
                return False
        return True

    def __hash__(self) -> int:
        return hash((self.index, self.shape, self.n_alpha))


@dataclass(frozen=True)
class CaloGeometry:
    """A calorimeter readout: its layers in flat order plus trailing non-cell entries.

    Attributes
    ----------
    name : str
        'calogan', 'calochallenge-ds1-photons', 'calochallenge-ds1-pions', 'calochallenge-ds2',
        'calochallenge-ds3' or ``xml:<name>`` for a custom binning XML.
    kind : str
        'cartesian' or 'cylindrical'.
    layers : tuple of LayerGeometry
        Layers that have cells, in flat order.
    n_extra : int
        Trailing non-cell entries of the flat sample (CaloGAN: 3 overflow energies in MeV).
    voxel_threshold_mev : float
        Readout threshold applied before the official metrics (MeV).
    energy_units : str
        Units of the incident-energy condition in this layout ('GeV' CaloGAN, 'MeV' CaloChallenge).
    binning_xml : str or None
        XML text of a custom binning (None for built-ins, which are rebuilt from ``name``).
    """

    name: str
    kind: str
    layers: tuple[LayerGeometry, ...]
    n_extra: int
    voxel_threshold_mev: float
    energy_units: str
    binning_xml: str | None = field(default=None, compare=False)

    @property
    def n_cells(self) -> int:
        """Total number of cells (without extras)."""
        return int(sum(lay.n_cells for lay in self.layers))

    @property
    def n_features(self) -> int:
        """Length of the flat sample: ``n_cells + n_extra``."""
        return self.n_cells + int(self.n_extra)

    @property
    def n_layers(self) -> int:
        """Number of layers with cells."""
        return len(self.layers)

    def layer_slice(self, i: int) -> slice:
        """Slice of layer ``i`` (position in ``layers``) in the flat sample."""
        if not -len(self.layers) <= i < len(self.layers):
            raise IndexError(f"layer position {i} out of range for {len(self.layers)} layers")
        i = i % len(self.layers)
        start = sum(lay.n_cells for lay in self.layers[:i])
        return slice(start, start + self.layers[i].n_cells)

    @property
    def extra_slice(self) -> slice:
        """Slice of the trailing non-cell entries (empty for CaloChallenge)."""
        return slice(self.n_cells, self.n_features)

    def _check(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise ValueError(f"expected shape (N, {self.n_features}) for geometry '{self.name}', got {x.shape}")
        return x

    def split(self, x: np.ndarray) -> list[np.ndarray]:
        """Split flat samples per layer.

        Parameters
        ----------
        x : numpy.ndarray
            (N, n_features) flat samples.

        Returns
        -------
        list of numpy.ndarray
            One (N, n_cells_i) view per layer (extras dropped).
        """
        x = self._check(x)
        return [x[:, self.layer_slice(i)] for i in range(len(self.layers))]

    def images(self, x: np.ndarray) -> list[np.ndarray]:
        """Per-layer arrays reshaped to ``(N, *shape)`` (views of ``x``)."""
        return [a.reshape(len(a), *lay.shape) for a, lay in zip(self.split(x), self.layers)]

    def layer_sums(self, x: np.ndarray) -> np.ndarray:
        """(N, n_layers) energy per layer (cells only)."""
        return np.stack([a.sum(axis=1) for a in self.split(x)], axis=1)

    @property
    def z_edges_mm(self) -> np.ndarray:
        """(n_layers + 1,) layer boundaries behind the front face (mm); NaN where unknown."""
        lays = self.layers
        return np.array([lays[0].depth_mm - lays[0].thickness_mm / 2] + [lay.depth_mm + lay.thickness_mm / 2 for lay in lays])

    def to_attrs(self) -> dict[str, Any]:
        """HDF5 attributes from which :func:`geometry_from_attrs` rebuilds this geometry."""
        out: dict[str, Any] = {"geometry": self.name}
        if self.binning_xml is not None:
            out["binning_xml"] = self.binning_xml
        return out


# --------------------------------------------------------------------------------------------------
# builders
# --------------------------------------------------------------------------------------------------


def _cartesian_layer(index: int, n_x: int, n_y: int, z0: float, z1: float, half: float) -> LayerGeometry:
    xe = np.linspace(-half, half, n_x + 1)
    ye = np.linspace(-half, half, n_y + 1)
    xc = 0.5 * (xe[1:] + xe[:-1])
    yc = 0.5 * (ye[1:] + ye[:-1])
    gx, gy = np.meshgrid(xc, yc, indexing="ij")  # rows = x, cols = y -> flat x * n_y + y
    x, y = gx.ravel(), gy.ravel()
    for a in (x, y, xe, ye):
        a.flags.writeable = False
    r = np.hypot(x, y)
    phi = np.arctan2(y, x)
    r.flags.writeable = False
    phi.flags.writeable = False
    return LayerGeometry(index=index, shape=(n_x, n_y), x_mm=x, y_mm=y, r_mm=r, phi_rad=phi, depth_mm=0.5 * (z0 + z1),
                         thickness_mm=z1 - z0, x_edges_mm=xe, y_edges_mm=ye)


def calogan_geometry() -> CaloGeometry:
    """The CaloGAN readout: 3 Cartesian layers (3x96, 12x12, 12x6) over 480 x 480 mm, plus 3 overflows.

    Layer 0: 3 x 96 cells of 160 mm (x) x 5 mm (y), 90 mm deep; layer 1: 12 x 12 cells of 40 x 40 mm,
    347 mm deep; layer 2: 12 x 6 cells of 40 mm (x) x 80 mm (y), 43 mm deep. The beam enters at
    x = y = 0, a cell corner. Flat order: layer_0, layer_1, layer_2 (row-major), then 3 overflow entries.

    Returns
    -------
    CaloGeometry

    References
    ----------
    Paganini, de Oliveira, Nachman, arXiv:1712.10321; hep-lbdl/CaloGAN ``generation/src/DetectorConstruction.cc``.
    """
    z = CALOGAN_Z_EDGES_MM
    layers = tuple(
        _cartesian_layer(i, nx, ny, z[i], z[i + 1], CALOGAN_HALF_WIDTH_MM) for i, (nx, ny) in enumerate(CALOGAN_SHAPES)
    )
    return CaloGeometry(name="calogan", kind="cartesian", layers=layers, n_extra=3, voxel_threshold_mev=0.0, energy_units="GeV")


def _cylindrical_layer(index: int, r_edges: np.ndarray, n_alpha: int, depth: float, thickness: float) -> LayerGeometry:
    n_r = len(r_edges) - 1
    rc = 0.5 * (r_edges[1:] + r_edges[:-1])
    a_edges = np.linspace(-math.pi, math.pi, n_alpha + 1)
    ac = 0.5 * (a_edges[1:] + a_edges[:-1])
    ga, gr = np.meshgrid(ac, rc, indexing="ij")  # (alpha, radius) order, radius fastest
    r, a = gr.ravel(), ga.ravel()
    x, y = r * np.cos(a), r * np.sin(a)
    re = np.asarray(r_edges, dtype=np.float64).copy()
    for arr in (r, a, x, y, re):
        arr.flags.writeable = False
    return LayerGeometry(index=index, shape=(n_alpha, n_r), x_mm=x, y_mm=y, r_mm=r, phi_rad=a, depth_mm=depth,
                         thickness_mm=thickness, r_edges_mm=re, n_alpha=n_alpha)


def _cylindrical_geometry(name: str, binning, threshold: float, layer_mm: float | None, xml_text: str | None) -> CaloGeometry:
    layers = []
    for lid, edges, n_alpha in binning:
        edges = np.asarray(edges, dtype=np.float64)
        if len(edges) < 2:
            continue
        if layer_mm is None:
            depth, thick = float("nan"), float("nan")
        else:
            depth, thick = (lid + 0.5) * layer_mm, layer_mm
        layers.append(_cylindrical_layer(int(lid), edges, int(n_alpha), depth, thick))
    if not layers:
        raise ConfigError(f"binning '{name}' has no layer with cells")
    return CaloGeometry(name=name, kind="cylindrical", layers=tuple(layers), n_extra=0, voxel_threshold_mev=threshold,
                        energy_units="MeV", binning_xml=xml_text)


def parse_binning_xml(text: str, source: str = "<xml>") -> tuple[str, list[tuple[int, tuple[float, ...], int]]]:
    """Parse a CaloChallenge binning XML.

    Parameters
    ----------
    text : str
        XML text: ``<Bins><Bin name=...><Layer id= r_edges="0,5,..." n_bin_alpha=.../>...``.
    source : str
        Where the text came from (for error messages).

    Returns
    -------
    name : str
        The ``name`` attribute of the first ``Bin`` element ('' if absent).
    layers : list of (int, tuple of float, int)
        (layer id, radial edges in mm, n_alpha) for every layer, including empty ones (edges ``(0,)``).

    Raises
    ------
    ConfigError
        On malformed XML, missing attributes, non-increasing edges or n_alpha < 1.
    """
    try:
        root = ET.fromstring(text)
    except ET.ParseError as err:
        raise ConfigError(f"{source}: not a valid binning XML ({err})") from None
    bins = [el for el in root.iter("Bin")]
    if not bins:
        raise ConfigError(f"{source}: no <Bin> element in the binning XML")
    out: list[tuple[int, tuple[float, ...], int]] = []
    for lay in bins[0].iter("Layer"):
        try:
            lid = int(lay.attrib["id"])
            edges = tuple(float(s) for s in lay.attrib["r_edges"].split(",") if s.strip())
            n_alpha = int(lay.attrib.get("n_bin_alpha", "1"))
        except (KeyError, ValueError) as err:
            raise ConfigError(f"{source}: layer element {lay.attrib} is malformed ({err!r})") from None
        if n_alpha < 1 or not edges or any(b <= a for a, b in zip(edges, edges[1:])) or edges[0] < 0:
            raise ConfigError(f"{source}: layer {lid} needs increasing non-negative r_edges and n_bin_alpha >= 1")
        out.append((lid, edges, n_alpha))
    if not out:
        raise ConfigError(f"{source}: no <Layer> elements in the binning XML")
    return bins[0].attrib.get("name", ""), out


def _builtin_matching(layers: list[tuple[int, tuple[float, ...], int]]) -> str | None:
    """Name of the built-in binning equal to ``layers`` (empty layers ignored), else None."""
    cells = [(lid, edges, na) for lid, edges, na in layers if len(edges) > 1]
    for name, ref in CALOCHALLENGE_BINNINGS.items():
        if len(ref) == len(cells) and all(
            a[0] == b[0] and a[2] == b[2] and len(a[1]) == len(b[1]) and np.allclose(a[1], b[1], rtol=0, atol=1e-6)
            for a, b in zip(cells, ref)
        ):
            return name
    return None


def _geometry_from_xml_text(text: str, source: str, name: str | None = None) -> CaloGeometry:
    bin_name, layers = parse_binning_xml(text, source)
    builtin = _builtin_matching(layers)
    if builtin is not None and (name is None or name == f"calochallenge-{builtin}"):
        return calochallenge_geometry(builtin)
    gname = name or f"xml:{bin_name or Path(source).stem}"
    return _cylindrical_geometry(gname, layers, threshold=0.0, layer_mm=None, xml_text=text)


def calochallenge_geometry(name_or_xml_path: str) -> CaloGeometry:
    """A CaloChallenge cylindrical binning, built in or from a binning XML.

    Parameters
    ----------
    name_or_xml_path : str
        'ds1-photons' | 'ds1-pions' | 'ds2' | 'ds3' (also with a 'calochallenge-' prefix), or a path to a
        binning XML. Voxels are flattened as (layer, alpha, radius); alpha bins split [-pi, pi) evenly.

    Returns
    -------
    CaloGeometry
        Built-ins get the official voxel threshold (DS1 1 MeV; DS2/3 0.5 keV / 0.033 = 15.15 keV)
        and, for DS2/3, layer depths of 3.4 mm per readout layer. Custom XMLs get threshold 0 and
        unknown (NaN) depths; their XML text is kept for :meth:`CaloGeometry.to_attrs`. An XML whose
        binning equals a built-in one (e.g. the official files) returns that built-in geometry.

    References
    ----------
    CaloChallenge/homepage ``code/binning_dataset_*.xml`` and ``code/XMLHandler.py``; arXiv:2410.21611.
    """
    key = str(name_or_xml_path).strip()
    short = key.lower().removeprefix("calochallenge-").removeprefix("dataset_").replace("_", "-")
    if short in _ALIASES:
        canon = _ALIASES[short]
        layer_mm = CALOCHALLENGE_DS23_LAYER_MM if canon in ("ds2", "ds3") else None
        return _cylindrical_geometry(f"calochallenge-{canon}", CALOCHALLENGE_BINNINGS[canon],
                                     CALOCHALLENGE_THRESHOLD_MEV[canon], layer_mm, None)
    path = Path(key)
    if not path.is_file():
        raise ConfigError(
            f"unknown CaloChallenge geometry '{key}': expected ds1-photons, ds1-pions, ds2, ds3 or the path of a binning XML"
        )
    try:
        text = path.read_text()
    except OSError as err:
        raise ConfigError(f"{path}: cannot read binning XML ({err})") from None
    return _geometry_from_xml_text(text, str(path))


def _attr_to_str(v: Any) -> str:
    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, np.ndarray) and v.shape == ():
        return _attr_to_str(v.item())
    return str(v)


def geometry_from_attrs(attrs: dict) -> CaloGeometry:
    """Rebuild a geometry from the attributes written by :meth:`CaloGeometry.to_attrs`.

    Parameters
    ----------
    attrs : dict
        Must hold ``geometry`` (a name); custom XML geometries also ``binning_xml`` (the XML text).

    Returns
    -------
    CaloGeometry

    Raises
    ------
    ConfigError
        When ``geometry`` is missing or unknown.
    """
    if "geometry" not in attrs:
        raise ConfigError("attributes name no 'geometry'")
    name = _attr_to_str(attrs["geometry"])
    xml = attrs.get("binning_xml")
    if xml is not None:
        return _geometry_from_xml_text(_attr_to_str(xml), f"attribute binning_xml of geometry '{name}'", name=name)
    if name == "calogan":
        return calogan_geometry()
    short = name.lower().removeprefix("calochallenge-")
    if short in _ALIASES:
        return calochallenge_geometry(short)
    raise ConfigError(f"unknown geometry '{name}' (and no 'binning_xml' attribute to rebuild it from)")


_BY_VOXELS = {368: "ds1-photons", 533: "ds1-pions", 6480: "ds2", 40500: "ds3"}


def geometry_for_voxels(n_voxels: int) -> CaloGeometry:
    """The built-in CaloChallenge geometry with ``n_voxels`` voxels.

    Parameters
    ----------
    n_voxels : int
        368 (DS1 photons), 533 (DS1 pions), 6480 (DS2) or 40500 (DS3).

    Returns
    -------
    CaloGeometry

    Raises
    ------
    ConfigError
        For any other voxel count.
    """
    n = int(n_voxels)
    if n not in _BY_VOXELS:
        known = ", ".join(f"{k} ({v})" for k, v in _BY_VOXELS.items())
        raise ConfigError(f"no built-in CaloChallenge binning has {n} voxels (known: {known}); pass the binning XML")
    return calochallenge_geometry(_BY_VOXELS[n])


def apply_threshold(x: np.ndarray, geometry: CaloGeometry, threshold_mev: float | None = None) -> np.ndarray:
    """Zero every cell below a readout threshold (extras such as CaloGAN overflow are left alone).

    Parameters
    ----------
    x : numpy.ndarray
        (N, n_features) flat showers in MeV.
    geometry : CaloGeometry
        Their geometry.
    threshold_mev : float, optional
        Threshold in MeV; default ``geometry.voxel_threshold_mev`` (CaloChallenge: DS1 1 MeV,
        DS2/3 15.15 keV; CaloGAN 0). Cells with ``value < threshold`` become 0.

    Returns
    -------
    numpy.ndarray
        A thresholded copy of ``x`` (same dtype).

    References
    ----------
    CaloChallenge ``code/evaluate.py`` (``--min_energy``); arXiv:2410.21611.
    """
    thr = geometry.voxel_threshold_mev if threshold_mev is None else float(threshold_mev)
    if not np.isfinite(thr) or thr < 0:
        raise ConfigError(f"voxel threshold must be a finite number >= 0 MeV, got {threshold_mev}")
    out = np.array(x, copy=True)
    if out.ndim != 2 or out.shape[1] != geometry.n_features:
        raise ValueError(f"expected shape (N, {geometry.n_features}) for geometry '{geometry.name}', got {out.shape}")
    cells = out[:, : geometry.n_cells]
    cells[cells < thr] = 0
    return out
