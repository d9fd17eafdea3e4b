"""Keyword API of ``data make`` / ``data import`` (physgan.datamake): no command-line parser in between."""

from __future__ import annotations

import numpy as np
import pytest

from physgan.datamake import import_data, make_data
from physgan.errors import ConfigError
from physgan.io.hdf5 import open_source, read_all


def test_make_data_takes_keywords_and_fills_the_declared_defaults(tmp_path):
    path = make_data("array", tmp_path / "ring.h5", toy="ring", n=50, seed=3)
    x, c = read_all(path)
    assert x.shape == (50, 2) and c.shape == (50, 1)
    again, _ = read_all(make_data("array", tmp_path / "ring.h5", toy="ring", n=50, seed=3, overwrite=True))
    np.testing.assert_array_equal(again, x)  # the seed reaches the simulator
    other, _ = read_all(make_data("array", tmp_path / "other.h5", toy="ring", n=50, seed=4))
    assert not np.array_equal(other, x)


def test_unknown_keyword_names_the_closest_option(tmp_path):
    with pytest.raises(ConfigError, match=r"physgan data make array has no option 'sed'; did you mean 'seed'\?"):
        make_data("array", tmp_path / "x.h5", sed=1)
    assert not (tmp_path / "x.h5").exists()
    with pytest.raises(ConfigError, match="has no importer"):
        import_data("array", tmp_path / "a.tif", tmp_path / "a.h5")


def test_import_data_micro_from_a_tiff(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    tif = tmp_path / "v.tif"
    tifffile.imwrite(tif, (np.random.default_rng(0).uniform(size=(16, 16, 16)) > 0.5).astype(np.uint8))
    out = import_data("micro", tif, tmp_path / "v.h5", crop=8, stride=8, voxel_size=2e-6)
    src = open_source(out)
    assert src.header.n == 8 and float(src.header.attrs["voxel_size_m"]) == pytest.approx(2e-6)
    src.close()
