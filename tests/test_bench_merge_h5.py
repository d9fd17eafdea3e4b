"""``bench.merge_h5``: parts of one layout concatenated dataset by dataset, attributes kept, mismatches refused."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from bench.merge_h5 import merge_h5


def _part(path, seed: int, names=("energy", "layer_0")):
    rng = np.random.default_rng(seed)
    with h5py.File(path, "w") as f:
        f.attrs["physgan_layout"] = "calogan"
        f.attrs["seed"] = seed
        for name in names:
            d = f.create_dataset(name, data=rng.normal(size=(5, 3)).astype(np.float32))
            d.attrs["units"] = "MeV"
    return path


def test_merge_h5_concatenates_every_dataset(tmp_path):
    parts = [_part(tmp_path / f"p{i}.h5", i) for i in range(3)]
    out = merge_h5(tmp_path / "m.h5", parts)
    with h5py.File(out, "r") as f:
        assert f.attrs["physgan_layout"] == "calogan" and f.attrs["seed"] == 0
        for name in ("energy", "layer_0"):
            want = np.concatenate([h5py.File(p, "r")[name][...] for p in parts])
            np.testing.assert_array_equal(f[name][...], want)
            assert f[name].attrs["units"] == "MeV"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.h5", "p0.h5", "p1.h5", "p2.h5"]


def test_merge_h5_refuses_parts_of_another_layout(tmp_path):
    a = _part(tmp_path / "a.h5", 0)
    b = _part(tmp_path / "b.h5", 1, names=("energy",))
    with pytest.raises(SystemExit, match="b.h5 holds datasets"):
        merge_h5(tmp_path / "m.h5", [a, b])
    assert not (tmp_path / "m.h5").exists() and len(list(tmp_path.iterdir())) == 2
