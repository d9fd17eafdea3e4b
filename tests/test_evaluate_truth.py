"""Issue 18: evaluation that tells the truth: stable FPD/KPD on few dataset-2 showers, signed verdicts,
verdict-first summary, memorisation that does not flag fields copying nothing, ratio panels that show the data."""

from __future__ import annotations

import math

import numpy as np
import pytest

from physgan.domains.base import get_domain
from physgan.domains.nbody.metrics import log_density, nearest_training
from physgan.domains.nbody.plots import conditioning_response, matched_pairs, pdf_histograms
from physgan.evaluation import Evaluation, MetricEntry, detail_group, judge
from physgan.metrics import fpd, kpd, physics_direction, with_floor
from physgan.metrics.memorisation import memorisation_stats, train_distances
from physgan.metrics.scaling import reference_scale
from physgan.report.axes import ratio_limits


# -- FPD / KPD on 100 vs 100 CaloChallenge dataset-2 showers ----------------------------------------
@pytest.fixture(scope="module")
def ds2_features():
    """High-level features of 300 GFlash showers in dataset-2 geometry, 10-100 GeV (~2 s to simulate)."""
    from physgan.domains.calo.make import resolve_geometry
    from physgan.sim import gflash

    geo = resolve_geometry("calochallenge-ds2")
    e = np.random.default_rng(5).uniform(10.0, 100.0, 300)
    x = np.concatenate([b for _, b in gflash.iter_showers(geo, e, seed=7, batch=300)])
    return get_domain("calo"), x, e[:, None] * 1000.0, geo.to_attrs()  # incident energy in MeV, as the file stores it


def _feature_matrix(dom, x, c, attrs, scale=1.0):
    feats = dom.features(x * scale, c, attrs)
    return np.stack([np.asarray(v, np.float64) for v in feats.values()] + [np.log10(c[:, 0])], axis=1), list(feats) + ["log10_e"]


def test_fpd_kpd_finite_and_meaningful_on_100_ds2_showers(ds2_features):
    dom, x, c, attrs = ds2_features
    real, names = _feature_matrix(dom, x[:100], c[:100], attrs)
    same, _ = _feature_matrix(dom, x[100:200], c[100:200], attrs)
    doubled, _ = _feature_matrix(dom, x[200:300], c[200:300], attrs, scale=2.0)
    assert real.shape[1] > 300  # ~45 layers x 8 features: more features than showers
    # one scale fixed by the real reference; few samples: the leading components only (as evaluate does)
    scaling = reference_scale(real, names, max_components=100 // 2 // 4)
    assert scaling.dropped and all(n.split("_")[-1].isdigit() for n in scaling.dropped)  # near-empty deep layers
    out = {}
    for label, fake in (("same", same), ("doubled", doubled)):
        for metric in (fpd, kpd):
            res = with_floor(lambda a, b, m=metric: m(a, b, normalise=None, seed=0, device="cpu"), scaling(real), scaling(fake),
                             method="intrinsic", seed=0)  # fmt: skip
            r = res[metric.__name__]
            assert all(math.isfinite(v) and abs(v) < 100 for v in (r.value, r.error, r.floor, r.floor_error)), (label, r)
            out[label, metric.__name__] = r
    # same distribution: at the floor; energies doubled: FPD many sigma above it
    for name in ("fpd", "kpd"):
        r = out["same", name]
        assert judge(r.value, r.floor, math.hypot(r.error, r.floor_error), "lower")[1] == "indistinguishable"
    r = out["doubled", "fpd"]
    n_sig, closeness = judge(r.value, r.floor, math.hypot(r.error, r.floor_error), "lower")
    assert n_sig > 5 and closeness == "far"


def test_reference_scale_without_pooling_would_explode():
    rng = np.random.default_rng(0)
    a = rng.normal(1.0, 0.1, size=(100, 3))
    a[:, 2] = 0.0
    a[rng.choice(100, 3, replace=False), 2] = 1e-9 * rng.uniform(1, 2, 3)  # a nearly empty layer
    s = reference_scale(a, ["e0", "e1", "deep"])
    assert s.dropped == ["deep"] and s(a).shape == (100, 2)
    p = reference_scale(a, max_components=1)
    assert p.n_components == 1 and p(a).shape == (100, 1)


# -- signed quantities ------------------------------------------------------------------------------
def test_signed_bias_seven_sigma_is_not_at_floor():
    # the numbers: response_rel_diff -3.6e-4 ± 2.2e-5 against a floor of -8.4e-5 ± 3.5e-5
    assert physics_direction("response_rel_diff") == "unknown"
    assert physics_direction("ebin2/sep/e_layer_3") == "lower" and physics_direction("pk_ratio_max_dev") == "lower"
    assert physics_direction("sep/width_r_9") == "lower"
    m = MetricEntry("physics/response_rel_diff", -3.6e-4, 2.2e-5, -8.4e-5, 3.5e-5, "physics", physics_direction("response_rel_diff"))
    ev = Evaluation("calo", {m.name: m}, {"n": {"real": 1000, "fake": 1000}, "floor_source": "real2"}, [])
    assert m.verdict == "differs from floor (-7σ)" and m.n_sigma == pytest.approx(-6.7, abs=0.1)
    assert m.closeness == "far"
    # the same bias on the other side is just as far; a bias equal to the floor's is indistinguishable
    assert judge(8.4e-5 * 2 + 2.76e-4, -8.4e-5 + 2 * 8.4e-5, 4.13e-5, "unknown")[1] == "far"
    assert judge(-8.0e-5, -8.4e-5, 4.13e-5, "unknown")[1] == "indistinguishable"
    assert "far" in ev.headline().lower() and "response_rel_diff" in ev.headline()


def test_headline_says_pass_only_with_thresholds():
    def entries():
        return {
            "auc_high": MetricEntry("auc_high", 0.998, 0.001, 0.51, 0.02, "generic", "lower"),
            "coverage": MetricEntry("coverage", 0.80, 0.01, 0.82, 0.01, "generic", "higher"),
            "w1/e_layer_3": MetricEntry("w1/e_layer_3", 5.0, 0.1, 1.0, 0.1, "per_feature", "lower"),
        }

    info = {"n": {"real": 100, "fake": 100}, "floor_source": "real halves"}
    ev = Evaluation("calo", entries(), info, [])
    text = ev.headline()
    assert "PASS" not in text and "FAIL" not in text
    lines = {g["group"]: g for g in ev.group_verdicts()}
    assert lines["classifier two-sample test"]["closeness"] == "far"
    assert lines["classifier two-sample test"]["worst"][0][0] == "auc_high"
    assert lines["precision / recall / density / coverage"]["closeness"] == "indistinguishable"
    assert lines["per-feature marginals"]["closeness"] == "far"
    assert detail_group("w1/e_layer_3", "calo") == "layer 3" and detail_group("physics/ebin2/sep/e_layer_3", "calo") == "energy bin 2"
    ev2 = Evaluation("calo", entries(), info, [("auc_high", ">", 0.9)])
    assert "thresholds: FAIL" in ev2.headline()
    ev3 = Evaluation("calo", entries(), info, [("auc_high", ">", 0.999)])
    assert "thresholds: PASS" in ev3.headline()
    # the text summary starts with the verdict and hides the per-layer rows
    summary = ev.format_summary()
    assert summary.splitlines()[0].startswith("physgan evaluation (calo)") and "w1/e_layer_3" not in summary.split("-----")[-1]


def test_group_verdict_allows_for_the_look_elsewhere_effect():
    info = {"n": {"real": 100, "fake": 100}, "floor_source": "real halves"}

    def group(extra_sigma: float) -> dict:
        ms = {f"w1/f_{i}": MetricEntry(f"w1/f_{i}", 1.0, 0.1, 1.0, 0.0, "per_feature", "lower") for i in range(700)}
        ms["w1/f_0"] = MetricEntry("w1/f_0", 1.0 + 0.1 * extra_sigma, 0.1, 1.0, 0.0, "per_feature", "lower")
        return Evaluation("array", ms, info, []).group_verdicts()[0]

    chance = group(3.0)  # one of 700 at 3σ: expected by chance
    assert chance["z"] == pytest.approx(3.97, abs=0.01) and chance["closeness"] == "indistinguishable"
    assert chance["counts"]["within 3x floor"] == 1 and chance["worst"] == []
    real = group(10.0)
    assert real["closeness"] == "within 3x floor" and real["worst"][0][0] == "w1/f_0"


# -- memorisation ------------------------------------------------------------------------------------
def test_train_distances_projection_keeps_copies_at_zero():
    rng = np.random.default_rng(1)
    train = rng.normal(size=(600, 300)) @ rng.normal(size=(300, 300)) / 10
    held = rng.normal(size=(200, 300)) @ rng.normal(size=(300, 300)) / 10
    fake = np.concatenate([train[:50], held[:150] + 0.0])
    d, info = train_distances(train, {"fake": fake, "real": held}, dim=32, device="cpu", block=128)
    assert info["dim"] == 32 and 0 < info["variance_kept"] < 1
    assert np.all(d["fake"][:50] < 1e-9) and np.all(d["fake"][50:] > 0)
    s = memorisation_stats(d["real"], d["fake"])
    assert s["exact_copy_fraction"] == pytest.approx(0.25)


def _fields(n: int, seed: int, grid: int = 32, smooth: float | None = None) -> np.ndarray:
    """Lognormal-like 2-D densities (1 + delta): exp of a red-spectrum Gaussian field, unit mean."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    k = np.hypot(*np.meshgrid(np.fft.fftfreq(grid), np.fft.rfftfreq(grid), indexing="ij"))
    amp = np.where(k > 0, np.maximum(k, 1e-12) ** -1.2, 0.0)
    g = np.fft.irfftn(np.fft.rfftn(rng.normal(size=(n, grid, grid)), axes=(1, 2)) * amp, s=(grid, grid), axes=(1, 2))
    g /= g.std(axis=(1, 2), keepdims=True)
    f = np.exp(0.8 * g)
    if smooth:
        f = ndimage.gaussian_filter(f, (0, smooth, smooth), mode="wrap")
    return f / f.mean(axis=(1, 2), keepdims=True)


def test_field_memorisation_does_not_flag_fields_that_copy_nothing():
    train, held = _fields(60, 1), _fields(40, 2)
    smooth = _fields(40, 3, smooth=2.0)  # low-contrast fields: close to everything in Euclidean distance
    copies = np.roll(train[:40], (5, 9), axis=(1, 2))  # periodic shifts of training fields
    flat = {k: v.reshape(len(v), -1) for k, v in {"train": train, "held": held, "smooth": smooth}.items()}
    d_euclid, _ = train_distances(flat["train"], {"real": flat["held"], "fake": flat["smooth"]}, dim=None, device="cpu")
    assert memorisation_stats(d_euclid["real"], d_euclid["fake"])["copy_fraction"] > 0.5  # the old statistic's false alarm
    d, info = nearest_training(train, {"real": held, "smooth": smooth, "copies": copies})
    assert info["n_train"] == 60
    honest = memorisation_stats(d["real"], d["smooth"])
    assert honest["copy_fraction"] <= 0.05 and honest["exact_copy_fraction"] == 0
    copied = memorisation_stats(d["real"], d["copies"])
    assert copied["copy_fraction"] == 1.0 and np.all(d["copies"] < 0.01) and copied["ratio"] < 0.01  # 1 - 1e-3 correlation


# -- figures -----------------------------------------------------------------------------------------
def test_ratio_limits_follow_the_data():
    lo, hi, log = ratio_limits([0.05, 0.06, 0.08], [0.01, 0.01, 0.01])
    assert log and lo < 0.05 and hi > 1.0
    lo, hi, log = ratio_limits([0.9, 1.7], [0.05, 0.1])
    assert not log and lo <= 0.5 and hi >= 1.8
    assert ratio_limits([1.0, 1.1])[:2] == pytest.approx((0.45, 1.55))
    assert ratio_limits([np.nan]) == (0.5, 1.5, False)


def test_nbody_pairs_at_matching_conditions_and_conditioning_response():
    rng = np.random.default_rng(0)
    cr = rng.uniform(0.2, 0.4, size=(30, 1))
    cf = rng.uniform(0.2, 0.4, size=(30, 1))
    pairs = matched_pairs(cr, cf, 30, 30, 4)
    assert len(pairs) == 4 and all(abs(cr[i, 0] - cf[j, 0]) <= np.sort(np.abs(cf[:, 0] - cr[i, 0]))[0] + 1e-12 for i, j in pairs)
    assert cr[pairs[0][0], 0] == cr.min() and cr[pairs[-1][0], 0] == cr.max()
    # amplitude grows with the condition in the "simulator"; the "generator" ignores it
    base = _fields(30, 4) - 1.0
    xr = 1.0 + base * (cr[:, :, None] / 0.3)
    xf = 1.0 + base * 1.0
    k, rr, er, rf, ef = conditioning_response(xr, cr, xf, cf, 64.0, 0)
    assert np.nanmedian(rr) > 2.0 and np.nanmedian(rr) > 1.5 * np.nanmedian(rf)  # the generator misses the response


def test_micro_headline_figures_include_requested_vs_achieved_porosity(tmp_path):
    rng = np.random.default_rng(0)
    x = (rng.random((40, 16, 16)) < 0.6).astype(np.uint8)  # label 0 (pore) ~40 %
    c = (x == 0).mean(axis=(1, 2))[:, None]
    figs = get_domain("micro").plots((x, c), (x, c + 0.1), {"condition_names": ["porosity"]}, tmp_path)
    titles = [t for t, _ in figs]
    assert "Requested vs achieved porosity" in titles[:4] and all(p.is_file() and p.stat().st_size > 0 for _, p in figs)


def test_density_pdf_plot_bins_real_and_generated_cells_alike():
    """The PDF figure's end bins hold every cell beyond them for both sets: the same fields give the same histogram,
    and each integrates to one (clipping only the generated cells drew end-bin spikes the generator did not make)."""
    x = np.exp(np.random.default_rng(0).normal(0.0, 1.0, (20, 16, 16))).astype(np.float32)
    edges, hr, hf = pdf_histograms(x, x.copy())
    np.testing.assert_array_equal(hr, hf)
    mass = hr * np.diff(edges)
    assert float(mass.sum()) == pytest.approx(1.0)
    below = float(np.mean(log_density(x) < edges[0]))
    assert below > 0 and mass[0] >= below  # the first bin holds the cells below it
