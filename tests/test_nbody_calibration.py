"""The spectral generator's post-training calibration of mean density and density power (physgan.domains.nbody.calibration)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from physgan.domains.base import ModelSpec
from physgan.domains.nbody.calibration import calibrate_generator, calibration_grid, grid_basis
from physgan.domains.nbody.model import build_generator
from physgan.domains.nbody.spectral import fit_amplitude_response, fitted_power, shell_power
from physgan.domains.nbody.transform import make_transform
from physgan.sim import nbody as sim
from physgan.train.conditions import ConditionNormaliser
from physgan.train.loop import calibrate_statistics
from physgan.train.moments import condition_basis

OMEGA = (0.25, 0.30, 0.35)
SIGMA8 = (0.7, 0.8, 0.9)


def _pk2d(k):
    return 30.0 * (k / 0.3) / (1 + (k / 0.3) ** 2.5)


@pytest.fixture(scope="module")
def grid_data():
    """Lognormal 16^2 fields on a 3 x 3 (Omega_m, sigma8) grid: the power scales with sigma8^2 and with Omega_m."""
    x, c = [], []
    for i, om in enumerate(OMEGA):
        for j, s8 in enumerate(SIGMA8):
            amp2 = (s8 / 0.8) ** 2 * (om / 0.3)
            for r in range(30):
                x.append(1 + sim.lognormal_field(lambda k, a=amp2: a * _pk2d(k), 16, 32.0, 2, seed=10_000 * i + 100 * j + r))
                c.append((om, s8))
    return np.stack(x).astype(np.float32), np.asarray(c)


def _generator(x, c, **options):
    t = make_transform({"kind": "gauss"}).fit(x, c)
    norm = ConditionNormaliser(["omega_m", "sigma8"]).fit(c)
    spec = ModelSpec(
        sample_shape=(1, 16, 16), n_cond=2, condition_names=["omega_m", "sigma8"], z_dim=4, width=8, depth=2, embed_dim=8,
        options={"amp_degree": 2, "calibrate": True, **options}, data_stats=t.stats, condition_stats=norm.state_dict(),
    )  # fmt: skip
    return build_generator(spec), t, norm


def _measure(g, norm, c_phys, n=1024, seed=123):
    """Mean density and mean power in shells 1..4 of ``n`` fresh fields at each physical condition."""
    out = []
    for p, cp in enumerate(c_phys):
        torch.manual_seed(seed + p)
        cn = norm(torch.as_tensor(np.tile(cp, (n, 1)), dtype=torch.float32))
        with torch.no_grad():
            x = torch.exp(g.mu + g.sd * g(torch.randn(n, *g.latent_shape()), cn).double()) - g.eps
        out.append((float(x.mean()), shell_power(x, 4).mean(dim=0).numpy()))
    return out


def test_density_power_fit_reads_the_mean_power_at_each_condition(grid_data):
    x, c = grid_data
    fit = fit_amplitude_response(x, c, n_nodes=14, degree=2, statistic="mean")
    pred = fitted_power(fit, c)  # (N, nodes)
    power = shell_power(torch.as_tensor(x)[:, None], 4).double().numpy()
    for cp in {tuple(r) for r in c}:
        rows = np.all(c == cp, axis=1)
        # a quadratic in the conditions through 9 points: the fitted mean power is each point's own mean within its noise
        # (shell 1 holds 4 modes: 120 per point, 13 % noise; shells 2-4 hold 8-16)
        np.testing.assert_allclose(pred[rows][0, 2:5], power[rows].mean(axis=0)[1:], rtol=0.12)
    assert np.all(np.asarray(fit["offset"]) == 0.0)
    with pytest.raises(ValueError, match="statistic"):
        fit_amplitude_response(x, c, n_nodes=14, statistic="median")


def test_grid_basis_interpolates_the_calibration_grid_exactly():
    mean, std = np.array([0.3, 0.8]), np.array([0.0408, 0.0816])
    pts = calibration_grid(mean, std, np.array([0.25, 0.7]), np.array([0.35, 0.9]))
    assert pts.shape == (9, 2)
    np.testing.assert_allclose(sorted(set(np.round(pts[:, 0], 3))), [0.25, 0.3, 0.35], atol=1e-3)
    phi = grid_basis(torch.as_tensor((pts - mean) / std)).numpy()
    assert phi.shape == (9, 9) and np.linalg.matrix_rank(phi) == 9
    np.testing.assert_allclose(phi[:, 0], 1.0)
    # clipped to the training range
    assert calibration_grid(mean, 3 * std, np.array([0.25, 0.7]), np.array([0.35, 0.9])).max(axis=0).tolist() == [0.35, 0.9]


def test_calibration_brings_a_mis_set_generator_to_the_data_mean_density_and_power(grid_data):
    x, c = grid_data
    g, t, norm = _generator(x, c)
    assert g.calibrated and "density_power_fit" in t.stats
    with torch.no_grad():  # a generator whose colouring is 25 % too strong at every condition and whose mean density is off
        g.amp_net[-1].bias.view(g.channels, g.n_terms)[:, 0] = 0.11
        g.offset.bias.fill_(0.15)
    pts = [(0.25, 0.7), (0.30, 0.8), (0.35, 0.9)]
    fit = t.stats["density_power_fit"]  # the calibration's target: the training fields' mean power, fitted
    u = (np.asarray(pts) - np.asarray(fit["c_mean"])) / np.asarray(fit["c_std"])
    target = condition_basis(torch.as_tensor(u), 2).numpy() @ np.asarray(fit["coef"]).T
    before = _measure(g, norm, pts)
    report = calibrate_generator(g, n_per_point=512, seed=0)
    after = _measure(g, norm, pts)
    assert report["power_dev"][-1] < 0.3 * report["power_dev"][0] and report["mean_dev"][-1] < 0.3 * report["mean_dev"][0]
    for p, (cp, (m0, p0), (m1, p1)) in enumerate(zip(pts, before, after)):
        assert abs(m0 - 1) > 0.03 and abs(m1 - 1) < 0.01, (cp, m0, m1)
        dev0, dev1 = (float(np.abs(np.log(pw / target[p, 1:5])).mean()) for pw in (p0, p1))
        assert dev0 > 0.15 and dev1 < min(0.08, dev0 / 4), (cp, dev0, dev1)  # the sample noise of 512 + 1024 fields: ~3 % each


def test_calibration_is_seeded_saved_and_absent_from_runs_made_before(grid_data):
    x, c = grid_data
    g, t, norm = _generator(x, c)
    state = torch.get_rng_state()
    g.calibrate_statistics(n_per_point=64, seed=3)
    first = g.cal_power.clone(), g.cal_mean.clone()
    assert torch.equal(torch.get_rng_state(), state)  # the global random state is untouched
    g.calibrate_statistics(n_per_point=64, seed=3)
    assert torch.equal(first[0], g.cal_power) and torch.equal(first[1], g.cal_mean) and float(first[0].abs().max()) > 0
    assert {"cal_power", "cal_mean"} <= set(g.state_dict())
    g2, _, _ = _generator(x, c)
    g2.load_state_dict(g.state_dict())
    assert torch.equal(g2.cal_power, g.cal_power)
    # statistics of runs made before the density power fit, or the option off (the default): no calibration, the old
    # state loads
    stats = {k: v for k, v in t.stats.items() if k != "density_power_fit"}
    spec = ModelSpec(
        sample_shape=(1, 16, 16), n_cond=2, condition_names=["omega_m", "sigma8"], z_dim=4, width=8, depth=2, embed_dim=8,
        options={"amp_degree": 2, "calibrate": True}, data_stats=stats, condition_stats=norm.state_dict(),
    )  # fmt: skip
    default = ModelSpec(**{**spec.__dict__, "options": {"amp_degree": 2}, "data_stats": t.stats})
    for old in (build_generator(spec), _generator(x, c, calibrate=False)[0], build_generator(default)):
        assert not old.calibrated and "cal_power" not in old.state_dict()
        before = {k: v.clone() for k, v in old.state_dict().items()}
        old.calibrate_statistics()
        assert all(torch.equal(before[k], v) for k, v in old.state_dict().items())
        old.load_state_dict({k: v for k, v in g.state_dict().items() if not k.startswith("cal_")})


def test_training_loop_calibrates_once_per_ema_update():
    calls = []

    class Model(torch.nn.Module):
        def calibrate_statistics(self):
            calls.append(1)

    m = Model()
    calibrate_statistics(m)
    calibrate_statistics(m)  # the checkpoint after a validation at the same step: nothing changed between
    assert len(calls) == 1
    m._calibration_current = False  # what the loop does after each EMA update (it overwrites the buffers)
    calibrate_statistics(m)
    assert len(calls) == 2


def test_calibration_runs_on_3d_boxes():
    x, c = [], []
    for i, om in enumerate(OMEGA):
        for j, s8 in enumerate(SIGMA8):
            for r in range(6):
                x.append(1 + sim.lognormal_field(lambda k, a=(s8 / 0.8) ** 2: a * _pk2d(k), 8, 32.0, 3, seed=1000 * i + 100 * j + r))
                c.append((om, s8))
    x, c = np.stack(x).astype(np.float32), np.asarray(c)
    t = make_transform({"kind": "gauss"}).fit(x, c)
    norm = ConditionNormaliser(["omega_m", "sigma8"]).fit(c)
    spec = ModelSpec(
        sample_shape=(1, 8, 8, 8), n_cond=2, condition_names=["omega_m", "sigma8"], z_dim=4, width=8, depth=2, embed_dim=8,
        options={"amp_degree": 2, "calibrate": True}, data_stats=t.stats, condition_stats=norm.state_dict(),
    )  # fmt: skip
    g = build_generator(spec)
    report = calibrate_generator(g, n_per_point=32, n_iter=2)
    assert g.cal_power.shape == (g.n_nodes, 9) and torch.isfinite(g.cal_power).all() and float(g.cal_power.abs().max()) > 0
    assert len(report["power_dev"]) == 2 and np.isfinite(report["power_dev"]).all()
    with torch.no_grad():  # a latent twice as large still gives a periodic field of twice the side
        y = g(torch.randn(2, *g.latent_shape(2)), torch.zeros(2, 2))
    assert y.shape == (2, 1, 16, 16, 16) and torch.isfinite(y).all()


def test_a_calibrated_checkpoint_keeps_its_calibration_unless_the_user_turns_it_off(grid_data):
    x, c = grid_data
    g, t, norm = _generator(x, c)
    g.calibrate_statistics(n_per_point=64, seed=1)
    state = g.state_dict()
    base = dict(sample_shape=(1, 16, 16), n_cond=2, condition_names=["omega_m", "sigma8"], z_dim=4, width=8, depth=2, embed_dim=8)
    default = build_generator(ModelSpec(**base, options={"amp_degree": 2}, data_stats=t.stats, condition_stats=norm.state_dict()))
    assert not default.calibrated
    default.load_state_dict(state)  # the option at its default: the checkpoint's calibration is kept
    assert default.calibrated and torch.equal(default.cal_power, g.cal_power)
    off = build_generator(
        ModelSpec(**base, options={"amp_degree": 2, "calibrate": False}, data_stats=t.stats, condition_stats=norm.state_dict())
    )
    off.load_state_dict(state)  # set off by the user: dropped
    assert not off.calibrated and "cal_power" not in off.state_dict()
    z, cn = torch.randn(4, *g.latent_shape()), torch.zeros(4, 2)
    with torch.no_grad():
        assert torch.allclose(default(z, cn), g(z, cn)) and not torch.allclose(off(z, cn), g(z, cn))


def test_every_checkpoint_of_a_calibrated_run_holds_its_own_calibration(tmp_path):
    """The loop calibrates the EMA generator before each validation and checkpoint, and again after the EMA update has
    overwritten the buffers: the last checkpoint's buffers are what calibrating its weights gives, not zeros."""
    from physgan.config import resolve_config
    from physgan.domains.nbody.make import make_dataset
    from physgan.run import load_run
    from physgan.train.loop import train

    data = make_dataset(tmp_path / "ln.h5", sim_kind="lognormal", dim=2, grid=16, box=32.0, n=120, seed=3)
    over = ["model.width=8", "model.z_dim=4", "model.embed_dim=8", "train.batch_size=16", "train.steps=6",
            "train.val_every=3", "train.ckpt_every=3", "model.options.calibrate=true", "train.device=cpu"]  # fmt: skip
    train(resolve_config("nbody", preset="quick", overrides=[f"data.path={data}", *over]), tmp_path / "run", progress=False)
    g = load_run(tmp_path / "run", checkpoint="last", device="cpu").G
    assert g.calibrated and float(g.cal_power.abs().max()) > 0
    saved = g.cal_power.clone(), g.cal_mean.clone()
    g.calibrate_statistics()  # the same seed and weights: the same buffers
    assert torch.allclose(saved[0], g.cal_power, atol=1e-5) and torch.allclose(saved[1], g.cal_mean, atol=1e-5)


def test_a_checkpoint_made_without_calibration_samples_as_it_was_trained(grid_data):
    """A run made without the calibration has no buffers: it loads into a generator with the option set as no correction
    (the same samples), and calibrating it afterwards changes them."""
    x, c = grid_data
    raw, t, norm = _generator(x, c, calibrate=False)
    state = raw.state_dict()
    assert "cal_power" not in state
    base = dict(sample_shape=(1, 16, 16), n_cond=2, condition_names=["omega_m", "sigma8"], z_dim=4, width=8, depth=2, embed_dim=8)
    opted = build_generator(
        ModelSpec(**base, options={"amp_degree": 2, "calibrate": True}, data_stats=t.stats, condition_stats=norm.state_dict())
    )
    opted.load_state_dict(state)
    z, cn = torch.randn(4, *raw.latent_shape()), torch.zeros(4, 2)
    with torch.no_grad():
        assert opted.calibrated and float(opted.cal_power.abs().max()) == 0.0
        assert torch.equal(opted(z, cn), raw(z, cn))
        opted.calibrate_statistics(n_per_point=64, seed=0)
        assert not torch.allclose(opted(z, cn), raw(z, cn))


def test_physgan_calibrate_recalibrates_a_checkpoint_in_place_with_more_fields(tmp_path, capsys):
    """``physgan calibrate RUN``: the checkpoint's calibration buffers change (more fields, another estimate), its
    weights and training state do not; a second call with the same settings is skipped; a run without the calibration
    is a clear error, and the checkpoint is left as it was."""
    from physgan.cli import main
    from physgan.config import resolve_config
    from physgan.domains.nbody.make import make_dataset
    from physgan.run import load_run
    from physgan.train.checkpoint import load_checkpoint
    from physgan.train.loop import train

    data = make_dataset(tmp_path / "ln.h5", sim_kind="lognormal", dim=2, grid=16, box=32.0, n=120, seed=3)
    over = ["model.width=8", "model.z_dim=4", "model.embed_dim=8", "train.batch_size=16", "train.steps=4",
            "train.val_every=4", "train.ckpt_every=4", "train.device=cpu", f"data.path={data}"]  # fmt: skip
    train(resolve_config("nbody", preset="quick", overrides=[*over, "model.options.calibrate=true"]), tmp_path / "run", progress=False)
    ck = tmp_path / "run" / "checkpoints" / "last.pt"
    before = load_checkpoint(ck)
    assert main(["calibrate", str(tmp_path / "run"), "--checkpoint", "last", "--scale", "2", "--seed", "5"]) == 0
    out = capsys.readouterr().out
    assert "calibrating the nbody generator at step 4 with scale 2" in out  # before the minutes it can take
    assert "calibrated at step 4 (scale 2, seed 5)" in out and "power_dev by round" in out
    after = load_checkpoint(ck)
    assert after["calibration"]["scale"] == 2 and after["calibration"]["seed"] == 5
    assert set(after["calibration"]["buffers"]) == {"cal_mean", "cal_power"}
    for k, v in before["G_ema"].items():  # only the calibration's buffers moved
        assert torch.equal(v, after["G_ema"][k]) != k.startswith("cal_"), k
    assert all(torch.equal(v, after["G"][k]) for k, v in before["G"].items())
    assert after["step"] == before["step"]
    g = load_run(tmp_path / "run", checkpoint="last", device="cpu").G
    assert torch.equal(g.cal_power, after["G_ema"]["cal_power"])
    assert main(["calibrate", str(tmp_path / "run"), "--checkpoint", "last", "--scale", "2", "--seed", "5"]) == 0
    assert "already calibrated" in capsys.readouterr().out
    assert torch.equal(load_checkpoint(ck)["G_ema"]["cal_power"], after["G_ema"]["cal_power"])

    train(resolve_config("nbody", preset="quick", overrides=over), tmp_path / "plain", progress=False)
    plain = tmp_path / "plain" / "checkpoints" / "best.pt"  # what generate reads by default
    stamp = plain.stat().st_mtime_ns
    assert main(["calibrate", str(tmp_path / "plain")]) != 0
    err = capsys.readouterr().err
    assert str(plain) in err and "nothing to calibrate" in err
    assert plain.stat().st_mtime_ns == stamp
    # the benchmark's step after training: only for a generator trained with its calibration, once per settings
    from bench.nbody_benchmark import calibrate_after_training

    assert calibrate_after_training(tmp_path / "plain", "best", 4, 0, "cpu") is None
    assert calibrate_after_training(tmp_path / "run", "last", 0, 5, "cpu") is None
    assert calibrate_after_training(tmp_path / "run", "last", 2, 5, "cpu")["skipped"]
    assert not calibrate_after_training(tmp_path / "run", "last", 1, 5, "cpu")["skipped"]
    assert load_checkpoint(ck)["calibration"]["scale"] == 1
