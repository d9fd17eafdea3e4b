"""Faults: kill -9 during training and checkpoint writes, disk full, interrupted generation, divergence, path safety.

Subprocess tests use ``python -m physgan`` exactly as a user (or Slurm) would.
The rows of ``docs/reliability.md`` are written by this module (see ``reliability_table``).
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from reliability_table import Recorder

from physgan.cli import main
from physgan.errors import CheckpointError, DataError, PhysganError
from physgan.io.hdf5 import open_source, read_all, write_samples
from physgan.io.layout import ArrayLayout
from physgan.train import checkpoint as ckmod
from physgan.train import loop
from physgan.train.checkpoint import latest_checkpoint, load_checkpoint

CAT_KILL, CAT_DISK, CAT_GEN, CAT_DIV, CAT_SEC = "fault: kill -9", "fault: disk full", "fault: generation", "fault: divergence", "security"
SMALL = ["model.width=8", "model.depth=1", "model.z_dim=4", "model.embed_dim=4", "train.batch_size=8", "train.n_critic=1"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


@pytest.fixture(scope="module")
def rec():
    recorder = Recorder("test_reliability_faults")
    yield recorder
    recorder.write()


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("data") / "d.h5"
    write_samples(path, rng.normal(size=(200, 6)).astype(np.float32), rng.uniform(1, 2, (200, 1)), ["energy"], "array")
    return path


def _train_cmd(data: Path, run: Path, steps: int, *sets: str, resume: bool = True) -> list[str]:
    cmd = [sys.executable, "-m", "physgan", "train", "array", "--data", str(data), "--run", str(run), "--steps", str(steps), "--quiet"]
    return cmd + (["--resume", "auto"] if resume else []) + [f"--set={s}" for s in sets]


def _no_temporaries(directory: Path) -> bool:
    return not [p for p in directory.rglob("*") if ".tmp-" in p.name]


# ---- kill -9 during training -------------------------------------------------------------
@pytest.mark.slow
def test_kill9_at_random_moments_then_resume_auto(data, tmp_path, rec):
    """Large, frequent checkpoints so that many kills land inside a write; every survivor loads; resume finishes."""
    run, steps = tmp_path / "run", 60
    # ~2 MB per checkpoint written every step (last.pt + a snapshot): most of the time is spent writing them
    sets = ["model.width=128", "model.depth=3", "model.z_dim=8", "model.embed_dim=8", "train.batch_size=8", "train.n_critic=1",
            "train.ckpt_every=1", "train.keep_snapshots=2", "train.val_every=0", "train.log_every=1"]
    rng = np.random.default_rng(12345)
    with rec.case(CAT_KILL, "kill -9 of `physgan train` at seeded random moments (checkpoint of ~2 MB every step, "
                  "kills inside writes), then `latest_checkpoint` loads and `--resume auto` finishes") as row:
        steps_seen = []
        for _ in range(2):
            proc = subprocess.Popen(_train_cmd(data, run, steps, *sets), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENV)
            t0 = time.time()  # wait for training to be under way, then a random extra delay
            while proc.poll() is None and not (run / "checkpoints" / "last.pt").exists() and time.time() - t0 < 90:
                time.sleep(0.05)
            time.sleep(float(rng.uniform(0.05, 0.6)))
            assert proc.poll() is None, proc.stderr.read().decode()
            proc.kill()
            proc.wait()
            proc.stderr.close()
            ck = latest_checkpoint(run)  # also sweeps the temporaries of interrupted writes
            assert ck is not None
            state = load_checkpoint(ck)
            assert all(torch.isfinite(v).all() for v in state["G"].values())
            steps_seen.append(int(state["step"]))
            assert _no_temporaries(run / "checkpoints")
            row.cases += 1
        assert steps_seen == sorted(steps_seen) and steps_seen[-1] < steps
        # SIGTERM (Slurm preemption): checkpoint within seconds and exit 0 for requeue
        proc = subprocess.Popen(_train_cmd(data, run, steps, *sets), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=ENV, text=True)
        before = load_checkpoint(latest_checkpoint(run))["step"]
        t0 = time.time()
        while proc.poll() is None and load_checkpoint_step(run) <= before and time.time() - t0 < 90:
            time.sleep(0.1)
        t_sig = time.time()
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0 and time.time() - t_sig < 20 and "stopped by SIGTERM" in out, out
        row.cases += 1
        assert main(_train_cmd(data, run, steps, *sets)[3:]) == 0  # the requeued job, in-process to save a start-up
        assert load_checkpoint(run / "checkpoints" / "last.pt")["step"] == steps
        assert "resumed from" in (run / "log.txt").read_text()


def load_checkpoint_step(run: Path) -> int:
    try:
        return int(load_checkpoint(run / "checkpoints" / "last.pt")["step"])
    except (CheckpointError, FileNotFoundError):
        return -1


KILL_IN_WRITE = textwrap.dedent(
    """
    import io, os, signal, sys
    import torch
    from physgan.train import checkpoint
    calls = {"n": 0}
    real_save = torch.save
    def save(obj, f):
        calls["n"] += 1
        if calls["n"] == int(sys.argv[1]):
            buf = io.BytesIO()
            real_save(obj, buf)
            with open(f, "wb") as fh:  # half the bytes reach the temporary file, then the process dies
                fh.write(buf.getvalue()[: len(buf.getvalue()) // 2])
                fh.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        return real_save(obj, f)
    checkpoint.torch.save = save
    from physgan.cli import main
    sys.exit(main(sys.argv[2:]))
    """
)


def test_kill9_inside_a_checkpoint_write(data, tmp_path, rec):
    """Deterministic: the process dies with half a checkpoint written; the previous one is intact and resume works."""
    run = tmp_path / "run"
    sets = [*SMALL, "train.ckpt_every=1", "train.val_every=0", "train.keep_snapshots=0"]
    with rec.case(CAT_KILL, "kill -9 with half a checkpoint written (3rd torch.save), then `--resume auto`") as row:
        args = _train_cmd(data, run, 6, *sets, resume=False)[3:]  # the arguments after 'python -m physgan'
        proc = subprocess.run([sys.executable, "-c", KILL_IN_WRITE, "3", *args], capture_output=True, text=True, env=ENV, timeout=300)
        assert proc.returncode == -signal.SIGKILL, proc.stderr
        ckdir = run / "checkpoints"
        temps = [p for p in ckdir.iterdir() if ".tmp-" in p.name]
        assert len(temps) == 1 and temps[0].stat().st_size > 0  # the torn write is only ever a temporary
        assert load_checkpoint(ckdir / "last.pt")["step"] == 2  # saves 1, 2 complete; the 3rd was torn
        with pytest.raises(CheckpointError):
            load_checkpoint(temps[0])
        assert main([*args, "--resume", "auto"]) == 0
        assert not temps[0].exists() and load_checkpoint(ckdir / "last.pt")["step"] == 6
        row.cases += 1


# ---- disk full / unwritable --------------------------------------------------------------
def _enospc(*a, **k):
    raise OSError(errno.ENOSPC, "No space left on device")


def _torch_writer_failure(obj, f, *a, **k):
    with open(f, "wb") as fh:
        fh.write(b"PK\x03\x04partial")
    raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")


@pytest.mark.parametrize("failure", [_enospc, _torch_writer_failure], ids=["OSError-ENOSPC", "torch-RuntimeError"])
def test_disk_full_while_checkpointing(data, tmp_path, rec, monkeypatch, capsys, failure):
    run = tmp_path / "run"
    sets = [f"--set={s}" for s in SMALL] + ["--set=train.val_every=0"]
    base = ["train", "array", "--data", str(data), "--run", str(run), "--quiet", *sets]
    with rec.case(CAT_DISK, "checkpoint write fails (torch.save raises OSError ENOSPC / torch's RuntimeError) -> "
                  "exit 2 naming the file, previous checkpoint byte-identical, no temporary left") as row:
        assert main([*base, "--steps", "2"]) == 0
        last = run / "checkpoints" / "last.pt"
        before = last.read_bytes()
        monkeypatch.setattr(ckmod.torch, "save", failure)
        assert main([*base, "--steps", "4", "--resume", "auto"]) == 2
        err = capsys.readouterr().err
        assert "physgan: error:" in err and "last.pt" in err and "previous checkpoint is intact" in err, err
        assert last.read_bytes() == before and _no_temporaries(run)
        monkeypatch.undo()
        assert main([*base, "--steps", "4", "--resume", "auto"]) == 0  # space is back: the run continues
        assert load_checkpoint(last)["step"] == 4
        row.cases += 1


@pytest.fixture
def small_tmpfs(tmp_path):
    """A real 1 MiB tmpfs (needs root and mount permission; skipped otherwise)."""
    mnt = tmp_path / "full"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("cannot mount a small tmpfs here (not root / no permission)")
    yield mnt
    subprocess.run(["umount", str(mnt)], capture_output=True)


def test_real_full_filesystem(small_tmpfs, rec, trained_run):
    """A genuinely full filesystem: checkpoint and generated file both fail cleanly, old files intact."""
    with rec.case(CAT_DISK, "real 1 MiB tmpfs: checkpoint of 4 MB and `physgan generate` of 3 MB -> clear error, "
                  "old files intact, no temporary") as row:
        old = small_tmpfs / "last.pt"
        ckmod.save_checkpoint({"a": torch.zeros(10)}, old)
        before = old.read_bytes()
        with pytest.raises(CheckpointError, match="could not write the checkpoint"):
            ckmod.save_checkpoint({"a": torch.zeros(10**6)}, old)
        assert old.read_bytes() == before
        row.cases += 1
        out = small_tmpfs / "fake.h5"
        code = main(["generate", str(trained_run), "--n", "120000", "--out", str(out), "--quiet", "--device", "cpu"])
        assert code == 2 and not out.exists()
        assert sorted(p.name for p in small_tmpfs.iterdir()) == ["last.pt"]
        row.cases += 1


@pytest.fixture(scope="module")
def trained_run(data, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("trained") / "run"
    assert main(["train", "array", "--data", str(data), "--run", str(run), "--steps", "2", "--quiet", *[f"--set={s}" for s in SMALL]]) == 0
    return run


def test_disk_full_while_generating(trained_run, tmp_path, rec, monkeypatch, capsys):
    with rec.case(CAT_DISK, "`physgan generate` block write fails (ENOSPC on the 2nd block), new file and --overwrite "
                  "of an existing file -> exit 2, no final/temporary file, the old file byte-identical") as row:
        calls = {"n": 0}
        real = ArrayLayout.write_block

        def flaky(self, *a, **k):
            calls["n"] += 1
            if calls["n"] == 2:
                raise OSError(errno.ENOSPC, "No space left on device")
            return real(self, *a, **k)

        out = tmp_path / "fake.h5"
        argv = ["generate", str(trained_run), "--n", "300", "--batch-size", "100", "--out", str(out), "--quiet", "--device", "cpu"]
        monkeypatch.setattr(ArrayLayout, "write_block", flaky)
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "fake.h5" in err and "No space left" in err and not out.exists() and _no_temporaries(tmp_path)
        row.cases += 1
        monkeypatch.undo()
        assert main(argv) == 0
        before = out.read_bytes()
        calls["n"] = 0
        monkeypatch.setattr(ArrayLayout, "write_block", flaky)
        assert main([*argv, "--overwrite"]) == 2
        assert out.read_bytes() == before and _no_temporaries(tmp_path)
        row.cases += 1


def test_unwritable_run_directory(data, tmp_path, rec, capsys):
    with rec.case(CAT_DISK, "run directory / output under a regular file (unwritable path, works as root too) -> exit 2") as row:
        blocker = tmp_path / "file"
        blocker.write_text("x")
        code = main(["train", "array", "--data", str(data), "--run", str(blocker / "run"), "--steps", "1", "--quiet"])
        err = capsys.readouterr().err
        assert code == 2 and "physgan: error:" in err, err
        row.cases += 1


# ---- interrupted generation --------------------------------------------------------------
def test_generation_killed_midway_never_looks_complete(trained_run, tmp_path, rec):
    out = tmp_path / "big.h5"
    with rec.case(CAT_GEN, "kill -9 of `physgan generate --n 20000000` mid-way: no final file; the temporary is marked "
                  "incomplete (refused if renamed by hand) and removed by the next generate") as row:
        cmd = [sys.executable, "-m", "physgan", "generate", str(trained_run), "--n", "20000000", "--batch-size", "20000",
               "--out", str(out), "--quiet", "--device", "cpu"]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENV)
        t0 = time.time()

        def temps():
            return [p for p in tmp_path.iterdir() if ".tmp-" in p.name]

        while proc.poll() is None and not (temps() and temps()[0].stat().st_size > 1 << 20) and time.time() - t0 < 120:
            time.sleep(0.05)
        assert proc.poll() is None, proc.stderr.read().decode()
        proc.kill()
        proc.wait()
        proc.stderr.close()
        assert not out.exists()
        (tmp,) = temps()
        renamed = tmp_path / "renamed.h5"
        os.link(tmp, renamed)
        with pytest.raises(DataError) as err:
            read_all(open_source(renamed))
        assert "renamed.h5" in str(err.value)
        renamed.unlink()
        assert main(["generate", str(trained_run), "--n", "10", "--out", str(out), "--quiet", "--device", "cpu"]) == 0
        assert not tmp.exists() and len(read_all(out)[0]) == 10
        row.cases += 1


# ---- divergence --------------------------------------------------------------------------
class _Spiky:
    """Objective wrapper: from critic call ``at`` on, the penalty statistic reports an explosion (or a NaN loss)."""

    def __init__(self, inner, at: int, kind: str, stop: int):
        self.inner, self.at, self.kind, self.stop, self.calls = inner, at, kind, stop, 0
        self.name = inner.name

    def critic_loss(self, *a, **k):
        loss, st = self.inner.critic_loss(*a, **k)
        self.calls += 1
        if self.at <= self.calls < self.stop:
            if self.kind == "gp":
                st["Loss/GP"] = torch.tensor(1e6)
            else:
                loss = loss + float("inf")
        return loss, st

    def generator_loss(self, *a, **k):
        return self.inner.generator_loss(*a, **k)

    def after_critic_step(self, D):
        return self.inner.after_critic_step(D)


def _tiny_cfg(data, *extra):
    from physgan.config import resolve_config

    return resolve_config("array", overrides=[f"data.path={data}", *SMALL, "train.val_every=0", "train.ckpt_every=2",
                                              "train.log_every=2", *extra])


@pytest.mark.parametrize("kind", ["gp", "inf-loss", "nan-weights"])
def test_divergence_detected_within_one_tick(data, tmp_path, rec, monkeypatch, kind):
    with rec.case(CAT_DIV, "exploding penalty (GP = 1e6), Inf critic loss, NaN generator weights -> detected at the next "
                  "tick, rolled back, lr lowered, no bad value in stats; permanent fault gives up after K rollbacks") as row:
        real = loop.make_objective
        if kind == "nan-weights":
            real_ema = loop.update_ema

            done = []

            def poisoned(ema, G, beta, step):
                if step == 4 and not done:  # 5th generator step, once: corrupt a weight
                    done.append(step)
                    with torch.no_grad():
                        next(G.parameters()).fill_(float("nan"))
                return real_ema(ema, G, beta, step)

            monkeypatch.setattr(loop, "update_ema", poisoned)
        cfg = _tiny_cfg(data, "train.steps=8")
        t = cfg.train
        objective = None if kind == "nan-weights" else _Spiky(real(t.loss, t.gp_lambda, t.drift, t.clip), at=5, kind=kind[:2], stop=6)
        res = loop.train(cfg, tmp_path / "run", progress=False, objective=objective)
        assert res.rollbacks == 1 and res.step == 8
        log = (tmp_path / "run" / "log.txt").read_text()
        assert "rolled back to last.pt (step 4)" in log and "learning rates x0.5" in log, log
        import json

        for line in (tmp_path / "run" / "stats.jsonl").read_text().splitlines():
            rec_ = json.loads(line)
            assert all(v is not None and np.isfinite(v) for v in rec_.values() if isinstance(v, float)), rec_
            assert rec_.get("Loss/GP", 0) < 1e4
        row.cases += 1
        if kind == "gp":  # a permanent fault: gives up after max_rollbacks with a clear report
            cfg = _tiny_cfg(data, "train.steps=20", "train.max_rollbacks=2")
            spiky = _Spiky(real(t.loss, t.gp_lambda, t.drift, t.clip), at=5, kind="gp", stop=10**9)
            with pytest.raises(loop.TrainingDiverged, match="gave up"):
                loop.train(cfg, tmp_path / "run2", progress=False, objective=spiky)
            row.cases += 1


# ---- security: paths and strings from files and configs -----------------------------------
EVIL = {"run": "../../etc/x", "data": "$(touch PWNED)", "note": "; touch PWNED", "report": "`touch PWNED`",
        "geometry": "../../../tmp/x", "out": "/etc/physgan-x"}


def test_paths_from_attributes_and_configs_are_inert(tmp_path, rec, monkeypatch, capsys):
    """Hostile strings in HDF5 attributes, condition names and config values are never executed nor used as output paths."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    with rec.case(CAT_SEC, "HDF5 attrs / condition names like ../../etc/x, $(...), ; touch PWNED through train, generate, "
                  "evaluate, data info: nothing executed, nothing written outside the run/output/report paths") as row:
        rng = np.random.default_rng(0)
        data = work / "evil.h5"
        write_samples(data, np.abs(rng.normal(size=(120, 4))).astype(np.float32), rng.uniform(1, 2, (120, 1)), ["; touch PWNED"],
                      "array", attrs={"domain": "array", **EVIL})
        before = {p for p in tmp_path.rglob("*")}
        sets = [f"--set={s}" for s in SMALL] + ["--set=train.val_every=0", "--set=data.val_size=8"]
        assert main(["train", "array", "--data", str(data), "--run", "run", "--steps", "2", "--quiet", *sets]) == 0
        assert main(["generate", "run", "--n", "50", "--out", "fake.h5", "--quiet", "--device", "cpu"]) == 0
        assert main(["data", "info", "fake.h5"]) == 0
        code = main(["evaluate", "--real", str(data), "--fake", "fake.h5", "--report", "report", "--n-boot", "2", "--device", "cpu"])
        assert code in (0, 1)
        capsys.readouterr()
        new = {p for p in tmp_path.rglob("*")} - before
        allowed = (work / "run", work / "fake.h5", work / "report")
        outside = [p for p in new if not any(p == a or a in p.parents for a in allowed)]
        assert not outside, outside
        assert not any(p.name == "PWNED" for p in tmp_path.rglob("*")) and not Path("/etc/x").exists()
        assert not Path("/etc/physgan-x").exists()
        row.cases += 4
        # a domain named by an attribute is only a registry key: an unknown one is refused, nothing written
        bad = work / "bad-domain.h5"
        write_samples(bad, np.ones((20, 4)), np.ones((20, 1)), ["e"], "array", attrs={"domain": "../../etc/x"})
        assert main(["evaluate", "--real", str(bad), "--fake", "fake.h5", "--report", "r2", "--n-boot", "2"]) == 2
        assert "unknown domain" in capsys.readouterr().err and not (work / "r2").exists()
        row.cases += 1


def test_checkpoint_with_code_is_refused(tmp_path, rec, monkeypatch):
    monkeypatch.chdir(tmp_path)

    class Evil:
        def __reduce__(self):
            return (os.system, ("touch PWNED",))

    with rec.case(CAT_SEC, "checkpoint files with pickled code (plain pickle, torch.save of an object, as last.pt of a run "
                  "loaded by `generate`) -> refused, nothing executed") as row:
        torch.save({"G": Evil()}, tmp_path / "evil.pt")
        with pytest.raises(CheckpointError, match="refused"):
            load_checkpoint(tmp_path / "evil.pt")
        row.cases += 1
        (tmp_path / "run" / "checkpoints").mkdir(parents=True)
        torch.save({"run": Evil(), "step": 1}, tmp_path / "run" / "checkpoints" / "last.pt")
        assert main(["generate", "run", "--n", "3", "--out", "o.h5", "--quiet"]) == 2
        assert not (tmp_path / "PWNED").exists() and not (tmp_path / "o.h5").exists()
        row.cases += 1
        with pytest.raises(PhysganError):
            loop.train(_tiny_cfg(tmp_path / "x.h5", "train.steps=1"), tmp_path / "run", resume="auto", progress=False)
        assert not (tmp_path / "PWNED").exists()
        row.cases += 1
