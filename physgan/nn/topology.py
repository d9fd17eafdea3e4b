"""Differentiable topology of soft indicator fields: the Euler characteristic of a cubical complex.

One mechanism for every domain whose critic must see connectivity that its convolutions and
two-point statistics miss: the N-body critic's excursion sets (:func:`physgan.domains.nbody.spectral.soft_minkowski`)
and the microstructure critic's pore network (``model.options.critic_euler``, where a slice critic cannot see
the 3-D genus at all: connectivity is not a stereological quantity).
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F

__all__ = ["soft_euler_characteristic", "soft_euler_density", "vacancy_products"]


def soft_euler_characteristic(s: torch.Tensor, ndim: int, periodic: bool = False) -> torch.Tensor:
    """Euler characteristic of the closed cubical complex of a soft indicator ``s`` over its last ``ndim`` axes.

    Each cell of the grid (voxel) is a closed unit cube; a k-cell (vertex, edge, face, cube) belongs to the
    set when any of the voxels sharing it does, with "any" of soft memberships written ``1 - prod(1 - s)``.
    ``chi = sum over cell types (-1)^k (number of k-cells)``. For a 0/1 ``s`` this is the Euler characteristic of
    the set with ``3^ndim - 1`` connectivity (8 in 2-D, 26 in 3-D: scikit-image's ``euler_number`` with
    ``connectivity=ndim``, the micro metrics' convention); for soft ``s`` it is a smooth function with
    gradients for every voxel.

    Parameters
    ----------
    s : Tensor (..., *spatial)
        Memberships in [0, 1]; the leading axes are batch axes.
    ndim : int
        Number of trailing spatial axes (1-3).
    periodic : bool
        Periodic boundaries (cells on the far side wrap around); otherwise the outside is empty.

    Returns
    -------
    Tensor (...)
        The Euler characteristic of each leading index (a count, not a density).
    """
    if not 1 <= ndim <= s.dim():
        raise ValueError(f"soft_euler_characteristic: ndim must be in 1..{s.dim()}, got {ndim}")
    dims = tuple(range(s.dim() - ndim, s.dim()))
    if not periodic:  # an empty border: the wrapped cells of the roll below then see nothing
        s = F.pad(s, [1, 1] * ndim)
    chi = s.new_zeros(s.shape[: s.dim() - ndim])
    for shared, empty in vacancy_products(1 - s, dims).items():
        chi = chi + (-1) ** (ndim - len(shared)) * (1 - empty).sum(dim=dims)
    return chi


def vacancy_products(empty: torch.Tensor, dims: tuple[int, ...]) -> dict[tuple[int, ...], torch.Tensor]:
    """Periodic products of ``empty`` over the voxels that share each kind of cell of the cubical complex.

    For every subset ``A`` of ``dims`` (the axes across which the cell is shared: a face normal to one axis, an edge
    between two, a vertex between all), ``prod(empty)`` over the ``2^|A|`` voxels at offsets 0 / -1 along the axes of
    ``A``: the probability, with independent soft memberships, that none of the voxels sharing such a cell is in the
    set. Each product is its parent's (``A`` less its last axis) times the parent rolled by one along that axis, so
    the ``2^d`` products cost ``2^d - 1`` multiplications (what the Euler characteristic and the boundary measure
    both read: one set of products for both).

    Parameters
    ----------
    empty : Tensor (..., *spatial)
        ``1 - s``, the soft non-membership.
    dims : tuple of int
        The spatial axes.

    Returns
    -------
    dict
        ``{A: product}``, ``A`` a sorted tuple of axes (``()``: ``empty`` itself).
    """
    out = {(): empty}
    for size in range(1, len(dims) + 1):
        for shared in itertools.combinations(dims, size):
            parent = out[shared[:-1]]
            out[shared] = parent * torch.roll(parent, 1, dims=shared[-1])
    return out


def soft_euler_density(s: torch.Tensor, ndim: int) -> torch.Tensor:
    """Euler characteristic per voxel of a stationary set, estimated from the cells inside the window only.

    The same closed cubical complex and soft "any" as :func:`soft_euler_characteristic`, but each cell type
    (vertex, edge, face, cube) is counted only where the window holds every voxel that shares it, and divided by
    the number of such places: ``chi_V = sum over cell types (-1)^k mean(occupancy of the k-cells)``. Every
    term is an unbiased density, so the estimate does not depend on the window's size or border. The count of
    :func:`soft_euler_characteristic` with an empty outside adds one for every cluster the border cuts: on
    64^3 crops of Berea sandstone that border term cancels nine tenths of the pore network's negative Euler
    density (-0.03 against -0.5 per 10^4 voxels in 128^3 crops), which is what this estimator removes.

    Parameters
    ----------
    s : Tensor (..., *spatial)
        Memberships in [0, 1]; the leading axes are batch axes. Every spatial side must be at least 2.
    ndim : int
        Number of trailing spatial axes (1-3).

    Returns
    -------
    Tensor (...)
        Euler characteristic per voxel (unit cell) of each leading index.
    """
    if not 1 <= ndim <= s.dim():
        raise ValueError(f"soft_euler_density: ndim must be in 1..{s.dim()}, got {ndim}")
    dims = tuple(range(s.dim() - ndim, s.dim()))
    if min(s.shape[d] for d in dims) < 2:
        raise ValueError(f"soft_euler_density: every spatial side must be >= 2, got {tuple(s.shape[d] for d in dims)}")
    chi = s.new_zeros(s.shape[: s.dim() - ndim])
    for extent in itertools.product((0, 1), repeat=ndim):
        empty = 1 - s
        for axis, ext in zip(dims, extent):
            if not ext:  # a cell on the face between voxels i - 1 and i: only where both are in the window
                n = empty.shape[axis]
                empty = empty.narrow(axis, 1, n - 1) * empty.narrow(axis, 0, n - 1)
        chi = chi + (-1) ** sum(extent) * (1 - empty).mean(dim=dims)
    return chi
