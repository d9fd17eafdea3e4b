"""``bench/calo_hit_level.py``: which showers keep a layer's energy in its innermost ring, and their hit counts."""

from __future__ import annotations

import numpy as np

from bench.calo_hit_level import ring_only_and_hits
from physgan.domains.calo.geometry import calochallenge_geometry


def test_innermost_ring_showers_and_hit_counts_on_dataset_2_cells():
    geom = calochallenge_geometry("ds2")  # 16 angular x 9 radial bins per layer, flat index alpha * 9 + ring
    n_layer = geom.layers[1].n_cells
    lo = geom.layers[0].n_cells
    x = np.zeros((4, geom.n_cells), np.float32)
    x[0, lo + 0 * 9 + 0] = 3.0  # layer 1: two innermost-ring cells only
    x[0, lo + 5 * 9 + 0] = 1.0
    x[1, lo + 0 * 9 + 0] = 3.0  # the same and one cell of the second ring
    x[1, lo + 2 * 9 + 1] = 0.5
    x[2, 0] = 1.0  # layer 1 empty, layer 0 hit
    x[3, lo : lo + n_layer] = 0.1  # every cell of layer 1
    only, hits = ring_only_and_hits(x, geom, 1)
    assert only.tolist() == [True, False, False, False]
    assert hits.tolist() == [2, 2, 0, n_layer]
    only0, hits0 = ring_only_and_hits(x, geom, 0)
    assert only0.tolist() == [False, False, True, False] and hits0.tolist() == [0, 0, 1, 0]
