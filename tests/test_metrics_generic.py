"""Known-answer tests of the generic metrics (physgan.metrics)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from physgan.errors import ConfigError
from physgan.metrics import (
    bootstrap_error,
    classifier_test,
    copied_mask,
    fpd,
    frechet_distance,
    get_metric,
    kpd,
    memorisation,
    metrics,
    mmd2_poly,
    nearest_distances,
    prdc,
    roc_auc,
    separation_power,
    separation_power_samples,
    wasserstein_1d,
    with_floor,
)
from physgan.metrics._common import distance_tiles, knn_radius
from physgan.metrics.classifier import isotonic_fit
from physgan.metrics.separation import auto_edges

TINY_CLS = {"hidden": (32, 32), "epochs": 15, "batch_size": 256, "lr": 3e-3, "n_boot": 20, "device": "cpu"}


def gauss(n, d=4, shift=0.0, seed=0):
    return np.random.default_rng(seed).normal(size=(n, d)) + shift


# -- Fréchet --------------------------------------------------------------------------------------
def test_frechet_distance_closed_form():
    # 1-D: FD = (m1 - m2)^2 + (s1 - s2)^2
    assert frechet_distance([1.0], [[4.0]], [3.0], [[1.0]]) == pytest.approx(4.0 + 1.0)
    # diagonal covariances: sum over dims
    c1, c2 = np.diag([1.0, 9.0]), np.diag([4.0, 1.0])
    assert frechet_distance([0, 0], c1, [1, 1], c2) == pytest.approx(2 + (1 - 2) ** 2 + (3 - 1) ** 2)


def test_fpd_identical_near_zero_and_shift_gives_squared_shift():
    a, b = gauss(4000, seed=1), gauss(4000, seed=2)
    same = fpd(a, b, normalise=None, min_samples=500, max_samples=4000, n_batches=5, device="cpu")
    assert abs(same["fpd"]) < 0.01
    assert same["fpd_err"] > 0
    delta = np.array([1.0, -0.5, 0.0, 0.5])
    moved = fpd(a, b + delta, normalise=None, min_samples=500, max_samples=4000, n_batches=5, device="cpu")
    assert moved["fpd"] == pytest.approx(float(delta @ delta), abs=0.05)


def test_fpd_extrapolation_removes_finite_size_bias():
    # identical distributions: FD at N=200 is clearly > 0, the extrapolated intercept is ~0
    a, b = gauss(2000, d=8, seed=3), gauss(2000, d=8, seed=4)
    res = fpd(a, b, normalise=None, min_samples=200, max_samples=1000, n_batches=10, device="cpu", seed=1)
    rng = np.random.default_rng(0)
    i = rng.choice(2000, 200, replace=False)
    raw = frechet_distance(a[i].mean(0), np.cov(a[i].T), b[i].mean(0), np.cov(b[i].T))
    assert raw > 0.1
    assert abs(res["fpd"]) < 3 * res["fpd_err"] + 0.01


# -- KPD ------------------------------------------------------------------------------------------
def test_mmd2_poly_matches_brute_force():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(30, 3)), rng.normal(size=(25, 3)) + 0.3
    k = lambda a, b: (a @ b.T / 3 + 1) ** 3  # noqa: E731
    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    want = (kxx.sum() - np.trace(kxx)) / (30 * 29) + (kyy.sum() - np.trace(kyy)) / (25 * 24) - 2 * kxy.mean()
    assert mmd2_poly(x, y, block=7, device="cpu") == pytest.approx(want, rel=1e-10)
    assert mmd2_poly(x, y, block=7, device="cpu", fast=True) == pytest.approx(want, rel=1e-5)  # float32 tiles


def test_kpd_same_near_zero_different_positive():
    a, b = gauss(3000, seed=5), gauss(3000, seed=6)
    same = kpd(a, b, batch_size=1000, n_batches=8, device="cpu")
    diff = kpd(a, b * 1.5 + 0.5, batch_size=1000, n_batches=8, device="cpu")
    assert abs(same["kpd"]) < 3 * same["kpd_err"] + 1e-3
    assert diff["kpd"] > 10 * (abs(same["kpd"]) + same["kpd_err"])


# -- PRDC -----------------------------------------------------------------------------------------
def test_prdc_identical_and_disjoint():
    a = gauss(800, seed=7)
    same = prdc(a, a.copy(), device="cpu", block=300)
    assert same["precision"] == pytest.approx(1.0) and same["recall"] == pytest.approx(1.0)
    assert same["coverage"] == pytest.approx(1.0)
    assert same["density"] > 0.9
    far = prdc(a, a + 100.0, normalise=None, device="cpu")
    assert far == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}
    half = prdc(gauss(800, seed=8), gauss(800, seed=9), device="cpu")
    assert 0.8 < half["precision"] <= 1 and 0.8 < half["recall"] <= 1


def test_knn_radius_and_tiles_match_brute_force():
    x = torch.as_tensor(gauss(57, d=3, seed=10))
    full = torch.cdist(x, x)
    tiles = torch.zeros_like(full)
    for i0, j0, d in distance_tiles(x, x, block=10):
        tiles[i0 : i0 + d.shape[0], j0 : j0 + d.shape[1]] = d
    assert torch.allclose(tiles, full, atol=1e-6)  # sqrt of rounding near 0
    want = torch.sort(full, dim=1).values[:, 5]
    assert torch.allclose(knn_radius(x, 5, block=10), want, atol=1e-6)


# -- classifier -----------------------------------------------------------------------------------
def test_roc_auc_known_values():
    assert roc_auc(np.array([0.1, 0.2, 0.8, 0.9]), np.array([0, 0, 1, 1])) == 1.0
    assert roc_auc(np.array([0.9, 0.8, 0.2, 0.1]), np.array([0, 0, 1, 1])) == 0.0
    assert roc_auc(np.array([0.5, 0.5, 0.5, 0.5]), np.array([0, 1, 0, 1])) == 0.5


def test_isotonic_fit_is_monotone_and_calibrates():
    rng = np.random.default_rng(0)
    s = rng.uniform(size=50000)
    y = rng.uniform(size=50000) < s**2  # true P(y=1|s) = s^2
    f = isotonic_fit(s, y)
    grid = np.linspace(0.05, 0.95, 10)
    p = f(grid)
    assert np.all(np.diff(p) >= 0)
    assert np.allclose(p, grid**2, atol=0.05)


def test_classifier_auc_half_for_same_one_for_separable():
    a, b = gauss(1500, seed=11), gauss(1500, seed=12)
    same = classifier_test(a, b, seed=0, **TINY_CLS)
    assert abs(same["auc"] - 0.5) < 0.08
    assert abs(same["jsd"]) < 0.1
    assert 0 < same["auc_err"] < 0.05
    sep = classifier_test(a, b + 6.0, seed=0, **TINY_CLS)
    assert sep["auc"] > 0.99 and sep["jsd"] > 0.9
    assert sep["ece"] < 0.05


def test_classifier_is_reproducible():
    a, b = gauss(400, seed=13), gauss(400, seed=14) + 0.5
    r1 = classifier_test(a, b, seed=3, **{**TINY_CLS, "epochs": 3})
    r2 = classifier_test(a, b, seed=3, **{**TINY_CLS, "epochs": 3})
    assert r1 == r2


# -- W1 and separation power ----------------------------------------------------------------------
def test_w1_of_shifted_samples_is_the_shift():
    a = gauss(1000, d=2, seed=15)
    w = wasserstein_1d(a, a + np.array([0.7, -2.0]), names=["x", "y"])
    assert w["x"] == pytest.approx(0.7) and w["y"] == pytest.approx(2.0)
    wn = wasserstein_1d(a * [1, 10], a * [1, 10] + [0.0, 5.0], normalise=True)
    assert wn["f1"] == pytest.approx(5.0 / (10 * a[:, 1].std()))


def test_separation_power_known_values():
    assert separation_power([1, 2, 3], [2, 4, 6]) == 0.0
    assert separation_power([5, 5, 0, 0], [0, 0, 1, 3]) == pytest.approx(1.0)
    # ½ Σ (a-b)²/(a+b) with a=(0.5,0.5), b=(1,0): ½ (0.25/1.5 + 0.25/0.5) = 1/3
    assert separation_power([1, 1], [1, 0]) == pytest.approx(1 / 3)


def test_separation_power_samples_identical_and_disjoint():
    a = gauss(2000, d=1, seed=16)
    assert separation_power_samples(a, a.copy())["f0"] == 0.0
    # all of the disjoint sample falls in the overflow bin
    assert separation_power_samples(a, a + 100.0)["f0"] == pytest.approx(1.0)


def test_auto_edges_rules():
    discrete = np.repeat(np.arange(5.0), 10)
    e = auto_edges(discrete)
    assert np.isinf(e[0]) and np.isinf(e[-1])
    counts, _ = np.histogram(discrete, e)
    assert list(counts[1:-1]) == [10] * 5  # one bin per value
    cont = gauss(10000, d=1, seed=17).ravel()
    e = auto_edges(cont)
    assert 10 <= len(e) - 3 <= 100


# -- memorisation ---------------------------------------------------------------------------------
def test_memorisation_flags_copies():
    train, held = gauss(1000, seed=18), gauss(500, seed=19)
    honest = gauss(500, seed=20)
    copies = np.concatenate([train[:100], gauss(400, seed=21)])
    ok = memorisation(train, honest, held, device="cpu", block=128)
    bad = memorisation(train, copies, held, device="cpu", block=128)
    assert 0.8 < ok["ratio"] < 1.25 and ok["copy_fraction"] < 0.05 and ok["exact_copy_fraction"] == 0
    assert bad["exact_copy_fraction"] == pytest.approx(0.2)
    assert bad["copy_fraction"] >= 0.2
    mask = copied_mask(train, copies, held, device="cpu")
    assert mask[:100].all() and mask[100:].mean() < 0.05
    d = nearest_distances(train[:10], train, device="cpu")
    assert np.all(d < 1e-6)  # exact recomputation of the winner: copies at distance 0


# -- bootstrap, floor, registry -------------------------------------------------------------------
def mean_diff(a, b):
    return float(np.mean(a) - np.mean(b))


def test_bootstrap_error_shrinks_like_one_over_sqrt_n():
    small = bootstrap_error(mean_diff, gauss(400, 1, seed=22), gauss(400, 1, seed=23), n_boot=200, seed=0)
    large = bootstrap_error(mean_diff, gauss(6400, 1, seed=24), gauss(6400, 1, seed=25), n_boot=200, seed=0)
    assert small == pytest.approx(np.sqrt(2 / 400), rel=0.2)
    assert small / large == pytest.approx(4.0, rel=0.25)
    half = bootstrap_error(mean_diff, gauss(1600, 1, seed=26), gauss(1600, 1, seed=27), n_boot=200, method="half", seed=0)
    assert half == pytest.approx(np.sqrt(2 / 1600), rel=0.2)


def test_with_floor_values_and_dict_metrics():
    real, fake, real2 = gauss(2000, 1, seed=28), gauss(2000, 1, shift=1.0, seed=29), gauss(2000, 1, seed=30)
    res = with_floor(mean_diff, real, fake, n_boot=50)
    assert res.value == pytest.approx(-1.0, abs=0.1)
    assert abs(res.floor) < 4 * res.floor_error
    res2 = with_floor(lambda a, b: {"m": mean_diff(a, b), "s": float(np.std(b))}, real, fake, real2, n_boot=20)
    assert set(res2) == {"m", "s"} and res2["s"].value == pytest.approx(1.0, abs=0.1)
    intrinsic = with_floor(lambda a, b: {"v": 1.0, "v_err": 0.25}, real, fake, method="intrinsic")
    assert set(intrinsic) == {"v"} and intrinsic["v"].error == 0.25 and intrinsic["v"].floor_error == 0.25
    # tuples (x, c) are resampled row-consistently
    res3 = with_floor(lambda a, b: float(np.mean(a[0] - a[1])), (real, real), (fake, fake), n_boot=5)
    assert res3.value == 0.0 and res3.error == 0.0 and res3.floor == 0.0


def test_registry_and_errors():
    assert {"fpd", "kpd", "prdc", "classifier", "w1", "separation"} <= set(metrics())
    assert get_metric("fpd") is fpd
    with pytest.raises(ConfigError, match="unknown metric"):
        get_metric("nope")
    with pytest.raises(ConfigError, match="non-finite"):
        fpd(np.full((10, 2), np.nan), gauss(10, 2))
    with pytest.raises(ConfigError, match="features"):
        kpd(gauss(100, 2), gauss(100, 3))
