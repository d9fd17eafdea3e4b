"""Separation powers, response/resolution metrics, score and plots of the calorimeter domain."""

from __future__ import annotations

import numpy as np
import pytest

from physgan.domains.calo.geometry import calochallenge_geometry, calogan_geometry
from physgan.domains.calo.metrics import physics_metrics, real_binning, score, separation_power
from physgan.domains.calo.plots import plots

CALOGAN = calogan_geometry()


def toy_showers(n: int, seed: int, scale: float = 1.0, geom=CALOGAN) -> tuple[np.ndarray, np.ndarray]:
    """Toy showers: Gaussian lateral profile around the axis, energy-dependent layer split, random cell dropout."""
    rng = np.random.default_rng(seed)
    e_gev = rng.uniform(1, 100, n) if geom.energy_units == "GeV" else rng.uniform(1000, 100000, n) / 1000
    frac = np.stack([0.35 - 0.05 * np.log10(e_gev), 0.64 + 0.05 * np.log10(e_gev), np.full(n, 0.01)], 1)
    frac = frac[:, : geom.n_layers] if geom.n_layers <= 3 else np.full((n, geom.n_layers), 1 / geom.n_layers)
    frac = frac / frac.sum(1, keepdims=True)
    response = scale * rng.normal(0.99, 0.01, n)
    x = np.zeros((n, geom.n_features))
    for i, lay in enumerate(geom.layers):
        sigma = rng.uniform(15, 35, (n, 1))
        w = np.exp(-0.5 * (lay.x_mm[None] ** 2 + lay.y_mm[None] ** 2) / sigma**2) * rng.gamma(2.0, 0.5, (n, lay.n_cells))
        w *= rng.random((n, lay.n_cells)) < 0.7
        w[:, np.argmin(lay.x_mm**2 + lay.y_mm**2)] += 1e-3
        w /= w.sum(1, keepdims=True)
        x[:, geom.layer_slice(i)] = w * (frac[:, i] * response * e_gev * 1000)[:, None]
    c = (e_gev if geom.energy_units == "GeV" else e_gev * 1000)[:, None]
    return x.astype(np.float32), c.astype(np.float32)


def test_separation_power_known_answers():
    assert separation_power([1, 2, 3], [2, 4, 6]) == 0.0
    assert separation_power([1, 0], [0, 5]) == pytest.approx(1.0)
    assert separation_power([1, 0], [1, 1]) == pytest.approx(0.5 * (0.25 / 1.5 + 0.25 / 0.5))
    assert np.isnan(separation_power([0, 0], [1, 1]))


def test_binning_is_fixed_by_real_data_and_fakes_outside_count_in_edge_bins():
    real = np.linspace(0.0, 1.0, 101)
    edges, floor = real_binning(real, 10)
    assert floor is None and edges[0] == 0.0 and edges[-1] == 1.0 and len(edges) == 11
    log_edges, floor = real_binning(np.array([0.0, 10.0, 1000.0]), 4, log=True)
    assert floor == 5.0 and log_edges[0] == pytest.approx(np.log10(5.0)) and log_edges[-1] == pytest.approx(3.0)
    x, c = toy_showers(300, seed=1)
    far = x * 3.0  # E_tot / E_inc ~ 3: beyond the real range, all clipped into the last bin
    m = physics_metrics((x, c), (far, c), CALOGAN.to_attrs())
    r = x.astype(np.float64).sum(1) / (c[:, 0] * 1000.0)
    edges, _ = real_binning(r)
    h1 = np.histogram(r, edges)[0] / len(r)
    expected = 0.5 * (h1[:-1].sum() + (h1[-1] - 1) ** 2 / (h1[-1] + 1))  # fake: unit mass in the last bin
    assert m["sep/e_tot_over_e_inc"] == pytest.approx(expected) and expected > 0.95


def test_identical_samples_give_zero_and_shifted_energy_is_detected():
    real = toy_showers(2000, seed=0)
    m0 = physics_metrics(real, real, CALOGAN.to_attrs())
    seps = {k: v for k, v in m0.items() if "sep/" in k}
    assert seps and all(v == 0.0 for v in seps.values())
    assert m0["response_rel_diff"] == 0.0 and m0["resolution_ratio"] == 1.0
    assert score(m0) == 0.0
    assert {"ebin0/sep/e_tot_over_e_inc", "ebin3/sep/e_layer_1", "ebin2/response_fake", "sep/voxel_energy"} <= set(m0)
    assert m0["ebin0/e_inc_lo_mev"] == pytest.approx(float(real[1].min()) * 1000)

    other = toy_showers(2000, seed=1)  # an independent sample of the same process: small S (noise floor)
    m1 = physics_metrics(real, other, CALOGAN.to_attrs())
    shifted = toy_showers(2000, seed=1, scale=1.05)  # 5 % too much energy
    m2 = physics_metrics(real, shifted, CALOGAN.to_attrs())
    assert m1["sep/e_tot_over_e_inc"] < 0.05
    assert m2["sep/e_tot_over_e_inc"] > 0.8
    assert m2["response_rel_diff"] == pytest.approx(0.05, abs=0.002)
    assert abs(m1["response_rel_diff"]) < 0.002
    assert score(m2) > 5 * score(m1)
    # centroids/widths do not depend on the energy scale, only on the shape
    assert m2["sep/width_x_1"] < 0.05


def test_score_weighs_energies_and_shapes_skips_nan_and_is_inf_when_empty():
    energies = {"sep/e_tot_over_e_inc": 0.2, "sep/e_layer_0": float("nan"), "sep/e_layer_1": 0.4}
    assert score(energies) == pytest.approx(0.3)
    shapes = {"sep/ec_x_0": 0.9, "sep/width_y_1": 0.5, "sep/voxel_energy": 100.0, "response_real": 7.0}
    assert score({**energies, **shapes}) == pytest.approx(0.5 * 0.3 + 0.5 * 0.7)  # the voxel spectrum is left out
    assert score({"sep/ec_x_0": 0.1}) == float("inf")


def test_metrics_of_10k_showers_are_finite():
    """Two independent toy sets: every separation power finite and small (speed lives in bench/metrics_speed)."""
    real, fake = toy_showers(10000, seed=2), toy_showers(10000, seed=3)
    m = physics_metrics(real, fake, CALOGAN.to_attrs())
    assert np.isfinite(score(m)) and score(m) < 0.05
    assert all(np.isfinite(v) for k, v in m.items() if k.startswith("sep/"))


def test_cylindrical_geometry_metrics_and_plots(tmp_path):
    geom = calochallenge_geometry("ds1-photons")
    real, fake = toy_showers(400, seed=4, geom=geom), toy_showers(400, seed=5, geom=geom)
    m = physics_metrics(real, fake, geom.to_attrs())
    assert "sep/ec_r_0" in m and "sep/width_r_4" in m and np.isfinite(score(m))
    figs = plots(real, fake, geom.to_attrs(), tmp_path / "cyl")
    assert len(figs) >= 4
    for title, path in figs:
        assert title and path.exists() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_calogan_plots(tmp_path):
    real, fake = toy_showers(300, seed=6), toy_showers(300, seed=7, scale=1.02)
    figs = plots(real, fake, CALOGAN.to_attrs(), tmp_path)
    names = sorted(p.name for _, p in figs)
    assert "calo_average_shower.png" in names and "calo_response.png" in names and "calo_voxel_spectrum.png" in names
    assert sum(n.startswith("calo_features") for n in names) == 2  # 24 features, 12 per page
    again = plots(real, fake, CALOGAN.to_attrs(), tmp_path)  # re-plotting into the same folder replaces the files
    assert [p for _, p in again] == [p for _, p in figs]


def test_layer_profiles_show_cartesian_centres_as_a_difference(tmp_path, monkeypatch):
    """CaloGAN's centres lie about 0 mm with either sign, so their lower panel is generated - real in mm (a ratio of
    two near-zero means is noise); energies and widths keep the ratio; a shifted generated centre shows in the panel."""
    import importlib

    calo_plots = importlib.import_module("physgan.domains.calo.plots")  # the package's `plots` attribute is the function
    saved = []
    original = calo_plots._save
    monkeypatch.setattr(calo_plots, "_save", lambda fig, path: (saved.append(fig), original(fig, path))[1])
    real, fake = toy_showers(300, seed=6), toy_showers(300, seed=7)
    x = np.array(fake[0], copy=True)
    lay = CALOGAN.layers[1]  # 12 x 12 cells of 40 mm, x along the first axis
    grid = x[:, CALOGAN.layer_slice(1)].reshape(len(x), *lay.shape)
    x[:, CALOGAN.layer_slice(1)] = np.roll(grid, 2, axis=1).reshape(len(x), -1)  # layer 1 moved 80 mm in x
    calo_plots.plot_layer_profiles(real, (x, fake[1]), CALOGAN.to_attrs(), tmp_path / "profiles.png")
    lower = [ax for ax in saved[-1].axes if ax.get_xlabel() == "layer"]
    assert [ax.get_ylabel() for ax in lower] == ["gen/real", "gen - real [mm]", "gen/real"]
    diff = lower[1].lines[0].get_ydata() if lower[1].lines else lower[1].containers[0][0].get_ydata()
    lo, hi = lower[1].get_ylim()
    assert lo == -hi and abs(diff[1]) > 5 * max(abs(diff[0]), abs(diff[2]), 0.1) and hi > abs(diff[1])
