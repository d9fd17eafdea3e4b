"""One feature-matrix mechanism: the domain's column order, for training diagnostics and evaluation alike."""

from __future__ import annotations

import numpy as np
import pytest

from physgan.domains.base import feature_matrix
from physgan.errors import ConfigError
from physgan.train.diagnostics import feature_rows


def _features(x, c, attrs):
    return {"zeta": x.sum(1), "alpha": x.max(1), "mid": c[:, 0] * attrs.get("k", 1.0)}


def test_columns_keep_the_domains_order_then_the_extras():
    x = np.arange(12.0).reshape(4, 3)
    c = np.ones((4, 1))
    names, m = feature_matrix(_features(x, c, {}), {"log10_e": np.log10(c[:, 0] * 10)})
    assert names == ["zeta", "alpha", "mid", "log10_e"]
    assert m.dtype == np.float64 and m.shape == (4, 4)
    np.testing.assert_array_equal(m[:, 0], x.sum(1))
    np.testing.assert_array_equal(m[:, 1], x.max(1))
    np.testing.assert_array_equal(m[:, 3], 1.0)


def test_training_diagnostics_use_the_same_columns():
    x = np.random.default_rng(0).normal(size=(5, 3))
    c = np.random.default_rng(1).uniform(1, 2, size=(5, 1))
    np.testing.assert_array_equal(feature_rows(x, c, _features, {"k": 2.0}), feature_matrix(_features(x, c, {"k": 2.0}))[1])
    np.testing.assert_array_equal(feature_rows(x, c), x)  # no domain features: the flattened samples


def test_a_column_of_the_wrong_length_is_an_error():
    with pytest.raises(ConfigError, match=r"\['b'\] do not hold one value per sample \(3 samples\)"):
        feature_matrix({"a": np.zeros(3), "b": np.zeros(4)})
