"""Per-layer products of the calorimeter's constant matrices (``physgan.domains.calo.segments``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from physgan.domains.calo.make import resolve_geometry
from physgan.domains.calo.model import feature_groups
from physgan.domains.calo.segments import SegmentMatrix, column_sums, geometry_segments
from physgan.domains.calo.transform import group_member_matrix, lateral_moments


def _matrices(name: str) -> tuple[list[tuple[int, int]], dict[str, np.ndarray]]:
    geom = resolve_geometry(name)
    fg = feature_groups(geom)
    moments = lateral_moments(geom)[0]
    return geometry_segments(geom), {"member": group_member_matrix(fg, int(fg.max()) + 1),
                                     "m0": moments[0], "m1": moments[1], "m2": moments[2]}


@pytest.mark.parametrize("name", ["calogan", "calochallenge-ds2"])
def test_segment_product_equals_the_dense_one_with_its_gradients(name):
    segs, mats = _matrices(name)
    gen = torch.Generator().manual_seed(0)
    for key, m in mats.items():
        sm = SegmentMatrix(m, segs, dtype=torch.float64)
        dense = torch.as_tensor(m, dtype=torch.float64)
        u = torch.rand(5, m.shape[0], dtype=torch.float64, generator=gen, requires_grad=True)
        w = torch.randn(5, m.shape[1], dtype=torch.float64, generator=gen)
        out, ref = u @ sm, u @ dense
        assert out.shape == ref.shape
        torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
        # first and second derivatives, as the gradient penalty takes them
        g1, = torch.autograd.grad(((u @ sm) * w).square().sum(), u, create_graph=True)
        g2, = torch.autograd.grad(((u @ dense) * w).square().sum(), u, create_graph=True)
        torch.testing.assert_close(g1, g2, rtol=1e-10, atol=1e-12)
        h1, = torch.autograd.grad(g1.square().sum(), u)
        h2, = torch.autograd.grad(g2.square().sum(), u)
        torch.testing.assert_close(h1, h2, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(column_sums(sm), dense.sum(dim=0))
        # dataset 2's layers are equal: per layer; CaloGAN's three unequal layers keep the dense product
        assert sm.structured == (name == "calochallenge-ds2"), key


def test_unequal_segments_are_batched_and_unordered_columns_fall_back_to_dense():
    segs = [(0, 4), (4, 8), (8, 12), (12, 15)]
    rng = np.random.default_rng(1)
    m = np.zeros((15, 7))
    for k, (a, b) in enumerate(segs[:3]):  # two columns per equal segment, different weights each
        m[a:b, 2 * k : 2 * k + 2] = rng.normal(size=(b - a, 2))
    m[12:15, 6] = 1.0
    u = torch.as_tensor(rng.random((3, 15)))
    sm = SegmentMatrix(m, segs, min_saving=1.0, dtype=torch.float64)
    assert sm.structured and len(sm.runs) == 2  # the three equal segments, then the last one
    torch.testing.assert_close(u @ sm, u @ torch.as_tensor(m))
    swapped = m[:, [1, 0, 6, 2, 3, 4, 5]]  # a column of the last segment before others: not ordered by segment
    sm2 = SegmentMatrix(swapped, segs, min_saving=1.0, dtype=torch.float64)
    assert not sm2.structured
    torch.testing.assert_close(u @ sm2, u @ torch.as_tensor(swapped))
    spans = m.copy()
    spans[3:6, 0] = 1.0  # a column over two segments
    assert not SegmentMatrix(spans, segs, min_saving=1.0).structured


def test_segment_matrix_moves_with_to_and_keeps_checkpoints_unchanged():
    segs, mats = _matrices("calochallenge-ds2")
    sm = SegmentMatrix(mats["m1"], segs).to(dtype=torch.float64)
    assert all(b.dtype == torch.float64 for b in sm.buffers())
    assert sm.state_dict() == {}  # nothing persistent: old checkpoints load, new ones do not grow


def test_benchmark_goals_follow_the_geometry():
    from bench.calo_benchmark import goal

    assert goal("physics/sep/e_layer_3") == "< 0.005"
    assert goal("physics/sep/e_layer_3", "calochallenge-ds2") == "< 0.01"
    assert goal("physics/sep/width_r_44", "calochallenge-ds2") == "< 0.02"
    assert goal("physics/sep/sparsity_0", "calochallenge-ds2") == ""
    assert goal("auc_high", "calochallenge-ds2") == "< 0.9"
    assert goal("coverage") == "> 0.8" and goal("coverage", "calochallenge-ds2") == ""
    assert goal("physics/sep/e_ratio") == "< 0.02" and goal("fpd") == ""


def test_benchmark_times_generator_and_gflash_in_alternation():
    from bench.calo_benchmark import paired_gflash_ratio

    seen = []

    class _Run:  # a generator that returns empty showers: only the ratio's bookkeeping is tested
        def sample(self, n, c, seed, batch_size):
            seen.append((n, c.shape, seed))
            return np.zeros((n, 504), dtype=np.float32)

    q = paired_gflash_ratio(_Run(), np.array([[10.0], [50.0]]), seed=3, rounds=2, batch=100, n_gflash=20)
    assert len(q["ratios"]) == 2 and len(seen) == 3  # one warm-up call, then one per round
    assert all(n == 100 and shape == (100, 1) for n, shape, _ in seen) and len({s for *_, s in seen}) == 3
    for g, s, r in zip(q["fast_per_s"], q["slow_per_s"], q["ratios"]):
        assert g > 0 and s > 0 and r == pytest.approx(g / s)
    assert min(q["ratios"]) <= q["median_ratio"] <= max(q["ratios"])
