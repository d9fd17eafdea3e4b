"""Issue 14: exact phase fractions, fraction-keeping hardening, valid fraction conditions, speckle metrics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from physgan.domains import ModelSpec
from physgan.domains.micro.conditions import complete_conditions
from physgan.domains.micro.fractions import fraction_targets, harden, match_fractions, solve_shift
from physgan.domains.micro.metrics import speckle_stats
from physgan.domains.micro.model import build_generator
from physgan.domains.micro.transform import OneHotTransform
from physgan.errors import ConfigError
from physgan.train.conditions import ConditionNormaliser


def test_fraction_targets_by_name():
    assert fraction_targets(["porosity", "blobiness"], 2) == {0: 0}
    assert fraction_targets(["blobiness", "fraction_1"], 3) == {1: 1}
    # all phases given: the last is implied and not solved for, unless asked
    assert fraction_targets(["fraction_0", "fraction_1", "fraction_2"], 3) == {0: 0, 1: 1}
    assert fraction_targets(["fraction_0", "fraction_1", "fraction_2"], 3, keep_all=True) == {0: 0, 1: 1, 2: 2}
    assert fraction_targets(["radius"], 2) == {}


@pytest.mark.parametrize("scale", [0.01, 1.0, 30.0])
def test_solve_shift_hits_the_target(scale):
    g = torch.Generator().manual_seed(0)
    a = torch.randn(5, 4096, generator=g) * scale
    t = torch.tensor([0.05, 0.2, 0.5, 0.7, 0.95])
    b = solve_shift(a, t)
    torch.testing.assert_close(torch.sigmoid(a + b[:, None]).mean(1), t, atol=1e-6, rtol=0)


def test_match_fractions_two_and_three_phases_and_gradient():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(4, 2, 16, 16, generator=g) * 3
    t = torch.tensor([[0.2], [0.35], [0.5], [0.6]])
    p = torch.softmax(match_fractions(logits, t, [0]), 1)
    torch.testing.assert_close(p[:, 0].mean((1, 2)), t[:, 0], atol=1e-6, rtol=0)
    l3 = torch.randn(3, 3, 8, 8, 8, generator=g) * 2
    t3 = torch.tensor([[0.2, 0.5], [0.1, 0.3], [0.6, 0.3]])
    p3 = torch.softmax(match_fractions(l3, t3, [0, 1]), 1)
    torch.testing.assert_close(p3.mean((2, 3, 4))[:, :2], t3, atol=2e-4, rtol=0)
    # the implicit gradient equals central finite differences of the solved map
    x = torch.randn(2, 2, 6, 6, generator=g, dtype=torch.float64)
    tt = torch.tensor([[0.3], [0.55]], dtype=torch.float64)
    w = torch.randn(6, 6, generator=g, dtype=torch.float64)

    def f(v):
        return (torch.softmax(match_fractions(v, tt, [0]), 1)[:, 0] * w).sum()

    v = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(f(v), v)
    for idx in [(0, 0, 1, 2), (1, 1, 4, 4), (0, 1, 0, 5)]:
        hi, lo = x.clone(), x.clone()
        hi[idx] += 1e-4
        lo[idx] -= 1e-4
        fd = (f(hi) - f(lo)) / 2e-4
        assert grad[idx].item() == pytest.approx(fd.item(), rel=1e-3, abs=1e-6)
    # gradient w.r.t. the target: d(soft fraction)/dt = 1 through the solve
    t_req = tt.clone().requires_grad_(True)
    frac = torch.softmax(match_fractions(x, t_req, [0]), 1)[:, 0].mean((1, 2)).sum()
    (gt,) = torch.autograd.grad(frac, t_req)
    torch.testing.assert_close(gt, torch.ones_like(gt))


@pytest.mark.parametrize("weight", [0.0, 0.4])
def test_harden_keeps_the_soft_fraction_where_argmax_does_not(weight):
    g = torch.Generator().manual_seed(2)
    p0 = 0.45 + 0.1 * torch.rand(3, 20, 20, generator=g) ** 3  # blurry and skewed: argmax miscounts
    prob = torch.stack([p0, 1 - p0], 1)
    lab = harden(prob, weight)
    soft = p0.double().mean((1, 2))
    hard = (lab == 0).double().mean((1, 2))
    assert torch.all((hard - soft).abs() <= 0.5 / 400 + 1e-9)
    assert torch.any(((prob.argmax(1) == 0).double().mean((1, 2)) - soft).abs() > 0.1)


@pytest.mark.parametrize("shape", [(4, 9, 7), (2, 6, 5, 7)])
@pytest.mark.parametrize("n_phases", [2, 3])
def test_hardening_leaves_one_hot_labels_unchanged(shape, n_phases):
    x = torch.randint(0, n_phases, shape, generator=torch.Generator().manual_seed(3)).float()
    t = OneHotTransform().fit(x.numpy(), None, {"n_phases": n_phases})
    torch.testing.assert_close(t.inverse(t.forward(x)), x)  # isolated voxels included: w < 0.5 never outvotes a one-hot voxel
    prob = torch.softmax(torch.randn(shape[0], n_phases, *shape[1:]), 1)
    t_arg = OneHotTransform(hardening="argmax").fit(x.numpy(), None, {"n_phases": n_phases})
    torch.testing.assert_close(t_arg.inverse(prob).long(), prob.argmax(1))
    with pytest.raises(ValueError):
        harden(prob, 0.5)


def test_neighbour_vote_removes_single_voxel_speckle():
    g = torch.Generator().manual_seed(4)
    yy, xx = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    smooth = torch.sigmoid(2.0 * torch.sin(xx / 4) * torch.cos(yy / 5))  # large blobs
    p0 = (smooth + 0.5 * (torch.rand(6, 32, 32, generator=g) - 0.5)).clamp(0.01, 0.99)  # plus per-voxel noise
    prob = torch.stack([p0, 1 - p0], 1)
    clean = speckle_stats(harden(prob).numpy(), 2)
    noisy = speckle_stats(harden(prob, 0.0).numpy(), 2)
    assert clean[1] < 0.5 * noisy[1] and clean[0] < 0.9 * noisy[0]


def _cond_spec(shape, names, c_phys):
    norm = ConditionNormaliser(names).fit(c_phys)
    opts = {"exact_fractions": True, "condition_stats": norm.state_dict()}
    spec = ModelSpec(sample_shape=shape, n_cond=len(names), condition_names=names, z_dim=4, width=4, embed_dim=8, options=opts)
    return spec, norm


@pytest.mark.parametrize("shape", [(2, 32, 32), (2, 16, 16, 16)])
def test_generator_meets_porosity_exactly_and_trains(shape):
    torch.manual_seed(0)
    c = np.stack([np.linspace(0.2, 0.6, 6), np.full(6, 0.5)], 1).astype(np.float32)
    spec, norm = _cond_spec(shape, ["porosity", "blobiness"], c)
    g = build_generator(spec)
    z = torch.randn(6, *g.latent_shape())
    y = g(z, norm(torch.from_numpy(c)))
    dims = tuple(range(1, len(shape)))
    torch.testing.assert_close(y[:, 0].mean(dims), torch.from_numpy(c[:, 0]), atol=1e-5, rtol=0)
    lab = OneHotTransform().fit(np.zeros((1, *shape[1:])), None, {"n_phases": 2}).inverse(y.detach())
    n_vox = float(np.prod(shape[1:]))
    assert np.all(np.abs((lab == 0).float().mean(dims).numpy() - c[:, 0]) <= 0.5 / n_vox + 1e-6)
    # the texture still trains: gradients reach the first layer
    (y[:, 0] * torch.randn_like(y[:, 0])).sum().backward()
    assert g.convs[0].weight.grad.abs().sum() > 0
    # larger volumes from a larger latent keep the fraction
    y2 = g(torch.randn(2, *g.latent_shape(2)), norm(torch.from_numpy(c[:2])))
    torch.testing.assert_close(y2[:, 0].mean(dims), torch.from_numpy(c[:2, 0]), atol=1e-5, rtol=0)
    # off by default (old runs load unchanged)
    spec.options["exact_fractions"] = False
    assert build_generator(spec).fraction_phases == []


def test_impossible_fractions_are_refused_and_defaults_are_valid():
    names = ["fraction_0", "fraction_1", "fraction_2"]
    ranges = [(0.1, 0.5), (0.2, 0.6), (0.2, 0.5)]
    attrs = {"n_phases": 3}
    rng = np.random.default_rng(0)
    bad = np.full((2, 3), 0.5, np.float32)
    with pytest.raises(ConfigError, match="must sum to 1"):
        complete_conditions(names, bad, [False] * 3, ranges, rng, attrs)
    with pytest.raises(ConfigError, match=r"\[0, 1\]"):
        complete_conditions(names, np.array([[1.2, -0.1, -0.1]], np.float32), [False] * 3, ranges, rng, attrs)
    ok = np.array([[0.3, 0.4, 0.3]], np.float32)
    np.testing.assert_array_equal(complete_conditions(names, ok, [False] * 3, ranges, rng, attrs), ok)
    # default draws: uniform per column over the training box, then only valid rows are kept
    draw = np.column_stack([rng.uniform(lo, hi, 500) for lo, hi in ranges]).astype(np.float32)
    assert np.abs(draw.sum(1) - 1).max() > 0.3  # the naive draw is mostly invalid
    out = complete_conditions(names, draw, [True] * 3, ranges, rng, attrs)
    np.testing.assert_allclose(out.sum(1), 1, atol=1e-5)
    for j, (lo, hi) in enumerate(ranges):
        assert out[:, j].min() >= lo - 1e-3 and out[:, j].max() <= hi + 1e-3
    # one fraction given, the others drawn to complete it
    part = draw.copy()
    part[:, 0] = 0.45
    out = complete_conditions(names, part, [False, True, True], ranges, rng, attrs)
    np.testing.assert_allclose(out[:, 0], 0.45)
    np.testing.assert_allclose(out.sum(1), 1, atol=1e-5)
    # a given fraction no free column can complete
    part[:, 0] = 0.05
    with pytest.raises(ConfigError, match="no values of fraction_1, fraction_2"):
        complete_conditions(names, part, [False, True, True], [(0.1, 0.5), (0.2, 0.3), (0.2, 0.3)], rng, attrs)
    # fewer columns than phases: the sum may not exceed 1
    with pytest.raises(ConfigError, match="more than 1"):
        complete_conditions(["fraction_0", "fraction_1"], np.array([[0.6, 0.5]], np.float32), [False, False], ranges[:2], rng, attrs)
    # a porosity-only run is checked against [0, 1] only
    por = np.array([[0.3], [0.5]], np.float32)
    np.testing.assert_array_equal(complete_conditions(["porosity"], por, [False], [(0.2, 0.6)], rng, {"n_phases": 2}), por)


def test_speckle_stats_counts_single_voxel_features():
    im = np.ones((1, 12, 12), np.int16)
    im[0, 3, 3] = 0  # an isolated pore pixel: an island and two one-voxel chords
    im[0, 6:9, 6:10] = 0  # a 3 x 4 pore block: interior chords of length 3 and 4
    chord1, islands = speckle_stats(im, 2)
    # chords of phase 0: (3,3) gives a length-1 chord along both axes; the block gives 4 chords of 3 and 3 of 4
    assert chord1 == pytest.approx(2 / 9)
    assert islands == 1.0
    im2 = im.copy()
    im2[0, 0, 0] = 0  # a corner pixel: its chords touch the border (trimmed) but it is an island
    assert speckle_stats(im2, 2) == (pytest.approx(2 / 9), 2.0)


def test_report_shows_conditioned_samples_and_the_porosity_control_plot(tmp_path):
    from physgan.domains import get_domain
    from physgan.sim.micro import generate_micro

    real, cr, names = generate_micro("blobs", 8, (16, 16), porosity=(0.2, 0.6), seed=0)
    fake, cf, _ = generate_micro("blobs", 8, (16, 16), porosity=(0.2, 0.6), seed=1)
    figs = dict(get_domain("micro").plots((real, cr), (fake, cf), {"n_phases": 2, "condition_names": names}, tmp_path))
    for title in ("Requested vs achieved porosity", "Real vs generated at three porosity values"):
        assert figs[title].read_bytes()[:4] == b"\x89PNG"


def test_quickstart_heldout_set_is_not_the_training_set(tmp_path):
    from physgan.domains import get_domain
    from physgan.io.hdf5 import read_all
    from physgan.quickstart import _make

    opts = dict(get_domain("micro").quickstart["make"], shape="16,16", seed=0)  # a stray seed must not win
    a = read_all(_make("micro", opts, tmp_path / "a.h5", seed=1, n=6))[1]
    b = read_all(_make("micro", opts, tmp_path / "b.h5", seed=2, n=6))[1]
    assert not np.isin(a[:, 0], b[:, 0]).any()


def test_run_conditions_refuse_impossible_fractions_and_draw_valid_ones():
    from physgan.domains import get_domain
    from physgan.run import Run

    names = ["fraction_0", "fraction_1", "fraction_2"]
    run = object.__new__(Run)  # the condition logic only needs these attributes
    run.domain = get_domain("micro")
    run.info = {"condition_names": names, "attrs": {"n_phases": 3}}
    train_c = np.array([[0.1, 0.2, 0.7], [0.5, 0.3, 0.2], [0.3, 0.6, 0.1], [0.2, 0.3, 0.5]])
    run.normaliser = ConditionNormaliser(names).fit(train_c)
    with pytest.raises(ConfigError, match="must sum to 1"):
        run.conditions(4, {"fraction_0": 0.5, "fraction_1": 0.5, "fraction_2": 0.5})
    with pytest.raises(ConfigError, match="must sum to 1"):
        run.check_conditions(np.full((3, 3), 0.5, np.float32))
    c = run.conditions(300, seed=1)  # default: every column drawn over its training range
    np.testing.assert_allclose(c.sum(1), 1, atol=1e-5)
    c = run.conditions(50, {"fraction_0": 0.3}, seed=2)
    np.testing.assert_allclose(c[:, 0], 0.3)
    np.testing.assert_allclose(c.sum(1), 1, atol=1e-5)


def test_critic_image_stats_are_fractions_and_interface_densities():
    from physgan.domains.micro.model import STATS_SCALE, SliceCritic2d, build_critic

    x = torch.zeros(1, 2, 4, 4)
    x[0, 0, :, :2] = 1  # left half phase 0: one vertical interface
    x[0, 1] = 1 - x[0, 0]
    s = SliceCritic2d.image_stats(x)[0] / STATS_SCALE
    # fractions 0.5 / 0.5; along axis 0 no change, along axis 1 one change in 3 pairs per row
    torch.testing.assert_close(s, torch.tensor([0.5, 0.5, 0.5 / 3, 0.5 / 3]))
    spec = ModelSpec(sample_shape=(2, 16, 16, 16), n_cond=1, condition_names=["porosity"], z_dim=4, width=4, embed_dim=8)
    spec.options = {"critic_stats": True, "slices_per_axis": 3}
    d = build_critic(spec)
    assert all(c.stats for c in d.critics) and d.critics[0].head.psi.in_features == 32 + 4
    v = torch.rand(2, 2, 16, 16, 16, requires_grad=True)
    (g,) = torch.autograd.grad(d(v, torch.randn(2, 1)).sum(), v, create_graph=True)
    g.norm().backward()  # double backward through the statistics
    assert d.critics[0].head.V.weight.grad is not None
    assert d.slices(v, 0).shape == (2 * 3, 2, 16, 16)  # three random slices per volume


def test_edge_profiles_find_a_border_layer_and_not_uniform_noise():
    from physgan.domains.micro.metrics import edge_artefact, edge_profiles

    rng = np.random.default_rng(0)
    clean = (rng.random((4, 24, 24, 24)) < 0.7).astype(np.uint8)  # phase 0 with probability 0.3
    prof = edge_profiles(clean)
    assert prof["distance"].tolist() == list(range(12))
    np.testing.assert_allclose(prof["fraction"], 0.3, atol=0.02)
    np.testing.assert_allclose(prof["interface"], 2 * 0.3 * 0.7, atol=0.02)
    base = edge_artefact(clean, depth=4)
    assert base["fraction_edge_dev"] < 0.02 and base["interface_edge_rel_dev"] < 0.05
    # a generator artefact: the two outer layers of one axis all phase 0
    bad = clean.copy()
    bad[:, :2] = 0
    bad[:, -2:] = 0
    e = edge_artefact(bad, depth=4)
    # layers at distance 0 and 1: one axis of three is all phase 0, and the other axes see 4 of 24 rows changed
    assert e["fraction_edge_dev"] > 0.2
    assert e["interface_edge_rel_dev"] > 0.2
    # 2-D images too; a stripe pattern has its interface density in every layer parallel to the stripes
    img = np.tile(np.array([0, 1], np.uint8), (3, 16, 8))
    p2 = edge_profiles(img)
    np.testing.assert_allclose(p2["fraction"], 0.5)
    np.testing.assert_allclose(p2["interface"], 0.5)  # rows alternate (all pairs differ), columns are constant
    with pytest.raises(ValueError, match="no interior"):
        edge_artefact(np.zeros((1, 2, 2), np.uint8))


def test_interface_density_counts_differing_neighbour_pairs():
    from physgan.domains.micro.calibration import interface_density

    img = np.zeros((2, 4, 4), np.uint8)
    img[0, :, 2:] = 1  # one vertical boundary: 4 differing pairs of 24
    np.testing.assert_allclose(interface_density(img), [4 / 24, 0.0])
    vol = np.indices((3, 3, 3)).sum(axis=0)[None] % 2  # 3-D checkerboard: every pair differs
    np.testing.assert_allclose(interface_density(torch.as_tensor(vol)), [1.0])


def test_calibrated_vote_weight_matches_the_target_interface_density():
    from physgan.domains.micro.calibration import calibrate_neighbour_weight, calibrate_transform, interface_density
    from physgan.domains.micro.fractions import harden

    g = torch.Generator().manual_seed(3)
    # soft, speckled probabilities: a smooth field plus per-voxel noise
    smooth = torch.nn.functional.avg_pool2d(torch.randn(16, 1, 40, 40, generator=g), 5, stride=1)
    logit = 3 * smooth / smooth.std() + 1.5 * torch.randn(16, 1, 36, 36, generator=g)
    prob = torch.cat([torch.sigmoid(logit), torch.sigmoid(-logit)], dim=1)
    d0 = interface_density(harden(prob, 0.0)).mean()
    d4 = interface_density(harden(prob, 0.45)).mean()
    assert d4 < 0.8 * d0  # the vote removes speckle (0.19 vs 0.28 here)
    target = float(0.5 * (d0 + d4))
    w, table = calibrate_neighbour_weight(prob, target)
    assert 0 < w < 0.45 and table[0.0] == pytest.approx(float(d0))
    got = interface_density(harden(prob, w)).mean()
    assert abs(got - target) < 0.05 * target  # interpolated between grid points
    # out of reach: the nearest end of the grid
    assert calibrate_neighbour_weight(prob, 0.99)[0] == 0.0
    with pytest.raises(ValueError, match="target"):
        calibrate_neighbour_weight(prob, 0.0)
    # the transform uses the fitted weight unless an explicit option overrides it
    t = OneHotTransform().fit(np.zeros((1, 4, 4)), attrs={"n_phases": 2})
    real = harden(prob, w).numpy()
    calibrate_transform(t, lambda c: prob[: len(c)], real, np.zeros((16, 0), np.float32), batch_size=16)
    assert t.stats["neighbour_weight"] == pytest.approx(w, abs=0.02)
    assert t.neighbour_weight == t.stats["neighbour_weight"]
    torch.testing.assert_close(t.inverse(prob), harden(prob, t.neighbour_weight).float())
    t.options["neighbour_weight"] = 0.1
    assert t.neighbour_weight == 0.1
    with pytest.raises(ValueError, match="real samples"):
        calibrate_transform(t, lambda c: prob, real, np.zeros((3, 0), np.float32))


def test_summaries_are_the_usual_estimators_on_one_hot_and_differentiable():
    from physgan.domains.micro.summaries import MicroSummaries, moment_features, soft_summaries

    rng = np.random.default_rng(4)
    lab = (rng.random((6, 16, 16, 16)) < 0.6).astype(np.uint8)
    t = OneHotTransform().fit(lab, attrs={"n_phases": 2})
    f = soft_summaries(t.forward(torch.as_tensor(lab))).double().numpy()
    assert f.shape == (6, 5)  # interface density, S2 at r = 1, 2, 4 (8 is not below 16 // 2), Euler characteristic per voxel
    from physgan.metrics.morphology import euler_density

    np.testing.assert_allclose(f[:, 4], [euler_density(v == 0) for v in lab], rtol=1e-5, atol=1e-7)
    ind = (lab == 0).astype(np.float64)
    inter = np.mean([np.abs(np.diff(ind, axis=a)).reshape(6, -1).mean(1) for a in (1, 2, 3)], axis=0)
    np.testing.assert_allclose(f[:, 0], inter, rtol=1e-5)
    for j, r in enumerate((1, 2, 4), start=1):
        s2 = [(np.take(ind, range(r, 16), axis=a) * np.take(ind, range(0, 16 - r), axis=a)).reshape(6, -1).mean(1) for a in (1, 2, 3)]
        np.testing.assert_allclose(f[:, j], np.mean(s2, axis=0), rtol=1e-5)
    # the transform fitted their mean and spread: training data are ~0 +- 1 in the module's units
    spec = ModelSpec(sample_shape=(2, 16, 16, 16), n_cond=0, condition_names=[], data_stats=t.stats)
    m = moment_features(spec)
    z = m(t.forward(torch.as_tensor(lab)))
    assert torch.allclose(z.mean(0), torch.zeros(5), atol=1e-4) and torch.allclose(z.std(0), torch.ones(5), atol=1e-3)
    soft = torch.softmax(torch.randn(2, 2, 16, 16, 16), dim=1).requires_grad_(True)
    m(soft).sum().backward()
    assert soft.grad is not None and soft.grad.abs().sum() > 0
    with pytest.raises(ConfigError, match="summary statistics"):
        MicroSummaries(ModelSpec(sample_shape=(2, 16, 16, 16), n_cond=0, condition_names=[], data_stats={"n_phases": 2}))


def test_micro_trainer_matches_summary_moments(tmp_path):
    import json
    import math

    from physgan.config import resolve_config
    from physgan.io.hdf5 import write_samples
    from physgan.train.loop import train

    rng = np.random.default_rng(5)
    x = (rng.random((48, 16, 16)) < rng.uniform(0.3, 0.6, (48, 1, 1))).astype(np.uint8)
    c = (x == 0).reshape(48, -1).mean(1, keepdims=True).astype(np.float32)
    data = tmp_path / "m.h5"
    write_samples(data, x, c, ["porosity"], "micro", attrs={"domain": "micro", "n_phases": 2})
    small = ["train.steps=2", "train.batch_size=8", "train.log_every=1", "train.val_every=0", "data.val_size=8"]
    over = [f"data.path={data}", *small, "train.moment_weight=1", "train.moment_degree=1"]
    train(resolve_config("micro", "quick", overrides=over), tmp_path / "run", progress=False)
    rows = [json.loads(line) for line in (tmp_path / "run" / "stats.jsonl").read_text().splitlines()]
    vals = [r["Loss/moments"] for r in rows if "Loss/moments" in r]
    assert len(vals) == 2 and all(math.isfinite(v) for v in vals) and any(v != 0.0 for v in vals)
    # train.moment_start: the term is off for the first generator steps
    train(resolve_config("micro", "quick", overrides=[*over, "train.moment_start=1"]), tmp_path / "run1", progress=False)
    rows = [json.loads(line) for line in (tmp_path / "run1" / "stats.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "Loss/moments" in r] == [2]
    with pytest.raises(ConfigError, match="moment_start"):
        resolve_config("micro", "quick", overrides=[*over, "train.moment_start=-1"])


def test_straight_through_hard_summaries():
    from physgan.domains.micro.fractions import harden
    from physgan.domains.micro.summaries import MicroSummaries, soft_summaries, straight_through_hard

    g = torch.Generator().manual_seed(6)
    soft = torch.softmax(torch.randn(3, 2, 12, 12, generator=g) * 2, dim=1).requires_grad_(True)
    st = straight_through_hard(soft)
    hard = torch.nn.functional.one_hot(harden(soft.detach()), 2).movedim(-1, 1).float()
    torch.testing.assert_close(st.detach(), hard)  # forward: what a user gets
    w = torch.randn(st.shape, generator=g)
    (st * w).sum().backward()
    torch.testing.assert_close(soft.grad, w)  # backward: the soft probabilities' gradient
    torch.testing.assert_close(straight_through_hard(hard), hard)  # one-hot data pass unchanged
    t = OneHotTransform().fit(harden(soft.detach()).numpy(), attrs={"n_phases": 2})
    spec = ModelSpec(sample_shape=(2, 12, 12), n_cond=0, condition_names=[], options={"moment_hard": True}, data_stats=t.stats)
    m = MicroSummaries(spec)
    assert m.hard
    expect = (soft_summaries(hard) - m.mean) / m.std
    torch.testing.assert_close(m(soft), expect)
