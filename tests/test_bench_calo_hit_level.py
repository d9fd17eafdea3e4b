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


def test_layer_energies_drop_the_cells_under_the_voxel_threshold_and_energy_thirds_split_the_log_energy():
    """``bench/calo_layer_energy.py``: a layer's energy is that of its cells at or above the voxel threshold (as the
    metrics read it), and the showers fall into thirds of the log incident energy."""
    from bench.calo_hit_level import energy_thirds
    from bench.calo_layer_energy import _given_hit, layer_energies

    geom = calochallenge_geometry("ds2")
    lo = geom.layers[0].n_cells
    thr = float(geom.voxel_threshold_mev)
    x = np.zeros((3, geom.n_cells), np.float32)
    x[0, 0], x[0, 1] = 2.0, 0.5 * thr  # layer 0: one cell over the threshold, one under
    x[1, lo] = 0.9 * thr  # layer 1: only a cell under the threshold, so empty
    x[2, lo + 3] = 4.0
    c = np.array([[1000.0], [10000.0], [100000.0]])
    e = layer_energies(x, c, geom)
    assert e.shape == (3, len(geom.layers))
    np.testing.assert_allclose(e[:, 0], [2.0, 0.0, 0.0], rtol=1e-6)
    np.testing.assert_allclose(e[:, 1], [0.0, 0.0, 4.0], rtol=1e-6)
    assert energy_thirds(np.exp(np.linspace(0.0, 9.0, 9))[:, None]).tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert _given_hit(np.array([0.0, 10.0, 100.0, 1000.0])).startswith("1.20 / 2.00 / 2.80, sd 0.82")
    assert _given_hit(np.array([0.0, 10.0])) == "-"
