"""GFlash shower simulator: medium constants, energy bookkeeping, physics trends, data making, calibration."""

from __future__ import annotations

import argparse

import h5py
import numpy as np
import pytest

from physgan.domains.calo.geometry import calochallenge_geometry, calogan_geometry
from physgan.domains.calo.make import add_make_arguments, make, make_dataset
from physgan.errors import ConfigError, OutputExistsError
from physgan.io.hdf5 import open_source, read_all
from physgan.sim import gflash
from physgan.sim.gflash import CALOGAN_MEDIUM, default_params, simulate_showers, with_overrides

CALOGAN = calogan_geometry()


def test_effective_medium_of_calogan_stack():
    m = CALOGAN_MEDIUM  # 2 mm Pb + 4 mm LAr, numbers from the GFlash mixing rules (reference notes)
    assert m.z_eff == pytest.approx(69.4, abs=0.1)
    assert m.x0_mm == pytest.approx(15.6, abs=0.05)
    assert m.rm_mm == pytest.approx(36.9, abs=0.1)
    assert m.ec_mev == pytest.approx(8.96, abs=0.02)
    assert m.fs == pytest.approx(2.60, abs=0.01) and m.ehat == pytest.approx(0.691, abs=0.001)
    pure = gflash.mix_medium("Pb", [(gflash.PB, 1.0)])
    assert pure.x0_mm == pytest.approx(6.37 / 11.35 * 10) and pure.z_eff == 82.0


def test_energy_bookkeeping_total_readout():
    # without response spread all energy * response lands in cells + overflow (no leakage at 10 GeV)
    p = with_overrides(default_params(CALOGAN), response_sigma=0.0)
    x = simulate_showers(CALOGAN, np.full(40, 10.0), seed=3, params=p)
    assert x.shape == (40, 507) and x.dtype == np.float32 and (x >= 0).all()
    np.testing.assert_allclose(x.astype(np.float64).sum(axis=1), 10_000.0 * 0.9945, rtol=2e-5)
    # default: per-shower spread of 0.3 % around 0.9945 (the Geant4 CaloGAN response)
    y = simulate_showers(CALOGAN, np.full(200, 10.0), seed=4).astype(np.float64).sum(axis=1) / 10_000.0
    assert y.mean() == pytest.approx(0.9945, abs=0.001) and 0.002 < y.std() < 0.004


def test_seed_and_batch_reproducibility():
    e = np.linspace(2, 60, 70)
    a = simulate_showers(CALOGAN, e, seed=11, batch=32)
    b = simulate_showers(CALOGAN, e, seed=11, batch=1000)
    np.testing.assert_array_equal(a, b)
    c = simulate_showers(CALOGAN, e, seed=12)
    assert not np.array_equal(a, c)


def _layer_fractions(x):
    s = CALOGAN.layer_sums(x.astype(np.float64))
    return s / s.sum(axis=1, keepdims=True)


def test_showers_deepen_with_energy_and_for_photons():
    f_lo = _layer_fractions(simulate_showers(CALOGAN, np.full(150, 5.0), seed=1)).mean(axis=0)
    f_hi = _layer_fractions(simulate_showers(CALOGAN, np.full(150, 80.0), seed=1)).mean(axis=0)
    assert f_lo[0] > f_hi[0] + 0.1  # depth of maximum grows like ln E
    f_gam = _layer_fractions(simulate_showers(CALOGAN, np.full(150, 5.0), particle="gamma", seed=1)).mean(axis=0)
    assert f_gam[0] < f_lo[0] - 0.03  # photons first travel ~9/7 X0 before converting


def test_beam_on_cell_corner_is_shared_by_four_cells():
    x = simulate_showers(CALOGAN, np.full(200, 40.0), seed=5).astype(np.float64)
    l1 = x[:, 288:432].reshape(-1, 12, 12).mean(axis=0)
    core = l1[5:7, 5:7]
    assert core.min() / core.max() > 0.95
    assert core.sum() / l1.sum() > 0.8  # the central 2x2 cells (80 x 80 mm) hold most of layer 1
    l0 = x[:, :288].reshape(-1, 3, 96).mean(axis=0)
    assert l0[:, 47] .sum() / l0[:, 48].sum() == pytest.approx(1.0, abs=0.05)
    assert l0[1].sum() / l0.sum() > 0.98  # the middle 160 mm row (|x| < 80 mm) holds layer 0


def test_fast_deposit_matches_generic_locate():
    rng = np.random.default_rng(0)
    for geo in (CALOGAN, calochallenge_geometry("ds2")):
        n = 4_000
        owner = rng.integers(0, 3, n)
        scale = 300.0 if geo is CALOGAN else 50.0
        x, y = rng.uniform(-scale, scale, n), rng.uniform(-scale, scale, n)
        z_edges = geo.z_edges_mm
        z = rng.uniform(0, z_edges[-1] * 1.05, n)
        e = rng.exponential(1.0, n)
        fast = gflash._deposit(geo, owner, 3, x, y, z, e)
        slow = np.zeros((3, geo.n_features))
        layer = np.searchsorted(z_edges, z, side="right") - 1
        for k in range(n):
            if 0 <= layer[k] < len(geo.layers):
                cell = geo.layers[layer[k]].locate(x[k:k + 1], y[k:k + 1])[0]
                if cell >= 0:
                    slow[owner[k], geo.layer_slice(layer[k]).start + cell] += e[k]
                elif geo.n_extra:
                    slow[owner[k], geo.n_cells + layer[k]] += e[k]
        np.testing.assert_allclose(fast, slow, rtol=1e-10, atol=1e-10)


def test_sampling_readout_ds2():
    ds2 = calochallenge_geometry("ds2")
    x = simulate_showers(ds2, np.full(100, 10.0), seed=2).astype(np.float64)
    assert x.shape == (100, 6480)
    ratio = x.sum(axis=1) / 10_000.0
    # response 0.77 times the containment of the 41.85 mm cylinder; stochastic term 7.8 %/sqrt(E)
    assert 0.65 < ratio.mean() < 0.77
    rel = ratio.std() / ratio.mean()
    assert 0.078 / np.sqrt(10) * 0.8 < rel < 0.06
    prof = x.reshape(100, 45, 16, 9).sum(axis=(0, 2, 3))
    assert 3 < np.argmax(prof) < 20  # maximum near ln(E/Ec) X0 ~ 7 X0 = 30 mm = layer ~9


def test_bad_inputs():
    with pytest.raises(ConfigError, match="particle"):
        simulate_showers(CALOGAN, [10.0], particle="pi+")
    with pytest.raises(ConfigError, match="energies"):
        simulate_showers(CALOGAN, [np.nan])
    with pytest.raises(ConfigError, match="ATLAS"):
        simulate_showers(calochallenge_geometry("ds1-photons"), [10.0])
    with pytest.raises(ConfigError):
        with_overrides(default_params(CALOGAN), readout="visible")


def test_make_dataset_and_cli_arguments(tmp_path):
    parser = argparse.ArgumentParser()
    add_make_arguments(parser)
    out = tmp_path / "cg.h5"
    args = parser.parse_args(["--n", "40", "--energy", "5:20", "--seed", "7", "--batch", "16", "--out", str(out)])
    assert make(**vars(args)) == out
    src = open_source(out)
    assert src.layout.name == "calogan" and src.header.condition_units == ["GeV"]
    attrs = src.header.attrs
    assert attrs["domain"] == "calo" and attrs["seed"] == 7 and attrs["energy_dist"] == "uniform"
    assert "gflash" in attrs["simulator"] and "t_shift_x0" in attrs["simulator_params"] and attrs["created"]
    x, c = read_all(src)
    assert x.shape == (40, 507) and 5 <= c.min() and c.max() <= 20
    np.testing.assert_allclose(x.sum(axis=1) / (c[:, 0] * 1000), 0.9945, atol=0.012)
    # same seed, same file contents; existing output refused without --overwrite
    again = make_dataset(tmp_path / "cg2.h5", energy_gev=(5, 20), n=40, seed=7, batch=40, progress=False)
    np.testing.assert_array_equal(read_all(again)[0], x)
    with pytest.raises(OutputExistsError):
        make(**vars(args))
    ds2 = make_dataset(tmp_path / "ds2.h5", geometry="calochallenge-ds2", energy_gev=(1, 1000), n=8, seed=1, progress=False)
    with h5py.File(ds2) as f:
        assert f["showers"].shape == (8, 6480) and f.attrs["geometry"] == "calochallenge-ds2"
        e = f["incident_energies"][:, 0]
    assert 1000 <= e.min() and e.max() <= 1e6  # MeV in CaloChallenge files


BINS = [(1, 10), (10, 30), (30, 60), (60, 100)]


def _shapes(x, e_gev):
    """Layer fractions, containment (L0 |y| < 5 mm, L1 central 2x2 cells), occupancy, response."""
    x = x.astype(np.float64)
    s = CALOGAN.layer_sums(x)
    l0 = x[:, :288].reshape(-1, 3, 96)
    l1 = x[:, 288:432].reshape(-1, 12, 12)
    return {
        "f0": s[:, 0] / s.sum(1), "f1": s[:, 1] / s.sum(1), "f2": s[:, 2] / s.sum(1),
        "c0": l0[:, :, 47:49].sum((1, 2)) / s[:, 0], "c1": l1[:, 5:7, 5:7].sum((1, 2)) / s[:, 1],
        "resp": x[:, :504].sum(1) / (e_gev * 1000.0),
    }


@pytest.mark.shared
def test_calibration_against_geant4_calogan(shared_data):
    real, c = read_all(shared_data / "calo" / "geant4_eplus_calogan_51.h5")
    e = c[:, 0].astype(np.float64)
    k = 30
    e_sim = np.repeat(e, k)
    sim = simulate_showers(CALOGAN, e_sim, seed=2024)
    a, b = _shapes(real, e), _shapes(sim, e_sim)
    for lo, hi in BINS:
        m, ms = (e >= lo) & (e < hi), (e_sim >= lo) & (e_sim < hi)
        for key in ("f0", "f1", "f2"):
            assert abs(a[key][m].mean() - b[key][ms].mean()) < 0.03, (lo, hi, key)
        if m.sum() >= 15:  # containment on the well-populated bins (1-10 GeV holds 6 Geant4 showers)
            for key in ("c0", "c1"):
                assert abs(b[key][ms].mean() / a[key][m].mean() - 1) < 0.05, (lo, hi, key)
    for key in ("c0", "c1"):
        assert abs(b[key].mean() / a[key].mean() - 1) < 0.05, key
    assert b["resp"].mean() == pytest.approx(0.994, abs=0.01)
