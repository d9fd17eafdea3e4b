"""The soft Euler characteristic and its interior density estimator (:mod:`physgan.nn.topology`)."""

import numpy as np
import pytest
import torch
from scipy import ndimage

from physgan.metrics.morphology import euler_density
from physgan.nn.topology import soft_euler_characteristic, soft_euler_density


def _pores(shape: tuple[int, ...], seed: int, sigma: float = 1.5, wrap: bool = False) -> np.ndarray:
    """A stationary two-phase texture: smoothed white noise cut at its 40th percentile."""
    z = ndimage.gaussian_filter(np.random.default_rng(seed).standard_normal(shape), sigma, mode="wrap" if wrap else "reflect")
    return z < np.quantile(z, 0.4)


def test_euler_density_is_the_periodic_density_averaged_over_window_positions():
    """Every cell type's occupancy, averaged over all cyclic placements of a window, is its periodic density: so
    the mean interior estimate over the L^3 placements equals the periodic Euler characteristic per voxel exactly."""
    L, w = 8, 5
    v = torch.as_tensor(_pores((L, L, L), 0, sigma=0.8, wrap=True), dtype=torch.float64)
    want = soft_euler_characteristic(v, 3, periodic=True).item() / L**3
    windows = torch.stack([torch.roll(v, (i, j, k), dims=(0, 1, 2))[:w, :w, :w] for i in range(L) for j in range(L) for k in range(L)])
    got = soft_euler_density(windows, 3).mean().item()
    assert got == pytest.approx(want, abs=1e-12)
    assert abs(want) > 1e-3  # a texture with loops and clusters, not an empty test


def test_euler_density_does_not_depend_on_the_crop_size_where_the_whole_crop_count_does():
    """On a stationary texture the interior estimate of 24^3 crops agrees with the 96^3 volume's; the whole-crop
    count per voxel (border clusters included) does not. 2-D images the same, with 8-connectivity."""
    from physgan.metrics.morphology import euler_characteristic

    big = _pores((96, 96, 96), 1)
    crops = [big[i : i + 24, j : j + 24, k : k + 24] for i in range(0, 96, 24) for j in range(0, 96, 24) for k in range(0, 96, 24)]
    whole = euler_density(big)
    interior = np.mean([euler_density(c) for c in crops])
    counted = np.mean([euler_characteristic(c) / c.size for c in crops])
    spread = np.std([euler_density(c) for c in crops]) / np.sqrt(len(crops))
    assert abs(interior - whole) < 3 * spread + 1e-6
    assert abs(counted - whole) > 10 * abs(interior - whole)
    img = _pores((512, 512), 2)
    tiles = [img[i : i + 64, j : j + 64] for i in range(0, 512, 64) for j in range(0, 512, 64)]
    e2 = [euler_density(t) for t in tiles]
    assert abs(np.mean(e2) - euler_density(img)) < 3 * np.std(e2) / np.sqrt(len(e2))


def test_soft_euler_density_has_gradients_and_refuses_degenerate_windows():
    s = torch.rand(2, 6, 6, 6, dtype=torch.float64, requires_grad=True)
    soft_euler_density(s, 3).sum().backward()
    assert (s.grad != 0).float().mean() > 0.9
    with pytest.raises(ValueError, match="side must be >= 2"):
        soft_euler_density(torch.rand(4, 1, 5), 2)
    with pytest.raises(ValueError, match="ndim"):
        soft_euler_density(torch.rand(4, 5), 3)


@pytest.mark.parametrize("ndim", [2, 3])
def test_vacancy_products_are_one_where_every_voxel_sharing_the_cell_is_empty(ndim):
    """For a 0/1 field, the product over the voxels that share a cell across the axes A is 1 exactly where all 2^|A| of
    them (offsets 0 / -1 along A, periodic) are empty: checked against a direct loop over the offsets."""
    import itertools

    from physgan.nn.topology import vacancy_products

    rng = np.random.default_rng(ndim)
    full = torch.as_tensor(rng.random((2,) + (5,) * ndim) < 0.3, dtype=torch.float64)
    dims = tuple(range(1, ndim + 1))
    products = vacancy_products(1 - full, dims)
    assert len(products) == 2**ndim
    for shared, got in products.items():
        want = torch.ones_like(full, dtype=torch.bool)
        for offsets in itertools.product((0, 1), repeat=len(shared)):
            want &= torch.roll(full, offsets, dims=shared) == 0 if shared else full == 0
        assert torch.equal(got, want.double()), shared
    assert 0 < float(products[dims].mean()) < 1  # some cells with every voxel empty, some without
