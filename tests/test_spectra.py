"""Power-spectrum estimator and mass assignment (physgan.metrics.spectra): known answers, invariances, units."""

from __future__ import annotations

import numpy as np
import pytest

from physgan.errors import ConfigError, DataError
from physgan.metrics.spectra import assignment, correlation_coefficient, cross_power, overdensity, paint, power_spectrum, readout


def _mode_average(pk_fn, grid: int, box: float, dim: int, edges_kf: np.ndarray):
    """Independent reference: full-FFT-grid loop-free average of P(|k|) over kF shells, and full-space counts."""
    kf = 2 * np.pi / box
    n1 = np.fft.fftfreq(grid, 1.0 / grid)
    mesh = np.meshgrid(*[n1] * dim, indexing="ij")
    nmag = np.sqrt(sum(m**2 for m in mesh))
    idx = np.floor(nmag + 1e-9).astype(int)
    out, counts = [], []
    for b in edges_kf:
        sel = (idx == b) & (nmag > 0)
        counts.append(sel.sum())
        out.append(pk_fn(nmag[sel] * kf).mean())
    return np.array(out), np.array(counts)


def _gaussian(pk_fn, grid, box, dim, seed):
    """Gaussian field drawn directly (independent of physgan.sim): unit white noise shaped by sqrt(P/H^d)."""
    rng = np.random.default_rng(seed)
    h = box / grid
    kf = 2 * np.pi / box
    n1 = np.fft.fftfreq(grid, 1.0 / grid)
    nl = np.fft.rfftfreq(grid, 1.0 / grid)
    mesh = np.meshgrid(*([n1] * (dim - 1) + [nl]), indexing="ij")
    k = np.sqrt(sum(m**2 for m in mesh)) * kf
    amp = np.zeros_like(k)
    amp[k > 0] = np.sqrt(pk_fn(k[k > 0]) / h**dim)
    return np.fft.irfftn(np.fft.rfftn(rng.standard_normal((grid,) * dim)) * amp, s=(grid,) * dim, axes=tuple(range(dim)))


def _pk_law(k):
    return 1e3 * (k / 0.1) ** -1.5


@pytest.mark.parametrize("dim,grid,box", [(3, 48, 200.0), (2, 128, 100.0)])
def test_gaussian_field_recovered_within_cosmic_variance(dim, grid, box):
    ps = power_spectrum(_gaussian(_pk_law, grid, box, dim, seed=1), box)
    bins = np.arange(1, grid // 2 + 1)
    expected, full_counts = _mode_average(_pk_law, grid, box, dim, bins)
    # modes: independent modes = (full-space count + self-conjugate modes) / 2, at least half the full count
    assert np.all(ps.n_modes >= full_counts / 2) and np.all(ps.n_modes <= full_counts / 2 + 2**dim)
    pull = (ps.pk - expected) / (expected / np.sqrt(ps.n_modes))
    assert abs(np.mean(pull)) < 0.5
    assert 0.5 < np.mean(pull**2) < 1.6  # chi^2 per bin of a correct estimator is ~1
    assert np.all(np.diff(ps.k) > 0) and ps.k[0] >= 2 * np.pi / box


def test_white_noise_has_flat_spectrum_cell_volume():
    rng = np.random.default_rng(3)
    grid, box = 32, 64.0
    ps = power_spectrum(rng.standard_normal((4, grid, grid, grid)), box, dim=3)
    h3 = (box / grid) ** 3
    assert ps.pk.shape == (4, grid // 2)
    assert abs(ps.pk.mean() / h3 - 1) < 0.02


def test_periodic_shift_invariance_and_mean_offset():
    rng = np.random.default_rng(5)
    f = rng.standard_normal((24, 24, 24))
    a = power_spectrum(f, 50.0)
    b = power_spectrum(np.roll(f, (3, -7, 11), axis=(0, 1, 2)), 50.0)
    c = power_spectrum(f + 4.2, 50.0)  # k = 0 is dropped
    np.testing.assert_allclose(a.pk, b.pk, rtol=1e-10)
    np.testing.assert_allclose(a.pk, c.pk, rtol=1e-10)


@pytest.mark.parametrize("dim", [2, 3])
def test_units_scale_with_box_size(dim):
    f = np.random.default_rng(2).standard_normal((16,) * dim)
    a = power_spectrum(f, 10.0)
    b = power_spectrum(f, 20.0)
    np.testing.assert_allclose(b.k, a.k / 2, rtol=1e-12)
    np.testing.assert_allclose(b.pk, a.pk * 2**dim, rtol=1e-12)
    assert a.k_nyquist == pytest.approx(np.pi * 16 / 10.0)


@pytest.mark.parametrize("scheme", ["ngp", "cic", "tsc"])
def test_uniform_particles_shot_noise_removed_after_deconvolution(scheme):
    rng = np.random.default_rng(7)
    box, grid, npart = 100.0, 32, 80_000
    sn = box**3 / npart
    pks_raw, pks_dec, pks_sub = [], [], []
    for _ in range(3):
        rho = paint(rng.uniform(0, box, (npart, 3)), grid, box, scheme)
        d = overdensity(rho)
        pks_raw.append(power_spectrum(d, box).pk)
        pks_dec.append(power_spectrum(d, box, window=scheme).pk)
        ps = power_spectrum(d, box, window=scheme, shot_noise=sn)
        pks_sub.append(ps.pk)
    raw, dec, sub = (np.mean(v, axis=0) for v in (pks_raw, pks_dec, pks_sub))
    # raw: Poisson noise 1/nbar at low k (the alias sum -> 1 as k -> 0)
    assert abs(raw[:2].mean() / sn - 1) < 0.15
    # deconvolved: flat 1/nbar on large scales, noise amplified by 1/W^2 towards k_N
    assert abs(dec[:4].mean() / sn - 1) < 0.1
    # Jing-corrected subtraction leaves zero at every k, within the noise of each bin
    pull = sub / (dec / np.sqrt(3 * ps.n_modes))
    assert abs(np.mean(pull)) < 0.6
    assert np.mean(pull**2) < 2.5
    assert abs(np.mean(sub[: grid // 4])) / sn < 0.06


def test_cross_power_and_correlation():
    rng = np.random.default_rng(11)
    a = rng.standard_normal((32, 32))
    b = rng.standard_normal((32, 32))
    cp = cross_power(a, 3.0 * a, 40.0)
    np.testing.assert_allclose(cp.r, 1.0, rtol=1e-12)
    np.testing.assert_allclose(cp.pk, 3.0 * power_spectrum(a, 40.0).pk, rtol=1e-12)
    k, r = correlation_coefficient(a, b, 40.0)
    assert np.mean(np.abs(r)) < 0.25 and len(k) == 16
    k, r = correlation_coefficient(a, -a, 40.0)
    np.testing.assert_allclose(r, -1.0)


def test_n_bins_option_and_errors():
    f = np.random.default_rng(0).standard_normal((32, 32, 32))
    ps = power_spectrum(f, 100.0, n_bins=8)
    assert ps.pk.shape == (8,) and ps.k_edges[-1] == pytest.approx(np.pi * 32 / 100.0)
    with pytest.raises(ConfigError):
        power_spectrum(f, 100.0, window="pcs")
    with pytest.raises(DataError):
        power_spectrum(np.zeros((8, 9)), 10.0)
    with pytest.raises(DataError):
        power_spectrum(np.full((8, 8), np.nan), 10.0)
    with pytest.raises(ConfigError):
        power_spectrum(f, -1.0)


def test_paint_known_weights_and_mass_conservation():
    box, grid = 8.0, 8  # cell = 1, node i at position i
    rho = paint(np.array([[2.0, 3.0, 4.0]]), grid, box, "ngp")
    assert rho[2, 3, 4] == 1.0 and rho.sum() == 1.0
    rho = paint(np.array([[2.5, 3.0, 4.0]]), grid, box, "cic")
    assert rho[2, 3, 4] == pytest.approx(0.5) and rho[3, 3, 4] == pytest.approx(0.5)
    rho = paint(np.array([[7.5, 0.0]]), grid, box, "cic")  # wraps periodically
    assert rho[7, 0] == pytest.approx(0.5) and rho[0, 0] == pytest.approx(0.5)
    rho = paint(np.array([[3.0, 3.0]]), grid, box, "tsc")
    assert rho[3, 3] == pytest.approx(0.75**2) and rho[2, 3] == pytest.approx(0.75 * 0.125)
    pos = np.random.default_rng(1).uniform(-5, 20, (5000, 3))
    w = np.random.default_rng(2).uniform(0.5, 2, 5000)
    for scheme in ("ngp", "cic", "tsc"):
        assert paint(pos, 16, 10.0, scheme, weights=w).sum() == pytest.approx(w.sum(), rel=1e-12)


def test_a_shared_assignment_gives_the_same_painting_and_readout():
    rng = np.random.default_rng(5)
    pos = rng.uniform(-3, 13, (700, 3))
    field = rng.standard_normal((8, 8, 8))
    w = rng.uniform(0.5, 2, 700)
    for scheme in ("ngp", "cic", "tsc"):
        st = assignment(pos, 8, 10.0, scheme)
        assert st[0].shape == st[1].shape == (700, {"ngp": 1, "cic": 8, "tsc": 27}[scheme])
        np.testing.assert_allclose(st[1].sum(axis=1), 1.0, rtol=1e-12)
        assert np.array_equal(paint(pos, 8, 10.0, scheme, stencil=st), paint(pos, 8, 10.0, scheme))
        np.testing.assert_allclose(paint(pos, 8, 10.0, scheme, weights=w, stencil=st, chunk=256),
                                   paint(pos, 8, 10.0, scheme, weights=w), rtol=1e-12)
        assert np.array_equal(readout(field, pos, 10.0, scheme, stencil=st, chunk=300), readout(field, pos, 10.0, scheme))
    with pytest.raises(ConfigError):
        assignment(pos, 8, 10.0, "none")


def test_readout_is_the_transpose_of_paint():
    rng = np.random.default_rng(4)
    pos = rng.uniform(0, 10, (50, 3))
    field = rng.standard_normal((8, 8, 8))
    for scheme in ("ngp", "cic", "tsc"):
        lhs = np.sum(readout(field, pos, 10.0, scheme))
        rhs = np.sum(paint(pos, 8, 10.0, scheme) * field)
        assert lhs == pytest.approx(rhs, rel=1e-10)
    # a linear field is interpolated exactly by CIC inside the box
    lin = np.broadcast_to(np.arange(8.0)[:, None, None], (8, 8, 8))
    p = np.array([[2.25, 1.0, 3.0]])
    assert readout(lin, p, 8.0, "cic")[0] == pytest.approx(2.25)
