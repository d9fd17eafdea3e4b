"""GAN objectives end to end and the training diagnostics (issue 9).

* known answers of the diagnostics (distances, k-NN statistics, gradient norms,
  collapse and gradient warnings, the run summary);
* every objective trains from the CLI and logs the diagnostics;
* WGAN-GP covers all modes of the ring of 8 Gaussians and of the 5 x 5 grid.
"""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
import torch

from physgan.cli import main
from physgan.io.hdf5 import write_samples
from physgan.sim.toy import ring_modes, sample_modes
from physgan.train.diagnostics import (
    DIAGNOSTIC_KEYS,
    DiagnosticWarning,
    SampleDiagnostics,
    TrainingMonitor,
    format_summary,
    grad_norm,
    knn_radii,
    manifold_scores,
    mean_pairwise_distance,
    summarise_stats,
)

# ---- diagnostics: known answers ------------------------------------------------------------------


def test_mean_pairwise_distance_known_answers():
    assert float(mean_pairwise_distance(torch.tensor([[0.0, 0.0], [3.0, 4.0]]))) == pytest.approx(5.0)
    tri = torch.tensor([[0.0, 0.0], [2.0, 0.0], [1.0, math.sqrt(3.0)]])  # equilateral, side 2
    assert float(mean_pairwise_distance(tri)) == pytest.approx(2.0)
    assert float(mean_pairwise_distance(torch.ones(10, 3))) == 0.0
    with pytest.raises(ValueError):
        mean_pairwise_distance(torch.ones(1, 3))


def test_knn_radii_and_manifold_scores_known_answers():
    line = torch.tensor([[0.0], [1.0], [3.0]])
    assert knn_radii(line, 1).tolist() == [1.0, 1.0, 2.0]
    assert knn_radii(line, 2).tolist() == [3.0, 2.0, 3.0]
    rng = np.random.default_rng(0)
    real = torch.as_tensor(rng.standard_normal((200, 2)))
    same = manifold_scores(real, real.clone(), k=5)
    assert same == {"precision": 1.0, "recall": 1.0, "coverage": 1.0}
    far = manifold_scores(real, real + 100.0, k=5)
    assert far == {"precision": 0.0, "recall": 0.0, "coverage": 0.0}
    # fakes only in the half plane x > 0: about half the real neighbourhoods are covered
    half = manifold_scores(real, real[real[:, 0] > 0], k=5)
    assert 0.35 < half["coverage"] < 0.65 and half["precision"] == 1.0


def test_grad_norm_equals_hand_computed_norm():
    lin = torch.nn.Linear(3, 2)
    assert float(grad_norm(lin)) == 0.0  # no gradients yet
    lin.weight.grad = torch.full((2, 3), 2.0)  # sum of squares 24
    lin.bias.grad = torch.tensor([1.0, 0.0])  # + 1
    assert float(grad_norm(lin)) == pytest.approx(5.0)
    out = lin(torch.ones(4, 3)).sum()
    lin.zero_grad()
    out.backward()  # d/dW = 4 everywhere (6 entries), d/db = 4 (2 entries): sqrt(8 * 16)
    assert float(grad_norm(lin)) == pytest.approx(math.sqrt(8 * 16))


@pytest.fixture(scope="module")
def ring_batch():
    return sample_modes(400, "ring", sigma=0.05, radius_range=(2.0, 2.0), seed=3)


def test_collapsed_generator_is_flagged_and_healthy_one_is_not(ring_batch):
    x, c = ring_batch
    diag = SampleDiagnostics(x, c, features=None, k=5, n_splits=6, seed=0)
    div_floor, cov_floor = diag.floor["diversity"][0], diag.floor["coverage"][0]
    assert 0.85 < div_floor < 1.15 and cov_floor > 0.85  # real vs real: same spread, neighbourhoods covered
    # collapsed generator: every fake at one mode (with the data's own spread)
    rng = np.random.default_rng(1)
    collapsed = (ring_modes(2.0)[0] + 0.05 * rng.standard_normal((diag.n_fake, 2))).astype(np.float32)
    bad = diag(collapsed)
    assert bad["diversity"] < 0.1 * div_floor  # far below the real spread
    assert bad["coverage"] < 0.25  # about 1/8 of the real neighbourhoods
    # a fresh draw of the true distribution sits on the floor
    good = diag(sample_modes(diag.n_fake, "ring", sigma=0.05, radius_range=(2.0, 2.0), seed=99)[0])
    assert good["diversity"] > diag.thresholds["diversity"] and good["coverage"] > diag.thresholds["coverage"]

    monitor = TrainingMonitor(diag.thresholds, warmup_steps=100)
    assert monitor.check(50, {f"Diag/{k}": v for k, v in bad.items()}) == []  # still warming up
    with pytest.warns(DiagnosticWarning) as rec:
        msgs = monitor.check(200, {f"Diag/{k}": v for k, v in bad.items()})
    assert len(msgs) == len(rec) == 2 and all(m.startswith("step 200: ") and "noise floor" in m for m in msgs)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a lasting condition is not repeated; a healthy tick raises nothing
        assert monitor.check(250, {f"Diag/{k}": v for k, v in bad.items()}) == []
        assert monitor.check(300, {f"Diag/{k}": v for k, v in good.items()}) == []
    assert [e["kind"] for e in monitor.events] == [
        "collapse/diversity",
        "collapse/coverage",
        "collapse/diversity/recovered",
        "collapse/coverage/recovered",
    ]


def test_nonfinite_fakes_give_nan_statistics(ring_batch):
    x, c = ring_batch
    diag = SampleDiagnostics(x, c, n_splits=2)
    fake = np.zeros((diag.n_fake, 2), np.float32)
    fake[:5] = np.nan
    out = diag(fake)
    assert out["nonfinite_fraction"] == pytest.approx(5 / diag.n_fake) and math.isnan(out["coverage"])


def test_gradient_warnings_name_the_step():
    monitor = TrainingMonitor()
    assert monitor.check(10, {"Grad/G_norm": 2.0, "Grad/D_norm": 5.0}) == []  # first tick: the reference
    assert monitor.check(20, {"Grad/G_norm": 1e-5, "Grad/D_norm": 4e3}) == []  # within the factors
    with pytest.warns(DiagnosticWarning) as rec:
        msgs = monitor.check(30, {"Grad/G_norm": 1e-6, "Grad/D_norm": 6e3})
    assert len(msgs) == 2 and len(rec) == 2
    assert msgs[0].startswith("step 30: generator gradient norm") and "vanishing" in msgs[0]
    assert msgs[1].startswith("step 30: critic gradient norm") and "exploding" in msgs[1]
    assert monitor.check(40, {"Grad/G_norm": 1.0, "Grad/D_norm": 5.0}) == []  # both recovered
    with pytest.warns(DiagnosticWarning, match="step 50: critic"):
        monitor.check(50, {"Grad/G_norm": 1.0, "Grad/D_norm": float("nan")})  # a non-finite norm counts as exploding
    restored = TrainingMonitor()
    restored.load_state_dict(json.loads(json.dumps(monitor.state_dict())))  # survives a checkpoint (JSON-able)
    assert restored.reference == {"Grad/G_norm": 2.0, "Grad/D_norm": 5.0} and restored.events == monitor.events


def test_summary_from_stats_file(tmp_path):
    rows = [
        {"step": 5, "Loss/W": 0.5, "Grad/G_norm": 1.0, "Diag/coverage": 0.2, "Diag/coverage_floor": 0.9, "Val/score": 1.0},
        {"step": 10, "Loss/W": 0.25, "Grad/G_norm": 3.0, "Diag/coverage": 0.8, "Diag/coverage_floor": 0.9},
    ]
    (tmp_path / "stats.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    events = [{"step": 5, "kind": "collapse/coverage", "message": "step 5: coverage ..."}]
    summary = summarise_stats(tmp_path, {"floor": {"coverage": (0.9, 0.02)}}, events)
    assert summary["steps"] == 10 and summary["last"] == {"Diag/coverage": 0.8, "Grad/G_norm": 3.0, "Loss/W": 0.25}
    assert summary["min"]["Grad/G_norm"] == 1.0 and summary["max"]["Loss/W"] == 0.5
    text = format_summary(summary)
    assert "coverage=0.8 (real 0.9" in text and "warnings: 1" in text and "step 5: coverage" in text
    (tmp_path / "bad" / "stats.jsonl").parent.mkdir()
    (tmp_path / "bad" / "stats.jsonl").write_text("{not json\n")
    from physgan.errors import DataError

    with pytest.raises(DataError, match="line 1"):
        summarise_stats(tmp_path / "bad")


# ---- every objective from the CLI ----------------------------------------------------------------

LOSS_KEYS = {
    "wgan-gp": ("Loss/W", "Loss/GP"),
    "wgan-clip": ("Loss/W", "Clip/fraction"),
    "minimax": ("D/real", "D/fake"),
    "nonsaturating": ("D/real", "D/fake"),
}


@pytest.fixture(scope="module")
def ring_file(tmp_path_factory):
    x, c = sample_modes(300, "ring", radius_range=(1.5, 2.5), seed=0)
    path = tmp_path_factory.mktemp("data") / "ring.h5"
    write_samples(path, x, c, ["radius"], "array", attrs={"domain": "array"})
    return path


@pytest.mark.parametrize("loss", list(LOSS_KEYS))
def test_each_objective_trains_from_the_cli_with_diagnostics(loss, ring_file, tmp_path, capsys):
    run = tmp_path / loss
    argv = ["train", "array", "--data", str(ring_file), "--run", str(run), "--loss", loss, "--steps", "4", "--quiet"]
    argv += ["--recipe", "arjovsky2017"] if loss == "wgan-clip" else []
    argv += [f"--set={s}" for s in ("model.width=16", "model.depth=2", "model.z_dim=4", "model.embed_dim=4")]
    argv += [f"--set={s}" for s in ("train.batch_size=16", "train.n_critic=2", "train.log_every=2", "data.val_fraction=0.2")]
    assert main(argv) == 0
    rows = [json.loads(s) for s in (run / "stats.jsonl").read_text().splitlines()]
    ticks = [r for r in rows if "Grad/G_norm" in r]
    assert [r["step"] for r in ticks] == [2, 4]
    for key in (*DIAGNOSTIC_KEYS, *LOSS_KEYS[loss], "Diag/coverage_floor"):
        assert all(isinstance(r.get(key), float) for r in ticks), f"{loss}: {key} missing from stats.jsonl"
    assert all(r["Grad/G_norm"] > 0 and r["Grad/D_norm"] > 0 for r in ticks)
    summary = json.loads((run / "diagnostics.json").read_text())
    assert summary["steps"] == 4 and "Grad/D_norm" in summary["last"] and summary["floor"]["k"] == 5
    log = (run / "log.txt").read_text()
    assert "training diagnostics after 4 steps" in log
    assert "warning: step 2: diversity of generated samples" in log  # a 2-step generator is collapsed: flagged, with its step
    if loss == "wgan-clip":  # RMSProp and clipping: every critic weight within [-c, c]
        from physgan.train.checkpoint import load_checkpoint

        state = load_checkpoint(run / "checkpoints" / "last.pt")
        assert state["config"]["train"]["optimizer"] == "rmsprop"
        assert max(float(v.abs().max()) for v in state["D"].values()) <= 0.01 + 1e-7


def test_collapse_warnings_wait_for_the_configured_warmup(ring_file, tmp_path):
    """train.diag_warmup silences collapse warnings before that step; gradient checks still run and stats are logged."""
    argv = ["train", "array", "--data", str(ring_file), "--steps", "4", "--quiet"]
    argv += [f"--set={s}" for s in ("model.width=16", "model.depth=2", "model.z_dim=4", "model.embed_dim=4", "train.batch_size=16")]
    argv += [f"--set={s}" for s in ("train.n_critic=1", "train.log_every=2", "data.val_fraction=0.2")]
    for warmup, expect in (("0", True), ("100", False)):
        run = tmp_path / f"w{warmup}"
        assert main([*argv, "--run", str(run), f"--set=train.diag_warmup={warmup}"]) == 0
        log = (run / "log.txt").read_text()
        assert ("warning: step 2: diversity of generated samples" in log) is expect
        assert "Diag/diversity" in (run / "stats.jsonl").read_text()


# ---- the ring of 8 Gaussians ---------------------------------------------------------------------

def test_wgan_gp_covers_all_modes_of_the_ring(tmp_path):
    """WGAN-GP on the ring (sigma 0.1, radius 2): every mode populated, few samples between modes.

    Runs ``python -m bench.mode_dropping --losses wgan-gp``, with its ring settings: the array
    domain's default MLPs 64 x 3, z 8, one critic step, lambda 1, Adam 1e-3, EMA 0.999, 800 steps.
    """
    from bench.mode_dropping import run

    r = run("wgan-gp", 0, None, tmp_path, "ring")
    share = np.asarray(r["share"])
    print(f"per-mode share within 3 sigma {np.round(share, 3).tolist()}, within {r['within_3sigma']:.2f}, "
          f"beyond 6 sigma {r['beyond_6sigma']:.2f}, {r['wall_s']:.0f} s")  # fmt: skip
    assert r["steps"] == 800 and r["settings"]["activation"] == "leaky_relu" and r["settings"]["critic_norm"] == "layer"
    assert len(share) == 8 and share.min() >= 0.25 / 8, f"a mode is dropped or starved: {share}"
    # between modes: a generator that smears the ring uniformly puts 38% within 3 sigma and 24% beyond 6 sigma
    assert r["within_3sigma"] >= 0.5 and r["beyond_6sigma"] <= 0.2
    # the trainer's own diagnostics agree: coverage near the real floor at the end
    print(f"trainer diagnostics: coverage {r['coverage_history'][-1][1]:.2f} (real floor {r['coverage_floor']:.2f})")
    assert r["coverage_history"][-1][0] == 800 and r["coverage_history"][-1][1] > 0.5 * r["coverage_floor"]


# ---- the 5 x 5 grid of Gaussians -----------------------------------------------------------------


@pytest.mark.slow
def test_wgan_gp_covers_all_modes_of_the_grid(tmp_path):
    """WGAN-GP on the 5 x 5 grid (sigma 0.1, spacing 2): all 25 modes populated, few samples between them.

    Runs ``python -m bench.mode_dropping --toy grid --losses wgan-gp``, with its settings: ReLU MLPs
    64 x 3, a 2-D latent, no LayerNorm in the critic, 5 critic steps, lambda 1, Adam 1e-3, EMA 0.99,
    5000 steps (2-3 min on 2 cores, hence ``slow``). With the array domain's defaults (leaky ReLU,
    LayerNorm, z 8) no setting tried covered more than 12 of 25 modes in 6000 steps
    (bench/RESULTS.md section 8, "5 x 5 grid").
    """
    from bench.mode_dropping import TOY_SETTINGS, run

    r = run("wgan-gp", 0, None, tmp_path, "grid")
    assert r["settings"] == {k: v for k, v in TOY_SETTINGS["grid"].items() if k != "steps"} and r["steps"] == 5000
    share = np.asarray(r["share"])
    print(f"per-mode share within 3 sigma {np.round(share, 3).tolist()}, within {r['within_3sigma']:.2f}, "
          f"beyond 6 sigma {r['beyond_6sigma']:.2f}, {r['wall_s']:.0f} s")  # fmt: skip
    assert len(share) == 25 and share.min() >= 0.25 / 25, f"a mode is dropped or starved: {share}"
    # between modes: a uniform smear over the grid's square puts 8% within 3 sigma and 67% beyond 6 sigma
    assert r["within_3sigma"] >= 0.5 and r["beyond_6sigma"] <= 0.2
