"""Physics-structured calorimeter generator/critic and the calorimeter transform."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from physgan.domains.base import ModelSpec, get_domain
from physgan.domains.calo import LONG_G_OPTIONS, QUICK_G_OPTIONS
from physgan.domains.calo.geometry import calochallenge_geometry, calogan_geometry
from physgan.domains.calo.model import SHIFT_VAR_BINS, build_critic, build_generator, feature_groups, layer_groups
from physgan.domains.calo.transform import GROUP_ALWAYS_HIT, CaloTransform, fractions_to_model

CALOGAN = calogan_geometry()


def _spec(geom, **options) -> ModelSpec:
    return ModelSpec(sample_shape=(geom.n_features,), n_cond=1, condition_names=["energy"], z_dim=8, width=24, depth=2,
                     embed_dim=8, options=options, attrs=geom.to_attrs())


def _sparse_generator(geom, seed=0, **options):
    torch.manual_seed(seed)
    g = build_generator(_spec(geom, threshold_init=0.3, **options))
    with torch.no_grad():  # make the patterns non-uniform, as after training
        for head in g.patterns:
            head.weight.normal_(0, 0.5)
            head.bias.normal_(0, 2.0)
    return g


@pytest.mark.parametrize("geom", [CALOGAN, calochallenge_geometry("ds1-photons")], ids=["calogan", "ds1"])
def test_generator_shapes_nonnegative_exact_zeros_and_sums(geom):
    g = _sparse_generator(geom)
    gen = torch.Generator().manual_seed(1)
    z = torch.randn(16, *g.latent_shape(), generator=gen)
    c = torch.randn(16, 1, generator=gen)
    out = g.physics(z, c)
    u, y = out["u"], g(z, c)
    assert y.shape == (16, geom.n_features) and u.shape == y.shape
    assert (u >= 0).all()
    zeros = u == 0
    assert zeros.any() and (~zeros).any()
    assert torch.equal(y[zeros], torch.full_like(y[zeros], -1.0))  # exact zero <-> model space exactly -1
    assert (y[~zeros] > -1).all()
    # the groups' sums equal the predicted energies, and all of them the predicted response
    for k, idx in enumerate(layer_groups(geom)):
        torch.testing.assert_close(u[:, idx].sum(1), out["group_energy"][:, k], rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(u.sum(1), out["response"], rtol=1e-5, atol=1e-7)
    # every layer keeps its hottest cell, so no layer is emptied by the threshold
    for i in range(geom.n_layers):
        assert (u[:, geom.layer_slice(i)].amax(1) > 0).all()


def test_calogan_overflow_belongs_to_its_layer_group():
    groups = layer_groups(CALOGAN)
    assert len(groups) == 3
    assert [CALOGAN.n_cells + i in groups[i] for i in range(3)] == [True] * 3
    assert sorted(np.concatenate(groups).tolist()) == list(range(CALOGAN.n_features))
    assert len(layer_groups(calochallenge_geometry("ds1-pions"))) == 7


def test_generator_output_matches_transform_and_inverts_to_consistent_energies():
    g = _sparse_generator(CALOGAN, seed=3)
    t = CaloTransform().fit(np.ones((4, CALOGAN.n_features)), np.full((4, 1), 10.0), CALOGAN.to_attrs())
    gen = torch.Generator().manual_seed(2)
    z, c_norm = torch.randn(8, 8, generator=gen), torch.randn(8, 1, generator=gen)
    e_gev = torch.linspace(1, 100, 8)[:, None]
    with torch.no_grad():
        out = g.physics(z, c_norm)
        x = t.inverse(g(z, c_norm), e_gev)  # MeV
    torch.testing.assert_close(x.sum(1), out["response"] * e_gev[:, 0] * 1000, rtol=1e-4, atol=1e-3)
    assert torch.equal(x == 0, out["u"] == 0)


def test_gradients_reach_every_generator_parameter():
    g = _sparse_generator(CALOGAN, seed=4)
    gen = torch.Generator().manual_seed(5)
    z, c = torch.randn(32, 8, generator=gen), torch.randn(32, 1, generator=gen)
    w = torch.randn(CALOGAN.n_features, generator=gen)
    (g(z, c) * w).sum().backward()
    for name, p in g.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("geom", [CALOGAN, calochallenge_geometry("ds1-photons")], ids=["calogan", "ds1"])
def test_critic_double_backward_and_no_batch_norm(geom):
    torch.manual_seed(0)
    d = build_critic(_spec(geom, critic_norm="layer"))
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in d.modules())
    g = _sparse_generator(geom)
    gen = torch.Generator().manual_seed(6)
    c = torch.randn(8, 1, generator=gen)
    with torch.no_grad():
        fake = g(torch.randn(8, 8, generator=gen), c)
    real = fractions_to_model(torch.rand(8, geom.n_features, generator=gen) * 0.01 * (torch.rand(8, geom.n_features) > 0.5))
    eps = torch.rand(8, 1, generator=gen)
    x_hat = (eps * real + (1 - eps) * fake).requires_grad_(True)
    scores = d(x_hat, c)
    assert scores.shape == (8,)
    (grad,) = torch.autograd.grad(scores.sum(), x_hat, create_graph=True)
    penalty = ((grad.norm(dim=1) - 1) ** 2).mean()
    (penalty + d(real, c).mean()).backward()
    for name, p in d.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert sum(float(p.grad.abs().sum()) for p in d.parameters()) > 0
    feats = d.physics_features(real)
    assert feats.shape == (8, d.n_phys) and torch.isfinite(feats).all()


def test_critic_physics_features_see_layer_energy_and_centroid():
    d = build_critic(_spec(CALOGAN))
    u = torch.zeros(1, CALOGAN.n_features)
    k = CALOGAN.layer_slice(1).start + 11  # layer 1, row 0, last column: x = -220 mm, y = +220 mm
    u[0, k] = 0.5
    f = d.physics_features(fractions_to_model(u))[0]
    n = CALOGAN.n_layers
    assert f[0].item() == pytest.approx(10 * np.log(0.5 + 1e-6), rel=1e-4)  # response
    assert f[1].item() == pytest.approx(0.5, rel=1e-4)  # depth (layer 1 of 0..2, scaled by 2)
    assert f[2 + 1].item() == pytest.approx(np.log(0.5 + 1e-6) / 4, rel=1e-4)  # log layer-1 energy
    assert f[2 + n + 1].item() == pytest.approx(np.tanh(10 * 2.0) / 144, rel=1e-3)  # soft occupancy: one cell of 144
    means = f[2 + 2 * n : 2 + 2 * n + 6]
    assert means[2].item() == pytest.approx(-220 / 220, rel=1e-4) and means[3].item() == pytest.approx(220 / 220, rel=1e-4)


def test_transform_round_trip_exact_zeros_and_json_state():
    rng = np.random.default_rng(0)
    x = rng.exponential(50.0, size=(20, CALOGAN.n_features)) * (rng.random((20, CALOGAN.n_features)) < 0.4)
    c = rng.uniform(1, 100, size=(20, 1))
    t = CaloTransform(summary_occupancy=True).fit(x, c, CALOGAN.to_attrs())
    state = json.loads(json.dumps(t.state_dict()))
    t2 = CaloTransform().load_state_dict(state)
    xt, ct = torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(c, dtype=torch.float32)
    y = t2.forward(xt, ct)
    n = CALOGAN.n_features
    # cells; log response, 3 layer shares, 3 occupancies, 6 centres and 6 widths (x, y of 3 layers), 3 peak ratios
    assert y.shape == (20, n + 22) and t2.model_shape((n,)) == (n + 22,)
    assert y[:, :n].min() >= -1.0 and y[:, :n].max() <= 1.0
    summaries = y[:, n:].double()  # standardised on the fitted data: mean 0, standard deviation 1
    from physgan.domains.calo.transform import LATERAL_SOFT_SCALE as k

    summaries[:, 7:] = k * torch.sinh(summaries[:, 7:] / k)  # the lateral ones are asinh-compressed
    torch.testing.assert_close(summaries.mean(0), torch.zeros(22, dtype=torch.float64), atol=1e-4, rtol=0)
    torch.testing.assert_close(summaries.std(0, unbiased=False), torch.ones(22, dtype=torch.float64), atol=1e-4, rtol=0)
    u = xt / (ct * 1000.0)
    raw_response = torch.log(u.sum(1) + 1e-6)
    torch.testing.assert_close(y[:, n], (raw_response - state["stats"]["summary_mean"][0]) / state["stats"]["summary_std"][0])
    back = t2.inverse(y, ct)
    assert torch.equal(back == 0, xt == 0)
    torch.testing.assert_close(back, xt, rtol=2e-5, atol=1e-6)
    # MeV geometry: the same relative values give the same model space
    ds1 = calochallenge_geometry("ds1-photons")
    tm = CaloTransform().fit(np.zeros((1, ds1.n_features)), np.ones((1, 1)), ds1.to_attrs())
    assert tm.stats["energy_units"] == "MeV" and t.stats["energy_units"] == "GeV"
    y1 = tm.forward(torch.full((1, ds1.n_features), 500.0), torch.tensor([[1000.0]]))
    torch.testing.assert_close(y1[:, : ds1.n_features], fractions_to_model(torch.full((1, ds1.n_features), 0.5)))
    # without summaries (and for runs fitted before them) the model space is the cells alone
    plain = CaloTransform(summaries=False).fit(x, c, CALOGAN.to_attrs())
    assert plain.model_shape((n,)) == (n,) and plain.forward(xt, ct).shape == (20, n)


def test_domain_record_is_complete():
    dom = get_domain("calo")
    assert dom.layouts == ["calogan", "calochallenge"] and dom.condition_scales == {"energy": "log"}
    for field in ("make_transform", "build_generator", "build_critic", "features", "physics_metrics", "score", "plots", "detect"):
        assert callable(getattr(dom, field)), field
    assert {"quick", "gpu"} <= set(dom.presets)
    allowed = {"train", "model", "data"}
    for preset in dom.presets.values():
        assert set(preset) <= allowed
    assert dom.quickstart["preset"] == "quick" and dom.quickstart["make"]["geometry"] == "calogan"
    assert isinstance(dom.make_transform({}), CaloTransform)

    class H:
        attrs = {"domain": "calo", "geometry": "calogan"}

    class A:
        attrs = {"domain": "array"}

    assert dom.detect(H()) and not dom.detect(A())


def test_default_initialisation_is_a_sparse_core_on_the_axis():
    torch.manual_seed(0)
    g = build_generator(_spec(CALOGAN))
    with torch.no_grad():
        u = g.physics(torch.randn(4, 8), torch.zeros(4, 1))["u"]
    lay = CALOGAN.layers[1]
    cells = u[:, CALOGAN.layer_slice(1)]
    assert (cells == 0).any(dim=1).all()  # outer cells are exact zeros from the start
    hottest = lay.r_mm[cells.argmax(1).numpy()]
    assert np.all(hottest < 40.0)  # the 4 cells around the beam axis (r = 28 mm)
    assert torch.allclose(u.sum(1), torch.ones(4), atol=0.05)  # response starts at 1


def test_response_stays_in_its_range_and_bad_options_fail():
    from physgan.errors import ConfigError

    torch.manual_seed(1)
    g = build_generator(_spec(CALOGAN, response_range=[0.8, 1.2]))
    z, c = torch.randn(16, 8), torch.randn(16, 1)
    with torch.no_grad():
        assert torch.allclose(g.physics(z, c)["response"], torch.ones(16), atol=0.01)  # starts at 1
        for bias, bound in ((100.0, 1.2), (-100.0, 0.8)):  # saturate the head: the response sits on its bound
            g.response.bias.fill_(bias)
            torch.testing.assert_close(g.physics(z, c)["response"], torch.full((16,), bound))
    for bad in ({"response_range": [1.2, 0.8]}, {"response_range": [-0.1, 1.0]}, {"threshold_init": 1.0}, {"critic_norm": "batch"}):
        with pytest.raises(ConfigError):
            build_generator(_spec(CALOGAN, **bad)) if "critic_norm" not in bad else build_critic(_spec(CALOGAN, **bad))
    with pytest.raises(ConfigError):
        g.latent_shape(2)


def test_generator_starts_from_the_training_data_statistics():
    """With the fitted transform's statistics the response range, layer fractions and patterns start at the data's."""
    rng = np.random.default_rng(0)
    n = 400
    e_gev = rng.uniform(1, 100, n)
    layer_share = np.array([0.1, 0.7, 0.2])
    x = np.zeros((n, CALOGAN.n_features))
    for i in range(3):  # each layer: energy in one fixed cell pattern (cells 0..3 of the layer, shares 4:3:2:1)
        sl = CALOGAN.layer_slice(i)
        x[:, sl.start : sl.start + 4] = np.array([0.4, 0.3, 0.2, 0.1]) * layer_share[i]
    response = 0.99 + 0.003 * rng.standard_normal(n)  # as narrow as GFlash's
    x *= (response * e_gev * 1000.0)[:, None]
    t = CaloTransform().fit(x.astype(np.float32), e_gev[:, None], CALOGAN.to_attrs())
    assert t.stats["response_mean"] == pytest.approx(response.mean(), rel=1e-5)
    torch.manual_seed(0)
    g = build_generator(_spec(CALOGAN, data_stats=t.stats))
    lo, hi = g.response_lo, g.response_lo + g.response_span
    span = response.max() - response.min()
    assert lo == pytest.approx(response.min() - span / 2, rel=1e-5) and hi == pytest.approx(response.max() + span / 2, rel=1e-5)
    with torch.no_grad():
        out = g.physics(torch.randn(64, 8), torch.zeros(64, 1))
    assert torch.allclose(out["response"], torch.full((64,), float(response.mean()), dtype=torch.float32), atol=2e-3)
    assert np.allclose(out["fractions"].mean(0).numpy(), layer_share, atol=0.02)
    for i in range(3):  # the four populated cells carry the pattern; the never-hit cells start (nearly) empty
        cells = out["u"][:, CALOGAN.layer_slice(i)].mean(0).numpy() / (layer_share[i] * float(response.mean()))
        assert np.allclose(cells[:4], [0.4, 0.3, 0.2, 0.1], atol=0.03) and cells[4:].sum() < 0.05
    # a loaded run rebuilds the same generator from the same statistics (checkpoint compatibility)
    g2 = build_generator(_spec(CALOGAN, data_stats=json.loads(json.dumps(t.stats))))
    g2.load_state_dict(g.state_dict())
    assert (g2.response_lo, g2.response_span) == (g.response_lo, g.response_span)


def _models_round_trip(t, n):
    """Small G and D for transform ``t``; 16 showers of G at 20 GeV and their round trip through the transform."""
    spec = ModelSpec(sample_shape=t.model_shape((n,)), n_cond=1, condition_names=["energy"], z_dim=8, width=24, depth=2,
                     embed_dim=8, options={"data_stats": t.stats}, attrs=CALOGAN.to_attrs())
    torch.manual_seed(0)
    g, d = build_generator(spec), build_critic(spec)
    with torch.no_grad():
        y = g(torch.randn(16, 8), torch.zeros(16, 1))
        e = torch.full((16, 1), 20.0)
        again = t.forward(t.inverse(y, e), e)
    return spec, d, y, again


@pytest.mark.parametrize("occupancy", [False, True])
def test_generator_appends_the_transforms_summary_coordinates(occupancy):
    """G's summary coordinates equal the transform's on G's own showers; D reads them; mismatches are refused."""
    from physgan.errors import ConfigError

    rng = np.random.default_rng(1)
    x = rng.exponential(50.0, size=(64, CALOGAN.n_features)) * (rng.random((64, CALOGAN.n_features)) < 0.4)
    c = rng.uniform(1, 100, size=(64, 1))
    t = CaloTransform(summary_occupancy=occupancy).fit(x, c, CALOGAN.to_attrs())
    n = CALOGAN.n_features
    spec, d, y, again = _models_round_trip(t, n)
    k = (7 if occupancy else 4) + 15  # + centre and width in x and y of 3 layers, 3 peak ratios
    assert y.shape == (16, n + k)
    torch.testing.assert_close(again[:, n:], y[:, n:], atol=1e-3, rtol=0)  # consistent by construction
    y.requires_grad_(True)
    d(y, torch.zeros(16, 1)).sum().backward()
    assert float(y.grad[:, n:].abs().sum()) > 0  # the critic's score depends on the summaries
    bad = dict(t.stats, summary_mean=t.stats["summary_mean"][:2])
    with pytest.raises(ConfigError, match="data_stats"):
        build_generator(ModelSpec(**{**spec.__dict__, "options": {"data_stats": bad}}))
    with pytest.raises(ConfigError, match="508"):
        build_generator(ModelSpec(**{**spec.__dict__, "sample_shape": (n + 1,)}))


def test_summary_coordinates_known_answers():
    """log response, log shares and soft occupancy of a hand-built two-group shower; old 4-coordinate runs still load."""
    from physgan.domains.calo.transform import group_member_matrix, summary_coordinates

    member = torch.as_tensor(group_member_matrix([0, 0, 0, 0, 1, 1], 2))
    u = torch.tensor([[0.3, 0.3, 0.0, 0.0, 0.4, 0.0]], dtype=torch.float64)  # r = 1, shares 0.6 / 0.4, 2 of 4 and 1 of 2 hit
    raw = summary_coordinates(u, member.double(), occupancy=True)
    expect = torch.log(torch.tensor([[1.0, 0.6, 0.4]], dtype=torch.float64) + 1e-6)
    torch.testing.assert_close(raw[:, :3], expect)
    torch.testing.assert_close(raw[:, 3:], torch.tensor([[0.5, 0.5]], dtype=torch.float64), atol=1e-6, rtol=0)
    assert summary_coordinates(u, member.double()).shape == (1, 3)  # without occupancy
    # a transform fitted before occupancy existed (1 + G coordinates, no summary_groups key) keeps its model space
    rng = np.random.default_rng(2)
    x = rng.exponential(50.0, size=(32, CALOGAN.n_features)) * (rng.random((32, CALOGAN.n_features)) < 0.4)
    c = rng.uniform(1, 100, size=(32, 1))
    t = CaloTransform(summary_occupancy=False, summary_lateral=False).fit(x, c, CALOGAN.to_attrs())
    drop = ("summary_groups", "summary_occupancy", "summary_lateral", "geometry_attrs")
    old = {k: v for k, v in t.state_dict()["stats"].items() if k not in drop}
    t_old = CaloTransform().load_state_dict({"options": {}, "stats": old})
    n = CALOGAN.n_features
    assert t_old.model_shape((n,)) == (n + 4,)
    xt, ct = torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(c, dtype=torch.float32)
    torch.testing.assert_close(t_old.forward(xt, ct), t.forward(xt, ct))


def test_lateral_summary_coordinates_known_answers():
    """Centre of energy and width per layer and axis, in units of the layer's extent, for a hand-built shower."""
    from physgan.domains.calo.transform import group_member_matrix, lateral_moments, summary_coordinates

    moments, col_layer = lateral_moments(CALOGAN)
    assert col_layer == [0, 0, 1, 1, 2, 2] and moments.shape == (3, CALOGAN.n_features, 6)
    u = torch.zeros(1, CALOGAN.n_features, dtype=torch.float64)
    l1 = CALOGAN.layer_slice(1).start
    u[0, l1 + 0] = 0.3  # layer 1, row 0, column 0: x = y = -220 mm (the layer's extent: 1)
    u[0, l1 + 1] = 0.1  # row 0, column 1: x = -220 mm, y = -180 mm
    u[0, CALOGAN.layer_slice(0).start + 96 + 48] = 0.2  # layer 0, middle row: x = 0, y = 2.5 mm of 237.5
    member = torch.as_tensor(group_member_matrix(feature_groups(CALOGAN), 3), dtype=torch.float64)
    raw = summary_coordinates(u, member, lateral=torch.as_tensor(moments, dtype=torch.float64))
    centre, width = raw[0, 4:10], raw[0, 10:16]
    y1 = (0.3 * -1.0 + 0.1 * -180 / 220) / 0.4
    expect_c = [0.0, 2.5 / 237.5, -1.0, y1, 0.0, 0.0]  # layer 2 is empty: centre 0
    torch.testing.assert_close(centre, torch.tensor(expect_c, dtype=torch.float64), atol=1e-6, rtol=0)
    var_y1 = (0.3 * 1.0 + 0.1 * (180 / 220) ** 2) / 0.4 - y1**2
    expect_w = np.sqrt(np.array([0.0, 0.0, 0.0, var_y1, 0.0, 0.0]) + 1e-6)
    torch.testing.assert_close(width, torch.as_tensor(expect_w), atol=1e-6, rtol=0)
    # peak ratio of the two hottest cells per layer: one cell -> 1, (0.3 - 0.1) / 0.4, empty -> 0
    from physgan.domains.calo.transform import layer_bounds

    with_peaks = summary_coordinates(u, member, lateral=torch.as_tensor(moments, dtype=torch.float64), bounds=layer_bounds(CALOGAN))
    assert with_peaks.shape == (1, 19)
    torch.testing.assert_close(with_peaks[0, 16:], torch.tensor([1.0, 0.5, 0.0], dtype=torch.float64), atol=1e-9, rtol=0)


def test_cell_noise_latent_varies_each_shower_and_keeps_the_sums():
    """With cell_noise the latent carries one value per feature; the same shower latent with other cell noise
    gives another pattern (and centre of energy) with the same layer energies."""
    g = build_generator(_spec(CALOGAN, cell_noise=True))
    assert g.latent_shape() == (8 + CALOGAN.n_features,)
    torch.manual_seed(0)
    z = torch.randn(4, 8 + CALOGAN.n_features)
    z2 = z.clone()
    z2[:, 8:] = torch.randn(4, CALOGAN.n_features)
    c = torch.zeros(4, 1)
    with torch.no_grad():
        a, b = g.physics(z, c), g.physics(z2, c)
    torch.testing.assert_close(a["group_energy"], b["group_energy"])
    for gi, idx in enumerate(layer_groups(CALOGAN)):
        torch.testing.assert_close(a["u"][:, idx].sum(1), a["group_energy"][:, gi], rtol=1e-5, atol=1e-7)
    assert (a["u"] - b["u"]).abs().max() > 1e-4
    y_coord = torch.tensor(np.array(CALOGAN.layers[1].y_mm), dtype=torch.float32)
    sl = CALOGAN.layer_slice(1)
    ca = (a["u"][:, sl] @ y_coord) / a["u"][:, sl].sum(1)
    cb = (b["u"][:, sl] @ y_coord) / b["u"][:, sl].sum(1)
    assert (ca - cb).abs().max() > 0.1  # mm: the noise moves the centre of energy
    # gradients reach the noise scales; a shower latent without the noise part is refused by the shapes
    g(z, c).sum().backward()
    assert all(h.weight.grad is not None and h.weight.grad.abs().sum() > 0 for h in g.noise_scales)
    from physgan.errors import ConfigError

    with pytest.raises(ConfigError, match="latent"):
        g(torch.randn(4, 8), c)


def test_critic_centre_of_a_nearly_empty_layer_is_damped_by_the_data_floor():
    """A layer holding 1e-6 of E_inc in one edge cell: without data statistics its centre is the cell's (1, the
    edge); with them the layer energy is floored at 5 % of the data's mean, so the centre (and its gradient) shrink."""
    from physgan.domains.calo.model import MOMENT_FLOOR

    mean_u = np.zeros(CALOGAN.n_features)
    for i, share in enumerate([0.3, 0.6, 0.004]):
        sl = CALOGAN.layer_slice(i)
        mean_u[sl] = share / (sl.stop - sl.start)
    u = torch.zeros(1, CALOGAN.n_features)
    u[0, CALOGAN.layer_slice(0).start + 100] = 0.3
    u[0, CALOGAN.layer_slice(1).start + 70] = 0.6
    u[0, CALOGAN.layer_slice(2).stop - 1] = 1e-6  # layer 2, last cell: x = +220 mm, y = +200 mm (both at the edge: 1)
    y = fractions_to_model(u).requires_grad_(True)
    n = CALOGAN.n_layers
    col_x2 = 2 + 2 * n + 4  # centre x of layer 2
    plain = build_critic(_spec(CALOGAN)).physics_features(y)[0, col_x2]
    floored = build_critic(_spec(CALOGAN, data_stats={"mean_fraction": mean_u.tolist()})).physics_features(y)[0, col_x2]
    assert plain.item() == pytest.approx(1e-6 / (1e-6 + 1e-7), rel=1e-3)
    assert floored.item() == pytest.approx(1e-6 / (1e-6 + MOMENT_FLOOR * 0.004), rel=1e-2)
    (g_plain,) = torch.autograd.grad(plain, y)
    (g_floor,) = torch.autograd.grad(floored, y)
    assert g_floor.norm() < 0.05 * g_plain.norm()


def test_cell_log_std_known_answer_and_the_noise_starts_from_it():
    from physgan.domains.calo.transform import cell_log_std

    # group 0 = cells 0, 1; group 1 = cell 2; cell 3 (group 1) never hit
    u = np.array([[1.0, 1.0, 2.0, 0.0], [3.0, 1.0, 2.0, 0.0]] * 10)
    sd = cell_log_std(u, np.ones(20), np.array([0, 0, 1, 1]), n_bins=1)
    expect = abs(np.log(0.5) - np.log(0.75)) / 2  # cell 0 holds 1/2 or 3/4 of its group
    assert sd[0] == pytest.approx(expect, rel=1e-5)
    assert sd[1] == pytest.approx(abs(np.log(0.5) - np.log(0.25)) / 2, rel=1e-5)
    assert sd[2] == pytest.approx(0.0, abs=1e-6) and np.isnan(sd[3])
    # the generator's initial log noise scale per cell is the log of that spread (group order); unseen cells
    # take their group's largest
    cell = np.full(CALOGAN.n_features, np.nan)
    cell[: CALOGAN.layer_slice(0).stop] = np.linspace(0.02, 0.6, CALOGAN.layer_slice(0).stop)
    g = build_generator(_spec(CALOGAN, cell_noise=True, data_stats={"cell_log_std": cell.tolist()}))
    b0 = g.noise_scales[0].bias.detach().numpy()  # group 0: the 288 layer-0 cells, then the layer-0 overflow
    np.testing.assert_allclose(np.exp(b0[:288]), cell[:288], rtol=1e-5)
    assert np.exp(b0[288]) == pytest.approx(0.6, rel=1e-5)
    assert np.allclose(np.exp(g.noise_scales[1].bias.detach().numpy()), 0.5)  # no statistics there: cell_noise_init


def test_cylindrical_geometry_with_lateral_summaries_and_cell_noise():
    """CaloChallenge binning (DS1 photons: cylindrical, layers with and without angular bins): the transform's
    lateral block counts x, y and r per layer plus one peak ratio per layer, G (with per-cell noise) appends the
    same coordinates as the transform computes from G's showers, and the critic reads them."""
    from physgan.domains.calo.transform import lateral_moments

    geom = calochallenge_geometry("ds1-photons")
    rng = np.random.default_rng(3)
    x = rng.exponential(50.0, size=(64, geom.n_features)) * (rng.random((64, geom.n_features)) < 0.5)
    c = rng.uniform(1e3, 1e5, size=(64, 1))
    t = CaloTransform().fit(x, c, geom.to_attrs())
    _, col_layer = lateral_moments(geom)
    n_groups = int(t.stats["summary_groups"])
    n = geom.n_features
    assert t.model_shape((n,)) == (n + 1 + n_groups + 2 * len(col_layer) + geom.n_layers,)
    axes = sum(1 if lay.n_alpha == 1 else 3 for lay in geom.layers)  # r only, or x, y and r
    assert len(col_layer) == axes
    spec = ModelSpec(sample_shape=t.model_shape((n,)), n_cond=1, condition_names=["energy"], z_dim=8, width=24, depth=2,
                     embed_dim=8, options={"data_stats": t.stats, "cell_noise": True}, attrs=geom.to_attrs())
    torch.manual_seed(0)
    g, d = build_generator(spec), build_critic(spec)
    with torch.no_grad():
        y = g(torch.randn(8, *g.latent_shape()), torch.zeros(8, 1))
        e = torch.full((8, 1), 5e4)
        again = t.forward(t.inverse(y, e), e)
    torch.testing.assert_close(again[:, n:], y[:, n:], atol=2e-3, rtol=0)
    y.requires_grad_(True)
    d(y, torch.zeros(8, 1)).sum().backward()
    assert torch.isfinite(y.grad).all() and float(y.grad[:, n:].abs().sum()) > 0


def test_cell_hit_stats_known_answer():
    from physgan.domains.calo.transform import cell_hit_stats

    # group 0 = cells 0, 1; group 1 = cells 2, 3; cell 3 never hit
    u = np.array([[1.0, 1.0, 2.0, 0.0], [3.0, 0.0, 2.0, 0.0], [1.0, 3.0, 0.0, 0.0], [2.0, 2.0, 4.0, 0.0]])
    frac, share = cell_hit_stats(u, np.array([0, 0, 1, 1]))
    np.testing.assert_allclose(frac, (np.array([4, 3, 3, 0]) + 0.5) / 5.0, rtol=1e-6)
    np.testing.assert_allclose(share[:3], [(0.5 + 1.0 + 0.25 + 0.5) / 4, (0.5 + 0.75 + 0.5) / 3, 1.0], rtol=1e-6)
    assert np.isnan(share[3])


def _occupancy_stats(geom, rng, p_hit):
    """Data statistics of a made-up training set in which cell ``i`` is hit with probability ``p_hit[i]``."""
    n = 4000
    x = rng.exponential(1.0, size=(n, geom.n_features)) * (rng.random((n, geom.n_features)) < p_hit)
    x *= np.where(p_hit < 0.01, 1e-3, 1.0)  # rare cells are soft (a stray spot): never a group's hottest
    x[:, 0] += 1.0  # never an empty group 0
    return CaloTransform().fit(x, rng.uniform(10.0, 100.0, size=(n, 1)), geom.to_attrs()).stats


def _occupancy_model(seed: int, depth: int, **options) -> tuple[CaloTransform, ModelSpec]:
    """A CaloGAN transform fitted to zero-inflated toy showers (hit fractions 1 %, 30 %, 90 %) and a small G/D spec."""
    rng = np.random.default_rng(seed)
    t = CaloTransform()
    t.stats = _occupancy_stats(CALOGAN, rng, rng.choice([0.01, 0.3, 0.9], size=CALOGAN.n_features))
    spec = ModelSpec(sample_shape=t.model_shape((CALOGAN.n_features,)), n_cond=1, condition_names=["energy"], z_dim=8,
                     width=24, depth=depth, embed_dim=8, attrs=CALOGAN.to_attrs(), data_stats=t.stats, options=options)
    return t, spec


@pytest.mark.parametrize("geom", [CALOGAN, calochallenge_geometry("ds1-photons")], ids=["calogan", "ds1"])
def test_occupancy_draw_starts_at_the_datas_hit_fractions_and_keeps_the_sums(geom):
    """Zero-inflated patterns: each cell is hit as often as in the training data (per-cell, rare cells included),
    missed cells are exact zeros, the hottest cell of a group is always hit, and the layer sums stay exact."""
    rng = np.random.default_rng(0)
    p_hit = rng.choice([0.002, 0.05, 0.5, 0.95], size=geom.n_features)
    stats = _occupancy_stats(geom, rng, p_hit)
    torch.manual_seed(1)
    g = build_generator(ModelSpec(sample_shape=(geom.n_features,), n_cond=1, condition_names=["energy"], z_dim=8,
                                  width=24, depth=2, embed_dim=8, attrs=geom.to_attrs(),
                                  options={"data_stats": stats, "cell_noise": True, "noise_head": "layer", "occupancy": True}))
    assert g.latent_shape() == (8 + 2 * geom.n_features,)
    assert not hasattr(g, "thresholds")
    n = 20000
    with torch.no_grad():
        out = g.physics(torch.randn(n, *g.latent_shape()), torch.zeros(n, 1))
    u = out["u"]
    assert "hit_st" not in out  # no straight-through terms without gradients
    hit = (u > 0).double().mean(0).numpy()
    target = np.asarray(stats["cell_hit_fraction"])
    sd = np.sqrt(target * (1 - target) / n)
    cells = np.arange(geom.n_features) > 0
    # the forced hottest cell can only add hits
    assert (hit[cells] > target[cells] - 5 * sd[cells] - 1e-3).all()
    np.testing.assert_allclose(hit[cells].mean(), target[cells].mean(), atol=0.02)
    rare = cells & (p_hit == 0.002)
    assert (hit[rare] > 0).all()  # every rare cell is filled somewhere in 20000 showers
    assert np.median(hit[rare]) < 0.01
    for gi, idx in enumerate(layer_groups(geom)):
        torch.testing.assert_close(u[:, idx].sum(1), out["group_energy"][:, gi], rtol=1e-5, atol=1e-7)
        assert (u[:, idx] > 0).any(1).all()


def test_occupancy_straight_through_gradients_do_not_change_the_values():
    """With gradients on, the output equals the hard draw's (the straight-through terms are zero-valued), and the
    critic's gradient reaches the per-cell occupancy logits and the per-layer shifts; with the per-layer noise head
    G is smaller than with a full noise head per layer."""
    t, spec = _occupancy_model(1, 2, cell_noise=True, noise_head="layer", occupancy=True)
    n = CALOGAN.n_features
    torch.manual_seed(2)
    g, d = build_generator(spec), build_critic(spec)
    z, c = torch.randn(32, *g.latent_shape()), torch.zeros(32, 1)
    y = g(z, c)
    with torch.no_grad():
        y_plain = g(z, c)
        cells = g.sample_model(z, c)
    torch.testing.assert_close(y, y_plain)
    torch.testing.assert_close(cells, y_plain[:, :n])  # sampling skips only the summary coordinates
    d(y, c).mean().backward()
    for p in [*g.occupancy_logit, g.occupancy_shift.weight, *g.noise_log_scale, g.noise_shift.weight]:
        assert p.grad is not None and p.grad.abs().sum() > 0
    full = build_generator(ModelSpec(**{**spec.__dict__, "options": {**spec.options, "noise_head": "cell"}}))
    assert sum(p.numel() for p in g.parameters()) < sum(p.numel() for p in full.parameters()) - 20 * n
    from physgan.errors import ConfigError

    for bad in ({"noise_head": "pixel"}, {"occupancy_temperature": 0.0}):
        with pytest.raises(ConfigError, match=next(iter(bad))):
            build_generator(ModelSpec(**{**spec.__dict__, "options": {**spec.options, **bad}}))


def test_occupancy_slope_follows_the_incident_energy_from_the_start():
    """``cell_hit_probit`` recovers a known probit line of the hit probability in the standardised log energy, and
    with ``occupancy_slope`` the untrained generator's per-cell occupancy rises with the energy as the data's does."""
    from scipy.special import ndtr

    from physgan.domains.calo.transform import cell_hit_probit

    geom = CALOGAN
    rng = np.random.default_rng(4)
    n = 10000
    e = np.exp(rng.uniform(np.log(1.0), np.log(100.0), n))
    t = (np.log(e) - np.log(e).mean()) / np.log(e).std()
    a_true = rng.uniform(-2.0, 1.0, geom.n_features)
    b_true = rng.uniform(0.0, 0.8, geom.n_features)
    hit = rng.random((n, geom.n_features)) < ndtr(a_true + b_true * t[:, None])
    x = rng.exponential(1.0, size=hit.shape) * hit
    a, b = cell_hit_probit(x, e, n_bins=8)
    assert np.abs(a - a_true).max() < 0.2 and np.abs(b - b_true).max() < 0.2
    assert np.corrcoef(b, b_true)[0, 1] > 0.95
    stats = CaloTransform().fit(x + 1e-3 * (np.arange(geom.n_features) == 0), e[:, None], geom.to_attrs()).stats
    spec = _spec(geom, data_stats=stats, cell_noise=True, noise_head="layer", occupancy=True, occupancy_slope=True)
    torch.manual_seed(5)
    g = build_generator(spec)
    with torch.no_grad():
        lo = (g.physics(torch.randn(4000, *g.latent_shape()), torch.full((4000, 1), -1.5))["u"] > 0).double().mean(0)
        hi = (g.physics(torch.randn(4000, *g.latent_shape()), torch.full((4000, 1), 1.5))["u"] > 0).double().mean(0)
    rises = b_true > 0.4
    cells = np.arange(geom.n_features) > 0
    assert float((hi - lo).numpy()[rises & cells].mean()) > 0.15
    expect = ndtr(a_true + 1.5 * b_true) - ndtr(a_true - 1.5 * b_true)
    np.testing.assert_allclose(float((hi - lo).numpy()[cells].mean()), expect[cells].mean(), atol=0.03)
    plain = build_generator(_spec(geom, data_stats=stats, cell_noise=True, noise_head="layer", occupancy=True))
    assert plain.occupancy_slope is None


def test_occupancy_summary_straight_through_can_be_switched_off():
    """``occupancy_summary_st`` False: the hit draws' straight-through gradient reaches G only through the cells, not
    through the summary coordinates (whose energy-space gradient spiked to 4e10 in training)."""
    n = CALOGAN.n_features
    grads = {}
    for flag in (True, False):
        t, spec = _occupancy_model(6, 2, cell_noise=True, noise_head="layer", occupancy=True, occupancy_summary_st=flag)
        torch.manual_seed(7)
        g = build_generator(spec)
        y = g(torch.randn(16, *g.latent_shape()), torch.zeros(16, 1))
        y[:, n:].sum().backward()
        grads[flag] = sum(float(p.grad.abs().sum()) for p in g.occupancy_logit if p.grad is not None)
    assert grads[True] > 0 and grads[False] == 0


def test_extras_summary_coordinate_is_the_overflow_energy():
    """Option summary_extras: one more coordinate, log(overflow / E_inc + 1e-6) standardised; G's equals the transform's."""
    from physgan.domains.calo.transform import SUMMARY_EPS, extra_indicator, summary_coordinates

    rng = np.random.default_rng(2)
    x = rng.exponential(50.0, size=(64, CALOGAN.n_features)) * (rng.random((64, CALOGAN.n_features)) < 0.4)
    c = rng.uniform(1, 100, size=(64, 1))
    t0 = CaloTransform().fit(x, c, CALOGAN.to_attrs())
    t = CaloTransform(summary_extras=True).fit(x, c, CALOGAN.to_attrs())
    n = CALOGAN.n_features
    assert len(t.stats["summary_mean"]) == len(t0.stats["summary_mean"]) + 1 and t.stats["summary_extras"]
    u = torch.as_tensor(x / (c * 1000.0))
    raw = summary_coordinates(u, torch.ones(n, 1, dtype=u.dtype), extras=torch.as_tensor(extra_indicator(CALOGAN), dtype=u.dtype))
    torch.testing.assert_close(raw[:, -1], torch.log(u[:, CALOGAN.n_cells :].sum(1) + SUMMARY_EPS))
    np.testing.assert_allclose(t.stats["summary_mean"][-1], float(raw[:, -1].mean()), rtol=1e-6)
    spec, d, y, again = _models_round_trip(t, n)
    assert y.shape == (16, n + 4 + 15 + 1)
    torch.testing.assert_close(again[:, n:], y[:, n:], atol=1e-3, rtol=0)
    assert d(y, torch.zeros(16, 1)).shape == (16,)
    # a geometry without extras (CaloChallenge) takes no such coordinate
    ds1 = calochallenge_geometry("ds1-photons")
    xd = rng.exponential(5.0, size=(32, ds1.n_features))
    td = CaloTransform(summary_extras=True).fit(xd, rng.uniform(1e3, 1e5, size=(32, 1)), ds1.to_attrs())
    assert not td.stats["summary_extras"]


@pytest.mark.parametrize("options", [
    {"cell_noise": True, "noise_head": "layer", "occupancy": True},  # the options every preset shares
    QUICK_G_OPTIONS,  # the quick preset's, as shipped
    LONG_G_OPTIONS,  # the default and gpu presets', as shipped
    {"cell_noise": True, "noise_head": "layer", "occupancy": True, "layer_hidden": False, "pattern_conv": 2},
    {"cell_noise": True, "noise_head": "layer", "occupancy": True, "extras_noise": True, "generator_width": 16},
    {"cell_noise": True, "noise_head": "layer", "occupancy": True, "noise_slope": True, "extras_cap": True},
    {"cell_noise": True, "noise_head": "layer", "occupancy": True, "extras_cap": True},
    {"cell_noise": True, "noise_head": "layer", "occupancy": True, "extras_cap": True, "hit_floor": True},
    {"cell_noise": True, "noise_head": "layer", "occupancy": True, "extras_cap": True, "hit_floor": True,
     "occupancy_slope": True, "empty_layers": True},
    {"cell_noise": True, "noise_head": "layer", "occupancy": True, "extras_cap": True, "hit_floor": True,
     "occupancy_slope": True, "empty_draw": True, "response_noise": True, "occupancy_radial": True},
    {**LONG_G_OPTIONS, "layer_noise": True},
    {**LONG_G_OPTIONS, "layer_noise": True, "layer_noise_hits": True, "occupancy_radial": True,
     "occupancy_from_condition": True},
    {**LONG_G_OPTIONS, "layer_noise": True, "layer_noise_hits": True, "occupancy_from_shares": True},
    {**LONG_G_OPTIONS, "layer_noise": True, "layer_noise_hits": True, "occupancy_mean_preserving": True},
    {"cell_noise": True, "noise_head": "cell", "occupancy": False},  # the relative threshold, a full noise head
    {"cell_noise": False, "sparsify": False},
], ids=["shared", "quick-preset", "long-presets", "conv-no-hidden", "extras-narrow", "noise-slope", "extras-cap", "hit-floor",
        "empty-layers", "empty-draw", "layer-noise", "layer-noise-hits", "occupancy-from-shares", "mean-preserving",
        "threshold", "dense"])
def test_sampling_path_equals_the_training_forward(options):
    """Without gradients the generator runs its element-wise steps in place: its cells equal the training forward's
    bit for bit for the same latents; the direct physical path (no log / exp round trip) equals the inverse transform
    of the model-space output to float rounding, with the same exact zeros, and is what ``generate_batch`` uses."""
    from physgan.sampling import generate_batch

    t, spec = _occupancy_model(3, 3, **options)
    torch.manual_seed(5)
    g = build_generator(spec)
    with torch.no_grad():  # non-trivial FiLM and noise shifts, as after training
        for p in g.parameters():
            p.add_(0.05 * torch.randn_like(p))
        if options.get("occupancy_mean_preserving"):  # a learned spread; eval mode: the forwards below do not move it
            g.occupancy_shift_var.fill_(0.3)
            g.eval()
    z, c = torch.randn(64, *g.latent_shape()), torch.randn(64, 1)
    c_phys = torch.exp(torch.randn(64, 1)) * 10.0
    u_train = g.physics(z, c)["u"]
    y = g(z, c)
    with torch.no_grad():
        u_sample = g.physics(z, c)["u"]
        direct = g.sample_physical(z, c, c_phys, t)
        trip = t.inverse(y.detach(), c_phys)
        via_engine = generate_batch(g, t, lambda cc: c, c_phys, z)
    assert torch.equal(u_sample, u_train.detach())
    assert (u_sample == 0).any() == (options.get("sparsify", True))
    assert torch.equal(direct == 0, trip == 0)
    torch.testing.assert_close(direct, trip, rtol=2e-5, atol=0.0)
    assert torch.equal(via_engine, direct)
    y.sum().backward()  # the training forward still has its gradients
    assert all(p.grad is not None for p in g.patterns.parameters())


def test_extras_noise_follows_the_datas_spread_against_the_energy():
    """``cell_log_std_line`` recovers a known line of the log spread in the standardised log energy; with
    ``extras_noise`` the untrained generator's overflow share spreads as that line says, at low and at high energy
    (one energy-averaged scale would be too narrow at one end and too wide at the other), and ``generator_width``
    narrows G alone."""
    from physgan.domains.calo.transform import cell_log_std_line

    rng = np.random.default_rng(7)
    n, geom = 20000, CALOGAN
    e = np.exp(rng.uniform(np.log(1.0), np.log(100.0), n))
    t = (np.log(e) - np.log(e).mean()) / np.log(e).std()
    sd_true = np.exp(-1.0 - 0.3 * t)  # the overflow's log share: wide at low energy, narrow at high
    x = rng.exponential(1.0, size=(n, geom.n_features)) * (rng.random((n, geom.n_features)) < 0.5)
    x[:, : geom.n_cells] += 1.0  # every cell hit
    for i in range(geom.n_layers):
        x[:, geom.n_cells + i] = 0.01 * x[:, geom.layer_slice(i)].sum(1) * np.exp(sd_true * rng.standard_normal(n))
    a, b = cell_log_std_line(x, e, feature_groups(geom))
    extra = geom.n_cells + np.arange(geom.n_layers)
    np.testing.assert_allclose(b[extra], -0.3, atol=0.05)
    np.testing.assert_allclose(a[extra], -1.0, atol=0.1)
    stats = CaloTransform().fit(x, e[:, None] / 1000.0, geom.to_attrs()).stats  # CaloGAN energies in GeV
    opts = {"cell_noise": True, "noise_head": "layer", "occupancy": True, "extras_noise": True}
    spec = ModelSpec(sample_shape=(geom.n_features + len(stats["summary_mean"]),), n_cond=1, condition_names=["energy"],
                     z_dim=8, width=24, depth=2, embed_dim=8, attrs=geom.to_attrs(), data_stats=stats, options=opts)
    torch.manual_seed(0)
    g = build_generator(spec)
    for tt in (-1.5, 1.5):
        c = torch.full((4000, 1), tt)
        with torch.no_grad():
            u = g.physics(torch.randn(4000, *g.latent_shape()), c)["u"].numpy()
        i, sl = geom.n_cells + 1, geom.layer_slice(1)  # layer 1's overflow: its share of the layer group
        hit = u[:, i] > 0
        share = np.log(u[hit, i] / (u[hit, sl].sum(1) + u[hit, i]))
        assert abs(share.std() / np.exp(-1.0 - 0.3 * tt) - 1.0) < 0.25
    narrow = build_generator(ModelSpec(**{**spec.__dict__, "options": {**opts, "generator_width": 12}}))
    assert narrow.inp.out_features == 12 and sum(p.numel() for p in narrow.parameters()) < sum(p.numel() for p in g.parameters())
    from physgan.errors import ConfigError

    with pytest.raises(ConfigError, match="extras_noise"):
        build_generator(ModelSpec(**{**spec.__dict__, "options": {**opts, "noise_head": "cell"}}))


def test_noise_slope_gives_each_cell_the_datas_spread_at_every_energy():
    """With ``noise_slope`` the untrained generator's per-cell noise follows the data's line of each cell's log-share
    spread in the standardised log energy (``cell_log_std_line``), at low and at high energy; without it one
    energy-averaged scale is too wide at one end and too narrow at the other."""
    rng = np.random.default_rng(11)
    n, geom = 20000, CALOGAN
    e = np.exp(rng.uniform(np.log(1.0), np.log(100.0), n))
    t = (np.log(e) - np.log(e).mean()) / np.log(e).std()
    x = 1.0 + 0.05 * rng.standard_normal((n, geom.n_features)) ** 2  # every cell hit, small spread
    x[:, geom.n_cells :] = 0.0
    cell = geom.layer_slice(1).start + 5  # one cell of layer 1: its log share spreads by exp(-0.5 - 0.4 t)
    x[:, cell] = 0.01 * x[:, geom.layer_slice(1)].sum(1) * np.exp(np.exp(-0.5 - 0.4 * t) * rng.standard_normal(n))
    stats = CaloTransform().fit(x, e[:, None] / 1000.0, geom.to_attrs()).stats  # CaloGAN energies in GeV
    opts = {"cell_noise": True, "noise_head": "layer", "occupancy": True}
    spec = ModelSpec(sample_shape=(geom.n_features + len(stats["summary_mean"]),), n_cond=1, condition_names=["energy"],
                     z_dim=8, width=24, depth=2, embed_dim=8, attrs=geom.to_attrs(), data_stats=stats, options=opts)
    spreads = {}
    for slope in (False, True):
        torch.manual_seed(0)
        g = build_generator(ModelSpec(**{**spec.__dict__, "options": {**opts, "noise_slope": slope}}))
        for tt in (-1.5, 1.5):
            with torch.no_grad():
                u = g.physics(torch.randn(4000, *g.latent_shape()), torch.full((4000, 1), tt))["u"].numpy()
            sl = geom.layer_slice(1)
            hit = u[:, cell] > 0
            spreads[slope, tt] = np.log(u[hit, cell] / u[hit, sl].sum(1)).std()
    for tt in (-1.5, 1.5):
        assert abs(spreads[True, tt] / np.exp(-0.5 - 0.4 * tt) - 1.0) < 0.25
    assert spreads[False, -1.5] / np.exp(-0.5 + 0.6) < 0.75 and spreads[False, 1.5] / np.exp(-0.5 - 0.6) > 1.33
    from physgan.errors import ConfigError

    with pytest.raises(ConfigError, match="noise_slope"):
        build_generator(ModelSpec(**{**spec.__dict__, "options": {**opts, "noise_slope": True, "noise_head": "cell"}}))


def test_noise_clip_clips_each_cells_noise_draw_above():
    """``noise_clip``: the generator reads each per-cell noise draw as ``min(n, clip)``, so it equals the generator
    without the option fed the clipped draws, and a draw above the clip changes nothing."""
    geom = CALOGAN
    spec = ModelSpec(sample_shape=(geom.n_features,), n_cond=1, condition_names=["energy"], z_dim=8, width=16, depth=2,
                     embed_dim=8, attrs=geom.to_attrs(), options={"cell_noise": True, "noise_head": "layer", "occupancy": True})
    torch.manual_seed(0)
    g0 = build_generator(spec)
    torch.manual_seed(0)
    g1 = build_generator(ModelSpec(**{**spec.__dict__, "options": {**spec.options, "noise_clip": 0.5}}))
    z = torch.randn(6, *g1.latent_shape(), generator=torch.Generator().manual_seed(2))
    c = torch.randn(6, 1, generator=torch.Generator().manual_seed(3))
    noise = slice(g1.z_dim, g1.z_dim + geom.n_features)
    clipped = z.clone()
    clipped[:, noise] = clipped[:, noise].clamp(max=0.5)
    with torch.no_grad():
        torch.testing.assert_close(g1.physics(z, c)["u"], g0.physics(clipped, c)["u"])
        assert not torch.allclose(g0.physics(z, c)["u"], g0.physics(clipped, c)["u"])
        higher = z.clone()
        higher[:, noise] = torch.where(z[:, noise] > 0.5, z[:, noise] + 3.0, z[:, noise])
        torch.testing.assert_close(g1.physics(higher, c)["u"], g1.physics(z, c)["u"])
    from physgan.errors import ConfigError

    with pytest.raises(ConfigError, match="noise_clip"):
        build_generator(ModelSpec(**{**spec.__dict__, "options": {"noise_clip": 0.5}}))


def test_gamma_log_noise_is_the_log_of_a_unit_mean_gamma():
    """``_gamma_log_noise`` (Wilson-Hilferty): its quantiles match the log of a gamma of shape ``1 / sigma^2`` and unit
    mean drawn by torch where the approximation holds (sigma <= 0.5 here; the upper tail and median up to sigma 1), it
    is ``sigma n`` for a small sigma, and it is monotone in the draw (so a larger draw never makes a cell emptier)."""
    from physgan.domains.calo.model import _gamma_log_noise

    n = torch.randn(100_000, generator=torch.Generator().manual_seed(0))
    qs = torch.tensor([0.01, 0.1, 0.5, 0.9, 0.99])
    for sigma in (0.2, 0.5, 1.0):
        torch.manual_seed(1)
        ref = torch.distributions.Gamma(1 / sigma**2, 1 / sigma**2).sample((100_000,)).log()
        ours = _gamma_log_noise(torch.tensor(sigma), n)
        q_ref, q_ours = torch.quantile(ref, qs), torch.quantile(ours, qs)
        upper = slice(0 if sigma <= 0.5 else 2, None)
        torch.testing.assert_close(q_ours[upper], q_ref[upper], atol=0.02, rtol=0.04)
        assert q_ours[2] - q_ours[0] > q_ours[4] - q_ours[2]  # left-skewed: the lower tail is the longer one
    torch.testing.assert_close(_gamma_log_noise(torch.tensor(1e-3), n), 1e-3 * n, atol=1e-5, rtol=0)
    grid = torch.linspace(-6, 6, 201)
    assert (torch.diff(_gamma_log_noise(torch.tensor(1.5), grid)) >= 0).all()


def test_noise_shape_gamma_makes_a_cell_s_log_share_left_skewed():
    """``noise_shape: gamma``: with the same per-cell scales, one cell's log share over many draws at a fixed
    condition is left-skewed (like the data's: GFlash on dataset 2, skewness -1 to -3), where the normal shape's is
    not; the noise scales still get gradients; the option needs the layer noise head."""
    from physgan.errors import ConfigError

    geom = CALOGAN
    base = {"cell_noise": True, "noise_head": "layer", "sparsify": False}
    skew, grads = {}, {}
    for shape in ("normal", "gamma"):
        spec = ModelSpec(sample_shape=(geom.n_features,), n_cond=1, condition_names=["energy"], z_dim=8, width=16,
                         depth=2, embed_dim=8, attrs=geom.to_attrs(), options={**base, "noise_shape": shape})
        torch.manual_seed(0)
        g = build_generator(spec)
        with torch.no_grad():
            for p in g.noise_log_scale:
                p.fill_(float(np.log(0.8)))
        z = torch.randn(4000, *g.latent_shape(), generator=torch.Generator().manual_seed(1))
        z[:, : g.z_dim] = 0.0  # one shower pattern, only the cell noise varies
        u = g.physics(z, torch.zeros(4000, 1))["u"]
        groups = layer_groups(geom)
        cells = torch.as_tensor(groups[1])
        share = u[:, cells] / u[:, cells].sum(dim=1, keepdim=True)
        hottest = int(share.mean(dim=0).argmax())
        x = torch.log(share[:, hottest].detach().double())
        skew[shape] = float(((x - x.mean()) ** 3).mean() / x.std() ** 3)
        u[:, cells].sum().backward()
        grads[shape] = (g.noise_log_scale[1].grad, g.noise_shift.weight.grad)
    assert skew["gamma"] < -0.5 and skew["gamma"] < skew["normal"] - 0.4, skew
    for grad in grads["gamma"]:
        assert grad is not None and torch.isfinite(grad).all()
    with pytest.raises(ConfigError, match="noise_shape"):
        build_generator(ModelSpec(sample_shape=(geom.n_features,), n_cond=1, condition_names=["energy"], z_dim=8,
                                  width=16, depth=2, embed_dim=8, attrs=geom.to_attrs(),
                                  options={"cell_noise": True, "noise_shape": "gamma"}))


def test_noise_floor_keeps_the_noise_when_the_shift_switches_it_off():
    """``noise_floor``: at the start the generator is the one without the option (factor 1); with the layer shift
    driven to ~0 (as trained dataset-2 generators did) a cell's log share still spreads by the floor times its scale,
    where without the floor it does not spread at all."""
    geom = CALOGAN
    base = {"cell_noise": True, "noise_head": "layer", "sparsify": False}
    z = torch.randn(3000, 8 + geom.n_features, generator=torch.Generator().manual_seed(1))
    z[:, :8] = 0.0
    c = torch.zeros(3000, 1)
    spread = {}
    for floor in (0.0, 0.5):
        spec = ModelSpec(sample_shape=(geom.n_features,), n_cond=1, condition_names=["energy"], z_dim=8, width=16,
                         depth=2, embed_dim=8, attrs=geom.to_attrs(), options={**base, "noise_floor": floor})
        torch.manual_seed(0)
        g = build_generator(spec)
        with torch.no_grad():
            u0 = g.physics(z, c)["u"]
            g.noise_shift.bias.fill_(-30.0)
            u1 = g.physics(z, c)["u"]
        cells = torch.as_tensor(layer_groups(geom)[1])
        hottest = int(u0[:, cells].mean(dim=0).argmax())
        spread[floor] = [float(torch.log(u[:, cells][:, hottest] / u[:, cells].sum(dim=1)).std()) for u in (u0, u1)]
    assert spread[0.5][0] == pytest.approx(spread[0.0][0], rel=0.01)  # the same at the start (factor 1 at shift 0)
    assert spread[0.0][1] < 1e-3 * spread[0.0][0]
    assert spread[0.5][1] == pytest.approx(0.5 * spread[0.5][0], rel=0.15)
    from physgan.errors import ConfigError

    with pytest.raises(ConfigError, match="noise_floor"):
        build_generator(ModelSpec(**{**spec.__dict__, "options": {**base, "noise_floor": 1.0}}))


def test_critic_score_by_path_splits_the_gradient_exactly():
    """``CaloCritic.score_by_path``: with the same cells on both paths it is ``forward``; with one path detached at a
    time, the gradients on a generator parameter (the noise shift, as ``bench/calo_diagnose.py`` reads it) add up to
    the full gradient, and each path's part is not zero."""
    _, spec = _occupancy_model(5, 2, cell_noise=True, noise_head="layer", occupancy=True)
    torch.manual_seed(0)
    g, d = build_generator(spec), build_critic(spec)
    z = torch.randn(32, *g.latent_shape(), generator=torch.Generator().manual_seed(1))
    c = torch.randn(32, 1, generator=torch.Generator().manual_seed(2))
    y = g(z, c)
    nc = d.n_cells_model
    cells, summ = y[:, :nc], y[:, nc:]
    assert summ.shape[1] > 0
    torch.testing.assert_close(d.score_by_path(cells, cells, summ, c), d(y, c))
    total = torch.autograd.grad(d(y, c).mean(), g.noise_shift.weight, retain_graph=True)[0]
    parts = []
    for args in ((cells, cells.detach(), summ.detach()), (cells.detach(), cells, summ.detach()),
                 (cells.detach(), cells.detach(), summ)):
        parts.append(torch.autograd.grad(d.score_by_path(*args, c).mean(), g.noise_shift.weight, retain_graph=True)[0])
        assert parts[-1].abs().max() > 0
    torch.testing.assert_close(sum(parts), total, atol=1e-7, rtol=1e-4)


def test_extras_cap_keeps_the_layer_s_energy_in_its_cells():
    """With ``extras_cap`` an overflow whose pattern logit is pushed above every cell's (as after 12k-16k default steps,
    bench/RESULTS.md §13, fifth session) is at most as hot as the layer's hottest cell, which is always hit; the layer
    sums stay exact, and a generator without the option lets the overflow take the group (what the cap prevents)."""
    _, spec = _occupancy_model(3, 2, cell_noise=True, noise_head="layer", occupancy=True)
    groups = layer_groups(CALOGAN)
    out = {}
    for cap in (False, True):
        torch.manual_seed(0)
        g = build_generator(ModelSpec(**{**spec.__dict__, "options": {**spec.options, "extras_cap": cap}}))
        with torch.no_grad():
            for k in range(len(groups)):  # the overflow (last in its group) far above the cells
                g.patterns[k].bias[g.group_n_cells[k]:] += 30.0
            out[cap] = g.physics(torch.randn(2000, *g.latent_shape()), torch.zeros(2000, 1))
    for cap, o in out.items():
        u = o["u"]
        for k, idx in enumerate(groups):
            nc = int((idx < CALOGAN.n_cells).sum())
            cells, extras = u[:, idx[:nc]], u[:, idx[nc:]]
            torch.testing.assert_close(u[:, idx].sum(1), o["group_energy"][:, k], rtol=1e-5, atol=1e-7)
            if cap:
                assert (cells > 0).any(1).all()  # the hottest cell is hit
                assert (extras.max(1).values <= cells.max(1).values * (1 + 1e-5)).all()
            else:
                assert (extras.max(1).values > 0.99 * o["group_energy"][:, k]).float().mean() > 0.9


def test_cell_hit_floor_fits_the_smallest_hit_against_the_energy():
    from physgan.domains.calo.transform import cell_hit_floor

    rng = np.random.default_rng(0)
    n, e = 20000, np.exp(rng.uniform(0.0, np.log(100.0), 20000))
    t = (np.log(e) - np.log(e).mean()) / np.log(e).std()
    # the smallest deposit: 2 units at every energy in group 0, growing with the energy in group 1
    e_min = np.where(np.array([0, 0, 0, 1, 1, 0]) == 0, 2.0, 0.5 * np.sqrt(e)[:, None])
    u = e_min * (1.0 + rng.exponential(1.0, (n, 6))) * (rng.random((n, 6)) < 0.5) / e[:, None]
    u[:, 5] = 1e-6 * rng.random(n)  # an extra (flat index >= n_cells) below every cell: not a cell, not in the floor
    a, b = cell_hit_floor(u, e, np.array([0, 0, 0, 1, 1, 0]), n_cells=5)
    got = np.exp(a[:, None] + b[:, None] * t[None, :]) * e  # the floor in energy, per shower
    # the 0.5 % quantile of 1 + Exp(1) is 1.005
    np.testing.assert_allclose(got[0], 2.0 * 1.005, rtol=0.02)
    np.testing.assert_allclose(got[1], 0.5 * np.sqrt(e) * 1.005, rtol=0.08)


def test_hit_floor_gives_every_hit_cell_at_least_the_data_s_smallest_deposit():
    """With ``hit_floor`` each hit cell of a layer holds at least the floor fitted on the data (unless the floors would
    exceed the layer's energy: then the hit cells share it equally), the layer sums stay exact, missed cells stay
    exact zeros; the option needs the occupancy draws and the transform's statistics."""
    from physgan.errors import ConfigError

    t, spec = _occupancy_model(3, 2, cell_noise=True, noise_head="layer", occupancy=True, extras_cap=True, hit_floor=True)
    groups = layer_groups(CALOGAN)
    torch.manual_seed(0)
    g = build_generator(spec)
    c = torch.linspace(-2, 2, 500)[:, None]
    with torch.no_grad():
        o = g.physics(torch.randn(500, *g.latent_shape()), c)
    u = o["u"]
    low = 0
    for k, idx in enumerate(groups):
        nc = int((idx < CALOGAN.n_cells).sum())
        cells = u[:, idx[:nc]]
        torch.testing.assert_close(u[:, idx].sum(1), o["group_energy"][:, k], rtol=1e-5, atol=1e-7)
        p = torch.exp(torch.tensor(t.stats["cell_hit_floor_a"][k]) + torch.tensor(t.stats["cell_hit_floor_b"][k]) * c[:, 0])
        n_hit = (cells > 0).sum(1)
        capped = p * n_hit > o["group_energy"][:, k]
        smallest = torch.where(cells > 0, cells, torch.inf).min(1).values
        assert (smallest[~capped] >= p[~capped] * (1 - 1e-5)).all()
        equal = cells[capped]
        assert torch.allclose(equal.max(1).values, torch.where(equal > 0, equal, torch.inf).min(1).values, rtol=1e-4)
        low += int((~capped).sum())
    assert low > 500  # most showers are above the cap
    with pytest.raises(ConfigError, match="needs occupancy"):
        build_generator(ModelSpec(**{**spec.__dict__, "options": {"hit_floor": True}}))
    stale = {k: v for k, v in spec.data_stats.items() if not k.startswith("cell_hit_floor")}
    with pytest.raises(ConfigError, match="cell_hit_floor"):
        build_generator(ModelSpec(**{**spec.__dict__, "data_stats": stale}))


def test_empty_layers_lets_a_layer_with_no_hit_draw_be_empty_and_keeps_the_total():
    """With ``empty_layers`` a layer group none of whose draws hits holds exactly nothing and the other groups share
    its energy (the total stays the response, each group's sum its renormalised share); without it the same draws
    leave no group empty (the hottest cell is kept). Gradients reach the layer-fraction head; the option needs the
    occupancy draws."""
    from physgan.errors import ConfigError

    options = {"cell_noise": True, "noise_head": "layer", "occupancy": True, "extras_cap": True, "hit_floor": True}
    groups = layer_groups(CALOGAN)
    u, out = {}, {}
    for empty in (False, True):
        _, spec = _occupancy_model(4, 2, **options, empty_layers=empty)
        torch.manual_seed(0)
        g = build_generator(spec)
        with torch.no_grad():
            g.occupancy_logit[2].fill_(-3.0)  # layer 2 (72 cells and its overflow) is hit rarely: P(all miss) ~ 0.9
        torch.manual_seed(1)
        z, c = torch.randn(400, *g.latent_shape()), torch.randn(400, 1)
        with torch.no_grad():
            out[empty] = g.physics(z, c)
        u[empty] = out[empty]["u"]
    assert (u[False][:, groups[2]] > 0).any(1).all()  # without the option a layer is never empty
    gone = ~(u[True][:, groups[2]] > 0).any(1)
    assert 0.5 < gone.float().mean() < 1.0
    o = out[True]
    torch.testing.assert_close(u[True].sum(1), o["response"], rtol=1e-5, atol=0.0)
    for k, idx in enumerate(groups):
        torch.testing.assert_close(u[True][:, idx].sum(1), o["group_energy"][:, k], rtol=1e-5, atol=1e-7)
    assert (o["fractions"][gone, 2] == 0).all() and (o["fractions"][~gone, 2] > 0).all()
    # the non-empty groups share the empty layer's fraction in proportion to their own
    kept = out[False]["fractions"][gone][:, :2]
    torch.testing.assert_close(o["fractions"][gone][:, :2], kept / kept.sum(1, keepdim=True), rtol=1e-5, atol=1e-7)
    # with gradients on, an empty layer's cells keep a counterfactual energy (had one been hit) for the straight-through
    # term of their draws, so the critic can pull an empty layer back to a hit
    with_grad = g.physics(z, c)
    torch.testing.assert_close(with_grad["u"].detach(), u[True])
    cells2 = groups[2][groups[2] < CALOGAN.n_cells]
    assert (with_grad["u_hit"][gone][:, cells2] > 0).all()
    _, spec = _occupancy_model(4, 2, **options, empty_layers=True)
    g = build_generator(spec)
    g(torch.randn(64, *g.latent_shape()), torch.randn(64, 1)).sum().backward()
    assert g.fractions.weight.grad is not None and g.fractions.weight.grad.abs().sum() > 0
    with pytest.raises(ConfigError, match="empty_layers needs occupancy"):
        build_generator(ModelSpec(**{**spec.__dict__, "options": {"empty_layers": True}}))


def test_critic_spectrum_counts_each_layer_s_cells_above_multiples_of_its_floor():
    """Option ``critic_spectrum``: per layer and threshold, log(1 + the soft number of cells whose energy exceeds the
    multiple of the layer's fitted hit floor at that shower's incident energy); the overflow is never counted; far
    from the thresholds the soft count equals the hard one; the critic stays twice differentiable (gradient penalty)."""
    from physgan.domains.calo.model import SPECTRUM_MULTIPLES, SPECTRUM_WIDTH
    from physgan.errors import ConfigError

    t, spec = _occupancy_model(3, 2, critic_spectrum="counts")
    # a floor of a few MeV at 1-100 GeV, as fitted on GFlash (the toy's own floor lies at eps, below the count's)
    t.stats.update(cell_hit_floor_a=[-9.0, -8.5, -8.0], cell_hit_floor_b=[-0.6, -0.3, 0.0])
    spec = ModelSpec(**{**spec.__dict__, "data_stats": t.stats})
    d = build_critic(spec)
    assert d.n_phys == build_critic(ModelSpec(**{**spec.__dict__, "options": {}})).n_phys + len(SPECTRUM_MULTIPLES) * 3
    rng = np.random.default_rng(1)
    c = torch.as_tensor(rng.normal(size=(40, 1)), dtype=torch.float32)
    groups = layer_groups(CALOGAN)
    floor = np.stack([np.exp(t.stats["cell_hit_floor_a"][k] + t.stats["cell_hit_floor_b"][k] * c[:, 0].numpy())
                      for k in range(len(groups))], axis=1)  # (B, layers)
    # each cell: empty, or a log-uniform multiple of its layer's floor kept away from the thresholds' soft edges
    grid = np.log(np.asarray(SPECTRUM_MULTIPLES))
    mid = np.concatenate([[grid[0] - 1.0], (grid[1:] + grid[:-1]) / 2, [grid[-1] + 1.0]])
    u = np.zeros((40, CALOGAN.n_features))
    for k, idx in enumerate(groups):
        pick = rng.integers(0, len(mid), size=(40, len(idx)))
        hit = rng.random((40, len(idx))) < 0.4
        u[:, idx] = hit * floor[:, k : k + 1] * np.exp(mid[pick])
    u[:, CALOGAN.n_cells :] = 1.0  # the overflow, above every threshold: not a cell
    y = fractions_to_model(torch.as_tensor(u, dtype=torch.float64), d.eps).float()
    got = torch.expm1(d.spectrum_features(y, c)).reshape(40, len(SPECTRUM_MULTIPLES), 3).detach().numpy()
    for k, idx in enumerate(groups):
        cells = idx[idx < CALOGAN.n_cells]
        for j, m in enumerate(SPECTRUM_MULTIPLES):
            want = (u[:, cells] > m * floor[:, k : k + 1]).sum(1)
            # the nearest cell is >= (half a log gap) from a threshold: sigmoid(-gap / 2w) per cell at most
            tol = len(cells) * 1.0 / (1.0 + np.exp(0.2 / SPECTRUM_WIDTH)) + 0.05
            np.testing.assert_allclose(got[:, j, k], want, atol=tol)
    # critic_spectrum=shares: the same counts over the layer's number of hit cells (the spectrum's shape only)
    ds = build_critic(ModelSpec(**{**spec.__dict__, "options": {"critic_spectrum": "shares"}}))
    shares = torch.exp(ds.spectrum_features(y, c)).reshape(40, len(SPECTRUM_MULTIPLES), 3).detach().numpy()
    for k, idx in enumerate(groups):
        n_hit = (u[:, idx[idx < CALOGAN.n_cells]] > 0).sum(1)
        np.testing.assert_allclose(shares[:, :, k] * (1 + n_hit[:, None]), 1 + got[:, :, k], rtol=1e-4)
    with pytest.raises(ConfigError, match="critic_spectrum"):
        build_critic(ModelSpec(**{**spec.__dict__, "options": {"critic_spectrum": "cells"}}))
    # critic_spectrum_layers: only the chosen layers' columns, in the order given
    dl = build_critic(ModelSpec(**{**spec.__dict__, "options": {"critic_spectrum": "counts",
                                                                "critic_spectrum_layers": [2, 1]}}))
    assert dl.n_phys == d.n_phys - len(SPECTRUM_MULTIPLES)
    part = torch.expm1(dl.spectrum_features(y, c)).reshape(40, len(SPECTRUM_MULTIPLES), 2).detach().numpy()
    np.testing.assert_allclose(part, got[:, :, [2, 1]], rtol=1e-5, atol=1e-4)
    for bad in ([], [0, 0], [3]):
        with pytest.raises(ConfigError, match="critic_spectrum_layers"):
            build_critic(ModelSpec(**{**spec.__dict__, "options": {"critic_spectrum": "counts",
                                                                   "critic_spectrum_layers": bad}}))
    y = torch.cat([y, torch.zeros(40, spec.sample_shape[0] - CALOGAN.n_features)], dim=1).requires_grad_(True)
    (g1,) = torch.autograd.grad(d(y, c).sum(), y, create_graph=True)
    (g2,) = torch.autograd.grad(g1.norm(), y)
    assert torch.isfinite(g2).all() and g2.abs().sum() > 0
    stale = {k: v for k, v in spec.data_stats.items() if not k.startswith("cell_hit_floor")}
    with pytest.raises(ConfigError, match="cell_hit_floor"):
        build_critic(ModelSpec(**{**spec.__dict__, "data_stats": stale}))


def _toy_with_empty_layer(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CaloGAN toy showers whose layer 2 (cells and overflow) holds energy with probability ``Phi(0.3 + 1.2 t)``
    (``t``: the standardised log incident energy); also returns ``t``."""
    from scipy.special import ndtr

    rng = np.random.default_rng(seed)
    e = np.exp(rng.uniform(np.log(1.0), np.log(100.0), size=n))
    t = (np.log(e) - np.log(e).mean()) / np.log(e).std()
    x = rng.exponential(1.0, size=(n, CALOGAN.n_features)) * (rng.random((n, CALOGAN.n_features)) < 0.5)
    x[:, [0, CALOGAN.layers[0].n_cells]] += 1.0  # layers 0 and 1 always hold energy
    layer2 = layer_groups(CALOGAN)[2]
    x[np.ix_(rng.random(n) >= ndtr(0.3 + 1.2 * t), layer2)] = 0.0
    return x, e[:, None], t


def test_empty_draw_patterns_keep_which_groups_are_empty_together():
    """``empty_draw_patterns``: in toy showers layers 1 and 2 are empty together (at the rate ``Phi(0.3 + 1.2 t)``);
    drawn from the transform's bank of training patterns they still are, at the data's rate, where independent draws at
    the same per-group rates split them in a quarter of the showers. The bank round-trips, and the option is refused
    without ``empty_draw`` or without the bank."""
    from physgan.domains.calo.transform import group_hit_patterns, unpack_hit_patterns
    from physgan.errors import ConfigError

    x, e, t_data = _toy_with_empty_layer(20000, 3)
    groups = layer_groups(CALOGAN)
    both = ~(x[:, groups[2]] > 0).any(1)
    x[np.ix_(both, groups[1])] = 0.0  # layer 1 empty exactly where layer 2 is
    t = CaloTransform().fit(x, e, CALOGAN.to_attrs())
    e_group = np.stack([x[:, idx].sum(1) for idx in groups], 1)
    pt, bits = group_hit_patterns(e_group, e[:, 0], max_patterns=1000)
    assert len(bits) == 1000 and np.all(np.diff(pt) >= 0)
    hit = unpack_hit_patterns(bits, 3)
    assert hit[:, 0].all() and (hit[:, 1] == hit[:, 2]).all() and 0.2 < hit[:, 2].mean() < 0.9
    np.testing.assert_array_equal(unpack_hit_patterns([5, 2**70 + 1], 71)[:, [0, 1, 2, 70]], [[1, 0, 1, 0], [1, 0, 0, 1]])
    options = {"cell_noise": True, "noise_head": "layer", "occupancy": True, "extras_cap": True, "hit_floor": True,
               "occupancy_slope": True, "empty_draw": True}
    base = dict(sample_shape=t.model_shape((CALOGAN.n_features,)), n_cond=1, condition_names=["energy"], z_dim=8, width=24,
                depth=2, embed_dim=8, attrs=CALOGAN.to_attrs(), data_stats=t.stats)
    n = 20000
    c = torch.as_tensor(t_data[:, None], dtype=torch.float32)  # the data's own energies
    split, rate = {}, {}
    for patterns in (True, False):
        torch.manual_seed(0)
        g = build_generator(ModelSpec(**base, options={**options, "empty_draw_patterns": patterns}))
        with torch.no_grad():
            u = g.physics(torch.randn(n, *g.latent_shape()), c)["u"]
        empty = torch.stack([~(u[:, idx] > 0).any(1) for idx in groups], dim=1).numpy()
        split[patterns] = float((empty[:, 1] != empty[:, 2]).mean())
        rate[patterns] = float(empty[:, 2].mean())
        assert not empty[:, 0].any()
    assert split[True] == 0.0 and split[False] > 0.15, split
    assert abs(rate[True] - both.mean()) < 0.02 and abs(rate[False] - both.mean()) < 0.02, (rate, both.mean())
    with pytest.raises(ConfigError, match="needs empty_draw"):
        build_generator(ModelSpec(**base, options={**options, "empty_draw": False, "empty_draw_patterns": True}))
    stale = {k: v for k, v in t.stats.items() if not k.startswith("group_hit_pattern")}
    with pytest.raises(ConfigError, match="group_hit_pattern"):
        build_generator(ModelSpec(**{**base, "data_stats": stale}, options={**options, "empty_draw_patterns": True}))
    # a bank smaller than the window (a small file): every shower takes one of its patterns, whatever the energy
    small = {**t.stats, **{k: t.stats[k][:10] for k in ("group_hit_pattern_t", "group_hit_pattern_bits")}}
    g = build_generator(ModelSpec(**{**base, "data_stats": small}, options={**options, "empty_draw_patterns": True}))
    with torch.no_grad():
        u = g.physics(torch.randn(2000, *g.latent_shape()), c[:2000])["u"]
    got = {tuple(r) for r in torch.stack([(u[:, idx] > 0).any(1) for idx in groups], dim=1).tolist()}
    assert got <= {tuple(r) for r in unpack_hit_patterns(small["group_hit_pattern_bits"], 3).astype(bool).tolist()}


def test_share_cap_keeps_each_group_under_the_datas_largest_share():
    """``share_cap``: the transform records each group's largest share of the shower's energy by energy; an untrained
    generator whose share head is scrambled puts far more than that into some group, with the cap no group exceeds it
    by more than the rescaling of the others, and the shares still sum to one."""
    from physgan.errors import ConfigError

    x, e, t_data = _toy_with_empty_layer(20000, 3)
    t = CaloTransform().fit(x, e, CALOGAN.to_attrs())
    knots, log_max = np.asarray(t.stats["group_hit_knots"]), np.asarray(t.stats["group_share_max_log"])
    assert log_max.shape == (len(knots), 3) and (log_max <= 0).all()
    groups = layer_groups(CALOGAN)
    e_group = np.stack([x[:, idx].sum(1) for idx in groups], 1)
    share = e_group / e_group.sum(1, keepdims=True)
    assert np.isclose(np.exp(log_max).max(axis=0), share.max(axis=0), rtol=1e-5).all()
    options = {"cell_noise": True, "noise_head": "layer", "occupancy": True, "extras_cap": True, "hit_floor": True,
               "occupancy_slope": True, "empty_draw": True}
    base = dict(sample_shape=t.model_shape((CALOGAN.n_features,)), n_cond=1, condition_names=["energy"], z_dim=8, width=24,
                depth=2, embed_dim=8, attrs=CALOGAN.to_attrs(), data_stats=t.stats)
    c = torch.as_tensor(t_data[:4000, None], dtype=torch.float32)
    ceiling = np.exp(np.stack([np.interp(c[:, 0].numpy(), knots, log_max[:, k]) for k in range(3)], 1))
    over = {}
    for cap in (False, True):
        torch.manual_seed(0)
        g = build_generator(ModelSpec(**base, options={**options, "share_cap": cap}))
        with torch.no_grad():
            g.fractions.weight.normal_(0, 3.0)
            o = g.physics(torch.randn(len(c), *g.latent_shape()), c)
        f = o["fractions"].numpy()
        np.testing.assert_allclose(f.sum(1), 1.0, rtol=1e-5)
        over[cap] = float((f / ceiling).max())
    assert over[False] > 1.5 and over[True] < 1.2, over
    stale = {k: v for k, v in t.stats.items() if k != "group_share_max_log"}
    with pytest.raises(ConfigError, match="group_share_max_log"):
        build_generator(ModelSpec(**{**base, "data_stats": stale}, options={**options, "share_cap": True}))


def test_empty_draw_empties_a_layer_at_the_datas_rate_and_the_trunk_sees_it():
    """The transform fits the probit curve of a layer group holding energy against the incident energy; with
    ``empty_draw`` the untrained generator leaves that group empty at the data's rate at low and at high energy, empty
    groups hold exact zeros and the others the whole response, and the trunk takes the outcome as input (the same
    latent with the other outcome changes the remaining layers' shares, not only their normalisation)."""
    from scipy.special import ndtr

    from physgan.errors import ConfigError

    x, e, _ = _toy_with_empty_layer(20000, 3)
    t = CaloTransform().fit(x, e, CALOGAN.to_attrs())
    knots, probit = np.asarray(t.stats["group_hit_knots"]), np.asarray(t.stats["group_hit_probit"])
    curve = lambda level, k: float(np.interp(level, knots, probit[:, k]))  # noqa: E731
    assert abs(curve(-1.0, 2) - (0.3 - 1.2)) < 0.1 and abs(curve(1.0, 2) - (0.3 + 1.2)) < 0.1
    assert (probit[:, :2] == GROUP_ALWAYS_HIT).all()  # never empty in the data: never drawn empty
    options = {"cell_noise": True, "noise_head": "layer", "occupancy": True, "extras_cap": True, "hit_floor": True,
               "occupancy_slope": True, "empty_draw": True}
    spec = ModelSpec(sample_shape=t.model_shape((CALOGAN.n_features,)), n_cond=1, condition_names=["energy"], z_dim=8,
                     width=24, depth=2, embed_dim=8, attrs=CALOGAN.to_attrs(), data_stats=t.stats, options=options)
    torch.manual_seed(0)
    g = build_generator(spec)
    assert g.latent_shape() == (8 + 2 * CALOGAN.n_features + 3,)
    groups = layer_groups(CALOGAN)
    n = 20000
    for level in (-1.0, 1.0):
        c = torch.full((n, 1), level)
        with torch.no_grad():
            o = g.physics(torch.randn(n, *g.latent_shape()), c)
        u = o["u"]
        empty = torch.stack([~(u[:, idx] > 0).any(1) for idx in groups], dim=1)
        p = 1.0 - ndtr(curve(level, 2))
        assert abs(float(empty[:, 2].float().mean()) - p) < 4 * np.sqrt(p * (1 - p) / n)
        assert not empty[:, :2].any()
        torch.testing.assert_close(u.sum(1), o["response"], rtol=1e-5, atol=0.0)
        for k, idx in enumerate(groups):
            torch.testing.assert_close(u[:, idx].sum(1), o["group_energy"][:, k], rtol=1e-5, atol=1e-7)
        assert (o["fractions"][empty[:, 2], 2] == 0).all()
    # one latent, both outcomes for layer 2: the trunk's input differs, so layers 0 and 1 split differently
    z = torch.randn(256, *g.latent_shape())
    z_full, z_empty = z.clone(), z.clone()
    z_full[:, -1], z_empty[:, -1] = -10.0, 10.0
    with torch.no_grad():
        f_full, f_empty = g.physics(z_full, torch.zeros(256, 1))["fractions"], g.physics(z_empty, torch.zeros(256, 1))["fractions"]
    assert (f_empty[:, 2] == 0).all() and (f_full[:, 2] > 0).all()
    ratio_full, ratio_empty = f_full[:, 0] / f_full[:, 1], f_empty[:, 0] / f_empty[:, 1]
    assert (ratio_full - ratio_empty).abs().max() > 1e-4
    g(z, torch.zeros(256, 1)).sum().backward()  # trains: the flags' input weights get gradients
    assert g.inp.weight.grad[:, -3:].abs().sum() > 0
    stale = {k: v for k, v in t.stats.items() if not k.startswith("group_hit")}
    with pytest.raises(ConfigError, match="group_hit_knots"):
        build_generator(ModelSpec(**{**spec.__dict__, "data_stats": stale}))
    with pytest.raises(ConfigError, match="set one"):
        build_generator(ModelSpec(**{**spec.__dict__, "options": {**options, "empty_layers": True}}))


def test_response_noise_gives_the_response_the_datas_spread_at_every_energy():
    """``response_log_std_line`` recovers a known resolution line (a sampling calorimeter's ``sigma / E ~ 1 /
    sqrt(E)``); with ``response_noise`` the untrained generator's response spreads as that line says at low and at high
    energy (the mean is a function of the condition only, the trunk takes the draw), the line is a trained parameter,
    and the option needs the transform's statistic."""
    from physgan.domains.calo.transform import response_log_std_line
    from physgan.errors import ConfigError

    rng = np.random.default_rng(4)
    n = 40000
    e = np.exp(rng.uniform(np.log(1.0), np.log(100.0), size=n))
    t = (np.log(e) - np.log(e).mean()) / np.log(e).std()
    sd_true = 0.1 / np.sqrt(e)  # 10 % / sqrt(E)
    r = 0.05 * np.exp(sd_true * rng.standard_normal(n))
    a, b = response_log_std_line(r, e)
    got = np.exp(a + b * t)
    np.testing.assert_allclose(got[e < 1.5], sd_true[e < 1.5], rtol=0.1)
    np.testing.assert_allclose(got[e > 80], sd_true[e > 80], rtol=0.1)
    # the generator: its statistic from a fitted toy, replaced by a steep line
    _, spec = _occupancy_model(3, 2, cell_noise=True, noise_head="layer", occupancy=True, response_noise=True)
    stats = {**spec.data_stats, "response_log_std_a": -3.0, "response_log_std_b": -0.5}
    spec = ModelSpec(**{**spec.__dict__, "data_stats": stats})
    torch.manual_seed(0)
    g = build_generator(spec)
    assert g.latent_shape() == (8 + 2 * CALOGAN.n_features + 1,)
    with torch.no_grad():  # as after training: the mean depends on the condition (not on the shower latent)
        g.response.weight.normal_(0.0, 0.5)
    means = []
    for level in (-1.5, 1.5):
        with torch.no_grad():
            o = g.physics(torch.randn(20000, *g.latent_shape()), torch.full((20000, 1), level))
        spread = float(torch.log(o["response"]).std())
        assert abs(spread / np.exp(-3.0 - 0.5 * level) - 1.0) < 0.03
        torch.testing.assert_close(o["u"].sum(1), o["response"], rtol=1e-5, atol=0.0)
        means.append(float(o["response"].mean()))
    assert abs(means[0] / means[1] - 1.0) > 0.01  # the mean follows the condition
    # the trunk takes the response's draw: the same latent with another draw changes the layers' shares
    z = torch.randn(64, *g.latent_shape())
    z2 = z.clone()
    z2[:, -1] += 1.0
    with torch.no_grad():
        assert (g.physics(z, torch.zeros(64, 1))["fractions"] - g.physics(z2, torch.zeros(64, 1))["fractions"]).abs().max() > 1e-5
    g(torch.randn(64, *g.latent_shape()), torch.randn(64, 1)).sum().backward()
    assert g.response_log_sd.grad is not None and g.response_log_sd.grad.abs().sum() > 0
    stale = {k: v for k, v in stats.items() if not k.startswith("response_log_std")}
    with pytest.raises(ConfigError, match="response_log_std"):
        build_generator(ModelSpec(**{**spec.__dict__, "data_stats": stale}))


def test_group_hit_curve_follows_a_bending_probit_at_the_low_end_of_a_uniform_spectrum():
    """Incident energies uniform in 1-100 GeV (few showers at the low end) and a group that is empty half the time at
    1-3 GeV and almost never above 30 GeV: the curve gives the empty fraction of each energy range within a few per
    cent, where one probit line over equal-count bins is far off at 1-3 GeV."""
    from scipy.special import ndtr

    from physgan.domains.calo.transform import cell_hit_probit, group_hit_curve

    rng = np.random.default_rng(8)
    n = 100_000
    e = rng.uniform(1.0, 100.0, size=n)
    p_empty = np.interp(np.log10(e), [0.0, 0.25, 0.75, 1.25, 1.75, 2.0], [0.6, 0.5, 0.25, 0.046, 0.002, 0.001])
    held = (rng.random(n) >= p_empty).astype(float)
    e_group = np.stack([np.ones(n), held], axis=1)
    knots, probit = group_hit_curve(e_group, e)
    assert (probit[:, 0] == GROUP_ALWAYS_HIT).all()
    t = (np.log(e) - np.log(e).mean()) / np.log(e).std()
    line_a, line_b = cell_hit_probit(e_group, e)
    for lo, hi in [(1, 3.16), (3.16, 10), (10, 31.6), (31.6, 100)]:
        sel = (e >= lo) & (e < hi)
        want = p_empty[sel].mean()
        got = np.mean(1.0 - ndtr(np.interp(t[sel], knots, probit[:, 1])))
        assert abs(got - want) < 0.03 + 0.1 * want, (lo, got, want)
    low = (e < 3.16)
    assert abs(np.mean(1.0 - ndtr(line_a[1] + line_b[1] * t[low])) - p_empty[low].mean()) > 0.1  # the line misses


def test_occupancy_radial_lets_a_shower_keep_its_outer_cells_empty():
    """With ``occupancy_radial`` each shower also sets a radial slope of every layer's hit probit: a steep negative
    slope misses every outer cell (bar the group's hottest, always hit), a zero slope leaves the data's hit rates; the
    slope is trained (gradients through the straight-through term) and adds no latent."""
    options = {"cell_noise": True, "noise_head": "layer", "occupancy": True}
    _, spec = _occupancy_model(5, 2, **options, occupancy_radial=True)
    _, plain = _occupancy_model(5, 2, **options)
    torch.manual_seed(0)
    g = build_generator(spec)
    assert g.latent_shape() == build_generator(plain).latent_shape()
    groups = layer_groups(CALOGAN)
    r_flat = np.concatenate([np.asarray(lay.r_mm) for lay in CALOGAN.layers])
    z, c = torch.randn(2000, *g.latent_shape()), torch.zeros(2000, 1)
    hit_outer = {}
    for slope in (0.0, -30.0):
        with torch.no_grad():
            g.occupancy_shift.weight.zero_()
            g.occupancy_shift.bias.zero_()
            g.occupancy_shift.bias[g.n_groups :] = slope
            u = g.physics(z, c)["u"]
        cells = groups[1][groups[1] < CALOGAN.n_cells]
        outer = cells[r_flat[cells] > 0.5 * r_flat[cells].max()]
        hit_outer[slope] = (u[:, outer] > 0).sum(1)
    assert hit_outer[0.0].float().mean() > 1.0
    assert (hit_outer[-30.0] <= 1).all()  # at most the hottest
    g.occupancy_shift.weight.requires_grad_(True)
    g(torch.randn(64, *g.latent_shape()), torch.randn(64, 1)).sum().backward()
    assert g.occupancy_shift.weight.grad[g.n_groups :].abs().sum() > 0


def test_readout_threshold_reads_the_showers_as_the_evaluation_does():
    """With ``readout_threshold`` the transform zeroes every cell below the geometry's voxel threshold, in the fitted
    statistics (a layer holding only sub-threshold deposits counts as empty) and in forward, and keeps the threshold
    with its state; the extras (CaloGAN's overflow) are not cells and keep their values. Without it nothing changes."""
    ds2 = calochallenge_geometry("ds2")
    thr = ds2.voxel_threshold_mev
    assert thr > 0
    rng = np.random.default_rng(3)
    n = 400
    x = rng.exponential(5.0, size=(n, ds2.n_features)) * (rng.random((n, ds2.n_features)) < 0.05)
    first = ds2.layer_slice(0)
    faint = rng.random(n) < 0.5  # half the showers hold only sub-threshold deposits in layer 0
    x[faint, first] = np.where(x[faint, first] > 0, 0.2 * thr, 0.0)
    x[~faint, first.start] = 10.0  # the others one measured cell there
    c = rng.uniform(1e3, 1e6, size=(n, 1))
    raw, read = CaloTransform().fit(x, c, ds2.to_attrs()), CaloTransform(readout_threshold=True).fit(x, c, ds2.to_attrs())
    assert "readout_threshold_mev" not in raw.stats and read.stats["readout_threshold_mev"] == pytest.approx(thr)
    from scipy.special import ndtr

    empty_raw = 1 - ndtr(np.asarray(raw.stats["group_hit_probit"])[:, 0]).mean()
    empty_read = 1 - ndtr(np.asarray(read.stats["group_hit_probit"])[:, 0]).mean()
    assert empty_raw < 0.1 and abs(empty_read - faint.mean()) < 0.1
    xt, ct = torch.as_tensor(x), torch.as_tensor(c)
    back = read.inverse(read.forward(xt, ct), ct).numpy()
    kept = x >= np.maximum(thr, read.eps * c)  # c in MeV; the transform's own eps snap zeroes less than eps E_inc / 2
    assert (back[x < thr] == 0).all() and (back[kept] > 0).all()
    np.testing.assert_allclose(back[kept], x[kept], rtol=1e-4)
    state = CaloTransform().load_state_dict(json.loads(json.dumps(read.state_dict())))
    torch.testing.assert_close(state.forward(xt, ct), read.forward(xt, ct))
    back_raw = raw.inverse(raw.forward(xt, ct), ct).numpy()
    assert ((back_raw > 0) & (back_raw < thr)).any()  # the raw transform keeps them
    # CaloGAN: the extras keep their values below any threshold; its geometry's threshold is 0, so a forced one is used
    t = CaloTransform(readout_threshold=True).fit(np.zeros((2, CALOGAN.n_features)), np.ones((2, 1)), CALOGAN.to_attrs())
    assert t.stats["readout_threshold_mev"] == 0.0
    t.stats["readout_threshold_mev"] = 5.0
    xc = torch.full((1, CALOGAN.n_features), 1.0)
    u = t._read_out(xc)
    assert (u[:, : CALOGAN.n_cells] == 0).all() and (u[:, CALOGAN.n_cells :] == 1.0).all()


def test_layer_noise_gives_each_layer_the_datas_spread_around_its_neighbours():
    """``group_share_noise_line`` recovers a known per-layer spread around a smooth profile (the neighbours' own spread
    taken out), at low and high energy; with ``layer_noise`` an untrained generator's layer energies get that spread
    around their neighbours' (a generator without it: none, its layers follow the trunk), the sums stay exact, the
    learned factor gets gradients and is held at ``layer_noise_floor`` or above, and the option needs the statistic."""
    from physgan.domains.calo.transform import group_share_noise_line
    from physgan.errors import ConfigError

    rng = np.random.default_rng(6)
    n, g = 60000, 6
    e = np.exp(rng.uniform(np.log(1.0), np.log(100.0), size=n))
    t = (np.log(e) - np.log(e).mean()) / np.log(e).std()
    depth = rng.normal(0.0, 0.5, size=(n, 1))  # the smooth part: where the shower peaks
    profile = -0.5 * (np.arange(g)[None, :] - 2.5 - depth) ** 2
    sd_true = np.exp(-1.0 - 0.4 * t)[:, None] * np.ones((1, g))
    e_group = np.exp(profile + sd_true * rng.standard_normal((n, g)))
    a, b, t_range = group_share_noise_line(e_group, e)
    assert t_range.shape == (2, g) and (t_range[0] < -1.0).all() and (t_range[1] > 1.0).all()  # every bin usable
    for k in range(1, g - 1):  # inner groups (two neighbours)
        np.testing.assert_allclose(np.exp(a[k] + b[k] * np.array([-1.5, 1.5])), np.exp(-1.0 - 0.4 * np.array([-1.5, 1.5])),
                                   rtol=0.2)
    # the generator
    _, spec = _occupancy_model(3, 2, **LONG_G_OPTIONS, layer_noise=True, layer_noise_floor=0.3)
    stats = {**spec.data_stats, "group_share_noise_a": [-1.0, -0.5, -1.5], "group_share_noise_b": [0.0, 0.0, 0.0]}
    spec = ModelSpec(**{**spec.__dict__, "data_stats": stats})
    torch.manual_seed(0)
    gen = build_generator(spec)
    plain = build_generator(ModelSpec(**{**spec.__dict__, "options": dict(LONG_G_OPTIONS)}))
    assert gen.latent_shape()[0] == plain.latent_shape()[0] + 3
    c = torch.zeros(20000, 1)
    with torch.no_grad():
        o = gen.physics(torch.randn(20000, *gen.latent_shape()), c)
        p = plain.physics(torch.randn(20000, *plain.latent_shape()), c)
    torch.testing.assert_close(o["u"].sum(1), o["response"], rtol=1e-5, atol=0.0)
    def relative(out):  # log energy of group 1 over group 0's, and of group 2 over group 1's (the response cancels)
        logs = torch.log(out["group_energy"][(out["group_energy"] > 0).all(1)]).double()
        return (logs[:, 1:] - logs[:, :-1]).std(0)

    sd = np.exp([-1.0, -0.5, -1.5])
    np.testing.assert_allclose(relative(o).numpy(), np.hypot(sd[1:], sd[:-1]), rtol=0.05)
    assert float(relative(p).max()) < 0.05  # without the option the trunk's (untrained: nearly constant) shares
    gen(torch.randn(64, *gen.latent_shape()), torch.randn(64, 1)).sum().backward()
    assert gen.layer_noise_shift.grad is not None and gen.layer_noise_shift.grad.abs().sum() > 0
    with torch.no_grad():  # a shift that switched the noise off: the floor keeps 0.3 of the line
        gen.layer_noise_shift.fill_(-30.0)
        o = gen.physics(torch.randn(20000, *gen.latent_shape()), c)
    np.testing.assert_allclose(relative(o).numpy(), 0.3 * np.hypot(sd[1:], sd[:-1]), rtol=0.05)
    stale = {k: v for k, v in stats.items() if not k.startswith("group_share_noise")}
    with pytest.raises(ConfigError, match="group_share_noise"):
        build_generator(ModelSpec(**{**spec.__dict__, "data_stats": stale}))


def test_layer_noise_hits_ties_each_groups_occupancy_to_its_layer_draw():
    """``group_hit_slope`` recovers a known slope of a group's hit-fraction probit on its log energy at fixed incident
    energy (0 where the hits do not follow the energy); with ``layer_noise_hits`` an untrained generator's hit count
    of a group rises with the group's layer draw as its slope says (none at slope 0), the sums stay exact, the slope
    gets gradients, and the option needs ``layer_noise``, ``occupancy`` and the statistic."""
    from scipy.stats import norm

    from physgan.domains.calo.transform import group_hit_slope, group_member_matrix
    from physgan.errors import ConfigError

    rng = np.random.default_rng(11)
    n, cells, slopes = 40000, 200, np.array([0.0, 0.5, 1.5])
    e = np.exp(rng.uniform(np.log(1.0), np.log(100.0), size=n))
    t = (np.log(e) - np.log(e).mean()) / np.log(e).std()
    dev = 0.4 * rng.standard_normal((n, 3))  # each group's log energy around its mean at this incident energy
    e_group = e[:, None] * np.exp(-1.0 + dev)
    p_hit = norm.cdf(-0.3 + 0.2 * t[:, None] + slopes[None, :] * dev)  # (n, 3), every cell of a group alike
    hit = rng.random((n, 3, cells)) < p_hit[:, :, None]
    hit[:, :, 0] = True  # a group holding energy has a hit cell
    got = group_hit_slope(e_group, hit.sum(axis=2), np.full(3, cells), e)
    np.testing.assert_allclose(got, slopes, atol=0.06, rtol=0.1)
    # the generator
    opts = {**LONG_G_OPTIONS, "layer_noise": True, "layer_noise_hits": True}
    _, spec = _occupancy_model(3, 2, **opts)
    fitted = np.asarray(spec.data_stats["group_hit_slope"])  # the transform fits it: one finite slope per group
    assert fitted.shape == (3,) and np.isfinite(fitted).all()
    stats = {**spec.data_stats, "group_share_noise_a": [-0.5, -0.5, -0.5], "group_share_noise_b": [0.0, 0.0, 0.0],
             "group_hit_slope": [0.0, 1.0, 3.0]}
    spec = ModelSpec(**{**spec.__dict__, "data_stats": stats})
    torch.manual_seed(0)
    gen = build_generator(spec)
    z = torch.randn(20000, *gen.latent_shape())
    with torch.no_grad():
        o = gen.physics(z, torch.zeros(20000, 1))
    torch.testing.assert_close(o["u"].sum(1), o["response"], rtol=1e-5, atol=0.0)
    draw = z[:, -1 - gen.n_groups : -1]  # the layer draws come just before the response's
    member = torch.as_tensor(group_member_matrix(np.asarray(stats["feature_group"]), gen.n_groups), dtype=torch.float32)
    n_hit = (o["u"] > 0).float() @ member
    corr = [float(np.corrcoef(draw[:, k].numpy(), n_hit[:, k].numpy())[0, 1]) for k in range(gen.n_groups)]
    assert abs(corr[0]) < 0.03 and min(corr[1:]) > 0.5, corr
    spread = float(n_hit[:, 1].std())
    with torch.no_grad():  # group 1's slope at 0: its hit count no longer follows the draw, and spreads less
        gen.layer_hit_slope[1] = 0.0
        n_hit = (gen.physics(z, torch.zeros(20000, 1))["u"] > 0).float() @ member
    assert abs(float(np.corrcoef(draw[:, 1].numpy(), n_hit[:, 1].numpy())[0, 1])) < 0.03
    assert float(n_hit[:, 1].std()) < 0.7 * spread
    gen(torch.randn(64, *gen.latent_shape()), torch.randn(64, 1)).sum().backward()
    assert gen.layer_hit_slope.grad is not None and gen.layer_hit_slope.grad.abs().sum() > 0
    stale = {k: v for k, v in stats.items() if k != "group_hit_slope"}
    with pytest.raises(ConfigError, match="group_hit_slope"):
        build_generator(ModelSpec(**{**spec.__dict__, "data_stats": stale}))
    with pytest.raises(ConfigError, match="needs layer_noise"):
        build_generator(ModelSpec(**{**spec.__dict__, "options": {**opts, "layer_noise": False}}))


def test_occupancy_from_condition_takes_the_hit_shift_from_the_condition_alone():
    """With ``occupancy_from_condition`` every shower of one condition gets the same hit-probit shift whatever its
    shower latent (without it the trunk's shift varies between them), a different condition gets another one, and
    the shift still gets gradients through the straight-through hit draws."""
    _, spec = _occupancy_model(3, 2, **LONG_G_OPTIONS, occupancy_from_condition=True)
    torch.manual_seed(0)
    gen = build_generator(spec)
    plain = build_generator(ModelSpec(**{**spec.__dict__, "options": dict(LONG_G_OPTIONS)}))
    shifts = []
    for g in (gen, plain):
        cap = []
        g.occupancy_shift.register_forward_hook(lambda m, i, o, cap=cap: cap.append(o.detach()))
        with torch.no_grad():  # trained-looking weights: the trunk's output and the shift head far from their init
            for p in g.parameters():
                p.add_(0.3 * torch.randn_like(p))
            g.physics(torch.randn(500, *g.latent_shape()), torch.zeros(500, 1))
            g.physics(torch.randn(500, *g.latent_shape()), torch.ones(500, 1))
        shifts.append(cap)
    (same_c, other_c), (plain_c, _) = shifts
    assert float(same_c.std(0).max()) < 1e-6 and float(plain_c.std(0).min()) > 1e-3
    assert float((same_c[0] - other_c[0]).abs().max()) > 1e-3
    gen(torch.randn(64, *gen.latent_shape()), torch.randn(64, 1)).sum().backward()
    assert gen.occupancy_shift.weight.grad is not None and gen.occupancy_shift.weight.grad.abs().sum() > 0


def test_occupancy_from_shares_takes_the_hit_shift_from_the_condition_and_the_layer_shares():
    """With ``occupancy_from_shares`` the hit-probit shift is a function of the condition and the layer groups' log
    shares only: two showers of one condition whose share logits agree get the same shift whatever their shower latent;
    showers with other shares get other shifts; the map gets gradients; it excludes ``occupancy_from_condition``."""
    from physgan.errors import ConfigError

    _, spec = _occupancy_model(3, 2, **LONG_G_OPTIONS, occupancy_from_shares=True)
    torch.manual_seed(0)
    gen = build_generator(spec)
    with torch.no_grad():
        for p in gen.parameters():
            p.add_(0.3 * torch.randn_like(p))
    cap = []
    gen.occupancy_shift.register_forward_hook(lambda m, i, o: cap.append((i[0].detach(), o.detach())))
    with torch.no_grad():
        gen.physics(torch.randn(300, *gen.latent_shape()), torch.zeros(300, 1))
    inp, out = cap[-1]
    assert inp.shape[1] == spec.embed_dim + gen.n_groups
    torch.testing.assert_close(out, gen.occupancy_shift(inp))  # a function of (condition, log shares) alone
    shares = inp[:, spec.embed_dim :]
    assert float(shares.std(0).min()) > 1e-4 and float(out.std(0).min()) > 1e-4  # the shares vary, so does the shift
    torch.testing.assert_close(torch.logsumexp(shares, dim=1), torch.zeros(300))  # log shares
    gen(torch.randn(64, *gen.latent_shape()), torch.randn(64, 1)).sum().backward()
    assert gen.occupancy_shift.weight.grad is not None and gen.occupancy_shift.weight.grad[:, spec.embed_dim :].abs().sum() > 0
    with pytest.raises(ConfigError, match="set one"):
        build_generator(ModelSpec(**{**spec.__dict__, "options": {**LONG_G_OPTIONS, "occupancy_from_shares": True,
                                                                   "occupancy_from_condition": True}}))


def test_group_share_curve_is_the_mean_share_where_the_group_holds_energy():
    """A group that is empty in most low-energy showers and holds a share falling with the energy when hit: the curve
    gives its mean share over the hit showers in each energy range within 10 %, far above the all-shower mean at the
    low end; a group hit too rarely at some knots is interpolated there; one never hit gets log 1e-9."""
    from physgan.domains.calo.transform import group_hit_curve, group_share_curve

    rng = np.random.default_rng(3)
    n = 60_000
    e = np.exp(rng.uniform(np.log(1.0), np.log(1000.0), size=n))
    p_hit = np.clip(np.log10(e) / 3.0, 0.02, 1.0)  # 2 % at 1 GeV, every shower at 1 TeV
    held = rng.random(n) < p_hit
    want_share = 0.02 * e ** -0.3  # when hit: 2 % at 1 GeV, 0.25 % at 1 TeV
    deep = np.where(held, want_share * rng.lognormal(0.0, 0.3, size=n), 0.0)
    rare = np.where(rng.random(n) < 0.0003, 0.01, 0.0)  # a handful of hits: most knots have fewer than min_hits
    e_group = np.stack([1.0 - deep - rare, deep, rare, np.zeros(n)], axis=1)
    knots, log_share = group_share_curve(e_group, e)
    np.testing.assert_array_equal(knots, group_hit_curve(e_group, e)[0])  # the same knots
    assert log_share.shape == (len(knots), 4) and np.isfinite(log_share).all()
    t = (np.log(e) - np.log(e).mean()) / np.log(e).std()
    for lo, hi in [(1.0, 3.0), (10.0, 30.0), (300.0, 1000.0)]:
        sel = (e >= lo) & (e < hi)
        got = np.exp(np.interp(t[sel & held], knots, log_share[:, 1])).mean()
        want = (deep / e_group.sum(1))[sel & held].mean()
        assert abs(got / want - 1.0) < 0.1, (lo, got, want)
    low = e < 3.0
    assert (deep / e_group.sum(1))[low].mean() < 0.2 * np.exp(log_share[0, 1])  # the all-shower mean: 5x and more below
    assert np.allclose(log_share[:, 2], np.log(0.01 / 1.0), atol=0.05)  # interpolated / held from the knots with hits
    np.testing.assert_allclose(log_share[:, 3], np.log(1e-9))


def test_share_curve_starts_the_layer_shares_at_the_datas_curve():
    """With ``share_curve`` the generator's layer shares (before training) follow the fitted curve along the energy:
    the log ratio of two groups' fractions is the curve's difference at each shower's energy, where without the option
    it is one constant; the statistic is required."""
    from physgan.errors import ConfigError

    _, spec = _occupancy_model(3, 2, **LONG_G_OPTIONS, share_curve=True)
    stats = dict(spec.data_stats)
    knots = np.asarray(stats["group_hit_knots"], dtype=np.float32)
    n_groups = len(stats["group_hit_probit"][0])
    curve = np.zeros((len(knots), n_groups), np.float32)
    curve[:, 0] = np.linspace(-1.0, 2.0, len(knots))  # group 0 against the others: from e^-1 to e^2 along the energy
    stats["group_hit_probit"] = np.full((len(knots), n_groups), 40.0, np.float32).tolist()  # never empty: clean ratios
    stats["group_share_log"] = curve.tolist()
    spec = ModelSpec(**{**spec.__dict__, "data_stats": stats})
    torch.manual_seed(0)
    gen = build_generator(spec)
    base = build_generator(ModelSpec(**{**spec.__dict__, "options": {**LONG_G_OPTIONS}}))
    c = torch.as_tensor(np.repeat(knots[[0, -1]], 200))[:, None]
    with torch.no_grad():
        ratio = [torch.log(g.physics(torch.randn(400, *g.latent_shape()), c)["fractions"]) for g in (gen, base)]
    got = (ratio[0][:, 0] - ratio[0][:, 1]).numpy()
    np.testing.assert_allclose(got[:200].mean(), -1.0, atol=0.1)
    np.testing.assert_allclose(got[200:].mean(), 2.0, atol=0.1)
    flat = (ratio[1][:, 0] - ratio[1][:, 1]).numpy()
    assert abs(flat[:200].mean() - flat[200:].mean()) < 0.1  # without the option: the head's one bias
    del stats["group_share_log"]
    with pytest.raises(ConfigError, match="group_share_log"):
        build_generator(ModelSpec(**{**spec.__dict__, "data_stats": stats}))


def test_layer_noise_holds_the_spread_line_within_the_energies_it_was_fitted_on():
    """A group hit only at high energies gets its spread line from the upper bins alone; the fitted range says so, and
    the generator's layer draw at an energy below it has the spread at the range's end, not the line's extrapolation;
    stats without the range (runs fitted before it) read the line everywhere."""
    from physgan.domains.calo.transform import group_share_noise_line

    rng = np.random.default_rng(7)
    n = 40000
    e = np.exp(rng.uniform(np.log(1.0), np.log(1000.0), size=n))
    t = (np.log(e) - np.log(e).mean()) / np.log(e).std()
    e_group = np.exp(rng.normal(0.0, 0.5, size=(n, 3)) + np.array([0.0, -2.0, -4.0]))
    e_group[:, 2] *= t > 0.3  # the last group only in the upper showers
    _, _, t_range = group_share_noise_line(e_group, e)
    # group 0 (its neighbour always hit): every bin; groups 1 and 2 (the regression needs the neighbours hit): the upper
    assert t_range[0, 0] < -0.8 and (t_range[0, 1:] > 0.3).all() and (t_range[1] > 1.0).all()
    _, spec = _occupancy_model(3, 2, **LONG_G_OPTIONS, layer_noise=True)
    stats = dict(spec.data_stats)
    ng = len(stats["group_share_noise_a"])
    stats.update(group_share_noise_a=[-1.0] * ng, group_share_noise_b=[-1.0] * ng,  # spread e^-1 e^-t: steep
                 group_share_noise_t=[[0.5] * ng, [1.0] * ng])
    held = build_generator(ModelSpec(**{**spec.__dict__, "data_stats": stats}))
    free = build_generator(ModelSpec(**{**spec.__dict__, "data_stats": {k: v for k, v in stats.items() if k != "group_share_noise_t"}}))
    c = torch.tensor([[-1.5], [0.7], [2.0]])
    with torch.no_grad():
        got, line = held.layer_noise_sd(c), free.layer_noise_sd(c)
    want = torch.exp(torch.tensor([[-1.5], [-1.7], [-2.0]])).expand(3, ng)  # t held at 0.5, inside, held at 1.0
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(line, torch.exp(-1.0 - c).expand(3, ng))  # without the range: the line everywhere
    with torch.no_grad():  # the layer draw uses it: n = 1 in group 0 alone moves its log share against group 1 by sd
        z = torch.randn(1, *held.latent_shape()).expand(2, -1).clone()
        lo = held.z_dim + held.n_features * 2  # the empty draws (set to never empty), then the layer draws
        z[:, lo : lo + ng] = -10.0
        z[:, lo + ng : lo + 2 * ng] = 0.0
        z[0, lo + ng] = 1.0
        f = held.physics(z, torch.full((2, 1), -1.5))["fractions"]
    moved = float(torch.log(f[0, 0] / f[0, 1]) - torch.log(f[1, 0] / f[1, 1]))
    np.testing.assert_allclose(moved, float(want[0, 0]), rtol=1e-4)


def _hit_shift(g, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """The generator's ``occupancy_shift`` output (B, n_groups [x 2]) for latents ``z`` at conditions ``c``."""
    out = []
    hook = g.occupancy_shift.register_forward_hook(lambda m, i, o: out.append(o.detach()))
    with torch.no_grad():
        g.physics(z, c)
    hook.remove()
    return out[0]


def test_occupancy_mean_preserving_keeps_each_cells_hit_rate_whatever_the_shifts_spread():
    """A zero-mean spread of a group's hit-probit shift raises a rare cell's mean hit rate (Phi is convex below 0).
    With ``occupancy_mean_preserving`` the generator's training forwards learn the shift's variance at fixed energy
    (a buffer, carried by the checkpoint), and sampling then hits each rare cell at the data's rate, where
    the same generator without the option hits it far more often; untrained (variance 0) both draw the same showers."""
    from physgan.errors import ConfigError

    opts = {"cell_noise": True, "noise_head": "layer", "occupancy": True}
    _, spec = _occupancy_model(3, 2, **opts, occupancy_mean_preserving=True)
    torch.manual_seed(0)
    gen = build_generator(spec)
    plain = build_generator(ModelSpec(**{**spec.__dict__, "options": opts}))
    missing = plain.load_state_dict(gen.state_dict(), strict=False)
    assert missing.unexpected_keys == ["occupancy_shift_var", "occupancy_shift_seen"] and not missing.missing_keys
    n = 20000
    z0, c0 = torch.randn(n, *gen.latent_shape()), torch.zeros(n, 1)
    with torch.no_grad():
        torch.testing.assert_close(gen.physics(z0, c0)["u"], plain.physics(z0, c0)["u"])  # variance 0: same draws
        for g in (gen, plain):  # a shift spreading 0.55-0.7 in probit between showers of one energy (mean 0 at c0)
            g.occupancy_shift.weight.normal_(std=0.6, generator=torch.Generator().manual_seed(1))
            g.occupancy_shift.bias -= _hit_shift(g, z0, c0).mean(dim=0)
    gen.train()
    for _ in range(300):  # training forwards (gradients on) over batches of all energies
        gen(torch.randn(256, *gen.latent_shape()), torch.randn(256, 1))
    assert gen.occupancy_shift_var.shape == (gen.n_groups, SHIFT_VAR_BINS) and bool(gen.occupancy_shift_seen.all())
    assert gen.occupancy_shift_var.min() > 0.1  # it learned a spread
    # the running estimate, read at fixed energies, against the shift's variance there: within 15 %; the spread
    # changes with the energy, so one variance for all energies would miss it at the ends
    ts = (-1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5)
    fixed = np.array([_hit_shift(gen, torch.randn(4000, *gen.latent_shape()), torch.full((4000, 1), t)).var(dim=0).numpy()
                      for t in ts])
    read = np.array([[float(gen._binned_at(gen.occupancy_shift_var, torch.tensor([t]), k)) for k in range(gen.n_groups)] for t in ts])
    np.testing.assert_allclose(read, fixed, rtol=0.15)
    assert (fixed.max(axis=0) / fixed.min(axis=0)).max() > 1.2
    with torch.no_grad():
        states = {k: v.clone() for k, v in gen.state_dict().items()}
        u_gen, u_plain = gen.physics(z0, c0)["u"], plain.physics(z0, c0)["u"]
    torch.testing.assert_close(gen.state_dict()["occupancy_shift_var"], states["occupancy_shift_var"])  # sampling reads it
    target = np.asarray(spec.data_stats["cell_hit_fraction"])
    rare = target < 0.05
    with torch.no_grad():  # the rate without any spread (each cell also hit when it is its group's hottest)
        plain.occupancy_shift.weight.zero_()
        plain.occupancy_shift.bias.zero_()
        u_none = plain.physics(z0, c0)["u"]
    rate_gen, rate_plain, rate_none = ((u > 0).double().mean(0).numpy()[rare].mean() for u in (u_gen, u_plain, u_none))
    assert rate_plain > 2.0 * rate_none  # the spread alone doubles the rare cells' hits
    assert abs(rate_gen / rate_none - 1.0) < 0.15, (rate_gen, rate_none)
    with pytest.raises(ConfigError, match="occupancy_mean_preserving needs occupancy"):
        build_generator(ModelSpec(**{**spec.__dict__, "options": {"cell_noise": True, "occupancy_mean_preserving": True}}))


@pytest.mark.parametrize("geom", [CALOGAN, calochallenge_geometry("calochallenge-ds2")], ids=["calogan", "ds2"])
def test_critic_ring_hits_counts_each_ring_s_hit_cells(geom):
    """Option ``critic_ring_hits``: per layer and ring, log(1 + the soft number of hit cells); a cylindrical layer's
    rings are its radial bins, a Cartesian layer's are cut by rank of radius with each radius in one ring; the
    overflow is in no ring; the critic stays twice differentiable (gradient penalty)."""
    from physgan.domains.calo.transform import ring_members

    rings, ring_layer = ring_members(geom)
    assert rings.sum(axis=1)[: geom.n_cells].tolist() == [1.0] * geom.n_cells  # every cell in exactly one ring
    assert rings[geom.n_cells :].sum() == 0
    assert ring_layer == sorted(ring_layer) and set(ring_layer) == set(range(geom.n_layers))
    for i, lay in enumerate(geom.layers):
        sl = geom.layer_slice(i)
        cols = [j for j, li in enumerate(ring_layer) if li == i]
        ring_of_cell = rings[sl][:, cols].argmax(axis=1)
        r = np.round(np.asarray(lay.r_mm), 6)
        assert np.all(np.diff(ring_of_cell[np.argsort(r, kind="stable")]) >= 0)  # rings ordered by radius
        for radius in np.unique(r):
            assert len(set(ring_of_cell[r == radius].tolist())) == 1
        if geom.kind == "cylindrical":
            assert len(cols) == lay.shape[1]
    spec = _spec(geom, critic_ring_hits=True)
    d, d0 = build_critic(spec), build_critic(_spec(geom))
    assert d.n_phys == d0.n_phys + rings.shape[1]
    rng = np.random.default_rng(3)
    u = np.where(rng.random((16, geom.n_features)) < 0.3, rng.uniform(1e-4, 1e-2, (16, geom.n_features)), 0.0)
    u[:, geom.n_cells :] = 1e-2  # overflow energy: never a ring's hit
    y = fractions_to_model(torch.as_tensor(u), d.eps).float()
    got = torch.expm1(d.ring_hit_features(y)).detach().numpy()
    # a hit cell's y lies >= 0.3 above -1, tanh(10 * 0.3) = 0.995: within 0.5 % of the hard count
    np.testing.assert_allclose(got, (u > 0).astype(np.float64) @ rings, rtol=0.006, atol=1e-4)
    y = torch.cat([y, torch.zeros(16, spec.sample_shape[0] - geom.n_features)], dim=1).requires_grad_(True)
    c = torch.zeros(16, 1)
    (g1,) = torch.autograd.grad(d(y, c).sum(), y, create_graph=True)
    (g2,) = torch.autograd.grad(g1.norm(), y)
    assert torch.isfinite(g2).all() and g2.abs().sum() > 0


@pytest.mark.parametrize("geom", [CALOGAN, calochallenge_geometry("calochallenge-ds2")], ids=["calogan", "ds2"])
def test_critic_depth_width_is_the_energy_weighted_spread_of_the_layer_index(geom):
    """Option ``critic_depth_width``: one more physics column, 4 x the standard deviation of the layer index weighted by
    the layer energies, over (layers - 1); a shower in one layer has width ~0, one split evenly between the first and
    last layer 0.5 (x 4 = 2); the critic stays twice differentiable (gradient penalty)."""
    d, d0 = build_critic(_spec(geom, critic_depth_width=True)), build_critic(_spec(geom))
    assert d.n_phys == d0.n_phys + 1
    rng = np.random.default_rng(5)
    u = np.where(rng.random((8, geom.n_features)) < 0.3, rng.uniform(1e-4, 1e-2, (8, geom.n_features)), 0.0)
    u[:, geom.n_cells :] = 0.0
    first, last = geom.layer_slice(0), geom.layer_slice(geom.n_layers - 1)
    u[0] = 0.0
    u[0, first.start] = 0.05  # one layer: no spread
    u[1] = 0.0
    u[1, first.start], u[1, last.start] = 0.05, 0.05  # half in the first layer, half in the last
    y = fractions_to_model(torch.as_tensor(u), d.eps).float()
    got = d.physics_features(y).detach().numpy()[:, -1]  # the last column
    np.testing.assert_array_equal(d.physics_features(y)[:, :-1].detach().numpy(), d0.physics_features(y).detach().numpy())
    e = np.stack([u[:, geom.layer_slice(i)].sum(axis=1) for i in range(geom.n_layers)], axis=1)
    pos = np.arange(geom.n_layers) / (geom.n_layers - 1)
    mean = (e @ pos) / e.sum(axis=1)
    want = 4.0 * np.sqrt((e @ pos**2) / e.sum(axis=1) - mean**2)
    np.testing.assert_allclose(got, want, rtol=0.02, atol=0.01)
    assert got[0] < 0.01 and abs(got[1] - 2.0) < 0.02
    spec = _spec(geom, critic_depth_width=True)
    y = torch.cat([y, torch.zeros(8, spec.sample_shape[0] - geom.n_features)], dim=1).requires_grad_(True)
    (g1,) = torch.autograd.grad(d(y, torch.zeros(8, 1)).sum(), y, create_graph=True)
    (g2,) = torch.autograd.grad(g1.norm(), y)
    assert torch.isfinite(g2).all() and g2.abs().sum() > 0


def test_occupancy_pinned_keeps_each_cells_hit_rate_whatever_the_shifts_mean_and_does_not_learn_it():
    """Option ``occupancy_pinned``: the shift's running mean at fixed energy is taken off as its variance is scaled in,
    so a shift with a mean and a spread leaves every rare cell's hit rate at the data's line, where mean-preserving
    alone follows the mean; the cells' probits and slopes get no gradient; it needs mean-preserving and the slope."""
    from physgan.errors import ConfigError

    opts = {"cell_noise": True, "noise_head": "layer", "occupancy": True, "occupancy_slope": True,
            "occupancy_mean_preserving": True}
    _, spec = _occupancy_model(3, 2, **opts, occupancy_pinned=True)
    gens = {}
    for name, options in (("pinned", {**opts, "occupancy_pinned": True}), ("free", opts)):
        torch.manual_seed(0)
        g = build_generator(ModelSpec(**{**spec.__dict__, "options": options}))
        with torch.no_grad():  # a shift with a mean of +0.8 in probit and a spread of ~0.6 between showers
            g.occupancy_shift.weight.normal_(std=0.6, generator=torch.Generator().manual_seed(1))
            g.occupancy_shift.bias += 0.8
        g.train()
        for _ in range(300):
            g(torch.randn(256, *g.latent_shape()), torch.randn(256, 1))
        gens[name] = g
    pinned, free = gens["pinned"], gens["free"]
    assert pinned.occupancy_shift_mean.shape == (pinned.n_groups, SHIFT_VAR_BINS)
    assert float(pinned.occupancy_shift_mean.mean()) > 0.4  # it learned the mean
    torch.manual_seed(0)
    ref = build_generator(ModelSpec(**{**spec.__dict__, "options": opts}))  # no shift at all: the data's line
    with torch.no_grad():
        ref.occupancy_shift.weight.zero_()
        ref.occupancy_shift.bias.zero_()
    n = 20000
    target = np.asarray(spec.data_stats["cell_hit_fraction"])
    rare = target < 0.05
    for t in (-1.0, 0.0, 1.0):
        z, c = torch.randn(n, *pinned.latent_shape()), torch.full((n, 1), t)
        with torch.no_grad():
            rates = [float((g.physics(z, c)["u"] > 0).double().mean(0).numpy()[rare].mean()) for g in (pinned, free, ref)]
        assert abs(rates[0] / rates[2] - 1.0) < 0.15, (t, rates)
        assert rates[1] > 1.5 * rates[2], (t, rates)  # without pinning the shift's mean raises them
    pinned.zero_grad()
    pinned(torch.randn(64, *pinned.latent_shape()), torch.randn(64, 1)).sum().backward()
    assert all(p.grad is None and not p.requires_grad for p in [*pinned.occupancy_logit, *pinned.occupancy_slope])
    assert pinned.occupancy_shift.weight.grad is not None and pinned.occupancy_shift.weight.grad.abs().sum() > 0
    # a training forward centres with the batch's quadratic in the energy, gradient included: the shift's constant
    # (its bias) gets no gradient, so nothing pushes the shift's mean away (with the running mean it ran away)
    assert float(pinned.occupancy_shift.bias.grad.abs().max()) < 1e-4 * float(pinned.occupancy_shift.weight.grad.abs().max())
    free.zero_grad()
    free(torch.randn(64, *free.latent_shape()), torch.randn(64, 1)).sum().backward()
    assert float(free.occupancy_shift.bias.grad.abs().max()) > 1e-3
    for options in ({**opts, "occupancy_mean_preserving": False, "occupancy_pinned": True},
                    {**opts, "occupancy_slope": False, "occupancy_pinned": True},
                    {"cell_noise": True, "occupancy_pinned": True}):
        with pytest.raises(ConfigError, match="occupancy_pinned needs"):
            build_generator(ModelSpec(**{**spec.__dict__, "options": options}))


def test_occupancy_pinned_groups_pins_only_the_first_groups():
    """Option ``occupancy_pinned_groups``: the first N groups' probits are the data's and their shift is centred (no
    gradient on its constant), the other groups' probits and shift constants learn as without pinning."""
    from physgan.errors import ConfigError

    opts = {"cell_noise": True, "noise_head": "layer", "occupancy": True, "occupancy_slope": True,
            "occupancy_mean_preserving": True, "occupancy_pinned": True}
    _, spec = _occupancy_model(3, 2, **opts)
    torch.manual_seed(0)
    g = build_generator(ModelSpec(**{**spec.__dict__, "options": {**opts, "occupancy_pinned_groups": 1}}))
    assert g.n_groups == 3
    with torch.no_grad():
        g.occupancy_shift.weight.normal_(std=0.6, generator=torch.Generator().manual_seed(1))
    g.train()
    g(torch.randn(64, *g.latent_shape()), torch.randn(64, 1)).sum().backward()
    frozen = [p.requires_grad for p in (*g.occupancy_logit, *g.occupancy_slope)]
    assert frozen == [False, True, True, False, True, True]
    assert g.occupancy_logit[1].grad is not None and g.occupancy_logit[1].grad.abs().sum() > 0
    bias_grad = g.occupancy_shift.bias.grad.abs()
    assert float(bias_grad[0]) < 1e-4 * float(g.occupancy_shift.weight.grad.abs().max())  # group 0 centred
    assert float(bias_grad[1:].min()) > 1e-3  # groups 1 and 2 free
    for options, match in (({**opts, "occupancy_pinned_groups": 4}, "occupancy_pinned_groups must be in 0..3"),
                           ({**opts, "occupancy_pinned": False, "occupancy_pinned_groups": 1}, "need occupancy_pinned")):
        with pytest.raises(ConfigError, match=match):
            build_generator(ModelSpec(**{**spec.__dict__, "options": options}))


def test_occupancy_pinned_layers_pins_the_chosen_groups_only():
    """Option ``occupancy_pinned_layers``: the listed groups (here the middle one) keep the data's probits and a centred
    shift, the others learn; indices out of range, repeated, or given beside ``occupancy_pinned_groups`` are refused."""
    from physgan.errors import ConfigError

    opts = {"cell_noise": True, "noise_head": "layer", "occupancy": True, "occupancy_slope": True,
            "occupancy_mean_preserving": True, "occupancy_pinned": True}
    _, spec = _occupancy_model(3, 2, **opts)
    torch.manual_seed(0)
    g = build_generator(ModelSpec(**{**spec.__dict__, "options": {**opts, "occupancy_pinned_layers": [1]}}))
    with torch.no_grad():
        g.occupancy_shift.weight.normal_(std=0.6, generator=torch.Generator().manual_seed(1))
    g.train()
    g(torch.randn(64, *g.latent_shape()), torch.randn(64, 1)).sum().backward()
    assert [p.requires_grad for p in g.occupancy_logit] == [True, False, True]
    assert [p.requires_grad for p in g.occupancy_slope] == [True, False, True]
    bias_grad = g.occupancy_shift.bias.grad.abs()
    assert float(bias_grad[1]) < 1e-4 * float(g.occupancy_shift.weight.grad.abs().max())  # group 1 centred
    assert float(bias_grad[0]) > 1e-3 and float(bias_grad[2]) > 1e-3  # groups 0 and 2 free
    for options, match in (({**opts, "occupancy_pinned_layers": [3]}, "distinct group indices in \\[0, 2\\]"),
                           ({**opts, "occupancy_pinned_layers": [1, 1]}, "distinct group indices"),
                           ({**opts, "occupancy_pinned_layers": [1], "occupancy_pinned_groups": 1}, "set one"),
                           ({**opts, "occupancy_pinned": False, "occupancy_pinned_layers": [1]}, "need occupancy_pinned")):
        with pytest.raises(ConfigError, match=match):
            build_generator(ModelSpec(**{**spec.__dict__, "options": options}))


def test_occupancy_level_bound_keeps_every_showers_hit_level_within_the_bound():
    """Option ``occupancy_level_bound``: each group's hit level is ``b tanh(level / b)``: a trunk whose levels spread
    well past ``b`` gives exactly ``b tanh(level / b)`` (inside ``[-b, b]``, same sign and order), gradients still reach
    the shift; a negative or NaN bound, or one without occupancy, is a clear error."""
    from physgan.errors import ConfigError

    opts = {"cell_noise": True, "noise_head": "layer", "occupancy": True, "occupancy_slope": True}
    _, spec = _occupancy_model(3, 2, **opts)
    levels = {}
    for bound in (0.0, 0.5):
        torch.manual_seed(0)
        g = build_generator(ModelSpec(**{**spec.__dict__, "options": {**opts, "occupancy_level_bound": bound}}))
        with torch.no_grad():
            g.occupancy_shift.weight.normal_(std=2.0, generator=torch.Generator().manual_seed(1))
        z = torch.randn(512, *g.latent_shape(), generator=torch.Generator().manual_seed(2))
        g._level_sink = []
        with torch.no_grad():
            g.physics(z, torch.zeros(512, 1))
        levels[bound] = torch.cat(g._level_sink)
        g._level_sink = None
    free, bounded = levels[0.0], levels[0.5]
    assert float(free.abs().max()) > 1.5  # the unbounded levels spread far past the bound
    assert float(bounded.abs().max()) <= 0.5
    torch.testing.assert_close(bounded, 0.5 * torch.tanh(free / 0.5))
    g.train()
    g(z[:64], torch.zeros(64, 1)).sum().backward()
    assert g.occupancy_shift.weight.grad is not None and float(g.occupancy_shift.weight.grad.abs().sum()) > 0
    for options, match in (({**opts, "occupancy_level_bound": -1.0}, "occupancy_level_bound must be >= 0"),
                           ({**opts, "occupancy_level_bound": float("nan")}, "occupancy_level_bound must be >= 0"),
                           ({**opts, "occupancy": False, "occupancy_level_bound": 1.0}, "needs occupancy")):
        with pytest.raises(ConfigError, match=match):
            build_generator(ModelSpec(**{**spec.__dict__, "options": options}))


def _levels_and_fits(g, z: torch.Tensor, c: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Generator ``g``'s hit levels (B, n_groups) at latents ``z`` and conditions ``c``, and each group's least-squares
    quadratic in the energy (condition 0) at every row."""
    g._level_sink = []
    with torch.no_grad():
        g.physics(z, c)
    level, g._level_sink = torch.cat(g._level_sink).double().numpy(), None
    t = c[:, 0].double().numpy()
    return level, np.stack([np.polyval(np.polyfit(t, level[:, k], 2), t) for k in range(level.shape[1])], axis=1)


def test_occupancy_level_mean_weight_pulls_the_levels_mean_at_fixed_energy_to_zero_and_keeps_its_spread():
    """Option ``occupancy_level_mean_weight``: a training forward leaves ``w * sum_g mean_b m_g(t_b)^2`` (``m_g`` group
    g's hit-level mean as a quadratic in the energy; estimated without bias as the product of the even rows' and the odd
    rows' least-squares fits) for ``take_auxiliary_loss``, once; a no-grad or eval forward leaves none. Descending that
    term alone (fresh latents each step) takes the level mean at fixed energy of every group that is (almost) never
    empty from ~1 probit to ~0, while the spread at fixed energy does not collapse, and leaves the group that is empty
    in half the showers alone; a negative or NaN weight, or one without occupancy, is refused."""
    from physgan.errors import ConfigError

    opts = {"cell_noise": True, "noise_head": "layer", "occupancy": True, "occupancy_slope": True,
            "occupancy_mean_preserving": True, "occupancy_level_mean_weight": 2.0}
    _, spec = _occupancy_model(3, 2, **opts)
    stats = dict(spec.data_stats)  # group 2 holds energy in only half the showers: its level is left alone
    stats["group_hit_probit"] = [[*row[:2], 0.0] for row in stats["group_hit_probit"]]
    spec = ModelSpec(**{**spec.__dict__, "data_stats": stats})
    torch.manual_seed(0)
    g = build_generator(spec)
    assert g.level_mean_groups.tolist() == [0, 1]
    with torch.no_grad():
        g.occupancy_shift.bias.copy_(torch.tensor([1.0, -1.0, 0.8]))
        g.occupancy_shift.weight.normal_(std=0.3, generator=torch.Generator().manual_seed(1))
    z = torch.randn(256, *g.latent_shape(), generator=torch.Generator().manual_seed(2))
    c = torch.linspace(-1.5, 1.5, 256)[:, None]

    def levels(zz: torch.Tensor, cc: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        return _levels_and_fits(g, zz, cc)

    z_eval = torch.randn(8192, *g.latent_shape(), generator=torch.Generator().manual_seed(4))
    c_eval = torch.linspace(-1.5, 1.5, 8192)[:, None]
    level, fitted = levels(z_eval, c_eval)
    assert float(np.abs(fitted).mean()) > 0.5
    spread_before = np.std(level - fitted, axis=0)
    level, _ = levels(z, c)
    t = c[:, 0].double().numpy()
    g.train()
    g(z, c)
    loss = g.take_auxiliary_loss()
    assert loss is not None and g.take_auxiliary_loss() is None  # handed over once
    halves = [np.stack([np.polyval(np.polyfit(t[h::2], level[h::2, k], 2), t) for k in range(level.shape[1])], axis=1)
              for h in (0, 1)]
    assert float(loss.detach()) == pytest.approx(2.0 * float((halves[0] * halves[1])[:, :2].mean(axis=0).sum()), rel=1e-3)
    assert float(loss.detach()) > 1.0
    with torch.no_grad():
        g(z, c)
    assert g.take_auxiliary_loss() is None
    g.eval()
    g(z, c)
    assert g.take_auxiliary_loss() is None
    g.train()
    opt = torch.optim.SGD(g.occupancy_shift.parameters(), lr=0.05)
    zgen = torch.Generator().manual_seed(3)
    for _ in range(600):  # fresh latents each step, as in training (the halves' product is unbiased only then)
        g(torch.randn(256, *g.latent_shape(), generator=zgen), c[torch.randperm(256, generator=zgen)])
        opt.zero_grad()
        g.take_auxiliary_loss().backward()
        opt.step()
    level, fitted = levels(z_eval, c_eval)
    assert float(np.abs(fitted[:, :2]).max()) < 0.08 and float(np.abs(fitted[:, :2]).mean()) < 0.03  # from ~1 probit
    assert float(np.abs(fitted[:, 2]).mean()) > 0.5  # the group often empty keeps its mean
    # the spread at fixed energy is not the target: it moves with the weights the mean shares, but does not collapse
    assert float((np.std(level - fitted, axis=0) / spread_before).min()) > 0.7
    for options, match in (({**opts, "occupancy_level_mean_weight": -1.0}, "occupancy_level_mean_weight must be >= 0"),
                           ({**opts, "occupancy_level_mean_weight": float("nan")}, "occupancy_level_mean_weight must be >= 0"),
                           ({"occupancy": False, "occupancy_level_mean_weight": 1.0}, "occupancy_level_mean_weight needs occupancy")):
        with pytest.raises(ConfigError, match=match):
            build_generator(ModelSpec(**{**spec.__dict__, "options": options}))


def test_occupancy_level_mean_running_pushes_each_level_by_the_running_mean_at_its_energy():
    """Option ``occupancy_level_mean_running``: the term is ``w * sum_g mean_b level_bg * m_g(t_b)`` with ``m_g`` the
    running mean of the group's level per energy bin (tracked by the training forwards beside its variance, not
    differentiated); descending it alone takes the level means at fixed energy from ~1 probit to ~0 and the spread at
    fixed energy does not collapse; without the weight or the mean-preserving statistics it is refused."""
    from physgan.errors import ConfigError

    opts = {"cell_noise": True, "noise_head": "layer", "occupancy": True, "occupancy_slope": True,
            "occupancy_mean_preserving": True, "occupancy_level_mean_weight": 2.0, "occupancy_level_mean_running": True}
    _, spec = _occupancy_model(3, 2, **opts)
    torch.manual_seed(0)
    g = build_generator(spec)
    with torch.no_grad():
        g.occupancy_shift.bias.copy_(torch.tensor([1.0, -1.0, 0.8]))
        g.occupancy_shift.weight.normal_(std=0.3, generator=torch.Generator().manual_seed(1))
    z_eval = torch.randn(8192, *g.latent_shape(), generator=torch.Generator().manual_seed(4))
    c_eval = torch.linspace(-1.5, 1.5, 8192)[:, None]

    def levels() -> tuple[np.ndarray, np.ndarray]:
        return _levels_and_fits(g, z_eval, c_eval)

    level, fitted = levels()
    spread_before = np.std(level - fitted, axis=0)
    g.train()
    zgen = torch.Generator().manual_seed(3)
    c = torch.linspace(-1.5, 1.5, 256)[:, None]
    for _ in range(3):  # the running mean is tracked by the training forwards
        g(torch.randn(256, *g.latent_shape(), generator=zgen), c)
        g.take_auxiliary_loss()
    z = torch.randn(256, *g.latent_shape(), generator=zgen)
    mean_b = torch.stack([g._binned_at(g.occupancy_shift_mean, c[:, 0], k) for k in range(3)], dim=1)  # before it moves
    g._level_sink = []
    with torch.no_grad():
        g.physics(z, c)
    level_b, g._level_sink = torch.cat(g._level_sink), None
    g(z, c)
    loss = g.take_auxiliary_loss()
    assert float(loss.detach()) == pytest.approx(2.0 * float((level_b * mean_b).mean(dim=0).sum()), rel=1e-4)
    assert float(mean_b.abs().mean()) > 0.5  # the table holds the levels' means (~1 probit)
    opt = torch.optim.SGD(g.occupancy_shift.parameters(), lr=0.02)
    for _ in range(1500):  # slowly: the running mean lags the level by ~50 forwards
        g(torch.randn(256, *g.latent_shape(), generator=zgen), c[torch.randperm(256, generator=zgen)])
        opt.zero_grad()
        g.take_auxiliary_loss().backward()
        opt.step()
    level, fitted = levels()
    assert float(np.abs(fitted).max()) < 0.08 and float(np.abs(fitted).mean()) < 0.03  # from ~1 probit
    assert float((np.std(level - fitted, axis=0) / spread_before).min()) > 0.7  # the spread does not collapse
    for options, match in (({**opts, "occupancy_level_mean_weight": 0.0}, "occupancy_level_mean_running needs"),
                           ({**opts, "occupancy_mean_preserving": False}, "occupancy_level_mean_running needs")):
        with pytest.raises(ConfigError, match=match):
            build_generator(ModelSpec(**{**spec.__dict__, "options": options}))


def test_training_adds_the_generators_own_term_to_its_loss(tmp_path):
    """The training step adds ``take_auxiliary_loss()`` of the generator to its loss and logs it as ``Loss/G_aux``
    (here the calorimeter's ``occupancy_level_mean_weight`` or ``share_quantile_weight`` on a tiny dataset-2 file, whose
    transform the run fits); without either option no such term."""
    import json
    import math

    from physgan.config import resolve_config
    from physgan.domains.calo.make import make_dataset
    from physgan.train.loop import train

    data = make_dataset(tmp_path / "ds2.h5", geometry="calochallenge-ds2", energy_gev=(1, 100), n=48, seed=1, progress=False)
    small = [f"data.path={data}", "train.steps=2", "train.batch_size=8", "train.n_critic=1", "train.log_every=1",
             "train.val_every=0", "data.val_size=8"]
    level_off = ["model.options.occupancy_level_mean_weight=0", "model.options.occupancy_level_mean_running=false"]
    for weight, run in ((1.0, "on"), (0.0, "off"), (1.0, "share_quantile_weight")):
        sets = [f"model.options.occupancy_level_mean_weight={weight}", "model.options.occupancy_level_mean_running=false"]
        sets = sets if run == "on" else level_off  # the batch form: non-zero from the first step (the running mean starts at 0)
        if run == "share_quantile_weight":
            sets = [*level_off, f"model.options.share_quantile_weight={weight}"]
        cfg = resolve_config("calo", "calochallenge", overrides=[*small, *sets])
        train(cfg, tmp_path / run, progress=False)
        rows = [json.loads(line) for line in (tmp_path / run / "stats.jsonl").read_text().splitlines()]
        vals = [r["Loss/G_aux"] for r in rows if "Loss/G_aux" in r]
        if weight:
            assert len(vals) == 2 and all(math.isfinite(v) and v != 0.0 for v in vals)  # unbiased: either sign
        else:
            assert vals == []


def test_calibrate_statistics_sets_the_shift_tables_from_the_generators_own_shifts():
    """``calibrate_statistics`` (called by the training loop on the EMA generator before validating and saving): the
    per-bin variance (and, pinned, the mean) of the hit shift become this generator's own at each bin's centre, whatever
    the inherited tables held; the global random state and the train/eval mode are untouched; without
    mean-preserving it changes nothing."""
    opts = {"cell_noise": True, "noise_head": "layer", "occupancy": True, "occupancy_slope": True,
            "occupancy_mean_preserving": True, "occupancy_pinned": True}
    _, spec = _occupancy_model(3, 2, **opts)
    torch.manual_seed(0)
    g = build_generator(spec)
    with torch.no_grad():
        g.occupancy_shift.weight.normal_(std=0.6, generator=torch.Generator().manual_seed(1))
        g.occupancy_shift.bias += 0.5
        g.occupancy_shift_var.fill_(3.0)  # an inherited table, far from this generator's spread
        g.occupancy_shift_mean.fill_(-2.0)
    g.train()
    state = torch.random.get_rng_state()
    g.calibrate_statistics()
    assert torch.equal(torch.random.get_rng_state(), state) and g.training and bool(g.occupancy_shift_seen.all())
    # no autograd graph hangs on the tables (the loop calls it with gradients enabled)
    assert g.occupancy_shift_var.grad_fn is None and g.occupancy_shift_mean.grad_fn is None
    assert g.calibrated
    tables = {1: (g.occupancy_shift_var.clone(), g.occupancy_shift_mean.clone())}
    g.calibrate_statistics(scale=2)  # physgan calibrate --scale 2: twice the draws, the same statistic
    tables[2] = (g.occupancy_shift_var.clone(), g.occupancy_shift_mean.clone())
    assert not torch.equal(tables[1][0], tables[2][0])
    for b in (0, 3, 7):
        t = -2.0 + (b + 0.5) * 0.5
        level = _hit_shift(g, torch.randn(8000, *g.latent_shape()), torch.full((8000, 1), t))
        for var, mean in tables.values():
            np.testing.assert_allclose(var[:, b].numpy(), level.var(dim=0).numpy(), rtol=0.12)
            np.testing.assert_allclose(mean[:, b].numpy(), level.mean(dim=0).numpy(), atol=0.05)
    plain = build_generator(ModelSpec(**{**spec.__dict__, "options": {"cell_noise": True, "occupancy": True}}))
    before = {k: v.clone() for k, v in plain.state_dict().items()}
    plain.calibrate_statistics()
    assert all(torch.equal(before[k], v) for k, v in plain.state_dict().items()) and not plain.calibrated


def test_group_share_quantiles_reads_each_groups_log_share_given_a_hit_along_the_energy():
    """``group_share_quantiles``: at every knot, a group's quantiles are those of its log share of the shower's summed
    group energy in the showers where it holds energy (a log-normal whose median follows the energy here, whatever the
    showers' totals); a knot with too few such showers takes its neighbours' (held constant beyond the end ones), a
    group never holding energy is marked invalid."""
    from scipy.stats import norm

    from physgan.domains.calo.transform import _curve_bins, group_share_quantiles

    rng = np.random.default_rng(0)
    n = 40000
    e_inc = np.exp(rng.uniform(0.0, np.log(1000.0), n))
    t = (np.log(e_inc) - np.log(e_inc).mean()) / np.log(e_inc).std()
    s0 = np.exp(-3.0 + 0.5 * t + 0.4 * rng.standard_normal(n))
    s1 = np.where(rng.random(n) < np.clip(t, 0.0, 1.0), np.exp(-5.0 + 0.2 * rng.standard_normal(n)), 0.0)  # only at high E
    shares = np.stack([s0, s1, np.zeros(n), 1.0 - s0 - s1], axis=1)
    knots, q, valid = group_share_quantiles(shares * rng.uniform(0.5, 2.0, (n, 1)) * e_inc[:, None], e_inc, n_levels=8)
    assert knots.tolist() == _curve_bins(e_inc, 16, 30)[0].tolist()
    assert q.shape == (len(knots), 4, 8) and valid.tolist() == [True, True, False, True]
    assert (np.diff(q[:, :2], axis=2) > 0).all() and (q[:, 2] == 0).all()
    levels = (np.arange(8) + 0.5) / 8
    # group 0: within a knot's bin the median moves with t, which widens the spread a little; the middle levels hold
    np.testing.assert_allclose(q[:, 0, 4], -3.0 + 0.5 * knots + 0.4 * norm.ppf(levels[4]), atol=0.06)
    np.testing.assert_allclose(q[:, 0, 7] - q[:, 0, 0], 0.8 * norm.ppf(levels[7]), rtol=0.15)
    low = knots < 0  # group 1 never holds energy there: its quantiles are those of the first knot that has them
    first = np.flatnonzero(~low)[0]
    assert np.allclose(q[low, 1], q[first, 1])
    np.testing.assert_allclose(q[~low, 1, 4], -5.0 + 0.2 * norm.ppf(levels[4]), atol=0.05)


def test_quantile_levels_and_the_uniform_energy_score():
    """``_quantile_levels`` maps each quantile of a table to its level and extends the end segments linearly;
    ``_uniform_energy_score`` is 0 on average over uniform values (unbiased) and clearly positive for too wide or too
    narrow ones, per masked column."""
    from physgan.domains.calo.model import _quantile_levels, _uniform_energy_score

    q = torch.tensor([[[0.0, 1.0, 3.0, 4.0]]])  # levels 1/8, 3/8, 5/8, 7/8
    v = torch.tensor([[0.0], [1.0], [2.0], [4.0], [5.0], [-1.0]]).expand(6, 1)
    u = _quantile_levels(v, q.expand(6, 1, 4).contiguous())
    torch.testing.assert_close(u[:, 0], torch.tensor([1 / 8, 3 / 8, 1 / 2, 7 / 8, 9 / 8, -1 / 8]))
    gen = torch.Generator().manual_seed(0)
    uniform = torch.rand(400, 64, 3, generator=gen)
    mask = torch.ones(64, 3, dtype=torch.bool)
    mask[32:, 2] = False  # the third column: half its rows
    scores = torch.stack([_uniform_energy_score(b, mask) for b in uniform])
    mean, se = scores.mean(0), scores.std(0) / 20
    assert (mean.abs() < 4 * se).all()
    wide = _uniform_energy_score(2 * uniform.reshape(-1, 3)[:4096] - 0.5, torch.ones(4096, 3, dtype=torch.bool))
    narrow = _uniform_energy_score(0.25 + 0.5 * uniform.reshape(-1, 3)[:4096], torch.ones(4096, 3, dtype=torch.bool))
    assert (wide > 0.03).all() and (narrow > 0.01).all()  # 1/12 and 1/48 exactly, up to the sample's noise
    assert _uniform_energy_score(uniform[0], torch.zeros(64, 3, dtype=torch.bool)).abs().sum() == 0


def test_share_quantile_weight_pulls_each_groups_energy_given_a_hit_to_the_datas_distribution():
    """Option ``share_quantile_weight``: a training forward leaves ``w`` times the energy scores of the group energies'
    levels in the data's quantile tables, summed over the groups in log-energy units, for ``take_auxiliary_loss`` (none
    in eval or without gradients);
    descending that term alone (fresh latents each step) moves the generated log group energies' quantiles at fixed
    energy to the data's table, which they start far from; a negative weight is refused."""
    from physgan.domains.calo.model import _along_knots, _quantile_levels
    from physgan.errors import ConfigError

    opts = {"cell_noise": True, "noise_head": "layer", "occupancy": True, "layer_noise": True, "share_quantile_weight": 3.0}
    _, spec = _occupancy_model(3, 2, **opts)
    torch.manual_seed(0)
    g = build_generator(spec)
    assert g.quantile_groups.tolist() == [0, 1, 2]
    with torch.no_grad():  # each layer draw ~2x the data's spread: the shares start far too wide
        g.layer_noise_shift.fill_(1.0)
    zgen = torch.Generator().manual_seed(1)
    c_eval = torch.linspace(-1.5, 1.5, 4096)[:, None]
    z_eval = torch.randn(4096, *g.latent_shape(), generator=zgen)

    def spread_of_levels() -> np.ndarray:
        """Per group: the 10-90 % range of the generated shares' levels (0.8 when they follow the table)."""
        with torch.no_grad():
            f = g.physics(z_eval, c_eval)["fractions"]
        u = _quantile_levels(torch.log(f), _along_knots(g.quantile_knots, g.group_share_quantiles, c_eval).contiguous())
        return np.diff(np.quantile(u.numpy(), [0.1, 0.9], axis=0), axis=0)[0]

    before = spread_of_levels()
    assert (np.abs(before - 0.8) > 0.2).any()
    g.train()
    c = torch.linspace(-1.5, 1.5, 256)[:, None]
    g(torch.randn(256, *g.latent_shape(), generator=zgen), c)
    loss = g.take_auxiliary_loss()
    assert loss is not None and loss.requires_grad and g.take_auxiliary_loss() is None
    opt = torch.optim.Adam(g.parameters(), lr=3e-3)
    for _ in range(300):
        g(torch.randn(256, *g.latent_shape(), generator=zgen), c)
        opt.zero_grad()
        g.take_auxiliary_loss().backward()
        opt.step()
    g.eval()
    after = spread_of_levels()
    np.testing.assert_allclose(after, 0.8, atol=0.08)
    with torch.no_grad():
        g(z_eval[:64], c_eval[:64])
    assert g.take_auxiliary_loss() is None
    with pytest.raises(ConfigError, match="share_quantile_weight"):
        build_generator(_occupancy_model(3, 2, **{**opts, "share_quantile_weight": -1.0})[1])


def test_share_calibration_maps_each_groups_share_to_the_datas_quantiles_and_keeps_ranks_and_response():
    """Option ``share_calibration``: before calibration the map is the identity (the own table starts as the data's);
    ``calibrate_statistics`` sets the own table from the generator's outputs, after which sampled group shares given a
    hit take the data's quantiles at each energy (closer than the raw ones, whose levels spread far too wide) while each
    group's ranks across showers of one energy and every shower's response stay the generator's; training forwards are
    not mapped; a checkpoint without the own table loads with the identity."""
    from scipy.stats import spearmanr

    from physgan.domains.calo.model import _along_knots, _quantile_levels

    opts = {"cell_noise": True, "noise_head": "layer", "occupancy": True, "layer_noise": True}
    _, spec = _occupancy_model(3, 2, **opts, share_calibration=True)
    torch.manual_seed(0)
    g = build_generator(spec)
    with torch.no_grad():  # each layer draw ~2x the data's spread: the shares far too wide
        g.layer_noise_shift.fill_(1.0)
    raw = build_generator(ModelSpec(**{**spec.__dict__, "options": opts}))
    raw.load_state_dict({k: v for k, v in g.state_dict().items() if k != "group_share_quantiles_own"})
    assert g.calibrated and not raw.calibrated
    g.eval()
    raw.eval()
    z = torch.randn(4096, *g.latent_shape(), generator=torch.Generator().manual_seed(1))
    c = torch.linspace(-1.5, 1.5, 4096)[:, None]

    def physics(model) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            return model.physics(z, c)

    out_raw = physics(raw)
    torch.testing.assert_close(physics(g)["fractions"], out_raw["fractions"], rtol=1e-4, atol=1e-9)  # the identity

    def level_range(f: torch.Tensor) -> np.ndarray:
        u = _quantile_levels(torch.log(f), _along_knots(g.quantile_knots, g.group_share_quantiles, c).contiguous())
        return np.diff(np.quantile(u.numpy(), [0.1, 0.9], axis=0), axis=0)[0]

    before = level_range(out_raw["fractions"])
    assert (np.abs(before - 0.8) > 0.2).all()  # the raw generator is far from the data's quantiles
    g.calibrate_statistics(n_per_bin=4096, seed=3)
    assert not g.training
    out = physics(g)
    after = level_range(out["fractions"])
    assert (np.abs(after - 0.8) < np.maximum(0.5 * np.abs(before - 0.8), 0.1)).all(), (before, after)
    torch.testing.assert_close(out["response"], out_raw["response"])
    torch.testing.assert_close(out["fractions"].sum(dim=1), torch.ones(len(c)))
    same_energy = slice(0, 200)  # nearly one energy: a group's order across showers is kept (up to the renormalisation)
    for k in range(out["fractions"].shape[1]):
        assert spearmanr(out_raw["fractions"][same_energy, k], out["fractions"][same_energy, k])[0] > 0.95
    g.train()
    with torch.no_grad():
        torch.testing.assert_close(g.physics(z[:64], c[:64])["fractions"], out_raw["fractions"][:64], rtol=1e-4, atol=1e-9)
    state = {k: v for k, v in g.state_dict().items() if k != "group_share_quantiles_own"}
    fresh = build_generator(spec)
    fresh.load_state_dict(state)  # strict: the missing own table starts as the data's
    torch.testing.assert_close(fresh.group_share_quantiles_own, fresh.group_share_quantiles)


def test_ring_calibration_moves_each_rings_hit_rate_and_share_to_the_datas():
    """Option ``ring_calibration``: the tables start at 0 (sampling is the raw generator's); with layer 0's outer rings
    hit too rarely and its energy pulled into the inner rings, ``calibrate_statistics`` moves each ring's hit rate and
    mean share of its layer (where the layer holds energy) to the training data's at every knot, measured with the same
    function; training forwards are not moved; a checkpoint without the tables loads with them at 0."""
    from physgan.domains.calo.transform import ring_layer_stats

    opts = {"cell_noise": True, "noise_head": "layer", "occupancy": True}
    _, spec = _occupancy_model(5, 2, **opts, ring_calibration=True)
    torch.manual_seed(0)
    g = build_generator(spec)
    r = np.asarray(CALOGAN.layers[0].r_mm, dtype=np.float64)
    radius = torch.as_tensor(3.0 * r / r.max(), dtype=torch.float32)
    cells = len(radius)
    with torch.no_grad():  # layer 0 (its cells, then its overflow): outer cells rarer and cooler than the data's
        g.occupancy_logit[0][:cells] -= 0.5 * radius
        g.patterns[0].bias[:cells] -= 1.0 * radius
    raw = build_generator(ModelSpec(**{**spec.__dict__, "options": opts}))
    raw.load_state_dict({k: v for k, v in g.state_dict().items() if not k.startswith("ring_")})
    assert g.calibrated
    g.eval()
    raw.eval()
    n, knots = 4096, g.ring_knots.tolist()
    rate_data, share_data = g.ring_hit_rate.double().numpy(), g.ring_share.double().numpy()

    def errors(model, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """Per knot, the largest absolute differences of layer 0's ring hit rates and shares from the data's."""
        gen = torch.Generator().manual_seed(seed)
        rate_err, share_err = [], []
        for k, t in enumerate(knots):
            with torch.no_grad():
                u = model.physics(torch.randn(n, *model.latent_shape(), generator=gen), torch.full((n, 1), t))["u"]
            rate, share, _, _ = ring_layer_stats(u.double().numpy(), g._ring_members, g._ring_group, g._feature_group)
            layer0 = g._ring_group == 0
            rate_err.append(np.abs(rate - rate_data[k])[layer0].max())
            share_err.append(np.abs(share - share_data[k])[layer0].max())
        return np.array(rate_err), np.array(share_err)

    z = torch.randn(512, *g.latent_shape(), generator=torch.Generator().manual_seed(1))
    c = torch.linspace(-1.5, 1.5, 512)[:, None]
    with torch.no_grad():
        torch.testing.assert_close(g.physics(z, c)["u"], raw.physics(z, c)["u"])  # the identity before calibration
    rate_before, share_before = errors(raw, 7)
    assert rate_before.min() > 0.05 and share_before.min() > 0.05, (rate_before, share_before)
    g.calibrate_statistics(n_per_bin=4096, seed=3, scale=3)
    assert not g.training and g.ring_probit_offset.abs().max() > 0.2 and g.ring_log_weight.abs().max() > 0.2
    assert (g.ring_probit_offset[:, -1] == 0).all() and (g.ring_log_weight[:, -1] == 0).all()  # extras: no ring
    rate_after, share_after = errors(g, 7)
    assert (rate_after < 0.3 * rate_before).all() and (rate_after < 0.03).all(), (rate_before, rate_after)
    assert (share_after < 0.3 * share_before).all() and (share_after < 0.03).all(), (share_before, share_after)
    g.train()
    with torch.no_grad():
        torch.testing.assert_close(g.physics(z[:64], c[:64])["u"], raw.physics(z[:64], c[:64])["u"])
    fresh = build_generator(spec)
    fresh.load_state_dict({k: v for k, v in g.state_dict().items() if not k.startswith("ring_")})  # strict
    assert (fresh.ring_probit_offset == 0).all() and (fresh.ring_log_weight == 0).all()


def test_ring_layer_stats_counts_rates_and_shares_where_the_layer_holds_energy():
    """:func:`ring_layer_stats` by hand: two groups; a ring's rate and share and a cell's rate average over the showers
    whose group holds energy only; extras count in the group's energy but in no ring."""
    from physgan.domains.calo.transform import ring_layer_stats

    # features 0-1: ring 0, 2: ring 1 (group 0); 3-4: ring 2 (group 1); 5: group 1's extra
    rings = np.zeros((6, 3))
    rings[[0, 1], 0] = rings[2, 1] = rings[[3, 4], 2] = 1.0
    fg = np.array([0, 0, 0, 1, 1, 1])
    u = np.array([[1.0, 0.0, 1.0, 0.0, 0.0, 0.0],    # group 1 empty
                  [2.0, 2.0, 0.0, 1.0, 0.0, 1.0]])
    rate, share, n, cell_rate = ring_layer_stats(u, rings, np.array([0, 0, 1]), fg)
    np.testing.assert_array_equal(n, [2, 2, 1])
    np.testing.assert_allclose(cell_rate, [1.0, 0.5, 0.5, 1.0, 0.0, 1.0])
    np.testing.assert_allclose(rate, [(0.5 + 1.0) / 2, (1.0 + 0.0) / 2, 0.5])
    np.testing.assert_allclose(share, [(0.5 + 1.0) / 2, (0.5 + 0.0) / 2, 0.5])
