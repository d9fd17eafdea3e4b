"""The nbody spectral generator, summary critic and 'gauss' transform (physgan.domains.nbody.{spectral,model})."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from scipy import ndimage

from physgan.domains.base import ModelSpec
from physgan.domains.nbody.model import SpectralFieldGenerator, SummaryFieldCritic, build_critic, build_generator
from physgan.domains.nbody.spectral import (
    field_summaries,
    fit_amplitude_response,
    fit_spectral_stats,
    n_summaries,
    node_power,
    shell_interpolation,
    shell_members,
    shell_power,
)
from physgan.domains.nbody.transform import make_transform, symmetric_log_eps
from physgan.errors import ConfigError
from physgan.sim import nbody as sim


def _pk2d(k):
    return 30.0 * (k / 0.1) ** -1.2 * np.exp(-((k / 1.5) ** 2))


def _lognormal(n_fields, grid=16, box=32.0, seed=0):
    return np.stack([1 + sim.lognormal_field(_pk2d, grid, box, 2, seed=seed + i) for i in range(n_fields)]).astype(np.float32)


def _spec(x, dim=2, **options):
    t = make_transform({"kind": "gauss"}).fit(x)
    n = x.shape[1]
    return ModelSpec(
        sample_shape=(1,) + (n,) * dim, n_cond=2, condition_names=["omega_m", "sigma8"], z_dim=4, width=8, depth=2,
        embed_dim=8, options={"data_stats": t.stats, **options},
    ), t  # fmt: skip


def test_gauss_transform_round_trip_and_statistics():
    x = _lognormal(40)
    t = make_transform({"kind": "gauss"}).fit(x)
    y = t.forward(torch.from_numpy(x))
    assert y.shape == (40, 1, 16, 16)
    assert abs(float(y.mean())) < 1e-4 and float(y.std()) == pytest.approx(1.0, abs=1e-3)
    np.testing.assert_allclose(t.inverse(y).numpy(), x, rtol=1e-4, atol=1e-5)
    # the critic's standardisation: summaries of the training fields have mean 0 and unit spread
    s = field_summaries(y, t.stats["mu"], t.stats["sd"]).numpy()
    z = (s - np.array(t.stats["summary_mean"])) / np.array(t.stats["summary_std"])
    assert s.shape[1] == n_summaries(16)
    np.testing.assert_allclose(z.mean(axis=0), 0.0, atol=1e-3)
    np.testing.assert_allclose(z.std(axis=0), 1.0, atol=1e-2)
    # state round trip (the run stores it as JSON)
    t2 = make_transform({}).load_state_dict(t.state_dict())
    assert t2.stats == t.stats


def test_white_noise_has_unit_power_per_shell():
    y = np.random.default_rng(0).standard_normal((1000, 16, 16)).astype(np.float32)
    stats = fit_spectral_stats(y, 0.0, 1.0)
    # shell 1 holds 2 independent complex modes per field: a relative error of 1/sqrt(2000) = 2.2 %
    np.testing.assert_allclose(stats["pk_shell"][1:10], 1.0, atol=0.08)
    p = shell_power(torch.from_numpy(y)[:, None], 8).mean(dim=0).numpy()
    np.testing.assert_allclose(p, 1.0, atol=0.08)


def test_spectral_generator_starts_at_the_data_spectrum_and_mean_density():
    x = _lognormal(64)
    spec, t = _spec(x)
    g = build_generator(spec)
    assert isinstance(g, SpectralFieldGenerator) and isinstance(build_critic(spec), SummaryFieldCritic)
    torch.manual_seed(0)
    with torch.no_grad():
        y = g(torch.randn(400, *g.latent_shape()), torch.zeros(400, 2))
    p_fake = shell_power(y, 8).mean(dim=0).numpy()
    p_real = shell_power(t.forward(torch.from_numpy(x)), 8).mean(dim=0).numpy()
    np.testing.assert_allclose(p_fake, p_real, rtol=0.15)
    # the offset holds E[density] = 1 by construction
    assert float(t.inverse(y).mean()) == pytest.approx(1.0, abs=0.01)


def _skew(u):
    d = u - u.mean()
    return float(np.mean(d**3) / np.mean(d**2) ** 1.5)


def test_auto_softening_makes_sparse_log_densities_symmetric_and_keeps_the_mean_density():
    # squared Gaussian fields (mean 1): near-empty cells where the field crosses zero, as particle-mesh voids
    g = np.stack([sim.gaussian_field(_pk2d, 16, 32.0, 2, seed=40 + i) for i in range(64)])
    x = (g**2 / np.mean(g**2)).astype(np.float32)
    assert _skew(np.log(x + 1e-3)) < -0.3  # what the fixed softening gives
    eps = symmetric_log_eps(x)
    assert 1e-4 < eps < 1.0 and _skew(np.log(x.astype(np.float64) + eps)) == pytest.approx(-0.05, abs=0.005)
    t = make_transform({"kind": "gauss", "eps": "auto"}).fit(x)
    assert t.stats["eps"] == pytest.approx(eps)
    y = t.forward(torch.from_numpy(x))
    assert _skew(y.numpy().ravel()) == pytest.approx(-0.05, abs=0.01)
    np.testing.assert_allclose(t.inverse(y).numpy(), x, rtol=1e-4, atol=1e-4)
    assert make_transform({}).load_state_dict(t.state_dict()).inverse(y).numpy() == pytest.approx(t.inverse(y).numpy())
    # the spectral generator's closed-form offset uses the fitted softening: E[density] = 1 at the start (without the
    # density cap, which the closed form ignores: the lognormal start's tail beyond these 64 fields' densest cell holds
    # 4 % of the mean, which the learned constant offset takes up in training)
    spec = ModelSpec(
        sample_shape=(1, 16, 16), n_cond=2, condition_names=["omega_m", "sigma8"], z_dim=4, width=8, depth=2,
        embed_dim=8, options={"data_stats": t.stats, "density_cap": False},
    )  # fmt: skip
    g = build_generator(spec)
    torch.manual_seed(0)
    with torch.no_grad():
        y_fake = g(torch.randn(400, *g.latent_shape()), torch.zeros(400, 2))
    assert float(t.inverse(y_fake).mean()) == pytest.approx(1.0, abs=0.01)
    # densities whose log is Gaussian are symmetric already: the smallest softening searched
    assert symmetric_log_eps(np.exp(np.random.default_rng(1).normal(-0.5, 1.0, (64, 16, 16)))) == 1e-4


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"kind": "s", "eps": "auto"}, "needs kind 'gauss'"),
        ({"kind": "gauss", "eps": -1}, "> 0"),
        ({"kind": "gauss", "eps": "x"}, "'auto'"),
    ],
)
def test_bad_softening_is_refused(options, match):
    with pytest.raises(ConfigError, match=match):
        make_transform(options)


@pytest.mark.parametrize("shape", [(16, 16), (32, 32), (8, 8, 8)])
def test_interpolated_node_power_gives_every_shell_its_mean_power(shape):
    """The generator's expected power per shell (interpolated between its nodes) is the data's shell mean.

    With the shell means themselves as nodes a steep spectrum comes out 10-20 % low in the lowest shells (their
    modes at |m| = sqrt(2) interpolate towards the next, weaker node); ``node_power`` solves for nodes that do not.
    """
    n_nodes = int(np.ceil(np.sqrt(len(shape)) * shape[0] / 2)) + 2
    j = np.arange(n_nodes, dtype=np.float64)
    target = 50.0 * np.maximum(j, 0.5) ** -2.0 * np.exp(-j / 10.0)
    members = shell_members(shape, n_nodes - 1).numpy()  # (modes, shells 1..)
    lo, hi, w = (t.numpy() for t in shell_interpolation(shape, shape[0], n_nodes))

    def shell_means(nodes):
        mode = np.exp((1 - w) * np.log(nodes[lo]) + w * np.log(nodes[hi]))
        return mode @ members

    filled = members.sum(axis=0) > 0
    naive = shell_means(target)[filled] / target[1:][filled]
    assert naive[0] < 0.9  # the problem this solves
    solved = shell_means(node_power(target, shape))[filled] / target[1:][filled]
    np.testing.assert_allclose(solved, 1.0, atol=1e-4)


def test_spectral_generator_is_periodic_and_scales_without_changing_the_spectrum():
    spec, _ = _spec(_lognormal(16))
    torch.manual_seed(1)
    g = build_generator(spec)
    for p in g.parameters():  # leave the zero-initialised start: a generic generator
        p.data.add_(0.05 * torch.randn_like(p))
    z = torch.randn(2, *g.latent_shape())
    c = torch.randn(2, 2)
    with torch.no_grad():
        y = g(z, c)
        y_rolled = g(torch.roll(z, shifts=(3, 5), dims=(2, 3)), c)
        torch.testing.assert_close(y_rolled, torch.roll(y, shifts=(3, 5), dims=(2, 3)), rtol=1e-4, atol=1e-5)
        assert g.latent_shape(2) == (4, 32, 32)
        c1 = c[:1].expand(300, -1)
        small = g(torch.randn(300, *g.latent_shape()), c1)
        big = g(torch.randn(75, *g.latent_shape(2)), c1[:75])
    assert big.shape == (75, 1, 32, 32)
    # same physical wavenumber: shell j of the 16-grid is shell 2j of the 32-grid (ortho power per mode)
    ps = shell_power(small, 8).mean(dim=0).numpy()
    pb = shell_power(big, 16).mean(dim=0).numpy()
    np.testing.assert_allclose(pb[1::2], ps, rtol=0.15)  # pb[i] is shell i + 1
    assert abs(float(big.mean()) - float(small.mean())) < 0.05


def test_summary_critic_penalty_is_finite_and_sees_power():
    x = _lognormal(32)
    spec, t = _spec(x, critic_width=4)
    d = build_critic(spec)
    y = t.forward(torch.from_numpy(x))
    c = torch.zeros(len(y), 2)
    yy = y.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(d(yy, c).sum(), yy, create_graph=True)
    assert torch.isfinite(g).all() and float(g.detach().abs().sum()) > 0
    ((g.flatten(1).norm(dim=1) - 1) ** 2).mean().backward()
    assert all(torch.isfinite(p.grad).all() for p in d.parameters() if p.grad is not None)
    # summaries only
    d0 = build_critic(_spec(x, critic_width=0)[0])
    assert d0.conv is None and d0(y, c).shape == (32,)


def test_spectral_model_needs_gauss_statistics():
    spec = ModelSpec(sample_shape=(1, 16, 16), n_cond=0, condition_names=[], options={"arch": "spectral"})
    with pytest.raises(ConfigError, match="gauss"):
        build_generator(spec)
    with pytest.raises(ConfigError, match="arch"):
        build_generator(ModelSpec(sample_shape=(1, 16, 16), n_cond=0, condition_names=[], options={"arch": "unet"}))


def test_sigma8_response_slope_and_ratio():
    from physgan.domains.nbody.metrics import physics_metrics, sigma8_response

    s8 = np.repeat([0.7, 0.9], 24)
    om = np.full(48, 0.3)
    x = np.stack([1 + sim.gaussian_field(lambda k, a=a: (a / 0.8) ** 2 * _pk2d(k), 16, 32.0, 2, seed=i) for i, a in enumerate(s8)])
    c = np.stack([om, s8], axis=1)
    attrs = {"box_size": 32.0, "condition_names": ["omega_m", "sigma8"]}
    assert sigma8_response(x, c, 32.0, attrs) == pytest.approx(2.0, abs=0.3)  # P proportional to sigma8^2
    flat = np.stack([1 + sim.gaussian_field(_pk2d, 16, 32.0, 2, seed=100 + i) for i in range(48)])
    m = physics_metrics((x, c), (flat, c), attrs)
    assert abs(m["pk_sigma8_response_ratio"]) < 0.3  # a surrogate that ignores sigma8
    assert physics_metrics((x, c), (x, c), attrs)["pk_sigma8_response_ratio"] == pytest.approx(1.0)
    assert np.isnan(sigma8_response(x, None, 32.0, attrs))


def test_summaries_hold_the_density_power_spectrum_users_measure():
    """The critic sees log P of the physical density x as well as of y = (log x - mu)/sd, by shell."""
    x = _lognormal(8, grid=16, box=32.0, seed=3)
    t = make_transform({"kind": "gauss"}).fit(x)
    y = t.forward(torch.from_numpy(x))
    mu, sd = t.stats["mu"], t.stats["sd"]
    s = field_summaries(y, mu, sd).numpy()
    assert s.shape[1] == n_summaries(16) == n_summaries(16, density_power=False) + 8
    # independent estimate: full complex FFT of x + eps (= exp(mu + sd y)), power averaged over rings round(|m|) = j
    f = np.fft.fft2(x.astype(np.float64) + t.stats["eps"]) / 16.0
    m = np.fft.fftfreq(16, 1.0 / 16)
    ring = np.rint(np.hypot(*np.meshgrid(m, m, indexing="ij"))).astype(int)
    want = np.stack([(np.abs(f) ** 2)[:, ring == j].mean(axis=1) for j in range(1, 9)], axis=1)
    np.testing.assert_allclose(np.exp(s[:, 8:16]), want, rtol=1e-3)
    # the same fields through a generic spectrum of y only: the old column layout, still readable
    old = field_summaries(y, mu, sd, density_power=False).numpy()
    np.testing.assert_allclose(old[:, :8], s[:, :8])
    np.testing.assert_allclose(old[:, 8:], s[:, 16:])


def test_critic_of_a_run_fitted_before_the_density_spectrum_still_builds():
    x = _lognormal(16)
    spec, t = _spec(x)
    stats = dict(t.stats)
    y = t.forward(torch.from_numpy(x))
    old = field_summaries(y, stats["mu"], stats["sd"], density_power=False).numpy()
    stats["summary_mean"], stats["summary_std"] = old.mean(axis=0).tolist(), old.std(axis=0).tolist()
    critic = build_critic(dataclasses.replace(spec, data_stats=stats))
    assert critic.density_power is False
    assert torch.isfinite(critic(y[:4], torch.zeros(4, 2))).all()
    stats["summary_mean"] = stats["summary_mean"][:-1]
    with pytest.raises(ConfigError, match="summaries"):
        build_critic(dataclasses.replace(spec, data_stats=stats))


def test_spectrum_is_a_smooth_polynomial_of_the_conditions():
    """amp_degree 2: log A is exactly quadratic along any line in condition space (third differences vanish)."""
    spec, _ = _spec(_lognormal(16), amp_degree=2)
    torch.manual_seed(2)
    g = build_generator(spec)
    for p in g.amp_net.parameters():  # leave the zero start
        torch.nn.init.normal_(p, std=0.5)
    t = torch.linspace(-1.5, 1.5, 7)[:, None]
    c = torch.cat([t, 0.3 - 0.5 * t], dim=1)
    with torch.no_grad():
        log_a = g.log_amplitude(g.embed(c), c).double()
    d3 = log_a[3:] - 3 * log_a[2:-1] + 3 * log_a[1:-2] - log_a[:-3]
    assert float(log_a.std()) > 0.1 and float(d3.abs().max()) < 1e-4
    # runs made before the option keep the MLP of the embedding
    spec_old, _ = _spec(_lognormal(16))
    assert build_generator(spec_old).amp_degree is None
    with pytest.raises(ConfigError, match="amp_degree"):
        build_generator(_spec(_lognormal(16), amp_degree=3)[0])


@pytest.mark.parametrize("dim,n", [(2, 24), (3, 10)])
def test_soft_minkowski_tends_to_the_metric_and_has_gradients(dim, n):
    from physgan.domains.nbody.metrics import log_density, minkowski_functionals
    from physgan.domains.nbody.spectral import soft_minkowski

    rng = np.random.default_rng(1)
    g = rng.normal(size=(3,) + (n,) * dim)
    for axis in range(1, dim + 1):  # a little smoothing so the excursion sets have structure
        g = g + 0.8 * np.roll(g, 1, axis=axis)
    x = np.exp(g / g.std())
    u = log_density(x)
    thr = np.quantile(u, [0.2, 0.5, 0.9]) + 1e-6  # no cell exactly at a threshold
    hard = minkowski_functionals(x, thr)
    soft = soft_minkowski(torch.tensor(u)[:, None], torch.tensor(thr), width=1e-5).numpy()
    assert soft.shape == (3, 6)
    np.testing.assert_allclose(soft[:, :3], hard[:, :, 1], atol=1e-4)  # one face is 1e-3 per cell at 10^3
    np.testing.assert_allclose(soft[:, 3:], hard[:, :, 2], atol=1e-4)
    assert np.abs(hard[:, :, 2]).max() > 0  # the Euler characteristics compared are not all zero
    yy = torch.tensor(u, dtype=torch.float32)[:, None].requires_grad_(True)
    (grad,) = torch.autograd.grad(soft_minkowski(yy, torch.tensor(thr, dtype=torch.float32))[:, 3:].sum(), yy)
    assert torch.isfinite(grad).all() and float(grad.abs().sum()) > 0


def test_critic_with_minkowski_summaries_builds_and_old_statistics_are_refused():
    x = _lognormal(16)
    spec, t = _spec(x, critic_width=0, mf_summaries=True)
    critic = build_critic(spec)
    base = build_critic(_spec(x, critic_width=0)[0])
    assert critic.summaries.n_out == base.summaries.n_out + 2 * len(t.stats["mf_thresholds"])
    y = t.forward(torch.from_numpy(x))
    s = critic.summaries(y)
    assert torch.isfinite(s).all() and s[:, base.summaries.n_out :].abs().max() < 10  # standardised by the training spread
    stats = {k: v for k, v in t.stats.items() if not k.startswith("mf_")}
    with pytest.raises(ConfigError, match="mf_summaries"):
        build_critic(dataclasses.replace(spec, data_stats=stats))


def _singletons_by_labelling(a: np.ndarray) -> tuple[int, int]:
    """One-cell components of a periodic 0/1 field ``a``: of the set (3^d - 1 neighbours) and of its complement
    (face neighbours), by scipy's labelling of the field tiled three times along each axis (the middle copy's)."""
    d = a.ndim
    centre = tuple(slice(s, 2 * s) for s in a.shape)
    counts = []
    for mask, structure in ((a, np.ones((3,) * d)), (~a, ndimage.generate_binary_structure(d, 1))):
        lab, _ = ndimage.label(np.tile(mask, (3,) * d), structure=structure)
        sizes = np.bincount(lab.ravel())
        counts.append(int(((sizes[lab[centre]] == 1) & mask).sum()))
    return counts[0], counts[1]


@pytest.mark.parametrize("dim,n", [(2, 20), (3, 8)])
def test_soft_singletons_count_one_cell_islands_and_holes(dim, n):
    from physgan.domains.nbody.spectral import soft_singletons

    rng = np.random.default_rng(2)
    u = rng.normal(size=(2,) + (n,) * dim).astype(np.float32)
    thr = np.array([-0.9, 0.3, 1.4], dtype=np.float32) + 1e-4  # no cell exactly at a threshold
    soft = soft_singletons(torch.tensor(u)[:, None], torch.tensor(thr), width=1e-6).numpy() * n**dim
    assert soft.shape == (2, 6)
    for i in range(2):
        for t, nu in enumerate(thr):
            islands, holes = _singletons_by_labelling(u[i] >= nu)
            np.testing.assert_allclose(soft[i, t], islands, atol=1e-3)
            np.testing.assert_allclose(soft[i, 3 + t], holes, atol=1e-3)
    assert soft[:, 2].min() > 0 and soft[:, 3].min() > 0  # islands at the high level, holes at the low one: not all zero
    split = soft_singletons(torch.tensor(u)[:, None], torch.tensor(thr[1:]), torch.tensor(thr[:1]), width=1e-6).numpy()
    np.testing.assert_allclose(split * n**dim, soft[:, [1, 2, 3]], atol=1e-3)  # islands at two levels, holes at another
    yy = torch.tensor(u)[:, None].requires_grad_(True)
    (grad,) = torch.autograd.grad(soft_singletons(yy, torch.tensor(thr)).sum(), yy)
    assert torch.isfinite(grad).all() and float(grad.abs().sum()) > 0


def test_critic_with_singleton_summaries_builds_and_old_statistics_are_refused():
    from physgan.domains.nbody.spectral import SINGLETON_HOLE_LEVELS, SINGLETON_ISLAND_LEVELS

    x = _lognormal(16)
    spec, t = _spec(x, critic_width=0, mf_singletons=True)
    base = build_critic(_spec(x, critic_width=0)[0])
    critic = build_critic(spec)
    n_single = len(SINGLETON_ISLAND_LEVELS) + len(SINGLETON_HOLE_LEVELS)
    assert critic.summaries.n_out == base.summaries.n_out + n_single == base.summaries.n_out + len(t.stats["singleton_mean"])
    s = critic.summaries(t.forward(torch.from_numpy(x)))
    assert torch.isfinite(s).all() and s[:, base.summaries.n_out :].abs().max() < 10  # standardised by the training spread
    both = build_critic(_spec(x, critic_width=0, mf_singletons=True, mf_summaries=True)[0])
    assert both.summaries.n_out == base.summaries.n_out + 2 * len(t.stats["mf_thresholds"]) + n_single
    stats = {k: v for k, v in t.stats.items() if not k.startswith("singleton_")}
    with pytest.raises(ConfigError, match="mf_singletons"):
        build_critic(dataclasses.replace(spec, data_stats=stats))


def test_lattice_harmonics_tell_axes_from_diagonals():
    from physgan.domains.nbody.spectral import lattice_harmonics

    u = lattice_harmonics((8, 8))  # rfftn layout (8, 5), flattened
    idx = lambda i, j: i * 5 + j  # noqa: E731
    assert u[idx(0, 0)].tolist() == [0.0, 0.0]  # the mean has no direction
    np.testing.assert_allclose(u[idx(0, 3), 0], 0.25)  # along an axis: s4 = 1, minus its average 3/4
    np.testing.assert_allclose(u[idx(3, 0), 0], 0.25)
    np.testing.assert_allclose(u[idx(2, 2), 0], -0.25)  # along a diagonal: s4 = 1/2
    np.testing.assert_allclose(u[idx(8 - 2, 2), 0], -0.25)  # reflections do not change it
    np.testing.assert_allclose(u[:, 1], u[:, 0] ** 2)
    u3 = lattice_harmonics((4, 4, 4))
    assert u3.shape == (4 * 4 * 3, 2) and np.isclose(u3[1 * 4 * 3 + 1 * 3 + 1, 0], 1 / 3 - 3 / 5)  # the body diagonal


def _anisotropic_fields(n_fields, grid, strength, seed=0):
    """Gaussian fields whose power is |m|^-1.5 (1 + strength cos 4 theta) for |m| >= 1, densities exp(0.5 g)."""
    m = np.fft.fftfreq(grid, 1.0 / grid)
    kx, ky = np.meshgrid(m, m, indexing="ij")
    k2 = kx**2 + ky**2
    cos4 = np.divide((kx**2 - ky**2) ** 2 - 4 * kx**2 * ky**2, k2**2, out=np.zeros_like(k2), where=k2 > 0)
    power = np.where(k2 > 0, np.maximum(k2, 1.0) ** -0.75 * (1 + strength * cos4), 0.0)
    noise = np.random.default_rng(seed).standard_normal((n_fields, grid, grid))
    g = np.fft.ifft2(np.fft.fft2(noise) * np.sqrt(power)).real
    return np.exp(0.5 * g / g.std()).astype(np.float32), cos4


def _axial_over_diagonal(y, cos4, lo=0.25):
    """Mean power of the modes with |m| > lo n along the axes (cos 4 theta > 0.9) over the diagonals' (< -0.9)."""
    grid = y.shape[-1]
    p = (np.abs(np.fft.fft2(y)) ** 2).mean(axis=0)
    m = np.fft.fftfreq(grid, 1.0 / grid)
    far = np.hypot(*np.meshgrid(m, m, indexing="ij")) > lo * grid
    return p[far & (cos4 > 0.9)].mean() / p[far & (cos4 < -0.9)].mean()


def test_lattice_anisotropy_is_fitted_from_the_data_and_reproduced_by_the_generator():
    """Power that depends on a mode's direction: isotropic colouring misses it, option lattice_anisotropy carries it, on a
    larger latent too; isotropic data give (near) zero coefficients."""
    x, cos4 = _anisotropic_fields(300, 16, 0.4)
    spec, t = _spec(x, residual=False)
    coef = np.array(t.stats["lattice_aniso"])
    assert coef.shape == (len(t.stats["pk_node"]), 2) and np.abs(coef[3:8, 0]).min() > 0.5  # log power ~ 2 x 0.4 x 4 u
    x_iso = _anisotropic_fields(300, 16, 0.0)[0]
    iso, t_iso = _spec(x_iso, residual=False)
    assert np.abs(np.array(iso.data_stats["lattice_aniso"])[3:8, 0]).max() < 0.3
    # the selection's axial and diagonal modes sit at different |m|: ratios read against isotropic fields' own
    reference = _axial_over_diagonal(t_iso.forward(torch.from_numpy(x_iso))[:, 0].numpy(), cos4)
    target = _axial_over_diagonal(t.forward(torch.from_numpy(x))[:, 0].numpy(), cos4)
    assert target / reference > 1.8  # (1.4 / 0.6 = 2.3 in the fields' log, less after the exp and back)
    c = torch.zeros(400, 2)
    ratios = {}
    for on in (False, True):
        g = build_generator(dataclasses.replace(spec, options={**spec.options, "lattice_anisotropy": on}))
        with torch.no_grad():
            y = g(torch.randn((400, *g.latent_shape(1)), generator=torch.Generator().manual_seed(1)), c)[:, 0].numpy()
        ratios[on] = _axial_over_diagonal(y, cos4)
    assert abs(ratios[False] / reference - 1) < 0.15  # the isotropic colouring
    assert abs(ratios[True] / target - 1) < 0.15, (ratios, target)
    g = build_generator(dataclasses.replace(spec, options={**spec.options, "lattice_anisotropy": True}))
    with torch.no_grad():
        y2 = g(torch.randn((100, *g.latent_shape(2)), generator=torch.Generator().manual_seed(2)), c[:100])[:, 0].numpy()
    _, cos4_32 = _anisotropic_fields(1, 32, 0.0)
    assert abs(_axial_over_diagonal(y2, cos4_32) / target - 1) < 0.15  # the same physical modes on a twice larger grid
    stats = {k: v for k, v in t.stats.items() if k != "lattice_aniso"}
    with pytest.raises(ConfigError, match="lattice_anisotropy"):
        build_generator(dataclasses.replace(spec, data_stats=stats, options={**spec.options, "lattice_anisotropy": True}))


def test_moment_matching_can_pin_the_minkowski_functionals_alone():
    """moment_summaries='minkowski': the moment features are the critic's soft Minkowski columns, nothing else."""
    from physgan.domains.nbody.model import moment_features

    x = _lognormal(16)
    spec, t = _spec(x, critic_width=0, mf_summaries=True, moment_summaries="minkowski")
    y = t.forward(torch.from_numpy(x))
    full = build_critic(spec).summaries(y)
    only = moment_features(spec)(y)
    n_mf = 2 * len(t.stats["mf_thresholds"])
    assert only.shape == (16, n_mf)
    torch.testing.assert_close(only, full[:, -n_mf:])
    assert moment_features(_spec(x)[0])(y).shape[1] == n_summaries(16)  # default: every summary, without the functionals
    spec_mf_off, _ = _spec(x, moment_summaries="minkowski")  # the critic need not read them for the term to pin them
    assert moment_features(spec_mf_off)(y).shape == (16, n_mf)
    stats = {k: v for k, v in t.stats.items() if not k.startswith("mf_")}
    with pytest.raises(ConfigError, match="moment_summaries"):
        moment_features(dataclasses.replace(spec, data_stats=stats))


def test_spectral_generator_starts_at_each_condition_s_spectrum():
    """amp_fit: at step 0 the generator's spectrum already follows the conditions as the training fields' does."""
    from physgan.train.conditions import ConditionNormaliser

    amps = (0.7, 1.0, 1.3)
    x, c = [], []
    for j, a in enumerate(amps):
        for i in range(40):
            x.append(1 + sim.lognormal_field(lambda k, a=a: a**2 * _pk2d(k), 16, 32.0, 2, seed=1000 * j + i))
            c.append((0.3, 0.8 * a))
    x, c = np.stack(x).astype(np.float32), np.asarray(c)
    t = make_transform({"kind": "gauss"}).fit(x, c)
    assert "amp_fit" in t.stats
    norm = ConditionNormaliser(["omega_m", "sigma8"]).fit(c)
    base = dict(sample_shape=(1, 16, 16), n_cond=2, condition_names=["omega_m", "sigma8"], z_dim=4, width=8, depth=2, embed_dim=8)
    y_real = t.forward(torch.from_numpy(x))
    cn = norm(torch.as_tensor(c, dtype=torch.float32))
    ratios = {}
    for fit in (True, False):
        spec = ModelSpec(**base, options={"amp_degree": 2, "amp_fit": fit}, data_stats=t.stats, condition_stats=norm.state_dict())
        g = build_generator(spec)
        assert (g.amp_fit is not None) == fit
        torch.manual_seed(0)
        with torch.no_grad():
            y = g(torch.randn(len(x), *g.latent_shape()), cn)
        ratios[fit] = [
            float(shell_power(y[rows], 8).mean() / shell_power(y_real[rows], 8).mean()) for rows in np.split(np.arange(len(x)), 3)
        ]
    # the response (power at each condition relative to the middle one) is the data's with the fit (the overall level is
    # the pooled spectrum's at the shell nodes, within 15 %, as in the test above); the pooled start has none
    fit, flat = (np.asarray(ratios[k]) / ratios[k][1] for k in (True, False))
    assert np.abs(fit - 1).max() < 0.1 and np.abs(np.asarray(ratios[True]) - 1).max() < 0.15, ratios
    assert flat[0] > 1.5 and flat[2] < 0.8, ratios  # too much power at the low amplitude, too little at the high


@pytest.mark.parametrize(
    "mode, weight, bias", [("conditional", True, True), ("constant", False, True), ("none", False, False), ("exact", False, False)]
)
def test_mean_offset_option_freezes_the_learned_correction(mode, weight, bias):
    """``mean_offset``: which parts of the learned mean correction b'(theta) train (frozen ones get no gradient)."""
    x = _lognormal(16)
    spec, _ = _spec(x, mean_offset=mode)
    g = build_generator(spec)
    torch.manual_seed(0)
    g(torch.randn(4, *g.latent_shape()), torch.randn(4, 2)).square().mean().backward()
    assert (g.offset.weight.grad is not None) == weight and (g.offset.bias.grad is not None) == bias
    assert all(p.grad is not None for p in g.res_out.parameters())  # the rest of G still trains


def test_exact_mean_offset_leaves_each_field_mean_density_to_the_coloured_field():
    """``mean_offset='exact'``: a residual that reshapes the density (here: widens it, which raises the mean of exp) leaves
    every field's mean density where the coloured field alone puts it; with the constant offset the same residual moves it."""
    x = _lognormal(16)
    z = torch.randn(3, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    c = torch.randn(3, 2, generator=torch.Generator().manual_seed(1))
    ratio = {}
    for mode in ("constant", "exact"):
        spec, _ = _spec(x, mean_offset=mode, zero_mean_residual=True, density_cap=False)
        torch.manual_seed(0)
        g = build_generator(spec)
        with torch.no_grad():
            g.res_out.weight.normal_(0.0, 5.0, generator=torch.Generator().manual_seed(2))  # a zero-mean residual of size ~0.3
            y_res = g(z, c)
            assert float((y_res - g(z, c)).abs().max()) == 0.0  # deterministic
            g.res_out.weight.zero_()
            y_plain = g(z, c)
        assert float((y_res - y_plain).std()) > 0.1  # the residual does reshape the fields
        mean_density = [torch.exp(g.sd * y).mean(dim=(1, 2, 3)) for y in (y_res, y_plain)]
        ratio[mode] = mean_density[0] / mean_density[1]
    torch.testing.assert_close(ratio["exact"], torch.ones(3), atol=1e-5, rtol=0)
    assert float((ratio["constant"] - 1).abs().min()) > 0.01


def test_zero_mean_residual_leaves_each_field_mean_to_the_offset():
    """``zero_mean_residual``: the residual changes a field's shape, never its mean (which b sets)."""
    x = _lognormal(16)
    z = torch.randn(3, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    c = torch.randn(3, 2, generator=torch.Generator().manual_seed(1))
    means = {}
    for flag in (False, True):
        spec, _ = _spec(x, zero_mean_residual=flag, density_cap=False)  # no cell held at the ceiling: the means are exact
        torch.manual_seed(0)
        g = build_generator(spec)
        with torch.no_grad():
            g.res_out.bias.fill_(0.3)  # a residual that would shift every field's mean
            y_res = g(z, c)
            g.res_out.weight.zero_()
            g.res_out.bias.zero_()
            y_plain = g(z, c)
        means[flag] = (y_res - y_plain).mean(dim=(1, 2, 3))
    assert torch.allclose(means[False], torch.full((3,), 0.3), atol=1e-5)
    assert torch.allclose(means[True], torch.zeros(3), atol=1e-5)


def test_residual_highpass_leaves_the_large_scales_to_the_coloured_field():
    """``residual_highpass``: the residual adds nothing to the modes below the cut (the mean among them) and still
    shapes the modes above it; on a field twice as large (latent scale 2) the cut stays at the same wavenumber."""
    from physgan.domains.nbody.spectral import low_modes

    x = _lognormal(16)
    c = torch.randn(3, 2, generator=torch.Generator().manual_seed(1))
    spec, _ = _spec(x, residual_highpass=4)
    torch.manual_seed(0)
    g = build_generator(spec)
    for scale in (1, 2):
        z = torch.randn(3, *g.latent_shape(scale), generator=torch.Generator().manual_seed(scale))
        with torch.no_grad():
            g.res_out.weight.normal_()
            g.res_out.bias.fill_(0.3)
            y_res = g(z, c)
            saved = (g.res_out.weight.clone(), g.res_out.bias.clone())
            g.res_out.weight.zero_()
            g.res_out.bias.zero_()
            y_plain = g(z, c)
            g.res_out.weight.copy_(saved[0])
            g.res_out.bias.copy_(saved[1])
        f = torch.fft.rfftn(y_res - y_plain, dim=(2, 3), norm="ortho")[:, 0].abs()
        low = low_modes(tuple(z.shape[2:]), 16, 4.0)
        assert int(low.sum()) > 1 and float(f[:, low].max()) < 1e-4
        assert float(f[:, ~low].abs().mean()) > 1e-2
    from physgan.errors import ConfigError

    with pytest.raises(ConfigError, match="residual_highpass"):
        build_generator(_spec(x, residual_highpass=-1)[0])


def test_unconditioned_residual_ignores_the_conditions():
    """``residual_conditioned=False``: the residual's FiLM reads no conditions (its embedding weights get no gradient)."""
    x = _lognormal(16)
    for flag in (True, False):
        spec, _ = _spec(x, residual_conditioned=flag)
        torch.manual_seed(0)
        g = build_generator(spec)
        with torch.no_grad():
            g.res_out.weight.normal_()  # a trained residual (zero-initialised, it passes no gradient back)
        g(torch.randn(4, *g.latent_shape()), torch.randn(4, 2)).square().mean().backward()
        film = [p.grad for name, p in g.named_parameters() if "film" in name and name.endswith("to_gamma_beta.weight")]
        assert film and all(gr is not None for gr in film)
        assert any(float(gr.abs().sum()) > 0 for gr in film) == flag


def test_generated_log_density_is_capped_at_the_training_fields_largest():
    """``density_cap``: no generated cell is denser than the densest training cell; below that the output is untouched."""
    x = _lognormal(16)
    spec, t = _spec(x)
    assert t.stats["y_max"] == pytest.approx(float(t.forward(torch.from_numpy(x)).max()), abs=1e-5)
    z = torch.randn(8, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    c = torch.zeros(8, 2)
    out = {}
    for name, stats, options in (
        ("capped", t.stats, {}),
        ("off", t.stats, {"density_cap": False}),
        ("fitted before", {k: v for k, v in t.stats.items() if k != "y_max"}, {}),
    ):
        spec, _ = _spec(x, **options)
        torch.manual_seed(0)
        g = build_generator(dataclasses.replace(spec, data_stats=stats))
        with torch.no_grad():
            g.res_out.bias.fill_(1.5)  # lifts the densest cells above the training maximum
            out[name] = g(z, c)
    y_max = t.stats["y_max"]
    assert float(out["off"].max()) > y_max + 0.5 and torch.equal(out["off"], out["fitted before"])
    assert float(out["capped"].max()) <= y_max
    below = out["off"] < y_max
    assert 0 < int((~below).sum()) < below.numel() // 10
    assert torch.equal(out["capped"][below], out["off"][below])


def test_generator_without_residual_is_a_log_gaussian_field_with_the_mean_density_held():
    """``residual=False``: ``y = b + g_0``, a Gaussian field per cell (the model class of lognormal data): no residual
    network is built, the output equals the trained generator's with its residual zeroed, and E[density] stays 1."""
    x = _lognormal(64)
    spec, t = _spec(x, residual=False)
    g = build_generator(spec)
    assert not any(name.startswith("res_") for name, _ in g.named_parameters())
    torch.manual_seed(0)
    with_res = build_generator(_spec(x)[0])
    with torch.no_grad():
        with_res.res_out.weight.normal_()  # a residual that changes the field
        with_res.res_out.bias.fill_(0.2)
    g.load_state_dict({k: v for k, v in with_res.state_dict().items() if not k.startswith("res_")})
    z = torch.randn(2000, *g.latent_shape(), generator=torch.Generator().manual_seed(1))
    c = torch.zeros(2000, 2)
    with torch.no_grad():
        y = g(z, c)
        assert not torch.allclose(y, with_res(z, c))
        with_res.res_out.weight.zero_()
        with_res.res_out.bias.zero_()
        np.testing.assert_allclose(y.numpy(), with_res(z, c).numpy(), atol=1e-5)
    cells = y[:, 0].flatten(1)[:, 0].numpy()  # one cell across 2000 fields: Gaussian
    assert abs(_skew(cells)) < 0.2 and abs(float(((cells - cells.mean()) ** 4).mean() / cells.var() ** 2) - 3) < 0.4
    assert float(t.inverse(y).mean()) == pytest.approx(1.0, abs=0.01)


@pytest.mark.parametrize("mode", ["variance", "moments"])
def test_residual_conditioned_on_its_own_spectral_moments(mode):
    """``residual_condition='variance'|'moments'``: the residual's FiLM reads the coloured field's log variance (and its
    gradient's), not the condition embedding: conditions with the same spectrum give the same field, and the moments
    follow the amplitude (read on the training grid, so a larger latent sees the same ones)."""
    x = _lognormal(16)
    spec, _ = _spec(x, residual_condition=mode, amp_degree=2)
    torch.manual_seed(0)
    g = build_generator(spec)
    assert g.res_film.to_gamma_beta.in_features == (1 if mode == "variance" else 2)
    with torch.no_grad():
        for m in g.modules():
            if hasattr(m, "to_gamma_beta"):
                m.to_gamma_beta.weight.normal_()
                m.to_gamma_beta.bias.normal_()
        g.res_out.weight.normal_()
    z = torch.randn(1, *g.latent_shape(), generator=torch.Generator().manual_seed(1)).expand(3, -1, -1, -1)
    c = torch.tensor([[-1.0, -1.0], [0.0, 0.0], [1.0, 0.5]])
    with torch.no_grad():
        same = g(z, c)  # the amplitude does not depend on the conditions yet: one field for all three
        np.testing.assert_allclose(same[0].numpy(), same[1].numpy(), atol=1e-5)
        np.testing.assert_allclose(same[0].numpy(), same[2].numpy(), atol=1e-5)
        g.amp_net[-1].weight.normal_(std=0.3)  # now it does: the spectrum, hence the residual, moves with them
        moved = g(z, c)
        assert float((moved[0] - moved[1]).abs().max()) > 1e-2
        la = g.log_amplitude(g.embed(c), c)
        m1 = g._log_moments(la, (16, 16))
        assert g(torch.randn(3, *g.latent_shape(2)), c).shape == (3, 1, 32, 32)
    assert float((m1[0] - m1[1]).abs().max()) > 1e-2
    # log sigma_0^2 is the coloured channel's variance per cell: measured on its own white-noise colouring
    lo, hi, w = shell_interpolation((16, 16), 16, g.n_nodes)
    a = torch.exp(la[1:2, lo, 0] * (1 - w) + la[1:2, hi, 0] * w).reshape(1, 16, 9)
    wn = torch.randn(4000, 16, 16, generator=torch.Generator().manual_seed(2))
    col = torch.fft.irfftn(torch.fft.rfftn(wn, dim=(1, 2), norm="ortho") * a, s=(16, 16), dim=(1, 2), norm="ortho")
    assert float(torch.log(col.var())) == pytest.approx(float(m1[1, 0]), abs=0.03)


def test_embedding_conditioned_residual_reads_the_conditions():
    """The default residual (``residual_condition='embedding'``) moves with the conditions at a fixed spectrum."""
    x = _lognormal(16)
    spec, _ = _spec(x)
    torch.manual_seed(0)
    g = build_generator(spec)
    with torch.no_grad():
        for m in g.modules():
            if hasattr(m, "to_gamma_beta"):
                m.to_gamma_beta.weight.normal_()
        g.res_out.weight.normal_()
        z = torch.randn(1, *g.latent_shape(), generator=torch.Generator().manual_seed(1)).expand(2, -1, -1, -1)
        y = g(z, torch.tensor([[-1.0, -1.0], [1.0, 0.5]]))
    assert float((y[0] - y[1]).abs().max()) > 1e-2


def _three_amplitudes(omega_m=0.3):
    """Lognormal fields at sigma8 = 0.8 a for a = 0.875, 1.0, 1.125 (power a^2 times a tenth of the reference: mildly
    non-linear, so the log field's power is near a power law in a, as the benchmark grid's is; the same seeds at each a,
    so the response carries no sample noise), omega_m at three values that do not change them, their transform and
    normaliser."""
    from physgan.train.conditions import ConditionNormaliser

    x, c = [], []
    for a in (0.875, 1.0, 1.125):
        for i in range(40):
            x.append(1 + sim.lognormal_field(lambda k, a=a: 0.1 * a**2 * _pk2d(k), 16, 32.0, 2, seed=i))
            c.append((omega_m + 0.05 * (i % 3), 0.8 * a))
    x, c = np.stack(x).astype(np.float32), np.asarray(c)
    t = make_transform({"kind": "gauss"}).fit(x, c)
    norm = ConditionNormaliser(["omega_m", "sigma8"]).fit(c)
    base = dict(sample_shape=(1, 16, 16), n_cond=2, condition_names=["omega_m", "sigma8"], z_dim=4, width=8, depth=2, embed_dim=8)
    return x, c, t, norm, base


def test_power_law_amplitude_form_is_linear_in_the_log_conditions():
    """amp_form=power_law: the fitted start and the learned part of log A are linear in (log omega_m, log sigma8), so
    along a line in log-condition space log A has no curvature; the quadratic form's does. Its start follows the data's
    response; conditions that are not all > 0 have no power-law fit and the option is refused by name."""
    x, c, t, norm, base = _three_amplitudes()
    fit = t.stats["amp_fit_power_law"]
    assert fit["log"] is True and fit["degree"] == 1 and t.stats["amp_fit"]["log"] is False
    s = torch.linspace(-1.0, 1.0, 5)[:, None]
    c_line = torch.cat([0.35 * torch.exp(0.1 * s), 0.8 * torch.exp(-0.25 * s)], dim=1)  # a line in log space
    curvature, ratios = {}, {}
    for form in ("power_law", "quadratic"):
        spec = ModelSpec(**base, options={"amp_degree": 1, "amp_form": form}, data_stats=t.stats, condition_stats=norm.state_dict())
        g = build_generator(spec)
        assert g.amp_log == (form == "power_law")
        cn = norm(torch.as_tensor(c, dtype=torch.float32))
        torch.manual_seed(0)
        with torch.no_grad():
            y = g(torch.randn(len(x) // 3, *g.latent_shape()).repeat(3, *(1,) * (1 + g.dim)), cn)  # the same latents at each a
        ratios[form] = [float(shell_power(y[rows], 8).mean()) for rows in np.split(np.arange(len(x)), 3)]
        torch.manual_seed(2)
        for p in g.amp_net.parameters():  # leave the zero start
            torch.nn.init.normal_(p, std=0.5)
        with torch.no_grad():
            log_a = g.log_amplitude(g.embed(norm(c_line)), norm(c_line)).double()
        curvature[form] = float((log_a[2:] - 2 * log_a[1:-1] + log_a[:-2]).abs().max())
        assert float(log_a.std()) > 0.1
    assert curvature["power_law"] < 1e-4 < 1e-2 < curvature["quadratic"], curvature
    y_real = t.forward(torch.from_numpy(x))
    data = [float(shell_power(y_real[rows], 8).mean()) for rows in np.split(np.arange(len(x)), 3)]
    response = np.asarray(ratios["power_law"]) / ratios["power_law"][1] / (np.asarray(data) / data[1])
    assert np.abs(response - 1).max() < 0.05, (ratios, data)
    # a condition that is not > 0: no power-law fit, the option is refused by name
    _, c0, _, _, _ = _three_amplitudes(omega_m=-0.05)
    t0 = make_transform({"kind": "gauss"}).fit(x, c0)
    assert "amp_fit_power_law" not in t0.stats and "amp_fit" in t0.stats
    from physgan.train.conditions import ConditionNormaliser

    norm0 = ConditionNormaliser(["omega_m", "sigma8"]).fit(c0)
    spec0 = ModelSpec(**base, options={"amp_degree": 1, "amp_form": "power_law"}, data_stats=t0.stats, condition_stats=norm0.state_dict())
    with pytest.raises(ConfigError, match="amp_form=power_law"):
        build_generator(spec0)
    with pytest.raises(ConfigError, match="needs model.options.amp_degree"):  # the form of a polynomial that is not there
        build_generator(ModelSpec(**base, options={"amp_form": "power_law"}, data_stats=t.stats, condition_stats=norm.state_dict()))
    with pytest.raises(ValueError, match="log_conditions"):
        fit_amplitude_response(t0.forward(torch.from_numpy(x))[:, 0].numpy(), c0, 10, degree=1, log_conditions=True)
