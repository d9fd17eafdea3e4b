"""Generation (Python and CLI), condition handling, and the CLI's error behaviour."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from physgan.cli import main
from physgan.config import resolve_config
from physgan.errors import ConfigError
from physgan.io.hdf5 import open_source, read_all, write_samples
from physgan.run import load_run, parse_condition
from physgan.sim.toy import sample_modes
from physgan.train.loop import train

TINY = ["model.width=16", "model.depth=2", "model.z_dim=8", "model.embed_dim=8", "train.batch_size=16", "train.n_critic=1"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    d = tmp_path_factory.mktemp("gen")
    x, c = sample_modes(300, "ring", radius_range=(1.5, 2.5), seed=0)
    write_samples(d / "ring.h5", x, c, ["radius"], "array", condition_units=["m"], attrs={"domain": "array"})
    cfg = resolve_config("array", overrides=[f"data.path={d / 'ring.h5'}", *TINY, "train.steps=3", "train.val_every=3"])
    train(cfg, d / "run", progress=False)
    return d


def test_sample_shapes_reproducible_and_conditions(trained):
    run = load_run(trained / "run")
    assert run.condition_names == ["radius"] and run.condition_units == ["m"]
    lo, hi = run.condition_range["radius"]
    assert 1.5 <= lo < hi <= 2.5
    a = run.sample(50, {"radius": 2.0}, seed=1)
    b = run.sample(50, {"radius": 2.0}, seed=1)
    c = run.sample(50, {"radius": 2.0}, seed=2)
    assert a.shape == (50, 2) and np.array_equal(a, b) and not np.array_equal(a, c)
    x, cond = run.sample(40, {"radius": (1.8, 2.2)}, seed=0, return_conditions=True)
    assert cond.shape == (40, 1) and cond.min() >= 1.8 and cond.max() <= 2.2
    _, cond = run.sample(40, seed=0, return_conditions=True)  # unspecified: the training range
    assert lo <= cond.min() and cond.max() <= hi
    t = run.sample(8, {"radius": 2.0}, as_tensor=True)
    assert t.shape == (8, 2)


def test_out_of_range_conditions_refused_unless_allowed(trained):
    run = load_run(trained / "run")
    with pytest.raises(ConfigError, match="outside the training range"):
        run.sample(5, {"radius": 10.0})
    with pytest.warns(UserWarning, match="extrapolating"):
        run.sample(5, {"radius": 10.0}, allow_extrapolation=True)
    with pytest.raises(ConfigError, match="unknown condition"):
        run.sample(5, {"energy": 1.0})


def test_parse_condition():
    assert parse_condition("energy=50") == ("energy", 50.0)
    assert parse_condition("energy=10:100") == ("energy", (10.0, 100.0))
    assert parse_condition("energy=1:100:log") == ("energy", (1.0, 100.0, "log"))
    with pytest.raises(ConfigError):
        parse_condition("energy=abc")


def test_generate_cli_writes_layout_and_refuses_overwrite(trained, capsys):
    out = trained / "fake.h5"
    assert (
        main(
            [
                "generate",
                str(trained / "run"),
                "--n",
                "1000",
                "--cond",
                "radius=1.6:2.4",
                "--out",
                str(out),
                "--batch-size",
                "300",
                "--quiet",
            ]
        )
        == 0
    )
    src = open_source(out)
    assert src.layout.name == "array" and src.header.n == 1000 and src.header.condition_names == ["radius"]
    x, c = read_all(src)
    assert np.isfinite(x).all() and 1.6 <= c.min() and c.max() <= 2.4
    with h5py.File(out) as f:
        assert f.attrs["complete"] and f.attrs["domain"] == "array" and "run" in f.attrs
    before = out.read_bytes()
    assert main(["generate", str(trained / "run"), "--n", "10", "--out", str(out), "--quiet"]) == 2
    assert "exists already" in capsys.readouterr().err and out.read_bytes() == before
    assert (
        main(["generate", str(trained / "run"), "--n", "10", "--cond", "radius=9", "--out", str(trained / "x.h5"), "--quiet"])
        == 2
    )
    assert not (trained / "x.h5").exists()


def test_cli_errors_name_the_file(tmp_path, capsys):
    bad = tmp_path / "notes.h5"
    bad.write_text("not hdf5")
    assert main(["data", "info", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "physgan: error:" in err and "notes.h5" in err and "not an HDF5 file" in err
    assert main(["train", "array", "--data", str(bad), "--run", str(tmp_path / "r")]) == 2
    assert main(["train", "array", "--data", str(bad), "--run", str(tmp_path / "r"), "--set", "train.n_critic=0"]) == 2
    assert "n_critic" in capsys.readouterr().err
    assert main(["generate", str(tmp_path / "nope"), "--n", "3", "--out", str(tmp_path / "o.h5")]) == 2


def test_data_make_and_info_exit_codes(tmp_path, capsys):
    assert main(["data", "make", "array", "--toy", "grid", "--n", "100", "--out", str(tmp_path / "g.h5")]) == 0
    assert main(["data", "info", str(tmp_path / "g.h5")]) == 0
    assert "spacing" in capsys.readouterr().out
    x = np.ones((10, 2), np.float32)
    x[3] = np.nan
    write_samples(tmp_path / "nan.h5", x, np.ones((10, 1)), ["e"], "array")
    assert main(["data", "info", str(tmp_path / "nan.h5")]) == 1
    assert "first at index 3" in capsys.readouterr().out


@pytest.mark.slow
def test_cli_end_to_end_train_resume_generate_read_back(tmp_path, capsys):
    """The user's journey from the command line on tiny data."""
    data, run, fake = tmp_path / "ring.h5", tmp_path / "run", tmp_path / "fake.h5"
    assert main(["data", "make", "array", "--toy", "ring", "--n", "300", "--out", str(data)]) == 0
    sets = [f"--set={o}" for o in TINY]
    assert main(["train", "array", "--data", str(data), "--run", str(run), "--steps", "2", "--quiet", *sets]) == 0
    assert main(["train", "array", "--data", str(data), "--run", str(run), "--steps", "4", "--quiet", "--resume", "auto", *sets]) == 0
    assert "trained 4 steps" in capsys.readouterr().out
    assert main(["generate", str(run), "--n", "500", "--cond", "radius=2.0", "--out", str(fake), "--quiet"]) == 0
    assert main(["data", "info", str(fake)]) == 0
    out = capsys.readouterr().out
    assert "500 x (2,)" in out and "radius" in out
    x, c = read_all(fake)
    assert x.shape == (500, 2) and np.allclose(c, 2.0)
