"""High-level calorimeter features on hand-built showers with known answers, and on real Geant4 showers."""

from __future__ import annotations

import math

import h5py
import numpy as np
import pytest

from physgan.domains.calo.features import incident_energy_mev, resolve_geometry, shower_features, voxel_energies
from physgan.domains.calo.geometry import calochallenge_geometry, calogan_geometry
from physgan.errors import DataError

CALOGAN = calogan_geometry()


def _empty(geom, n=1):
    return np.zeros((n, geom.n_features))


def _cell(geom, layer: int, x_mm: float, y_mm: float) -> int:
    """Flat index of the cell containing (x, y) in ``layer``."""
    lay = geom.layers[layer]
    k = int(lay.locate(np.array([x_mm]), np.array([y_mm]))[0])
    assert k >= 0
    return geom.layer_slice(layer).start + k


def test_single_hot_cell_calogan():
    x = _empty(CALOGAN)
    k = _cell(CALOGAN, 1, 50.0, -30.0)  # layer-1 cell 40..80 mm in x, -40..0 in y -> centre (60, -20)
    x[0, k] = 5000.0
    f = shower_features(x, np.array([[10.0]]), CALOGAN.to_attrs())  # 10 GeV
    assert f["e_tot_over_e_inc"][0] == pytest.approx(0.5)
    assert f["e_layer_1"][0] == 5000.0 and f["e_layer_0"][0] == 0.0
    assert f["ec_x_1"][0] == pytest.approx(60.0) and f["ec_y_1"][0] == pytest.approx(-20.0)
    assert f["width_x_1"][0] == pytest.approx(0.0, abs=1e-6) and f["width_y_1"][0] == pytest.approx(0.0, abs=1e-6)
    assert f["sparsity_1"][0] == pytest.approx(1 / 144)
    assert f["shower_depth"][0] == pytest.approx(1.0)
    assert f["shower_depth_width"][0] == pytest.approx(0.0, abs=1e-7)


def test_two_symmetric_cells_give_centre_zero_and_half_distance_width():
    x = _empty(CALOGAN)
    x[0, _cell(CALOGAN, 1, -30.0, 10.0)] = 100.0  # centres (-20, 20) and (20, 20)
    x[0, _cell(CALOGAN, 1, 30.0, 10.0)] = 100.0
    f = shower_features(x, np.array([[1.0]]), CALOGAN.to_attrs())
    assert f["ec_x_1"][0] == pytest.approx(0.0, abs=1e-9)
    assert f["width_x_1"][0] == pytest.approx(20.0)
    assert f["ec_y_1"][0] == pytest.approx(20.0)
    assert f["width_y_1"][0] == pytest.approx(0.0, abs=1e-5)


def test_empty_layer_is_nan_free_and_zero():
    x = _empty(CALOGAN, 2)
    x[0, _cell(CALOGAN, 1, 1.0, 1.0)] = 10.0  # shower 0: layer 1 only; shower 1: completely empty
    f = shower_features(x, np.array([[1.0], [1.0]]), CALOGAN.to_attrs())
    for name, v in f.items():
        assert np.all(np.isfinite(v)), name
    for name in ("ec_x_0", "width_x_0", "ec_y_2", "width_y_2", "e_ratio", "sparsity_0"):
        assert f[name][0] == 0.0, name
    assert f["shower_depth"][1] == 0.0 and f["e_tot_over_e_inc"][1] == 0.0


def test_shower_depth_and_width_from_layer_energies():
    x = _empty(CALOGAN)
    x[0, _cell(CALOGAN, 0, 1.0, 1.0)] = 1.0
    x[0, _cell(CALOGAN, 1, 1.0, 1.0)] = 2.0
    x[0, _cell(CALOGAN, 2, 1.0, 1.0)] = 1.0
    f = shower_features(x, np.array([[1.0]]), CALOGAN)
    assert f["shower_depth"][0] == pytest.approx(1.0)  # (0*1 + 1*2 + 2*1) / 4
    assert f["shower_depth_width"][0] == pytest.approx(math.sqrt((2 + 4) / 4 - 1))


def test_e_ratio_of_two_hottest_cells_in_layer_0():
    x = _empty(CALOGAN)
    x[0, _cell(CALOGAN, 0, 1.0, 1.0)] = 3.0
    x[0, _cell(CALOGAN, 0, 1.0, -1.0)] = 1.0
    x[0, _cell(CALOGAN, 0, 1.0, 20.0)] = 0.5
    f = shower_features(x, np.array([[1.0]]), CALOGAN)
    assert f["e_ratio"][0] == pytest.approx((3 - 1) / (3 + 1))
    x2 = _empty(CALOGAN)
    x2[0, _cell(CALOGAN, 0, 1.0, 1.0)] = 7.0
    assert shower_features(x2, np.array([[1.0]]), CALOGAN)["e_ratio"][0] == pytest.approx(1.0)


def test_units_gev_vs_mev_and_extras():
    x = _empty(CALOGAN)
    x[0, _cell(CALOGAN, 1, 1.0, 1.0)] = 9940.0
    x[0, CALOGAN.n_cells + 1] = 20.0  # overflow of layer 1
    f = shower_features(x, np.array([[10.0]]), CALOGAN)
    assert f["e_tot_over_e_inc"][0] == pytest.approx(0.994)  # cells only, 10 GeV = 10000 MeV
    assert f["e_extra_over_e_inc"][0] == pytest.approx(0.002)
    assert incident_energy_mev(np.array([[2.0]]), CALOGAN)[0] == 2000.0
    ds2 = calochallenge_geometry("ds2")
    assert incident_energy_mev(np.array([[2.0]]), ds2)[0] == 2.0


def test_cylindrical_centres_radius_and_threshold():
    geom = calochallenge_geometry("ds2")
    lay = geom.layers[3]
    n_r = lay.shape[1]
    k_alpha, k_r = 4, 2
    flat = geom.layer_slice(3).start + k_alpha * n_r + k_r
    x = _empty(geom)
    x[0, flat] = 50.0
    x[0, flat + 1] = 0.01  # below the DS2 threshold of 15.15 keV: removed before every feature
    f = shower_features(x, np.array([[1000.0]]), geom.to_attrs())
    alpha = -math.pi + (k_alpha + 0.5) * 2 * math.pi / 16
    r = (k_r + 0.5) * 4.65
    assert f["ec_r_3"][0] == pytest.approx(r)
    assert f["ec_x_3"][0] == pytest.approx(r * math.cos(alpha))
    assert f["ec_y_3"][0] == pytest.approx(r * math.sin(alpha))
    assert f["width_r_3"][0] == pytest.approx(0.0, abs=1e-6)
    assert f["e_layer_3"][0] == 50.0
    assert f["sparsity_3"][0] == pytest.approx(1 / lay.n_cells)
    assert f["e_tot_over_e_inc"][0] == pytest.approx(0.05)
    raw = shower_features(x, np.array([[1000.0]]), geom, apply_threshold_cut=False)
    assert raw["e_layer_3"][0] == pytest.approx(50.01)


def test_single_alpha_layers_have_no_xy_centroids():
    geom = calochallenge_geometry("ds1-photons")  # layers 0, 3, 12 have one alpha bin
    f = shower_features(_empty(geom), np.array([[1000.0]]), geom)
    assert "ec_r_0" in f and "ec_x_0" not in f and "ec_x_1" in f and "ec_y_2" in f


def test_voxel_spectrum_and_bad_shapes():
    x = _empty(CALOGAN, 3)
    x[:, 5] = [0.0, 2.0, 3.0]
    x[1, 300] = 1.5
    v = voxel_energies(x, CALOGAN)
    assert sorted(v.tolist()) == [1.5, 2.0, 3.0]
    with pytest.raises(DataError):
        shower_features(np.zeros((2, 10)), np.ones((2, 1)), CALOGAN)
    with pytest.raises(DataError):
        shower_features(_empty(CALOGAN, 2), np.ones((3, 1)), CALOGAN)
    assert resolve_geometry({}, 507).name == "calogan"
    assert resolve_geometry(None, 368).name == "calochallenge-ds1-photons"


@pytest.mark.shared
def test_real_geant4_calogan_showers(shared_data):
    with h5py.File(shared_data / "calo" / "geant4_eplus_calogan_51.h5", "r") as f:
        n = len(f["energy"])
        x = np.concatenate([f[k][:].reshape(n, -1) for k in ("layer_0", "layer_1", "layer_2", "overflow")], axis=1)
        c = f["energy"][:]
    feats = shower_features(x, c, CALOGAN.to_attrs())
    # facts measured on this file (../shared/data/README.md): E_cells / E_inc = 0.994 +- 0.003, occupancy 45/79/28 %
    assert np.mean(feats["e_tot_over_e_inc"]) == pytest.approx(0.994, abs=0.002)
    assert np.std(feats["e_tot_over_e_inc"]) < 0.006
    assert [round(float(np.mean(feats[f"sparsity_{i}"])), 2) for i in range(3)] == pytest.approx([0.45, 0.79, 0.28], abs=0.015)
    # the beam hits x = y = 0: centres of energy near 0 in the fine layers, and most energy in layer 1
    assert abs(np.mean(feats["ec_y_0"])) < 1.0 and abs(np.mean(feats["ec_x_1"])) < 1.0
    assert 0.6 < np.mean(feats["shower_depth"]) < 1.0
