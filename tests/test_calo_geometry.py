"""Calorimeter geometries: CaloGAN cell grid, CaloChallenge binnings, XML parsing, attrs round trip."""

from __future__ import annotations

import math

import numpy as np
import pytest

from physgan.domains.calo.geometry import (
    CALOCHALLENGE_BINNINGS,
    apply_threshold,
    calochallenge_geometry,
    calogan_geometry,
    geometry_for_voxels,
    geometry_from_attrs,
    parse_binning_xml,
)
from physgan.errors import ConfigError


def test_calogan_counts_and_slices():
    g = calogan_geometry()
    assert [lay.shape for lay in g.layers] == [(3, 96), (12, 12), (12, 6)]
    assert (g.n_cells, g.n_extra, g.n_features) == (504, 3, 507)
    assert [g.layer_slice(i) for i in range(3)] == [slice(0, 288), slice(288, 432), slice(432, 504)]
    assert g.kind == "cartesian" and g.energy_units == "GeV" and g.voxel_threshold_mev == 0.0
    # layer centres at 45 / 263.5 / 458.5 mm behind the face (90 / 347 / 43 mm thick)
    assert [lay.depth_mm for lay in g.layers] == [45.0, 263.5, 458.5]
    np.testing.assert_allclose(g.z_edges_mm, [0, 90, 437, 480])


def test_calogan_cell_positions_and_order():
    g = calogan_geometry()
    l0, l1, l2 = g.layers
    # layer 0: rows are 160 mm x strips, columns 5 mm y strips; flat index = row * 96 + col
    assert l0.x_mm[0] == -160.0 and l0.y_mm[0] == -237.5
    assert l0.x_mm[96] == 0.0 and l0.y_mm[96] == -237.5
    assert l0.x_mm[1 * 96 + 48] == 0.0 and l0.y_mm[1 * 96 + 48] == 2.5
    # layer 1: 40 mm cells, the beam (0, 0) is the corner of cells (5,5),(5,6),(6,5),(6,6)
    corner = {5 * 12 + 5, 5 * 12 + 6, 6 * 12 + 5, 6 * 12 + 6}
    near = set(np.flatnonzero(l1.r_mm < 30).tolist())
    assert near == corner
    np.testing.assert_allclose(l1.r_mm[sorted(corner)], math.hypot(20, 20))
    # layer 2: 40 mm in x (12 rows), 80 mm in y (6 cols)
    assert l2.x_mm[0] == -220.0 and l2.y_mm[0] == -200.0 and l2.y_mm[5] == 200.0
    np.testing.assert_allclose(l1.phi_rad, np.arctan2(l1.y_mm, l1.x_mm))


def test_locate_cartesian_and_cylindrical():
    l1 = calogan_geometry().layers[1]
    idx = l1.locate(np.array([1.0, -1.0, 239.0, 241.0, -240.0]), np.array([1.0, 1.0, -239.0, 0.0, 0.0]))
    # a point on an edge belongs to the cell above it ([lo, hi) bins): y = 0 is column 6
    assert idx.tolist() == [6 * 12 + 6, 5 * 12 + 6, 11 * 12 + 0, -1, 0 * 12 + 6]
    ds2 = calochallenge_geometry("ds2").layers[0]
    # alpha bins: 16 over [-pi, pi); radius bins of 4.65 mm; index = alpha * 9 + r
    pts_r = np.array([1.0, 5.0, 41.0, 42.0])
    alpha = np.array([-math.pi + 1e-6, 0.01, math.pi - 1e-6, 0.0])
    idx = ds2.locate(pts_r * np.cos(alpha), pts_r * np.sin(alpha))
    assert idx.tolist() == [0 * 9 + 0, 8 * 9 + 1, 15 * 9 + 8, -1]
    # each cell centre lies in its own cell
    for lay in (l1, ds2, calochallenge_geometry("ds1-photons").layers[1]):
        np.testing.assert_array_equal(lay.locate(lay.x_mm, lay.y_mm), np.arange(lay.n_cells))


@pytest.mark.parametrize(
    "name,n,n_layers", [("ds1-photons", 368, 5), ("ds1-pions", 533, 7), ("ds2", 6480, 45), ("ds3", 40500, 45)]
)
def test_calochallenge_builtins(name, n, n_layers):
    g = calochallenge_geometry(name)
    assert g.n_cells == n == g.n_features and g.n_extra == 0 and len(g.layers) == n_layers
    assert g.name == f"calochallenge-{name}" and g.kind == "cylindrical" and g.energy_units == "MeV"
    assert geometry_for_voxels(n) == g
    assert calochallenge_geometry(f"calochallenge-{name}") == g
    assert geometry_from_attrs(g.to_attrs()) == g
    assert g.to_attrs() == {"geometry": g.name}


def test_thresholds_and_ds1_layers():
    assert calochallenge_geometry("ds1-photons").voxel_threshold_mev == 1.0
    assert calochallenge_geometry("ds2").voxel_threshold_mev == pytest.approx(0.01515, rel=1e-3)
    g = calochallenge_geometry("ds1-photons")
    assert [lay.index for lay in g.layers] == [0, 1, 2, 3, 12]
    assert [lay.shape for lay in g.layers] == [(1, 8), (10, 16), (10, 19), (1, 5), (1, 5)]
    lay = g.layers[1]
    # order (alpha, radius): first 16 cells share alpha centre -pi + pi/10, radius centres 1, 3, 5, ...
    np.testing.assert_allclose(lay.phi_rad[:16], -math.pi + math.pi / 10)
    np.testing.assert_allclose(lay.r_mm[:3], [1.0, 3.0, 5.0])
    np.testing.assert_allclose(lay.x_mm, lay.r_mm * np.cos(lay.phi_rad))
    # single-alpha layer: alpha = 0, so x = r, y = 0
    np.testing.assert_allclose(g.layers[0].y_mm, 0, atol=1e-12)
    ds2 = calochallenge_geometry("ds2")
    assert ds2.layers[44].depth_mm == pytest.approx(44.5 * 3.4)


def test_split_and_threshold():
    g = calogan_geometry()
    x = np.arange(2 * 507, dtype=np.float64).reshape(2, 507)
    parts = g.split(x)
    assert [p.shape for p in parts] == [(2, 288), (2, 144), (2, 72)]
    assert parts[1][0, 0] == 288 and parts[2][1, -1] == 507 + 503
    np.testing.assert_allclose(g.layer_sums(x)[0], [x[0, :288].sum(), x[0, 288:432].sum(), x[0, 432:504].sum()])
    with pytest.raises(ValueError):
        g.split(x[:, :500])
    ds1 = calochallenge_geometry("ds1-photons")
    y = np.array([[0.5, 1.0, 2.0] + [0.99] * 365])
    t = apply_threshold(y, ds1)
    assert t[0, 0] == 0 and t[0, 1] == 1.0 and t[0, 2] == 2.0 and (t[0, 3:] == 0).all()
    assert y[0, 0] == 0.5  # input untouched
    assert (apply_threshold(y, ds1, threshold_mev=0.6)[0, 3:] == 0.99).all()
    # CaloGAN overflow entries are never thresholded
    z = np.full((1, 507), 0.1)
    out = apply_threshold(z, g, threshold_mev=1.0)
    assert (out[0, :504] == 0).all() and (out[0, 504:] == 0.1).all()
    with pytest.raises(ConfigError):
        apply_threshold(z, g, threshold_mev=-1)


def test_custom_xml_round_trip(tmp_path):
    xml = """<Bins><Bin pid="11" name="toy">
      <Layer id="0" r_edges="0,1,3" n_bin_alpha="4"/>
      <Layer id="1" r_edges="0" n_bin_alpha="1"/>
      <Layer id="2" r_edges="0,2,4,8" n_bin_alpha="1"/>
    </Bin></Bins>"""
    p = tmp_path / "toy.xml"
    p.write_text(xml)
    g = calochallenge_geometry(str(p))
    assert g.name == "xml:toy" and g.n_cells == 4 * 2 + 3
    assert [lay.index for lay in g.layers] == [0, 2]
    attrs = g.to_attrs()
    assert attrs["binning_xml"] == xml
    assert geometry_from_attrs(attrs) == g
    assert geometry_from_attrs({k: v.encode() for k, v in attrs.items()}) == g


@pytest.mark.parametrize("bad", ["<Bins>", "<Bins/>", '<Bins><Bin><Layer id="0" r_edges="0,2,1" n_bin_alpha="1"/></Bin></Bins>',
                                 '<Bins><Bin><Layer id="0" r_edges="0,1" n_bin_alpha="0"/></Bin></Bins>'])
def test_bad_xml(bad):
    with pytest.raises(ConfigError):
        parse_binning_xml(bad)


def test_unknown_names():
    with pytest.raises(ConfigError, match="ds4"):
        calochallenge_geometry("ds4")
    with pytest.raises(ConfigError, match="1000"):
        geometry_for_voxels(1000)
    with pytest.raises(ConfigError):
        geometry_from_attrs({"geometry": "nope"})
    with pytest.raises(ConfigError):
        geometry_from_attrs({})


@pytest.mark.parametrize("name,fname", [("ds1-photons", "1_photons"), ("ds1-pions", "1_pions"), ("ds2", "2"), ("ds3", "3")])
def test_official_xml_equals_builtin_constants(shared_data, name, fname):
    path = shared_data / "calo" / f"calochallenge_binning_dataset_{fname}.xml"
    _, layers = parse_binning_xml(path.read_text(), str(path))
    with_cells = [(lid, edges, na) for lid, edges, na in layers if len(edges) > 1]
    ref = CALOCHALLENGE_BINNINGS[name]
    assert [(lid, na) for lid, _, na in with_cells] == [(lid, na) for lid, _, na in ref]
    for (_, e1, _), (_, e2, _) in zip(with_cells, ref):
        assert e1 == e2  # exact decimal equality with the XML text
    assert calochallenge_geometry(str(path)) == calochallenge_geometry(name)
