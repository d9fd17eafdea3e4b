"""Sharded generation under torchrun: per-rank shards, a virtual dataset or a merged file, and failure handling."""

from __future__ import annotations

import os
import subprocess
import sys

import h5py
import numpy as np
import pytest

from physgan.config import resolve_config
from physgan.errors import DataError
from physgan.generate_sharded import merge_shards, rank_seed, shard_counts, shard_path, write_virtual
from physgan.io.hdf5 import open_source, read_all, write_samples
from physgan.sim.toy import sample_modes
from physgan.train.loop import train

TINY = ["model.width=16", "model.depth=2", "model.z_dim=8", "model.embed_dim=8", "train.batch_size=16", "train.n_critic=1"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    d = tmp_path_factory.mktemp("shard")
    x, c = sample_modes(300, "ring", radius_range=(1.5, 2.5), seed=0)
    write_samples(d / "ring.h5", x, c, ["radius"], "array", condition_units=["m"], attrs={"domain": "array"})
    cfg = resolve_config("array", overrides=[f"data.path={d / 'ring.h5'}", *TINY, "train.steps=3", "train.val_every=3"])
    train(cfg, d / "run", progress=False)
    return d


def torchrun(*args: str, nproc: int = 2) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", "-m", "physgan", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240)


def test_shard_helpers():
    assert shard_path("/a/fake.h5", 3, 8).name == "fake.rank-00003-of-00008.h5"
    assert shard_path("out", 0, 2).name == "out.rank-00000-of-00002.h5"
    assert shard_counts(1001, 2).tolist() == [501, 500] and shard_counts(3, 4).tolist() == [1, 1, 1, 0]
    seeds = {rank_seed(0, r) for r in range(64)} | {rank_seed(1, r) for r in range(64)}
    assert len(seeds) == 128 and all(0 <= s < 2**63 for s in seeds) and rank_seed(5, 2) == rank_seed(5, 2)


def test_virtual_file_over_hand_made_shards_and_missing_shard(tmp_path):
    """Known answer: the virtual dataset reads back exactly the shards' rows in order; a lost shard is an error."""
    parts = [np.arange(k * 3, dtype=np.float32).reshape(k, 3) + 100 * i for i, k in enumerate([4, 0, 5])]
    shards = []
    for i, x in enumerate(parts):
        if len(x):
            p = shard_path(tmp_path / "v.h5", i, 3)
            write_samples(p, x, np.full((len(x), 1), i, np.float32), ["e"], "array", attrs={"domain": "array"})
            shards.append(p)
    out = write_virtual(tmp_path / "v.h5", shards, {"seed": 7})
    x, c = read_all(out)
    assert np.array_equal(x, np.concatenate(parts)) and c[:, 0].tolist() == [0] * 4 + [2] * 5
    src = open_source(out)
    assert src.layout.name == "array" and src.header.n == 9 and src.header.condition_names == ["e"]
    with h5py.File(out) as f:
        assert f["samples"].is_virtual and f.attrs["seed"] == 7 and f.attrs["complete"]
    shards[1].unlink()
    with pytest.raises(DataError, match="non-finite"):
        read_all(out)


@pytest.mark.slow
def test_torchrun_generate_virtual_then_failure_leaves_nothing(trained):
    run, d = trained / "run", trained
    out = d / "fake.h5"
    r = torchrun(
        "generate", str(run), "--n-samples", "1001", "--cond", "radius=1.6:2.4", "--out", str(out), "--batch-size", "200", "--quiet"
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert "wrote 1001 samples from 2 ranks" in r.stdout
    shards = [shard_path(out, i, 2) for i in range(2)]
    assert all(s.is_file() for s in shards)
    x, c = read_all(out)  # the virtual file reads through the normal layout reader
    assert x.shape == (1001, 2) and c.shape == (1001, 1) and np.isfinite(x).all()
    assert 1.6 <= c.min() and c.max() <= 2.4
    assert len(np.unique(x, axis=0)) == 1001  # no sample twice: ranks drew distinct latents
    assert len(np.unique(c[:501])) == 501 and not np.isin(c[:501], c[501:]).any()  # distinct condition streams
    with h5py.File(out) as f:
        assert f["samples"].is_virtual and f.attrs["n_ranks"] == 2 and f.attrs["complete"]
    x0, _ = read_all(shards[0])
    assert np.array_equal(x[:501], x0)

    merged = merge_shards(d / "merged.h5", shards, {"seed": 0})  # what --merge does on rank 0, block by block
    xm, cm = read_all(merged)
    assert np.array_equal(xm, x) and np.array_equal(cm, c)
    with h5py.File(merged) as f:
        assert not f["samples"].is_virtual and f["samples"].chunks is not None

    # rank 1 fails (a stale shard of its name exists), rank 0 succeeds: no output, rank 0's shard removed (--merge too)
    bad = d / "bad.h5"
    stale = shard_path(bad, 1, 2)
    stale.write_bytes(b"stale")
    r = torchrun("generate", str(run), "--n-samples", "100", "--out", str(bad), "--quiet", "--merge")
    assert r.returncode != 0
    assert "exists already" in r.stderr
    assert not bad.exists() and not shard_path(bad, 0, 2).exists() and stale.read_bytes() == b"stale"
    assert not [p for p in d.iterdir() if ".tmp-" in p.name]
