"""``generate --conditions-from``: generation at a file's conditions (same order and count), the input's dtypes kept,
ranges that overshoot the training range by a hair clipped instead of refused."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from physgan.cli import main
from physgan.config import resolve_config
from physgan.errors import ConfigError
from physgan.io.hdf5 import open_source, write_samples
from physgan.run import conditions_from_file, load_run
from physgan.sim.toy import sample_modes
from physgan.train.loop import train

TINY = ["model.width=16", "model.depth=2", "model.z_dim=8", "model.embed_dim=8", "train.batch_size=16", "train.n_critic=1"]


def _write_float64(path, x, c):
    """An array-layout file whose samples and condition are float64 (as many real files are)."""
    write_samples(path, x, c, ["radius"], "array", condition_units=["m"], attrs={"domain": "array"}, dtype="float64")
    with h5py.File(path, "r+") as f:
        key = [k for k in f["conditions"]][0]
        del f["conditions"][key]
        f["conditions"].create_dataset(key, data=np.asarray(c, np.float64).reshape(-1))
        f["conditions"][key].attrs["units"] = "m"


@pytest.fixture(scope="module")
def trained64(tmp_path_factory):
    d = tmp_path_factory.mktemp("gen64")
    x, c = sample_modes(300, "ring", radius_range=(1.5, 2.5), seed=0)
    _write_float64(d / "ring.h5", x, c)
    cfg = resolve_config("array", overrides=[f"data.path={d / 'ring.h5'}", *TINY, "train.steps=3", "train.val_every=3"])
    train(cfg, d / "run", progress=False)
    return d


def test_generate_at_the_conditions_of_a_file_keeps_dtypes(trained64, capsys):
    d = trained64
    lo, hi = load_run(d / "run").condition_range["radius"]
    rng = np.random.default_rng(3)
    c_eval = np.concatenate([[hi, lo], rng.uniform(lo, hi, 35)])[:, None]  # unsorted, edges included
    x_eval, _ = sample_modes(37, "ring", radius_range=(1.5, 2.5), seed=9)
    _write_float64(d / "eval.h5", x_eval, c_eval)
    out = d / "fake.h5"
    assert main(["generate", str(d / "run"), "--conditions-from", str(d / "eval.h5"), "--out", str(out), "--quiet"]) == 0
    src = open_source(out)
    assert len(src) == 37 and src.header.condition_dtype == "float64" and src.header.dtype == "float64"
    got = conditions_from_file(out, ["radius"])
    np.testing.assert_allclose(got, c_eval, rtol=1e-7)  # same order, same values (float32 precision of the reader)
    with h5py.File(out, "r") as f:
        assert f["samples"].dtype == np.float64
    # --n must agree, --cond excludes it, a file without the condition is named
    assert main(["generate", str(d / "run"), "--conditions-from", str(d / "eval.h5"), "--n", "5", "--out", str(d / "a.h5")]) == 2
    assert "differs from the 37 samples" in capsys.readouterr().err
    args = ["generate", str(d / "run"), "--conditions-from", str(d / "eval.h5"), "--cond", "radius=2", "--out", str(d / "b.h5")]
    assert main(args) == 2
    write_samples(d / "other.h5", x_eval, c_eval, ["temperature"], "array")
    assert main(["generate", str(d / "run"), "--conditions-from", str(d / "other.h5"), "--out", str(d / "c.h5")]) == 2
    err = capsys.readouterr().err
    assert "other.h5" in err and "radius" in err
    assert not (d / "a.h5").exists() and not (d / "b.h5").exists() and not (d / "c.h5").exists()


def test_a_range_a_hair_wider_than_training_is_clipped(trained64):
    run = load_run(trained64 / "run")
    lo, hi = run.condition_range["radius"]
    w = hi - lo
    c = run.conditions(500, {"radius": (lo - 0.004 * w, hi + 0.004 * w)}, seed=0)
    assert c.min() >= np.float32(lo) - 1e-6 and c.max() <= np.float32(hi) + 1e-6
    with pytest.raises(ConfigError, match="outside the training range"):
        run.conditions(10, {"radius": (lo - 0.2 * w, hi)}, seed=0)
    with pytest.warns(UserWarning, match="just outside the training range"):
        run.conditions(3, {"radius": np.array([lo - 0.004 * w, lo, hi])}, seed=0)
