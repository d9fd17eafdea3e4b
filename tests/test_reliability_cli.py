"""The last raw tracebacks of the CLI and the Python API: each is one error line (exit 2) or a sensible result.

``--seed -1`` (train, generate), ``generate --batch-size 0``, ``evaluate --report`` into an
unwritable place and ``--fail-on`` with an unknown metric (both refused before any evaluation
work), ``data info F | head`` (the reader goes away), ``run.sample(n=0)``. The rows of
``docs/reliability.md`` are written by this module (see ``reliability_table``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from reliability_table import Recorder

import physgan
from physgan import evaluation
from physgan.cli import EXIT_BROKEN_PIPE, main
from physgan.errors import ConfigError
from physgan.io.hdf5 import write_samples

CAT_CLI = "bad input: CLI arguments"
SMALL = ["--set=model.width=8", "--set=model.depth=1", "--set=model.z_dim=4", "--set=model.embed_dim=4",
         "--set=train.batch_size=8", "--set=train.n_critic=1", "--set=train.val_every=0", "--quiet"]


@pytest.fixture(scope="module")
def rec():
    recorder = Recorder("test_reliability_cli")
    yield recorder
    recorder.write()


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("cli")
    rng = np.random.default_rng(0)
    write_samples(d / "real.h5", rng.normal(size=(300, 6)).astype(np.float32), rng.uniform(1, 2, (300, 1)), ["energy"], "array")
    assert main(["train", "array", "--data", str(d / "real.h5"), "--run", str(d / "run"), "--steps", "2", *SMALL]) == 0
    assert main(["generate", str(d / "run"), "--n", "300", "--out", str(d / "fake.h5"), "--quiet"]) == 0
    return d


def _one_error_line(capsys, needle: str) -> str:
    err = capsys.readouterr().err
    assert err.startswith("physgan: error:") and needle in err and "Traceback" not in err, err
    return err


def test_negative_seed_and_zero_batch(trained, rec, capsys, tmp_path):
    with rec.case(CAT_CLI, "`--seed -1` (train and generate), `generate --batch-size 0`, `--latent-scale 0` -> exit 2, one line") as row:
        run = tmp_path / "r"
        assert main(["train", "array", "--data", str(trained / "real.h5"), "--run", str(run), "--steps", "1", "--seed", "-1", *SMALL]) == 2
        _one_error_line(capsys, "train.seed")
        assert not run.exists()
        row.cases += 1
        out = tmp_path / "g.h5"
        for args, needle in ((["--seed", "-1"], "seed"), (["--batch-size", "0"], "batch size"), (["--latent-scale", "0"], "latent-scale")):
            assert main(["generate", str(trained / "run"), "--n", "4", "--out", str(out), *args]) == 2
            _one_error_line(capsys, needle)
            assert not out.exists()
            row.cases += 1


def _evaluate_must_not_run(*args, **kwargs):
    raise AssertionError("the evaluation ran before the arguments were checked")


def test_evaluate_checks_report_location_and_fail_on_names_first(trained, rec, capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(evaluation.command, "evaluate", _evaluate_must_not_run)
    base = ["evaluate", "--real", str(trained / "real.h5"), "--fake", str(trained / "fake.h5")]
    with rec.case(CAT_CLI, "`evaluate --report` into an unwritable place (a file in the path, read-only /sys) -> exit 2 "
                  "before any evaluation work") as row:
        blocker = tmp_path / "afile"
        blocker.write_text("x")
        places = [blocker / "report"] + ([Path("/sys/physgan-report")] if Path("/sys/kernel").is_dir() else [])
        for place in places:
            assert main([*base, "--report", str(place)]) == 2
            _one_error_line(capsys, "cannot write output there")
            row.cases += 1
    with rec.case(CAT_CLI, "`evaluate --fail-on 'auc_hi>0.9'` (unknown metric) -> exit 2 with a suggestion, before any "
                  "evaluation work") as row:
        assert main([*base, "--fail-on", "auc_hi>0.9"]) == 2
        _one_error_line(capsys, "did you mean 'auc_high'")
        row.cases += 1
        with pytest.raises(ConfigError, match="unknown metric 'fdp'"):
            evaluation.check_threshold_names([("fdp", ">", 1.0)])
        assert evaluation.check_threshold_names([("auc_low", ">", 0.9), ("physics/response_err", "<", 1.0)])
        row.cases += 1


def test_reader_going_away_is_not_a_traceback(trained, rec):
    with rec.case(CAT_CLI, "`physgan data info F | head` (the reader closes the pipe first) -> no traceback, exit 141") as row:
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        proc = subprocess.Popen([sys.executable, "-m", "physgan", "data", "info", str(trained / "real.h5")],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        proc.stdout.close()  # before the command writes anything: every write hits a closed pipe
        err = proc.stderr.read().decode()
        assert proc.wait(timeout=120) == EXIT_BROKEN_PIPE and "Traceback" not in err and "Exception ignored" not in err, err
        row.cases += 1


def test_sample_zero_and_negative(trained, rec):
    with rec.case(CAT_CLI, "`run.sample(n=0)` -> an empty (0, *shape) array (numpy and torch); n=-1, seed=-1, "
                  "batch_size=0 -> ConfigError") as row:
        run = physgan.load_run(trained / "run")
        x = run.sample(n=0)
        assert isinstance(x, np.ndarray) and x.shape == (0, 6)
        t = run.sample(n=0, as_tensor=True)
        assert isinstance(t, torch.Tensor) and tuple(t.shape) == (0, 6)
        x, c = run.sample(n=0, return_conditions=True)
        assert x.shape == (0, 6) and c.shape == (0, 1)
        row.cases += 3
        for kw in ({"n": -1}, {"n": 4, "seed": -1}, {"n": 4, "batch_size": 0}):
            with pytest.raises(ConfigError):
                run.sample(**kw)
            row.cases += 1
