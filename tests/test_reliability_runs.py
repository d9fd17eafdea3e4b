"""Runs: Ctrl-C, two processes on one run directory, damaged checkpoints, resume semantics.

Nothing lost, nothing mixed: a Ctrl-C checkpoints like SIGTERM, a run directory is locked by the
process training in it, ``--resume auto`` falls back past a truncated ``last.pt`` and never
restarts silently, and a resumed run keeps its own settings and data unless told otherwise.
The rows of ``docs/reliability.md`` are written by this module (see ``reliability_table``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from reliability_table import Recorder

from physgan.cli import main
from physgan.io.hdf5 import write_samples
from physgan.train.checkpoint import load_checkpoint
from physgan.train.runlock import RunLock
from physgan.train.signals import StopFlag

CAT_RUN = "runs: interrupt, lock, resume"
SMALL = ["model.width=8", "model.depth=1", "model.z_dim=4", "model.embed_dim=4", "train.batch_size=8", "train.n_critic=1",
         "train.val_every=0"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


@pytest.fixture(scope="module")
def rec():
    recorder = Recorder("test_reliability_runs")
    yield recorder
    recorder.write()


def _write(path: Path, n: int = 200, width: int = 6, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    write_samples(path, rng.normal(size=(n, width)).astype(np.float32), rng.uniform(1, 2, (n, 1)), ["energy"], "array")
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return _write(tmp_path_factory.mktemp("data") / "d.h5")


def _argv(data: Path, run: Path, *extra: str, steps: int | None = None) -> list[str]:
    argv = ["train", "array", "--data", str(data), "--run", str(run), "--quiet", *[f"--set={s}" for s in SMALL], *extra]
    return argv + (["--steps", str(steps)] if steps is not None else [])


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    t0 = time.time()
    while not path.exists() and proc.poll() is None and time.time() - t0 < timeout:
        time.sleep(0.1)
    assert proc.poll() is None, proc.communicate()[0]
    assert path.exists()


@pytest.mark.slow
def test_ctrl_c_checkpoints_and_a_second_train_is_locked_out(data, tmp_path, rec, capsys):
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "physgan", *_argv(data, run, "--set=train.ckpt_every=100000", "--set=train.log_every=5",
                                                   steps=100000)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=ENV, text=True)
    try:
        _wait_for(run / "stats.jsonl", proc)
        with rec.case(CAT_RUN, "a second `physgan train` on a run directory in use -> exit 2 naming the holder's pid; "
                      "the first run is untouched") as row:
            assert main(_argv(data, run, "--resume", "auto", steps=10)) == 2
            err = capsys.readouterr().err
            assert err.startswith("physgan: error:") and f"pid {proc.pid}" in err and "another physgan train" in err, err
            assert proc.poll() is None
            row.cases += 1
        with rec.case(CAT_RUN, "Ctrl-C (SIGINT) during `physgan train` -> checkpoint at the current step, exit 130, "
                      "then `--resume auto` continues from it") as row:
            proc.send_signal(signal.SIGINT)
            out, _ = proc.communicate(timeout=60)
            assert proc.returncode == 130 and "stopped by SIGINT" in out and "Ctrl-C" in out, out
            step = int(load_checkpoint(run / "checkpoints" / "last.pt")["step"])
            assert 0 < step < 100000
            assert main(_argv(data, run, "--resume", "auto", steps=step + 2)) == 0
            assert int(load_checkpoint(run / "checkpoints" / "last.pt")["step"]) == step + 2
            assert f"resumed from {run / 'checkpoints' / 'last.pt'} at step {step}" in (run / "log.txt").read_text()
            row.cases += 1
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_second_ctrl_c_aborts(rec):
    with rec.case(CAT_RUN, "a second Ctrl-C while the checkpoint is being written aborts (KeyboardInterrupt)") as row:
        flag = StopFlag(signals=())
        flag._handle(signal.SIGINT, None)
        assert flag.requested == "SIGINT"
        with pytest.raises(KeyboardInterrupt):
            flag._handle(signal.SIGINT, None)
        row.cases += 1


def test_killed_holder_does_not_block_and_live_holder_does(data, tmp_path, rec, capsys):
    run = tmp_path / "run"
    run.mkdir()
    with rec.case(CAT_RUN, "run directory lock: held -> exit 2 naming the pid; its holder killed -9 -> the next run starts") as row:
        with RunLock(run):
            assert main(_argv(data, run, steps=2)) == 2
            assert f"pid {os.getpid()}" in capsys.readouterr().err
            assert not (run / "stats.jsonl").exists()
        row.cases += 1
        code = f"from physgan.train.runlock import RunLock; RunLock({str(run)!r}).acquire(); print('locked', flush=True); input()"
        holder = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=ENV)
        assert holder.stdout.readline().strip() == "locked"
        assert main(_argv(data, run, steps=2)) == 2
        assert f"pid {holder.pid}" in capsys.readouterr().err
        holder.kill()
        holder.wait()
        assert main(_argv(data, run, steps=2)) == 0
        row.cases += 2


def test_resume_auto_never_restarts_silently(data, tmp_path, rec, capsys):
    with rec.case(CAT_RUN, "`--resume auto` on a directory with statistics but no checkpoint -> exit 2; "
                  "on a fresh directory -> says it starts at step 0") as row:
        run = tmp_path / "lost"
        run.mkdir()
        (run / "stats.jsonl").write_text('{"step": 50}\n')
        for extra in (["--resume", "auto"], []):
            assert main(_argv(data, run, *extra, steps=2)) == 2
            assert "left no checkpoint" in capsys.readouterr().err
            row.cases += 1
        fresh = tmp_path / "fresh"
        assert main(_argv(data, fresh, "--resume", "auto", steps=2)) == 0
        assert "holds no checkpoint yet; starting a new run at step 0" in capsys.readouterr().err
        row.cases += 1


def test_truncated_last_checkpoint_falls_back_to_newest_snapshot(data, tmp_path, rec, capsys):
    with rec.case(CAT_RUN, "`--resume auto` with a truncated last.pt -> resumes from the newest intact snapshot and says so") as row:
        run = tmp_path / "run"
        assert main(_argv(data, run, "--set=train.ckpt_every=2", steps=4)) == 0
        last = run / "checkpoints" / "last.pt"
        last.write_bytes(last.read_bytes()[: last.stat().st_size // 3])
        capsys.readouterr()
        assert main(_argv(data, run, "--resume", "auto", "--set=train.ckpt_every=2", steps=6)) == 0
        err = capsys.readouterr().err
        assert "skipped damaged checkpoint" in err and "last.pt" in err, err
        assert "resuming from the newest intact checkpoint instead" in err and "step-0000004.pt (step 4)" in err, err
        assert int(load_checkpoint(last)["step"]) == 6
        row.cases += 1
        for p in (run / "checkpoints").glob("*.pt"):
            p.write_bytes(b"PK\x03\x04 broken")
        assert main(_argv(data, run, "--resume", "auto", steps=8)) == 2
        assert "no checkpoint of this run loads" in capsys.readouterr().err
        row.cases += 1


def test_resume_keeps_the_runs_settings_and_reports_changes(data, tmp_path, rec, capsys):
    with rec.case(CAT_RUN, "`--resume auto` without --steps keeps the run's own step target (config.yaml unchanged); "
                  "changed settings are listed") as row:
        run = tmp_path / "run"
        assert main(_argv(data, run, steps=4)) == 0
        capsys.readouterr()
        assert main(_argv(data, run, "--resume", "auto")) == 0
        assert yaml.safe_load((run / "config.yaml").read_text())["train"]["steps"] == 4
        assert int(load_checkpoint(run / "checkpoints" / "last.pt")["step"]) == 4
        err = capsys.readouterr().err
        assert "already at step 4, at or past train.steps = 4: nothing to train" in err and "settings changed" not in err, err
        row.cases += 1
        assert main(_argv(data, run, "--resume", "auto", "--set=train.lr_g=5e-5", steps=6)) == 0
        err = capsys.readouterr().err
        assert "settings changed since the checkpoint" in err and "train.steps 4 -> 6" in err and "train.lr_g" in err, err
        assert yaml.safe_load((run / "config.yaml").read_text())["train"]["steps"] == 6
        row.cases += 1


def test_resume_on_other_data(data, tmp_path, rec, capsys):
    with rec.case(CAT_RUN, "resume with another --data file: same shape -> refused unless --allow-new-data (then said); "
                  "another shape -> exit 2 (no RuntimeError traceback)") as row:
        run = tmp_path / "run"
        assert main(_argv(data, run, steps=2)) == 0
        other = _write(tmp_path / "other.h5", n=150, seed=1)
        assert main(_argv(other, run, "--resume", "auto", steps=4)) == 2
        err = capsys.readouterr().err
        assert "--allow-new-data" in err and "other.h5" in err, err
        row.cases += 1
        assert main(_argv(other, run, "--resume", "auto", "--allow-new-data", steps=4)) == 0
        assert "continuing on new data" in capsys.readouterr().err
        assert int(load_checkpoint(run / "checkpoints" / "last.pt")["step"]) == 4
        row.cases += 1
        wide = _write(tmp_path / "wide.h5", width=9)
        for extra in ([], ["--allow-new-data"]):
            assert main(_argv(wide, run, "--resume", "auto", *extra, steps=6)) == 2
            err = capsys.readouterr().err
            assert "physgan: error:" in err and "another shape" in err and "Traceback" not in err, err
            row.cases += 1
        moved = tmp_path / "moved.h5"
        moved.write_bytes(other.read_bytes())
        assert main(_argv(moved, run, "--resume", "auto", steps=6)) == 0
        assert "training data found at a new path" in capsys.readouterr().err
        row.cases += 1
