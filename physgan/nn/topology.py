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

__all__ = ["soft_euler_characteristic"]


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
    for extent in itertools.product((0, 1), repeat=ndim):  # axes along which the k-cell extends
        empty = 1 - s
        for axis, ext in zip(dims, extent):
            if not ext:  # the cell lies on a voxel face normal to this axis: shared with the neighbour below
                empty = empty * torch.roll(empty, 1, dims=axis)
        chi = chi + (-1) ** sum(extent) * (1 - empty).sum(dim=dims)
    return chi
