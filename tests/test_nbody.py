"""The nbody domain: simulators, make/import, transform, periodic models, metrics, plots."""

from __future__ import annotations

import argparse

import h5py
import numpy as np
import pytest
import torch

from physgan.domains.base import ModelSpec, get_domain
from physgan.domains.nbody.importer import import_snapshots
from physgan.domains.nbody.make import make_dataset
from physgan.domains.nbody.metrics import (
    cross_correlation,
    minkowski_deviations,
    minkowski_functionals,
    physics_metrics,
    pk_amplitude_ratio,
    pk_ratio,
    score,
)
from physgan.domains.nbody.model import build_critic, build_generator
from physgan.domains.nbody.transform import make_transform
from physgan.errors import ConfigError, OutputExistsError
from physgan.io.hdf5 import open_source, read_all
from physgan.metrics.spectra import cross_power, paint, power_spectrum
from physgan.sim import nbody as sim

# -- linear theory ---------------------------------------------------------------------------


def test_linear_power_normalisation_and_growth():
    c = sim.Cosmology(omega_m=0.3, sigma8=0.8)
    assert sim.sigma_r(lambda k: sim.linear_power(k, c), 8.0) == pytest.approx(0.8, rel=1e-6)
    # Einstein-de Sitter: D(a) = a, f = 1
    eds = sim.Cosmology(omega_m=1.0, omega_b=0.04)
    assert sim.growth_factor(0.25, eds) == pytest.approx(0.25, rel=1e-6)
    assert sim.growth_rate(0.5, eds) == pytest.approx(1.0, rel=1e-6)
    # Planck18: D(z=1) = 0.608 (colossus), f(z=0) ~ Om^0.55
    p18 = sim.Cosmology()
    assert sim.growth_factor(0.5, p18) == pytest.approx(0.608, abs=0.003)
    assert sim.growth_rate(1.0, p18) == pytest.approx(0.3153**0.55, rel=0.01)
    # EH no-wiggle at k = 0.1 h/Mpc within 5 % of the wiggly EH98 value 5598 (Mpc/h)^3 (colossus, planck18)
    assert sim.linear_power(np.array([0.1]), p18)[0] == pytest.approx(5598, rel=0.05)
    with pytest.raises(ConfigError):
        sim.Cosmology(omega_m=-0.1)


# -- random fields ----------------------------------------------------------------------------


def _pk2d(k):
    return 50.0 * (k / 0.2) ** -1.2 * np.exp(-((k / 2.0) ** 2))


@pytest.mark.parametrize("dim", [2, 3])
def test_gaussian_and_lognormal_shapes_and_seeds(dim):
    pk = _pk2d if dim == 2 else (lambda k: sim.linear_power(k, sim.Cosmology()))
    g1 = sim.gaussian_field(pk, 16, 64.0, dim, seed=3)
    g2 = sim.gaussian_field(pk, 16, 64.0, dim, seed=3)
    g3 = sim.gaussian_field(pk, 16, 64.0, dim, seed=4)
    assert g1.shape == (16,) * dim
    np.testing.assert_array_equal(g1, g2)
    assert not np.allclose(g1, g3)
    ln = sim.lognormal_field(pk, 16, 64.0, dim, seed=np.random.default_rng(0))
    assert ln.min() > -1.0 and abs(ln.mean()) < 0.2


def test_lognormal_power_follows_input_on_large_scales():
    grid, box = 64, 128.0
    pks = [power_spectrum(sim.lognormal_field(_pk2d, grid, box, 2, seed=s), box).pk for s in range(12)]
    ps = power_spectrum(np.zeros((grid, grid)), box)
    mean = np.mean(pks, axis=0)
    sel = ps.k < ps.k_nyquist / 4
    ratio = mean[sel] / _pk2d(ps.k[sel])
    err = 1 / np.sqrt(12 * ps.n_modes[sel])
    assert np.all(np.abs(ratio - 1) < 0.05 + 4 * err)
    assert abs(np.median(ratio) - 1) < 0.08


# -- particle mesh ----------------------------------------------------------------------------


def test_pm_seeded_mass_conserving_and_linear_growth():
    kw = dict(grid=32, box_size=128.0, n_steps=4)
    rho, pos = sim.pm_simulation(0.3, 0.05, seed=1, return_particles=True, **kw)
    assert rho.shape == (32, 32, 32) and pos.shape == (32**3, 3)
    assert rho.mean() == pytest.approx(1.0, rel=1e-12) and rho.min() >= 0
    np.testing.assert_array_equal(rho, sim.pm_simulation(0.3, 0.05, seed=1, **kw))
    # low amplitude: particles moved by the linear displacement of the IC field (same seed) grown to D(1) = 1
    cosmo = sim.Cosmology(omega_m=0.3, sigma8=0.05)
    lin = sim.gaussian_field(lambda k: sim.linear_power(k, cosmo), 32, 128.0, 3, np.random.default_rng(1))
    psi1, _ = sim.lpt_displacements(lin, 128.0)
    cell = 128.0 / 32
    q = np.stack(np.meshgrid(*[(np.arange(32) + 0.5) * cell] * 3, indexing="ij"), axis=-1).reshape(-1, 3)
    disp = (pos - q + 64.0) % 128.0 - 64.0
    psi = psi1.reshape(3, -1).T
    # (PM forces are smoothed near the mesh Nyquist scale, so small-scale displacements lag slightly)
    assert np.corrcoef(disp.ravel(), psi.ravel())[0, 1] > 0.97
    assert np.sum(disp * psi) / np.sum(psi * psi) == pytest.approx(1.0, abs=0.05)  # growth D(1)/D(1) = 1
    # and the density's large-scale modes follow the linear field
    cp = cross_power(rho - 1, lin, 128.0)
    assert cp.r[0] > 0.95


def test_pm_nonlinear_boost():
    rho = sim.pm_simulation(0.3153, 0.8111, grid=32, box_size=64.0, seed=2, n_steps=8)
    ps = power_spectrum(rho - 1, 64.0, window="cic")
    lin = sim.linear_power(ps.k, sim.Cosmology())
    boost = ps.pk / lin
    assert rho.max() > 20  # haloes form
    i = np.argmin(np.abs(ps.k - 1.0))
    assert 1.8 < boost[i] < 6.0  # non-linear power at k ~ 1 h/Mpc (jaxpm measured ~3 at 64^3 / 128 Mpc/h)


def test_slab_projection():
    f = np.random.default_rng(0).uniform(0, 2, (8, 8, 8))
    s = sim.slab(f, axis=1, start=6, thickness=3)
    np.testing.assert_allclose(s, f[:, [6, 7, 0], :].mean(axis=1))
    with pytest.raises(ConfigError):
        sim.slab(f, thickness=9)


# -- data make / import -----------------------------------------------------------------------


def test_make_lognormal_2d_file(tmp_path):
    out = make_dataset(tmp_path / "ln.h5", sim_kind="lognormal", dim=2, grid=16, box=32.0, n=7, seed=5, redshift=(0.0, 1.0))
    src = open_source(out)
    x, c = read_all(src)
    assert x.shape == (7, 16, 16) and src.condition_names == ["omega_m", "sigma8", "redshift"]
    assert np.all((c[:, 0] >= 0.2) & (c[:, 0] <= 0.4)) and np.all((c[:, 1] >= 0.6) & (c[:, 1] <= 1.0))
    a = src.header.attrs
    assert a["domain"] == "nbody" and a["box_size"] == 32.0 and a["dim"] == 2 and a["slice_thickness"] == pytest.approx(8.0)
    assert get_domain("nbody").detect(src.header)
    x2, _ = read_all(make_dataset(tmp_path / "ln2.h5", dim=2, grid=16, box=32.0, n=7, seed=5, redshift=(0.0, 1.0)))
    np.testing.assert_array_equal(x, x2)
    with pytest.raises(OutputExistsError):
        make_dataset(tmp_path / "ln.h5", dim=2, grid=16, box=32.0, n=2)


def test_make_cli_pm_3d(tmp_path):
    dom = get_domain("nbody")
    parser = argparse.ArgumentParser()
    dom.add_make_arguments(parser)
    args = parser.parse_args(["--sim", "pm", "--dim", "3", "--grid", "16", "--box", "64", "--n", "2", "--n-steps", "2",
                              "--omega-m", "0.3", "--sigma8", "0.8", "--out", str(tmp_path / "pm.h5")])
    x, c = read_all(dom.make(**vars(args)))
    assert x.shape == (2, 16, 16, 16) and np.allclose(c, [[0.3, 0.8]] * 2)
    np.testing.assert_allclose(x.mean(axis=(1, 2, 3)), 1.0, rtol=1e-5)
    assert not np.allclose(x[0], x[1])


def _gadget_file(path, pos_mpch, *, kpc: bool, omega=0.3152, z=0.0):
    with h5py.File(path, "w") as f:
        h = f.create_group("Header")
        scale = 1000.0 if kpc else 1.0
        h.attrs["BoxSize"] = 32.0 * scale
        h.attrs["Redshift"] = z
        h.attrs["Omega0"] = omega
        h.attrs["HubbleParam"] = 0.6736
        h.attrs["NumFilesPerSnapshot"] = 1
        f.create_dataset("PartType1/Coordinates", data=pos_mpch * scale)


@pytest.mark.shared
def test_import_real_abacus_particles(tmp_path, shared_data):
    pos = np.load(shared_data / "nbody" / "abacus_mini_N64_L32_z0_positions.npy").astype(np.float64)
    _gadget_file(tmp_path / "snap_kpc.hdf5", pos, kpc=True)
    out = import_snapshots([str(tmp_path / "snap_kpc.hdf5")], tmp_path / "abacus.h5", grid=32, scheme="cic",
                           conditions={"sigma8": 0.811})
    src = open_source(out)
    x, c = read_all(src)
    assert x.shape == (1, 32, 32, 32) and src.header.attrs["box_size"] == pytest.approx(32.0)
    np.testing.assert_allclose(c[0], [0.3152, 0.811], rtol=1e-6)
    direct = paint(pos, 32, 32.0, "cic")
    np.testing.assert_allclose(x[0], direct / direct.mean(), rtol=1e-5)
    assert x[0].sum() == pytest.approx(32**3, rel=1e-5)  # CIC conserves mass
    # the real field is strongly non-linear: P is several times linear at k ~ 1 h/Mpc
    rho64 = paint(pos, 64, 32.0, "cic")
    ps = power_spectrum(rho64 / rho64.mean() - 1, 32.0, window="cic", shot_noise=32.0**3 / len(pos))
    lin = sim.linear_power(ps.k, sim.Cosmology(omega_m=0.3152))
    i = np.argmin(np.abs(ps.k - 1.0))
    assert 2.5 < ps.pk[i] / lin[i] < 6.0
    # 2-D slabs, Mpc/h units, sigma8 missing -> clear error
    _gadget_file(tmp_path / "snap_mpc.hdf5", pos, kpc=False)
    x2, _ = read_all(import_snapshots([str(tmp_path / "snap_mpc.hdf5")], tmp_path / "slabs.h5", grid=32, dim=2,
                                      thickness=4.0, conditions={"sigma8": 0.8}))
    assert x2.shape == (3 * 8, 32, 32)
    np.testing.assert_allclose(x2[0], sim.slab(x[0], 0, 0, 4), rtol=1e-5)
    with pytest.raises(ConfigError, match="sigma8"):
        import_snapshots([str(tmp_path / "snap_mpc.hdf5")], tmp_path / "bad.h5", grid=16)


# -- transform --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["s", "log"])
def test_transform_round_trip(kind):
    x = np.random.default_rng(0).lognormal(0, 1, (6, 8, 8)).astype(np.float32)
    t = make_transform({"kind": kind}).fit(x)
    y = t.forward(torch.from_numpy(x))
    assert y.shape == (6, 1, 8, 8) and y.min() >= -1 and y.max() < 1
    np.testing.assert_allclose(t.inverse(y).numpy(), x, rtol=1e-4, atol=1e-5)
    if kind == "s":
        assert t.stats["a"] == pytest.approx(float(np.median(x)))
        assert float(t.forward(torch.full((1, 2, 2), t.stats["a"])).abs().max()) < 1e-6  # s(a) = 0
    t2 = make_transform({}).load_state_dict(t.state_dict())
    assert t2.stats == t.stats


# -- models -----------------------------------------------------------------------------------


def _spec(dim, n=16):
    return ModelSpec(sample_shape=(1,) + (n,) * dim, n_cond=2, condition_names=["omega_m", "sigma8"], z_dim=4, width=8, depth=2)


@pytest.mark.parametrize("dim", [2, 3])
def test_model_shapes_scale_and_no_batchnorm(dim):
    torch.manual_seed(0)
    g, d = build_generator(_spec(dim)), build_critic(_spec(dim))
    z = torch.randn(3, *g.latent_shape())
    c = torch.randn(3, 2)
    y = g(z, c)
    assert y.shape == (3, 1) + (16,) * dim and y.abs().max() <= 1
    assert d(y, c).shape == (3,)
    big = g(torch.randn(2, *g.latent_shape(2)), c[:2])
    assert big.shape == (2, 1) + (32,) * dim
    assert d(big, c[:2]).shape == (2,)
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in d.modules())
    # the critic's score depends on the condition (projection head) and is differentiable in its input
    yy = y.detach().requires_grad_(True)
    d(yy, c).sum().backward()
    assert yy.grad is not None and torch.isfinite(yy.grad).all()


@pytest.mark.parametrize("dim", [2, 3])
def test_generator_is_periodic(dim):
    torch.manual_seed(1)
    g = build_generator(_spec(dim))
    z = torch.randn(1, *g.latent_shape())
    c = torch.randn(1, 2)
    with torch.no_grad():
        y = g(z, c)
        axes = tuple(range(2, 2 + dim))
        y_rolled = g(torch.roll(z, shifts=(1,) * dim, dims=axes), c)
    factor = 2 ** g.n_up
    torch.testing.assert_close(y_rolled, torch.roll(y, shifts=(factor,) * dim, dims=axes), rtol=1e-5, atol=1e-6)


def test_bad_model_geometry():
    with pytest.raises(ConfigError):
        build_generator(ModelSpec(sample_shape=(1, 12, 12), n_cond=0, condition_names=[], depth=3))
    with pytest.raises(ConfigError):
        build_generator(ModelSpec(sample_shape=(1, 8, 16), n_cond=0, condition_names=[]))


# -- metrics ----------------------------------------------------------------------------------


def _fields(n, seed, amp=1.0):
    return np.stack([1 + sim.lognormal_field(lambda k: amp * _pk2d(k), 32, 64.0, 2, seed=seed + i) for i in range(n)])


def test_metrics_identical_zero_and_sensitive():
    real = _fields(12, 0)
    attrs = {"box_size": 64.0}
    same = physics_metrics((real, None), (real.copy(), None), attrs)
    for key in ("pk_ratio_max_dev", "pdf_separation", "peak_separation", "mf_v0_dev", "mf_v1_dev", "mf_chi_dev", "pdf_w1"):
        assert same[key] == pytest.approx(0.0, abs=1e-12), key
    assert same["peak_count_ratio"] == 1.0 and score(same) == pytest.approx(0.0, abs=1e-12)
    other = physics_metrics((real, None), (_fields(12, 100), None), attrs)
    wrong = physics_metrics((real, None), (_fields(12, 100, amp=0.3), None), attrs)
    assert wrong["pk_ratio_mean_dev"] > 0.5 and wrong["pdf_separation"] > other["pdf_separation"]
    assert score(wrong) > score(other) > 0


def test_pk_amplitude_ratio_reads_a_scaled_spectrum_and_keeps_the_bins_correlation():
    real = _fields(24, 0)
    attrs_box = 64.0
    same, same_err = pk_amplitude_ratio(real, real.copy(), attrs_box)
    assert same == pytest.approx(1.0, abs=1e-12) and same_err > 0
    # contrast scaled by 1.1: power x 1.21 at every k, read within its own error
    louder = 1 + 1.1 * (_fields(24, 100) - 1)
    r, err = pk_amplitude_ratio(real, louder, attrs_box)
    assert abs(r - 1.21) < 4 * err + 0.05 and r > 1.1
    # Gaussian fields have independent modes: the whole-spectrum error is about what independent bins give (the
    # per-bin error over sqrt(number of bins)); give every field its own amplitude and the bins move together, so the
    # error must grow well beyond that
    def gauss(n, seed, amp=None):
        f = np.stack([sim.gaussian_field(_pk2d, 32, 64.0, 2, seed=seed + i) for i in range(n)])
        return 1 + (f if amp is None else amp[:, None, None] * f)

    def independent_bins_error(a, b):
        pr = pk_ratio(a, b, attrs_box)
        used = pr.k <= pr.k_nyquist / 2
        return float(pr.ratio_err[used].mean() / np.sqrt(used.sum()))

    g_real, g_fake = gauss(64, 300), gauss(64, 400)
    _, err_g = pk_amplitude_ratio(g_real, g_fake, attrs_box)
    assert 0.6 < err_g / independent_bins_error(g_real, g_fake) < 1.6
    g_coh = gauss(64, 400, amp=np.random.default_rng(3).uniform(0.3, 1.7, 64))
    _, err_c = pk_amplitude_ratio(g_real, g_coh, attrs_box)
    assert err_c > 2.0 * independent_bins_error(g_real, g_coh)
    with pytest.raises(ValueError, match="at least two fields"):
        pk_amplitude_ratio(real[:1], real, attrs_box)


def test_minkowski_known_shapes():
    x = np.full((1, 16, 16), 1e-3 / 2)  # log -> below threshold everywhere but a square
    x[0, 4:8, 4:8] = 10.0
    x[0, 12, 12] = 10.0
    mf = minkowski_functionals(x, np.array([0.0]))[0, 0]
    assert mf[0] == pytest.approx(17 / 256)
    assert mf[1] == pytest.approx((16 + 4) / 256)  # boundary edges per unit area (cells)
    assert mf[2] == pytest.approx(2 / 256)  # two components
    ring = np.full((1, 9, 9, 9), 1e-4)
    ring[0, 2:7, 2:7, 2:7] = 10.0
    ring[0, 3:6, 3:6, 3:6] = 1e-4  # hollow cube: one component, one cavity -> chi = 2
    assert minkowski_functionals(ring, np.array([0.0]))[0, 0, 2] * 9**3 == pytest.approx(2.0)


def test_minkowski_expected_floor_is_the_mean_real_vs_real_deviation():
    """``mf_<f>_dev_expected`` is what two independent draws of one distribution score on average.

    Twenty pairs of independent 150-field sets: the mean of their ``mf_<f>_dev`` matches the expectation
    within 25 % (the single draws scatter over a factor of 3), and a shifted distribution scores far above it.
    """
    devs, expected = [], []
    for r in range(20):
        d = minkowski_deviations(_fields(150, 1000 * (2 * r + 1)), _fields(150, 1000 * (2 * r + 2)), 64.0)
        devs.append([d[f"mf_{m}_dev"] for m in ("v0", "v1", "chi")])
        expected.append([d[f"mf_{m}_dev_expected"] for m in ("v0", "v1", "chi")])
    devs, expected = np.array(devs), np.array(expected)
    np.testing.assert_allclose(devs.mean(axis=0), expected.mean(axis=0), rtol=0.25)
    assert np.all(devs.max(axis=0) > 2 * devs.min(axis=0))  # one draw is a poor floor: it scatters by a factor of 3
    wrong = minkowski_deviations(_fields(150, 50_000), _fields(150, 60_000, amp=0.3), 64.0)
    assert all(wrong[f"mf_{m}_dev"] > 5 * wrong[f"mf_{m}_dev_expected"] for m in ("v0", "v1", "chi"))

def test_cross_correlation_finds_shifted_copies():
    train = _fields(5, 0)
    gen = np.concatenate([np.roll(train[2:3], (3, -5), axis=(1, 2)), _fields(2, 50)])
    cc = cross_correlation(gen, train)
    assert cc["max_corr"][0] == pytest.approx(1.0) and cc["index"][0] == 2
    assert np.all(cc["max_corr"][1:] < 0.9)


def test_plots_written(tmp_path):
    real, fake = _fields(4, 0), _fields(4, 10)
    out = get_domain("nbody").plots((real, None), (fake, None), {"box_size": 64.0}, tmp_path)
    assert len(out) == 4
    for _, path in out:
        assert path.exists() and path.stat().st_size > 1000
