"""The trainer end to end on tiny data: run files, exact resume, preemption, divergence, safety."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest
import torch

from physgan.config import resolve_config
from physgan.errors import CheckpointError
from physgan.io.hdf5 import write_samples
from physgan.sim.toy import gaussian_blobs, sample_modes
from physgan.train.checkpoint import load_checkpoint
from physgan.train.loop import TrainingDiverged, train
from physgan.train.losses import make_objective

TINY = [
    "model.width=16",
    "model.depth=2",
    "model.z_dim=8",
    "model.embed_dim=8",
    "train.batch_size=16",
    "train.n_critic=2",
    "train.log_every=2",
    "data.val_size=64",
]


@pytest.fixture(scope="module")
def ring_file(tmp_path_factory):
    x, c = sample_modes(400, "ring", radius_range=(1.5, 2.5), seed=0)
    path = tmp_path_factory.mktemp("data") / "ring.h5"
    write_samples(path, x, c, ["radius"], "array", attrs={"domain": "array"})
    return path


def _cfg(path, *extra):
    return resolve_config("array", overrides=[f"data.path={path}", *TINY, *extra])


def test_keep_best_false_validates_but_generates_from_the_last_checkpoint(ring_file, tmp_path):
    from physgan.run import load_run

    run = tmp_path / "run"
    res = train(_cfg(ring_file, "train.steps=4", "train.val_every=2", "train.ckpt_every=2", "train.keep_best=false"), run, progress=False)
    assert res.best_score is not None  # the score is still computed and logged
    assert "validation score" in (run / "log.txt").read_text()
    assert {p.name for p in (run / "checkpoints").iterdir()} == {"last.pt", "step-0000002.pt", "step-0000004.pt"}
    assert load_run(run, checkpoint="best", device="cpu").step == 4  # "best" (generate's default) reads the last
    # a run trained with best.pt, resumed with keep_best off: its old best.pt is not left for generate to read
    old = tmp_path / "old"
    train(_cfg(ring_file, "train.steps=2", "train.val_every=2", "train.ckpt_every=2"), old, progress=False)
    assert (old / "checkpoints" / "best.pt").exists()
    cfg = _cfg(ring_file, "train.steps=4", "train.val_every=2", "train.ckpt_every=2", "train.keep_best=false")
    train(cfg, old, resume="auto", progress=False)
    assert not (old / "checkpoints" / "best.pt").exists()
    assert load_run(old, checkpoint="best", device="cpu").step == 4
    assert "removed checkpoints/best.pt" in (old / "log.txt").read_text()


def test_the_micro_3d_default_preset_keeps_no_best():
    assert resolve_config("micro", preset="default").train.keep_best is False
    assert resolve_config("micro", preset="quick").train.keep_best is True
    assert resolve_config("calo").train.keep_best is True


def test_run_directory_contents(ring_file, tmp_path):
    res = train(_cfg(ring_file, "train.steps=4", "train.val_every=2", "train.ckpt_every=2"), tmp_path / "run", progress=False)
    run = tmp_path / "run"
    assert res.step == 4 and res.best_score is not None
    assert {p.name for p in (run / "checkpoints").iterdir()} == {"last.pt", "best.pt", "step-0000002.pt", "step-0000004.pt"}
    lines = [json.loads(s) for s in (run / "stats.jsonl").read_text().splitlines()]
    assert any("Loss/GP" in rec for rec in lines) and any("Val/score" in rec for rec in lines)
    info = json.loads((run / "run.json").read_text())
    assert info["condition_names"] == ["radius"] and info["layout"] == "array"
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    for key in (
        "G",
        "D",
        "G_ema",
        "opt_g",
        "opt_d",
        "sampler",
        "zgen",
        "rng",
        "step",
        "config",
        "transform",
        "conditions",
        "physgan_version",
    ):
        assert key in state


def test_resume_is_bit_identical(ring_file, tmp_path):
    n = 3
    common = ["train.val_every=3", "train.ckpt_every=3"]
    train(_cfg(ring_file, f"train.steps={2 * n}", *common), tmp_path / "straight", progress=False)
    train(_cfg(ring_file, f"train.steps={n}", *common), tmp_path / "split", progress=False)
    train(_cfg(ring_file, f"train.steps={2 * n}", *common), tmp_path / "split", resume="auto", progress=False)
    a = load_checkpoint(tmp_path / "straight" / "checkpoints" / "last.pt")
    b = load_checkpoint(tmp_path / "split" / "checkpoints" / "last.pt")
    assert a["step"] == b["step"] == 2 * n
    for net in ("G", "D", "G_ema"):
        for k in a[net]:
            assert torch.equal(a[net][k], b[net][k]), f"{net}.{k} differs after resume"
    assert torch.equal(a["zgen"], b["zgen"])


def test_refuses_to_mix_runs(ring_file, tmp_path):
    train(_cfg(ring_file, "train.steps=2"), tmp_path / "run", progress=False)
    with pytest.raises(CheckpointError, match="--resume auto"):
        train(_cfg(ring_file, "train.steps=2"), tmp_path / "run", progress=False)
    with pytest.raises(CheckpointError, match="different configuration: 'model'"):
        train(_cfg(ring_file, "train.steps=4", "model.width=32"), tmp_path / "run", resume="auto", progress=False)


def test_streaming_path_trains(ring_file, tmp_path):
    res = train(
        _cfg(ring_file, "train.steps=3", "data.in_memory=no", "data.block_rows=64", "data.shuffle_blocks=2"),
        tmp_path / "s",
        progress=False,
    )
    assert res.step == 3


def test_conv_path_on_images(tmp_path):
    x, c = gaussian_blobs(64, size=12, seed=0)
    write_samples(tmp_path / "img.h5", x, c, ["width"], "array")
    cfg = resolve_config(
        "array",
        overrides=[
            f"data.path={tmp_path / 'img.h5'}",
            "model.width=16",
            "model.depth=2",
            "model.z_dim=8",
            "train.batch_size=8",
            "train.n_critic=1",
            "train.steps=2",
            "train.val_every=2",
        ],
    )
    res = train(cfg, tmp_path / "run", progress=False)
    assert res.step == 2 and np.isfinite(res.best_score)


class _FlakyObjective:
    """Wraps an objective and returns NaN losses for calls in [start, stop)."""

    def __init__(self, inner, start, stop):
        self.inner, self.start, self.stop, self.calls = inner, start, stop, 0
        self.name = inner.name

    def critic_loss(self, *a, **k):
        loss, st = self.inner.critic_loss(*a, **k)
        self.calls += 1
        if self.start <= self.calls < self.stop:
            loss = loss * float("nan")
        return loss, st

    def generator_loss(self, *a, **k):
        return self.inner.generator_loss(*a, **k)

    def after_critic_step(self, D):
        return {}


class _SpyObjective:
    """Wraps an objective and records the fakes and update numbers each phase sees."""

    def __init__(self, inner):
        self.inner, self.name, self.critic, self.generator = inner, inner.name, [], []

    def critic_loss(self, D, real, fake, cond, generator=None, update=0):
        self.critic.append((fake.detach().clone(), update))
        return self.inner.critic_loss(D, real, fake, cond, generator=generator, update=update)

    def generator_loss(self, D, fake, cond):
        self.generator.append((fake.detach().clone(), fake.requires_grad))
        return self.inner.generator_loss(D, fake, cond)

    def after_critic_step(self, D):
        return {}


@pytest.mark.parametrize("reuse", [False, True])
def test_reuse_fake_puts_the_generator_update_through_the_last_critic_updates_fakes(ring_file, tmp_path, reuse):
    spy = _SpyObjective(make_objective("wgan-gp", gp_every=2))
    run = tmp_path / "run"
    over = ["train.steps=4", "train.val_every=0", "train.gp_every=2", f"train.reuse_fake={str(reuse).lower()}"]
    res = train(_cfg(ring_file, *over), run, progress=False, objective=spy)
    assert res.step == 4
    assert [u for _, u in spy.critic] == list(range(8))  # the run's critic updates, counted across steps (n_critic 2)
    assert len(spy.generator) == 4 and all(grad for _, grad in spy.generator)
    same = [torch.equal(spy.critic[2 * k + 1][0], spy.generator[k][0]) for k in range(4)]
    assert same == [reuse] * 4
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    assert all(torch.isfinite(v).all() for v in state["G"].values())
    # the lazy penalty (every second update: each step's last) is in every status line's statistics
    lines = [json.loads(s) for s in (run / "stats.jsonl").read_text().splitlines()]
    assert sum("Loss/GP" in rec for rec in lines) >= 2 and all(rec["Loss/GP"] >= 0 for rec in lines if "Loss/GP" in rec)


def test_divergence_rolls_back_then_recovers(ring_file, tmp_path):
    flaky = _FlakyObjective(make_objective("wgan-gp"), start=9, stop=10)
    res = train(
        _cfg(ring_file, "train.steps=8", "train.ckpt_every=2", "train.val_every=0"), tmp_path / "run", progress=False, objective=flaky
    )
    assert res.rollbacks == 1 and res.step == 8
    log = (tmp_path / "run" / "log.txt").read_text()
    assert "divergence detected: rolled back" in log
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert all(torch.isfinite(v).all() for v in state["G"].values())


def test_divergence_gives_up_after_max_rollbacks(ring_file, tmp_path):
    flaky = _FlakyObjective(make_objective("wgan-gp"), start=9, stop=10**9)
    with pytest.raises(TrainingDiverged, match="diverged"):
        train(
            _cfg(ring_file, "train.steps=30", "train.ckpt_every=2", "train.val_every=0", "train.max_rollbacks=2"),
            tmp_path / "run",
            progress=False,
            objective=flaky,
        )


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def test_malicious_checkpoint_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    bad = tmp_path / "evil.pt"
    with open(bad, "wb") as fh:
        pickle.dump({"G": _Evil()}, fh)
    with pytest.raises(CheckpointError, match="refused to load"):
        load_checkpoint(bad)
    assert not (tmp_path / "PWNED").exists()
    torch.save({"payload": _Evil()}, tmp_path / "evil2.pt")
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(tmp_path / "evil2.pt")
    assert not (tmp_path / "PWNED").exists()
    (tmp_path / "trunc.pt").write_bytes(b"PK\x03\x04garbage")
    with pytest.raises(CheckpointError, match="not a readable physgan checkpoint"):
        load_checkpoint(tmp_path / "trunc.pt")


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGUSR1])
def test_preemption_signal_checkpoints_and_exits_cleanly(ring_file, tmp_path, sig):
    run = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "physgan",
        "train",
        "array",
        "--data",
        str(ring_file),
        "--run",
        str(run),
        "--steps",
        "100000",
        *[f"--set={o}" for o in TINY],
        "--set=train.val_every=0",
        "--set=train.ckpt_every=100000",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    while not (run / "stats.jsonl").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert proc.poll() is None, proc.stdout.read()
    t0 = time.time()
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert time.time() - t0 < 30
    assert "received: checkpoint written" in out
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    assert 0 < state["step"] < 100000
    res = train(_cfg(ring_file, f"train.steps={state['step'] + 2}"), run, resume="auto", progress=False)
    assert res.step == state["step"] + 2


def _torchrun_train(ring_file, run, steps: int, *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "physgan", "train"]
    cmd += ["array", "--data", str(ring_file), "--run-dir", str(run), "--steps", str(steps), "--quiet", *extra]
    cmd += [*[f"--set={o}" for o in TINY], "--set=train.ckpt_every=2", "--set=train.val_every=0"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})


@pytest.mark.slow
def test_torchrun_resume_continues_each_ranks_own_random_stream(ring_file, tmp_path):
    """2 ranks: 4 steps in one go == 2 steps, then resumed to 4 (each rank restores its own latent generator)."""
    whole, split = tmp_path / "whole", tmp_path / "split"
    for run, steps, extra in ((whole, 4, ()), (split, 2, ()), (split, 4, ("--resume", "auto"))):
        proc = _torchrun_train(ring_file, run, steps, *extra)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    a, b = load_checkpoint(whole / "checkpoints" / "last.pt"), load_checkpoint(split / "checkpoints" / "last.pt")
    assert a["step"] == b["step"] == 4 and len(b["rank_rng"]) == 2
    assert not torch.equal(b["rank_rng"][0]["zgen"], b["rank_rng"][1]["zgen"])  # the ranks' streams differ
    for net in ("G", "D", "G_ema"):
        for k in a[net]:
            assert torch.equal(a[net][k], b[net][k]), f"{net}.{k} differs after a resumed 2-rank run"


@pytest.mark.slow
def test_a_finished_torchrun_rank_holds_no_ddp_wrapper(ring_file, tmp_path):
    """The DDP wrappers (which hold the process group) sit in reference cycles; train() frees them before it ends the
    group, so they are not left to a collection during interpreter shutdown (a rank then aborted at exit, now and then)."""
    script = tmp_path / "rank.py"
    script.write_text(
        "import gc, os, sys\n"
        "from pathlib import Path\n"
        "from torch.nn.parallel import DistributedDataParallel as DDP\n"
        "from physgan.config import resolve_config\n"
        "from physgan.train.loop import train\n"
        "cfg = resolve_config('array', overrides=sys.argv[2:])\n"
        "gc.disable()  # only train() itself may collect\n"
        "train(cfg, Path(sys.argv[1]), progress=False)\n"
        "alive = sum(isinstance(o, DDP) for o in gc.get_objects())\n"
        "Path(sys.argv[1], f'alive{os.environ[\"RANK\"]}.txt').write_text(str(alive))\n"
    )
    overrides = [f"data.path={ring_file}", *TINY, "train.steps=2", "train.ckpt_every=2", "train.val_every=0"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", str(script), str(tmp_path / "run")]
    proc = subprocess.run(cmd + overrides, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert [(tmp_path / "run" / f"alive{r}.txt").read_text() for r in (0, 1)] == ["0", "0"]


@pytest.mark.slow
def test_torchrun_two_processes_keep_identical_parameters(ring_file, tmp_path):
    run = tmp_path / "ddp"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        "-m",
        "physgan",
        "train",
        "array",
        "--data",
        str(ring_file),
        "--run-dir",
        str(run),
        "--steps",
        "4",
        "--quiet",
        *[f"--set={o}" for o in TINY],
        "--set=train.ckpt_every=2",
        "--set=train.val_every=2",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    log = (run / "log.txt").read_text()
    assert "parameters identical across 2 ranks" in log
    assert load_checkpoint(run / "checkpoints" / "last.pt")["step"] == 4


def test_a_run_with_options_this_version_no_longer_declares_loads_and_resumes(ring_file, tmp_path):
    """Older code's runs hold options the typed record dropped: they load and resume with a warning naming them;
    a new config naming the same key is refused."""
    import yaml

    from physgan.cli import main
    from physgan.errors import ConfigError, PhysganWarning
    from physgan.run import load_run
    from physgan.train.checkpoint import save_checkpoint

    run = tmp_path / "old"
    train(_cfg(ring_file, "train.steps=2", "train.ckpt_every=2"), run, progress=False)
    for path in (run / "checkpoints").glob("*.pt"):  # as the older code saved it
        state = load_checkpoint(path)
        state["config"]["model"]["options"]["retired_width"] = 3
        save_checkpoint(state, path)
    saved = yaml.safe_load((run / "config.yaml").read_text())
    saved["model"]["options"]["retired_width"] = 3
    (run / "config.yaml").write_text(yaml.safe_dump(saved, sort_keys=False))

    with pytest.warns(PhysganWarning, match="retired_width"):
        loaded = load_run(run)
    assert loaded.sample(8, seed=0).shape == (8, 2)

    argv = ["train", "array", "--data", str(ring_file), "--run", str(run), "--resume", "auto", "--steps", "4", "--quiet"]
    with pytest.warns(PhysganWarning, match="the run's model.options hold retired_width, which this version no longer declares"):
        assert main(argv) == 0
    line = warnings.formatwarning("m", PhysganWarning, "f.py", 1)
    assert line == "physgan: warning: m\n"  # how the CLI prints it: one line
    assert load_checkpoint(run / "checkpoints" / "last.pt")["step"] == 4

    with pytest.raises(ConfigError, match="unknown option 'model.options.retired_width'"):
        resolve_config("array", overrides=[f"data.path={ring_file}", "model.options.retired_width=3"])
    with pytest.raises(ConfigError, match="retired_width"):  # resuming with a new value for it is a new setting
        resolve_config("array", base=saved, overrides=["model.options.retired_width=4"])


def test_linear_learning_rate_decay_follows_the_step(ring_file, tmp_path):
    """``train.lr_final``: both learning rates fall linearly from lr at step 0 to lr_final * lr at train.steps, as a
    function of the step alone (so a resumed run continues the schedule); rollbacks multiply it; out-of-range values
    fail; the default leaves the rates constant."""
    from physgan.errors import ConfigError
    from physgan.train.loop import learning_rate_factor

    cfg = _cfg(ring_file, "train.steps=10", "train.lr_final=0.1", "train.val_every=0", "train.ckpt_every=4",
               "train.lr_g=2e-4", "train.lr_d=1e-4")
    t = cfg.train
    assert learning_rate_factor(0, 0, t) == 1.0 and learning_rate_factor(10, 0, t) == pytest.approx(0.1)
    assert learning_rate_factor(5, 0, t) == pytest.approx(0.55) and learning_rate_factor(5, 1, t) == pytest.approx(0.275)
    train(cfg, tmp_path / "run", progress=False)
    for name, every in (("step-0000004.pt", 3), ("last.pt", 9)):  # the rate set before the last step taken
        state = load_checkpoint(tmp_path / "run" / "checkpoints" / name)
        assert state["opt_g"]["param_groups"][0]["lr"] == pytest.approx(2e-4 * learning_rate_factor(every, 0, t))
        assert state["opt_d"]["param_groups"][0]["lr"] == pytest.approx(1e-4 * learning_rate_factor(every, 0, t))
    train(_cfg(ring_file, "train.steps=4", "train.val_every=0", "train.lr_g=2e-4"), tmp_path / "const", progress=False)
    assert load_checkpoint(tmp_path / "const" / "checkpoints" / "last.pt")["opt_g"]["param_groups"][0]["lr"] == 2e-4
    with pytest.raises(ConfigError, match="lr_final"):
        _cfg(ring_file, "train.lr_final=0")
