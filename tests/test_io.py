"""HDF5 layouts, validation on open, atomic writing, streaming and data info."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch

from physgan.errors import DataError, OutputExistsError, PhysganError
from physgan.io.atomic import atomic_output
from physgan.io.hdf5 import SampleWriter, open_source, read_all, write_samples
from physgan.io.info import inspect_file
from physgan.io.layout import ArrayLayout, Header, get_layout
from physgan.io.loader import BlockStreamer, DeviceSampler, block_starts, split_indices


def _write(path, x, c, names=("energy",), **kw):
    return write_samples(path, x, c, list(names), "array", **kw)


def test_array_round_trip_and_header(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 4, 5)).astype(np.float32)
    c = rng.uniform(1, 2, size=(50, 2)).astype(np.float32)
    _write(tmp_path / "a.h5", x, c, ("energy", "angle"), condition_units=["GeV", "rad"], attrs={"domain": "array", "box": 3.0})
    src = open_source(tmp_path / "a.h5")
    h = src.header
    assert (h.n, h.sample_shape, h.condition_names, h.condition_units) == (50, (4, 5), ["energy", "angle"], ["GeV", "rad"])
    assert h.attrs["box"] == 3.0 and src.layout.name == "array"
    x2, c2 = read_all(src)
    np.testing.assert_array_equal(x2, x)
    np.testing.assert_array_equal(c2, c)
    # chunk-aligned blocks cover the file exactly once
    rows = [s for s, _, _ in src.blocks(block_rows=16)]
    assert rows == [0, 16, 32, 48]


def test_foreign_file_with_2d_condition_table_and_custom_keys(tmp_path):
    p = tmp_path / "foreign.h5"
    with h5py.File(p, "w") as f:
        f["images"] = np.ones((6, 3, 3))
        d = f.create_dataset("params", data=np.arange(12.0).reshape(6, 2))
        d.attrs["names"] = ["omega_m", "sigma8"]
    lay = ArrayLayout(samples_key="images", conditions_key="params")
    x, c = read_all(open_source(p, lay))
    assert x.shape == (6, 3, 3) and c.shape == (6, 2)
    assert open_source(p, lay).header.condition_names == ["omega_m", "sigma8"]
    np.testing.assert_array_equal(c[:, 1], np.arange(1.0, 12.0, 2))


def test_not_hdf5_empty_missing(tmp_path):
    (tmp_path / "t.h5").write_text("hello")
    with pytest.raises(DataError, match="not an HDF5 file"):
        open_source(tmp_path / "t.h5")
    (tmp_path / "e.h5").write_bytes(b"")
    with pytest.raises(DataError, match="empty"):
        open_source(tmp_path / "e.h5")
    with pytest.raises(DataError, match="does not exist"):
        open_source(tmp_path / "missing.h5")
    with h5py.File(tmp_path / "nothing.h5", "w") as f:
        f["other"] = np.zeros(3)
    with pytest.raises(DataError, match="unknown layout"):
        open_source(tmp_path / "nothing.h5")


def test_truncated_file(tmp_path):
    _write(tmp_path / "a.h5", np.ones((2000, 64), np.float32), np.ones((2000, 1), np.float32))
    data = (tmp_path / "a.h5").read_bytes()
    (tmp_path / "cut.h5").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError) as err:
        src = open_source(tmp_path / "cut.h5")
        read_all(src)
    assert "cut.h5" in str(err.value)


def test_mismatched_n_and_empty_samples(tmp_path):
    with h5py.File(tmp_path / "m.h5", "w") as f:
        f["samples"] = np.zeros((5, 2))
        f["conditions/energy"] = np.zeros(4)
    with pytest.raises(DataError, match=r"dataset '/conditions/energy'.*4 rows but 'samples' has 5"):
        open_source(tmp_path / "m.h5")
    with h5py.File(tmp_path / "z.h5", "w") as f:
        f["samples"] = np.zeros((0, 2))
    with pytest.raises(DataError, match="no samples"):
        open_source(tmp_path / "z.h5")
    with h5py.File(tmp_path / "s.h5", "w") as f:
        f["samples"] = np.array([b"a", b"b"])
    with pytest.raises(DataError, match="shape"):
        open_source(tmp_path / "s.h5")


def test_nan_and_negative_named_with_index(tmp_path):
    x = np.ones((30, 3), np.float32)
    x[17, 1] = np.nan
    _write(tmp_path / "n.h5", x, np.ones((30, 1)))
    with pytest.raises(DataError, match=r"dataset 'samples', index 17: non-finite"):
        read_all(tmp_path / "n.h5")
    x = np.ones((30, 3), np.float32)
    x[21, 0] = -5
    _write(tmp_path / "neg.h5", x, np.ones((30, 1)), non_negative=True)
    with pytest.raises(DataError, match="index 21: negative value"):
        read_all(tmp_path / "neg.h5")
    c = np.ones((30, 1))
    c[4] = np.inf
    _write(tmp_path / "c.h5", np.ones((30, 3)), c)
    with pytest.raises(DataError, match="'energy', index 4: non-finite condition"):
        read_all(tmp_path / "c.h5")


def test_info_lists_every_problem(tmp_path):
    x = np.ones((40, 3), np.float32)
    x[5, 0] = np.nan
    x[9, 0] = np.nan
    x[30, 2] = -1
    c = np.linspace(1, 2, 40)[:, None]
    _write(tmp_path / "bad.h5", x, c, non_negative=True)
    info = inspect_file(str(tmp_path / "bad.h5"))
    text = " | ".join(info.problems)
    assert "2 samples, first at index 5" in text and "1 samples, first at index 30" in text
    assert info.conditions[0]["min"] == pytest.approx(1.0) and info.conditions[0]["max"] == pytest.approx(2.0)


def test_writer_is_atomic_and_refuses_overwrite(tmp_path):
    out = tmp_path / "out.h5"
    _write(out, np.ones((4, 2)), np.ones((4, 1)))
    before = out.read_bytes()
    with pytest.raises(OutputExistsError):
        _write(out, np.zeros((4, 2)), np.ones((4, 1)))
    header = Header(n=10, sample_shape=(2,), condition_names=["energy"], condition_units=[""])
    with pytest.raises(RuntimeError, match="boom"):
        with SampleWriter(out, "array", header, overwrite=True) as w:
            w.append(np.zeros((5, 2)), np.ones((5, 1)))
            raise RuntimeError("boom")
    assert out.read_bytes() == before  # the old file is untouched
    assert [p.name for p in tmp_path.iterdir()] == ["out.h5"]  # no temporary left
    with pytest.raises(PhysganError, match="only 5 of 10"):
        with SampleWriter(out, "array", header, overwrite=True) as w:
            w.append(np.zeros((5, 2)), np.ones((5, 1)))
    assert out.read_bytes() == before


def test_atomic_output_failure_keeps_old_file(tmp_path):
    target = tmp_path / "f.txt"
    target.write_text("old")
    with pytest.raises(ValueError):
        with atomic_output(target, overwrite=True) as tmp:
            tmp.write_text("half")
            raise ValueError
    assert target.read_text() == "old" and len(list(tmp_path.iterdir())) == 1


def test_get_layout_unknown():
    with pytest.raises(DataError, match="unknown layout 'zzz'"):
        get_layout("zzz")


def test_split_and_device_sampler_resume():
    tr, va = split_indices(100, 0.1, seed=1)
    assert len(va) == 10 and len(np.intersect1d(tr, va)) == 0 and len(tr) + len(va) == 100
    x = torch.arange(20.0).unsqueeze(1)
    s1 = DeviceSampler(x, x, batch_size=6, seed=0)
    seen = [s1.next()[0] for _ in range(5)]
    state = s1.state_dict()
    after = [s1.next()[0] for _ in range(4)]
    s2 = DeviceSampler(x, x, batch_size=6, seed=0)
    s2.load_state_dict(state)
    for a, b in zip(after, [s2.next()[0] for _ in range(4)]):
        assert torch.equal(a, b)
    first_epoch = torch.cat(seen[:3]).flatten()
    assert first_epoch.unique().numel() == 18  # no repeats inside an epoch


def test_next_conditions_draws_the_batch_next_would_and_advances_the_same():
    """The generator step draws conditions alone: the same rows as a whole batch, the same position afterwards."""
    x, c = torch.arange(20.0).unsqueeze(1), 100 + torch.arange(20.0).unsqueeze(1)
    whole, alone = DeviceSampler(x, c, batch_size=6, seed=0), DeviceSampler(x, c, batch_size=6, seed=0)
    for i in range(7):  # across epoch boundaries
        xb, cb = whole.next()
        cond = alone.next_conditions() if i % 2 else alone.next()[1]
        assert torch.equal(cb, cond) and torch.equal(cb - 100, xb)
        assert alone.state_dict()["cursor"] == whole.state_dict()["cursor"]
    assert alone.state_dict()["epoch"] == whole.state_dict()["epoch"] == 2


def test_device_sampler_ranks_are_disjoint():
    x = torch.arange(40.0).unsqueeze(1)
    a = DeviceSampler(x, x, 5, seed=3, rank=0, world_size=2)
    b = DeviceSampler(x, x, 5, seed=3, rank=1, world_size=2)
    ia = torch.cat([a.next()[0] for _ in range(4)]).flatten()
    ib = torch.cat([b.next()[0] for _ in range(4)]).flatten()
    assert len(np.intersect1d(ia.numpy(), ib.numpy())) == 0


def test_block_streamer_covers_each_row_once_per_epoch(tmp_path):
    n = 96
    x = np.arange(n, dtype=np.float32)[:, None].repeat(2, 1)
    _write(tmp_path / "s.h5", x, np.ones((n, 1)))
    src = open_source(tmp_path / "s.h5")
    starts = block_starts(n, 16)

    def prepare(a, c):
        return torch.as_tensor(a), torch.as_tensor(c)

    st = BlockStreamer(src, starts, 16, batch_size=8, seed=0, prepare=prepare, shuffle_blocks=2)
    rows = torch.cat([st.next()[0][:, 0] for _ in range(n // 8)])
    assert sorted(rows.tolist()) == list(range(n))
    # a batch mixes rows of the two blocks in its shuffle buffer (row value // 16 = block)
    blocks_in_batch = {int(v) // 16 for v in st.next()[0][:, 0]}
    assert len(blocks_in_batch) == 2


def test_block_streamer_prefetch_gives_the_same_batches_and_resumes(tmp_path):
    """Reading the next buffer in the background changes nothing: same batches over epochs, same after resume."""
    n = 160
    x = np.arange(n, dtype=np.float32)[:, None].repeat(2, 1)
    _write(tmp_path / "s.h5", x, np.ones((n, 1)))
    starts = block_starts(n, 16)

    def prepare(a, c):
        return torch.as_tensor(a), torch.as_tensor(c)

    def stream(prefetch, n_batches, state=None):
        st = BlockStreamer(open_source(tmp_path / "s.h5"), starts, 16, batch_size=8, seed=3, prepare=prepare,
                           shuffle_blocks=2, prefetch=prefetch)
        if state is not None:
            st.load_state_dict(state)
        out = [st.next()[0][:, 0].clone() for _ in range(n_batches)]
        saved = st.state_dict()
        st.close()
        return torch.cat(out), saved

    plain, _ = stream(False, 3 * n // 8)  # three epochs
    ahead, _ = stream(True, 3 * n // 8)
    assert torch.equal(plain, ahead)
    for e in range(3):  # each epoch still covers every row once
        assert sorted(ahead[e * n : (e + 1) * n].tolist()) == list(range(n))
    # resume mid-epoch: both modes restart the interrupted shuffle buffer identically
    _, state = stream(True, 9)
    resumed_a, _ = stream(True, 10, state)
    resumed_b, _ = stream(False, 10, state)
    assert torch.equal(resumed_a, resumed_b)
