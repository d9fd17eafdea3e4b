"""The evaluation's shortcuts give the numbers of the direct computations (numbers, not timings)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from physgan.evaluation.inputs import LowLevel, SampleSet
from physgan.metrics.memorisation import nearest_distances, search_space, train_distances


def showers(n: int, d: int = 4200, seed: int = 0) -> SampleSet:
    """Sparse non-negative samples with a large dynamic range (log-scaled and projected by LowLevel)."""
    rng = np.random.default_rng(seed)
    x = rng.lognormal(0.0, 2.0, (n, d)).astype(np.float32) * (rng.random((n, d)) < 0.15)
    c = rng.uniform(1.0, 100.0, (n, 1)).astype(np.float32)
    return SampleSet(x, c, {}, ["energy"])


def test_memorisation_search_through_the_projection_equals_the_search_on_the_representation():
    """embed= maps training rows straight into the search space (projection and PCA as one matrix);
    the distances equal those of the search on the full projected representation."""
    train, held = showers(700, seed=1), showers(150, seed=2)
    low = LowLevel(train, {"energy": "log"}, seed=3, device=torch.device("cpu"))
    assert low.proj is not None and low.log_scale is not None
    rep_t, rep_h = low(train), low(held)
    queries = {"held": rep_h, "copies": rep_t[:40]}
    want, info_w = train_distances(rep_t, queries, max_train=600, dim=24, seed=4, device="cpu")
    got, info_g = train_distances(train.x, queries, max_train=600, dim=24, seed=4, device="cpu", embed=lambda r, s: low.embed(train, r, s))
    assert info_g == info_w and info_g["dim"] == 24
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-4, atol=1e-4)
    assert np.mean(want["copies"] < 1e-6) > 0.8  # 40 training rows: those in the 600 searched are at 0


def test_search_space_is_standardise_then_project():
    rng = np.random.default_rng(5)
    a = rng.normal(size=(300, 12)) * np.arange(1, 13) + 3.0
    space = search_space(a, dim=5)
    z = (a - a.mean(0)) / a.std(0)
    _, _, vt = np.linalg.svd(z - z.mean(0), full_matrices=False)
    np.testing.assert_allclose(np.abs(space(a)), np.abs(z @ vt[:5].T), atol=1e-9)  # up to each component's sign
    full = search_space(a, dim=None)
    np.testing.assert_allclose(full(a), z, atol=1e-12)


@pytest.mark.parametrize("candidates", [1, 4])
def test_nearest_distances_min_and_topk_agree(candidates):
    rng = np.random.default_rng(6)
    ref, q = rng.normal(size=(500, 7)), rng.normal(size=(90, 7))
    q[:10] = ref[:10]
    want = np.sqrt(((q[:, None, :] - ref[None]) ** 2).sum(-1)).min(1)
    got = nearest_distances(q, ref, device="cpu", block=64, candidates=candidates)
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert np.all(got[:10] == 0)


def test_fpd_and_kpd_share_the_real_sets_work_without_changing_numbers():
    """The caches hand the floor's call the real set's block moments / batch kernel sums of the value's
    call: the numbers equal those computed from scratch, and the floor adds no new real entries."""
    from physgan.metrics import fpd, kpd

    rng = np.random.default_rng(7)
    real, fake, real2 = rng.normal(size=(3000, 6)), rng.normal(size=(2600, 6)) * 1.2, rng.normal(size=(3000, 6))
    for metric, opts in ((fpd, {"min_samples": 1000, "n_batches": 4, "block": 100}), (kpd, {"batch_size": 500, "n_batches": 4})):
        cache: dict = {}
        value = metric(real, fake, device="cpu", seed=3, cache=cache, **opts)
        n_after_value = len(cache)
        floor = metric(real, real2, device="cpu", seed=3, cache=cache, **opts)
        assert len(cache) == n_after_value > 0  # every real entry reused
        assert value == pytest.approx(metric(real, fake, device="cpu", seed=3, **opts), rel=1e-12)
        assert floor == pytest.approx(metric(real, real2, device="cpu", seed=3, **opts), rel=1e-12)


def test_fpd_block_subsets_equal_direct_moments():
    """A union of blocks has exactly the mean and covariance of its rows."""
    from physgan.metrics.frechet import _BlockMoments, gaussian_fit

    x = torch.as_tensor(np.random.default_rng(8).normal(size=(1000, 5)))
    perm = np.random.default_rng(9).permutation(1000)
    bm = _BlockMoments(x, 50, perm)
    rng = np.random.default_rng(10)
    mu, cov = bm.subsets(300, 3, rng)
    rng = np.random.default_rng(10)
    for c in range(3):
        blocks = rng.choice(20, size=6, replace=False)
        rows = np.concatenate([perm[b * 50 : (b + 1) * 50] for b in blocks])
        m, cv = gaussian_fit(x[torch.as_tensor(rows)])
        assert torch.allclose(mu[c], m, atol=1e-12) and torch.allclose(cov[c], cv, atol=1e-10)


def test_marginals_rounds_equal_w1_and_separation_of_the_resampled_rows():
    """Every bootstrap round from one sort: W1, separation power and the normalised mean equal the
    direct functions applied to the resampled rows (discrete and continuous features, ties included)."""
    from physgan.metrics import separation_power_samples, wasserstein_1d
    from physgan.metrics.bootstrap import with_floor
    from physgan.metrics.marginals import Marginals
    from physgan.metrics.separation import auto_edges

    rng = np.random.default_rng(11)
    real = np.column_stack([rng.normal(size=400), rng.integers(0, 5, 400), rng.exponential(size=400) * 1e3 + 1e4])
    fake = np.column_stack([rng.normal(0.2, 1.1, 330), rng.integers(0, 6, 330), rng.exponential(size=330) * 9e2 + 1e4])
    names = ["gauss", "count", "energy"]
    edges = {k: auto_edges(real[:, j]) for j, k in enumerate(names)}
    metric = Marginals(names, edges)

    def direct(a, b):
        w = wasserstein_1d(a, b, names=names)
        sd = a.std(axis=0)
        s = separation_power_samples(a, b, names=names, edges=edges)
        out = {f"w1/{k}": v for k, v in w.items()}
        out.update({f"separation/{k}": v for k, v in s.items()})
        out["w1_norm_mean"] = float(np.mean(np.asarray(list(w.values())) / sd))
        out["separation_mean"] = float(np.mean(list(s.values())))
        return out

    rounds = [(None, None)] + [(rng.integers(0, 400, 400), rng.integers(0, 330, 330)) for _ in range(4)]
    for (ia, ib), got in zip(rounds, metric.rounds(real, fake, rounds)):
        want = direct(real if ia is None else real[ia], fake if ib is None else fake[ib])
        assert got == pytest.approx(want, rel=1e-9, abs=1e-12)
    fast = with_floor(metric, real, fake, n_boot=5, seed=1)
    slow = with_floor(direct, real, fake, n_boot=5, seed=1)
    flat = lambda res: {(k, q): x for k, v in res.items() for q, x in v.to_dict().items()}  # noqa: E731
    assert flat(fast) == pytest.approx(flat(slow), rel=1e-9)


def test_lazy_rows_resample_like_arrays_and_calo_physics_reads_them():
    """Bootstrap rounds of a LazyRows view select the same rows as rounds of the array; the calo
    physics metrics give the same numbers from views as from copies."""
    from physgan.domains.calo.features import shower_features
    from physgan.domains.calo.geometry import calochallenge_geometry
    from physgan.domains.calo.metrics import physics_metrics
    from physgan.metrics.bootstrap import LazyRows, take, with_floor

    rng = np.random.default_rng(12)
    base = rng.normal(size=(50, 3))
    idx = rng.integers(0, 50, 50)
    view = take(LazyRows(base), idx)
    assert isinstance(view, LazyRows) and view.shape == (50, 3)
    np.testing.assert_array_equal(np.asarray(view), base[idx])
    np.testing.assert_array_equal(view[:7], base[idx[:7]])
    np.testing.assert_array_equal(np.asarray(take(view, idx[::-1])), base[idx][idx[::-1]])

    geom = calochallenge_geometry("1-photons")
    x = (rng.exponential(5.0, (120, geom.n_features)) * (rng.random((120, geom.n_features)) < 0.3)).astype(np.float32)
    c = rng.uniform(1e3, 1e5, (120, 1))
    xf = x[::-1] * 1.05
    fr, ff = shower_features(x, c, geom), shower_features(xf, c[::-1], geom)

    def physics(a, b):
        return physics_metrics(a, b, geom, n_energy_bins=2)

    lazy = with_floor(physics, (LazyRows(x), c, fr), (LazyRows(xf), c[::-1], ff), n_boot=3, seed=4)
    eager = with_floor(physics, (x, c, fr), (xf, c[::-1], ff), n_boot=3, seed=4)
    for k in eager:
        assert lazy[k].to_dict() == pytest.approx(eager[k].to_dict(), rel=1e-12, nan_ok=True)
    assert "sep/voxel_energy" in eager


def test_reference_scale_principal_axes_equal_the_svd():
    """The projection fitted from the scatter matrix spans the leading singular vectors of the scaled reference."""
    from physgan.metrics.scaling import reference_scale

    rng = np.random.default_rng(13)
    ref = rng.normal(size=(500, 9)) @ rng.normal(size=(9, 9)) + 5.0
    sc = reference_scale(ref, mode="std", max_components=4)
    z = ref / ref.std(axis=0)
    _, sv, vt = np.linalg.svd(z - z.mean(0), full_matrices=False)
    np.testing.assert_allclose(np.abs(sc.basis.T @ vt[:4].T), np.eye(4), atol=1e-8)  # same axes, up to sign
    assert sc.variance_kept == pytest.approx(float((sv[:4] ** 2).sum() / (sv**2).sum()), rel=1e-10)
