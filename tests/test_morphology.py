"""Morphology metrics on hand-built images, analytic shapes and porespy references."""

from __future__ import annotations

import numpy as np
import pytest

from physgan.metrics import morphology as M


def _brute_s2(im: np.ndarray, r: tuple[int, int], periodic: bool) -> np.ndarray:
    """S2 map by explicit pair counting (2-D)."""
    n0, n1 = im.shape
    out = np.zeros((2 * r[0] + 1, 2 * r[1] + 1))
    for a in range(-r[0], r[0] + 1):
        for b in range(-r[1], r[1] + 1):
            if periodic:
                out[a + r[0], b + r[1]] = np.mean(im & np.roll(im, (-a, -b), (0, 1)))
            else:
                i0, i1 = max(0, -a), min(n0, n0 - a)
                j0, j1 = max(0, -b), min(n1, n1 - b)
                out[a + r[0], b + r[1]] = np.mean(im[i0:i1, j0:j1] & im[i0 + a : i1 + a, j0 + b : j1 + b])
    return out


@pytest.mark.parametrize("periodic", [False, True])
def test_s2_map_matches_pair_counting(periodic):
    im = np.random.default_rng(1).random((9, 12)) < 0.4
    for r in [(3, 4), (4, 6)] + ([] if periodic else [(8, 11)]):
        got = M.two_point_correlation_map(im, r_max=r, periodic=periodic)
        np.testing.assert_allclose(got, _brute_s2(im, r, periodic), atol=1e-6)


@pytest.mark.parametrize("periodic", [False, True])
def test_s2_limits_on_random_field(periodic):
    phi = 0.3
    im = np.random.default_rng(0).random((48, 48, 48)) < phi
    res = M.two_point_correlation(im, periodic=periodic)
    assert res.s2[0] == pytest.approx(im.mean(), abs=1e-6)  # S2(0) = phase fraction
    assert res.r_vox[0] == 0.0 and res.r_vox[5] == pytest.approx(5.0, abs=0.15)
    # uncorrelated voxels: S2(r > 0) = phi^2 up to sampling noise
    np.testing.assert_allclose(res.s2[1:], im.mean() ** 2, atol=0.004)


def test_s2_matches_porespy():
    ps = pytest.importorskip("porespy")
    ps.settings.tqdm["disable"] = True
    im = ps.generators.blobs([40, 36, 32], porosity=0.4, blobiness=1, seed=3)  # 3-D only: one numba compile
    ref = ps.metrics.two_point_correlation(im, bins=12)
    # porespy 3.2: non-periodic estimator, shells [e_i, e_i+1) over its edges, S2 = probability_scaled
    ours = M.two_point_correlation(im, bins=ref.bin_edges)
    np.testing.assert_allclose(ours.s2, ref.probability_scaled, rtol=1e-5, atol=1e-6)
    assert ours.s2[0] < im.mean()  # the first shell [0, 2) averages S2 over r = 0 and 1
    np.testing.assert_allclose(ours.distance[1:], ref.bin_centers[1:], atol=0.6)


def test_s2_decays_from_phi_to_phi_squared_for_blobs():
    ps = pytest.importorskip("porespy")
    im = ps.generators.blobs([96, 96], porosity=0.35, blobiness=2, seed=0, periodic=True)
    res = M.two_point_correlation(im, periodic=True)
    phi = im.mean()
    assert res.s2[0] == pytest.approx(phi, abs=1e-6)
    assert np.all(np.diff(res.s2[:6]) < 0)  # correlated at short range
    assert abs(res.s2[-1] - phi**2) < 0.02


def test_phase_fractions():
    lab = np.array([[0, 1, 2, 2], [2, 2, 1, 0]])
    np.testing.assert_allclose(M.phase_fractions(lab), [0.25, 0.25, 0.5])
    np.testing.assert_allclose(M.phase_fractions(lab, 4), [0.25, 0.25, 0.5, 0.0])


def _ball(n: int, r: float, centre=None) -> np.ndarray:
    c = np.asarray(centre if centre is not None else [n / 2 - 0.5] * 3)
    g = np.indices((n, n, n)).astype(float)
    return ((g[0] - c[0]) ** 2 + (g[1] - c[1]) ** 2 + (g[2] - c[2]) ** 2) <= r * r


def test_specific_surface_area_of_ball_and_disk():
    n, r = 64, 18.0
    ball = _ball(n, r)
    truth = 4 * np.pi * r * r / n**3
    assert M.specific_surface_area(ball) == pytest.approx(truth, rel=0.05)
    # marching cubes on a binary image overestimates a smooth surface (chamfered staircase), here ~9 %
    assert 1.0 < M.specific_surface_area(ball, method="marching_cubes") / truth < 1.12
    # voxel size: 1/voxel -> 1/m
    assert M.specific_surface_area(ball, voxel_size=2e-6) == pytest.approx(M.specific_surface_area(ball) / 2e-6)
    g = np.indices((128, 128)).astype(float) - 63.5
    disk = g[0] ** 2 + g[1] ** 2 <= 40.0**2
    truth2 = 2 * np.pi * 40.0 / 128**2
    assert M.specific_surface_area(disk) == pytest.approx(truth2, rel=0.05)
    assert 1.0 < M.specific_surface_area(disk, method="marching_cubes") / truth2 < 1.12


def test_chords_on_hand_built_image():
    im = np.array(
        [
            [0, 1, 1, 0, 1, 1, 1, 0, 0, 1],
            [1, 1, 0, 0, 0, 0, 1, 0, 1, 0],
        ],
        dtype=bool,
    )
    np.testing.assert_array_equal(M.chord_lengths(im, axis=1), [2, 3, 1, 1])
    np.testing.assert_array_equal(M.chord_lengths(im, axis=1, trim_edges=False), [2, 3, 1, 2, 1, 1])
    np.testing.assert_array_equal(M.chord_lengths(im, axis=0, trim_edges=False), [1, 2, 1, 1, 1, 2, 1, 1])
    np.testing.assert_array_equal(M.chord_lengths(~im, axis=1), [1, 2, 4, 1])
    h, edges = M.chord_length_distribution(im, axis=1, bins=np.array([0.5, 1.5, 2.5, 3.5]))
    np.testing.assert_allclose(h, [0.5, 0.25, 0.25])
    hl, _ = M.chord_length_distribution(im, axis=1, bins=np.array([0.5, 1.5, 2.5, 3.5]), weight="length")
    np.testing.assert_allclose(hl, [2 / 7, 2 / 7, 3 / 7])
    # 3-D: a bar of length 5 inside a volume along axis 2
    vol = np.zeros((4, 4, 9), bool)
    vol[1, 2, 2:7] = True
    np.testing.assert_array_equal(M.chord_lengths(vol, axis=2), [5])
    np.testing.assert_array_equal(M.chord_lengths(vol, axis=0), [1] * 5)


def test_euler_characteristic_of_known_shapes():
    n = 40
    assert M.euler_characteristic(_ball(n, 10)) == 1
    hollow = _ball(n, 12) & ~_ball(n, 6)
    assert M.euler_characteristic(hollow) == 2  # one component + one cavity
    g = np.indices((n, n, n)).astype(float) - (n / 2 - 0.5)
    torus = (np.sqrt(g[0] ** 2 + g[1] ** 2) - 12) ** 2 + g[2] ** 2 <= 4.0**2
    assert M.euler_characteristic(torus) == 0
    assert M.euler_characteristic(_ball(n, 6, [10, 10, 10]) | _ball(n, 6, [29, 29, 29])) == 2
    g2 = np.indices((60, 60)).astype(float) - 29.5
    rr = np.sqrt(g2[0] ** 2 + g2[1] ** 2)
    assert M.euler_characteristic(rr <= 20) == 1
    assert M.euler_characteristic((rr <= 20) & (rr > 8)) == 0  # a disk with a hole
    mf = M.minkowski_functionals(rr <= 20)
    assert mf["volume_fraction"] == pytest.approx((rr <= 20).mean())
    assert mf["euler_density"] == pytest.approx(1 / 3600)


def test_percolating_fraction_counts_only_clusters_that_span():
    v = np.zeros((10, 10, 10), bool)
    v[:, 2, 2] = True  # a tube along axis 0: 10 voxels spanning axis 0 only
    v[4:6, 6:8, 6:8] = True  # an isolated block: 8 voxels
    assert M.percolating_fraction(v) == pytest.approx((10 / 18 + 0 + 0) / 3)
    v[4, :, 2] = True  # a bar across axis 1 through the tube
    v[4, 6, 2:7] = True  # and a bridge from it to the block: one cluster spanning axes 0 and 1
    n = v.sum()
    assert M.percolating_fraction(v) == pytest.approx((n / n + n / n + 0) / 3)
    cut = v.copy()
    cut[5, 2, 2] = False  # the tube cut: below the cut it spans nothing along axis 0
    assert M.percolating_fraction(cut) < M.percolating_fraction(v)
    diag = np.eye(6, dtype=bool)  # a diagonal line is not face-connected: nothing spans
    assert M.percolating_fraction(diag) == 0.0
    assert M.percolating_fraction(np.ones((5, 5), bool)) == 1.0 and M.percolating_fraction(np.zeros((5, 5), bool)) == 0.0


def test_separation_power():
    from physgan.metrics.separation import separation_power

    assert separation_power([1, 2, 3], [2, 4, 6]) == pytest.approx(0.0)
    assert separation_power([1, 0], [0, 1]) == pytest.approx(1.0)


def test_tortuosity_straight_channels_and_blocked():
    pytest.importorskip("taufactor")
    vol = np.zeros((24, 12, 12), bool)
    vol[:, ::3, ::3] = True  # straight channels along axis 0
    res = M.tortuosity_factor(vol, axis=0, device="cpu")
    assert res.converged and res.tau == pytest.approx(1.0, abs=1e-3)
    assert res.volume_fraction == pytest.approx(vol.mean())
    assert res.d_rel == pytest.approx(vol.mean(), rel=1e-3)
    # the same channels do not connect the faces normal to axis 1
    assert M.tortuosity_factor(vol, axis=1, device="cpu").tau == np.inf
    # a straight 2-D slab along axis 1 of an image
    img = np.zeros((8, 20), bool)
    img[2:5, :] = True
    assert M.tortuosity_factor(img, axis=1, device="cpu").tau == pytest.approx(1.0, abs=1e-3)


@pytest.mark.shared
def test_tortuosity_on_benchmark_crop(shared_data):
    pytest.importorskip("taufactor")
    from physgan.domains.micro.importer import read_image

    vol = read_image(shared_data / "micro" / "tortuosity_benchmark_500.zip")
    assert vol.shape == (500, 500, 500)
    crop = vol[:40, :40, :40] == 255
    taus = [M.tortuosity_factor(crop, axis=a, device="cpu").tau for a in range(3)]
    # the benchmark is anisotropic: full-volume taus 1.1513, 1.3905, 4.2431; on crops the
    # strongly tortuous direction is axis 0 and the easiest is axis 1 (see bench/tortuosity_benchmark.py)
    assert taus[1] < taus[2] < taus[0]
    assert 1.0 < taus[1] < 1.6


@pytest.mark.parametrize("periodic", [False, True])
def test_batched_s2_is_the_sample_mean(periodic):
    ims = np.random.default_rng(2).random((5, 20, 18, 16)) < 0.35
    one = np.mean([M.two_point_correlation(im, periodic=periodic, r_max=7).s2 for im in ims], axis=0)
    both = M.two_point_correlation(ims, periodic=periodic, r_max=7, batch=True)
    np.testing.assert_allclose(both.s2, one, atol=1e-6)
    assert both.s2[0] == pytest.approx(ims.mean(), abs=1e-6)
