"""Constant per-layer matrices applied layer by layer: ``u @ m`` without the zeros.

The calorimeter's differentiable summaries (layer energies, soft occupancies, centres and widths of energy) are
products of the cells with constant matrices whose every column lives on one layer's cells
(:func:`~physgan.domains.calo.transform.group_member_matrix`,
:func:`~physgan.domains.calo.transform.lateral_moments`). As dense products they cost ``cells x columns``
multiply-adds per shower, forward, backward and again in the gradient penalty's double backward: in the
CaloChallenge dataset-2 geometry (45 layers, 6480 cells, 135 moment columns) they were most of a training step
(``bench/RESULTS.md`` §13, fifth session). :class:`SegmentMatrix` computes the same product per run of equal-sized
layers, which costs ``cells x (columns per layer)``; where that saves less than
``min_saving`` (CaloGAN's three unequal layers) it keeps the dense product, so those results do not change.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

__all__ = ["SegmentMatrix", "column_sums", "geometry_segments", "layer_bounds"]


class SegmentMatrix(nn.Module):
    """A constant ``(n_rows, K)`` matrix whose columns each lie in one row segment; ``u @ sm`` is ``u @ m``.

    Parameters
    ----------
    m : numpy.ndarray or torch.Tensor
        The dense matrix ``(n_rows, K)``.
    segments : sequence of (int, int)
        Disjoint row ranges ``[start, stop)`` in increasing order (a calorimeter's layers, then its extras).
    min_saving : float
        Use the per-segment product only when it needs at least this many times fewer multiply-adds than the
        dense one; otherwise (or when a column is empty, spans two segments, or the columns are not ordered by
        segment) the dense product is used.

    Notes
    -----
    Consecutive segments of equal length with equal numbers of columns form one run, computed as one product:
    ``(B L, n) @ (n, A)`` when every segment of the run has the same weights (the layers of a CaloChallenge
    binning), else batched over the segments. Buffers are not persistent (a checkpoint does not change); ``.to(dtype, device)`` moves them.
    """

    def __init__(self, m: np.ndarray | torch.Tensor, segments: Sequence[tuple[int, int]], min_saving: float = 8.0,
                 dtype: torch.dtype = torch.float32):
        super().__init__()
        dense = torch.as_tensor(np.asarray(m.detach().cpu() if isinstance(m, torch.Tensor) else m), dtype=dtype)
        if dense.ndim != 2:
            raise ValueError(f"SegmentMatrix: a 2-D matrix is required, got shape {tuple(dense.shape)}")
        self.shape = tuple(dense.shape)
        self.register_buffer("col_sums", dense.sum(dim=0), persistent=False)
        runs = _runs(dense.numpy(), segments)
        structured = sum(n_seg * length * n_col for _, n_seg, length, _, n_col in runs) if runs else None
        self.runs: list[tuple[int, int, int, int]] = []
        if structured is not None and dense.shape[0] * dense.shape[1] >= min_saving * structured:
            for r, (start, n_seg, length, col0, n_col) in enumerate(runs):
                w = dense[start : start + n_seg * length, col0 : col0 + n_seg * n_col]
                # block-diagonal: segment j's rows meet only its own n_col columns
                blocks = torch.stack([w[j * length : (j + 1) * length, j * n_col : (j + 1) * n_col] for j in range(n_seg)])
                shared = bool((blocks == blocks[:1]).all())  # every segment the same weights: one plain product
                self.register_buffer(f"w{r}", (blocks[0] if shared else blocks).contiguous(), persistent=False)
                self.runs.append((start, n_seg, length, n_col))
            self.dense = None
        else:
            self.register_buffer("dense", dense, persistent=False)

    @property
    def structured(self) -> bool:
        """Whether the product is computed per segment (else densely)."""
        return self.dense is None

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        """``u @ m`` for ``u`` of shape ``(B, n_rows)``: ``(B, K)``."""
        if self.dense is not None:
            return u @ self.dense
        b = u.shape[0]
        out = []
        for r, (start, n_seg, length, n_col) in enumerate(self.runs):
            w = getattr(self, f"w{r}")
            block = u[:, start : start + n_seg * length]
            if w.ndim == 2:  # (B * L, n) @ (n, A)
                out.append((block.reshape(b * n_seg, length) @ w).reshape(b, n_seg * n_col))
            else:  # (L, B, n) @ (L, n, A), batched over the segments
                prod = torch.bmm(block.reshape(b, n_seg, length).transpose(0, 1), w)
                out.append(prod.transpose(0, 1).reshape(b, n_seg * n_col))
        return out[0] if len(out) == 1 else torch.cat(out, dim=1)

    def __rmatmul__(self, u: torch.Tensor) -> torch.Tensor:
        return self(u)


def column_sums(m: torch.Tensor | SegmentMatrix) -> torch.Tensor:
    """Sum over the rows of each column, ``(K,)``, of a dense matrix or a :class:`SegmentMatrix`."""
    return m.col_sums if isinstance(m, SegmentMatrix) else m.sum(dim=0)


def _runs(m: np.ndarray, segments: Sequence[tuple[int, int]]) -> list[tuple[int, int, int, int, int]] | None:
    """``(start row, segments, rows per segment, first column, columns per segment)`` of every run of equal
    consecutive segments, or None when the columns do not follow the segments."""
    nz = m != 0
    seg_of_col = []
    for k in range(m.shape[1]):
        rows = np.flatnonzero(nz[:, k])
        if rows.size == 0:
            return None
        owner = [s for s, (a, b) in enumerate(segments) if a <= rows[0] and rows[-1] < b]
        if not owner:
            return None
        seg_of_col.append(owner[0])
    if any(b < a for a, b in zip(seg_of_col, seg_of_col[1:])):
        return None
    counts = np.bincount(seg_of_col, minlength=len(segments))
    runs: list[list[int]] = []
    col = 0
    for s, (a, b) in enumerate(segments):
        n_col = int(counts[s])
        if n_col == 0:
            continue
        last = runs[-1] if runs else None
        if last is not None and last[0] + last[1] * last[2] == a and last[2] == b - a and last[4] == n_col \
                and last[3] + last[1] * last[4] == col:
            last[1] += 1
        else:
            runs.append([a, 1, b - a, col, n_col])
        col += n_col
    return [tuple(r) for r in runs]  # type: ignore[misc]


def layer_bounds(geom) -> list[tuple[int, int]]:
    """``(start, stop)`` of every layer's cells in the flat sample."""
    return [(geom.layer_slice(i).start, geom.layer_slice(i).stop) for i in range(geom.n_layers)]


def geometry_segments(geom) -> list[tuple[int, int]]:
    """Row segments of a calorimeter geometry's flat sample: each layer's cells (:func:`layer_bounds`), then the
    extras (if any)."""
    segs = layer_bounds(geom)
    if geom.n_features > geom.n_cells:
        segs.append((geom.n_cells, geom.n_features))
    return segs
