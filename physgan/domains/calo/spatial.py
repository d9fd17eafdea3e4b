"""Per-layer convolutional streams over each calorimeter layer's own cell grid (issue 19).

The calo critic's cell MLP sees a layer as a flat vector: a neighbourhood (two adjacent strips, a hot cell beside
an empty one) is nothing special to it, and with a few thousand showers it cannot learn spatial structure. A
:class:`LayerConvStream` gives it the geometry: each cell is read together with its 3 x 3 neighbourhood on its
layer's grid, with coordinate channels (CoordConv) so that position stays visible, through a small stack of
3 x 3 convolutions; :meth:`LayerConvStream.pooled` then averages each layer's output over its grid: ``channels``
learned, position-aware statistics per layer.

Geometry comes from the file's :class:`~physgan.domains.calo.geometry.CaloGeometry`, nothing is fitted to a
simulator:

* Cartesian layers (CaloGAN ``(n_x, n_y)``): zero padding on both axes.
* Cylindrical layers (CaloChallenge ``(n_alpha, n_r)``): circular along the angle, zero padding along the radius,
  so the stream sees no seam at alpha = +-pi.
* Coordinate channels: ``x / max|x|``, ``y / max|y|`` and ``r / max r`` of each cell centre, layer by layer (an
  axis whose cell centres are all 0 gives a zero channel).

Layers of the same grid shape and kind share one stack. A convolution is written as a gather of each cell's
neighbours (an index table built once from the geometry, padding pointing at a zero row) followed by one
matrix product: on one CPU thread ``torch.nn.Conv2d`` with a handful of channels made the gradient penalty's
double backward of the quickstart critic 6-8x slower (batch 128: 58 ms -> 340-630 ms per critic step), the
gather costs what a linear layer of the same size costs. Every operation is twice differentiable.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from physgan.domains.calo.geometry import CaloGeometry

__all__ = ["LayerConvStream", "layer_coordinates", "neighbour_table"]

#: Coordinate channels per cell: x, y and r, each scaled by its largest magnitude in the layer.
N_COORD = 3


def layer_coordinates(geom: CaloGeometry, i: int) -> np.ndarray:
    """Coordinate channels of layer ``i``, ``(n_cells_l, 3)`` float32: x, y, r over their largest magnitude.

    Parameters
    ----------
    geom : CaloGeometry
    i : int
        Layer position in ``geom.layers``.

    Returns
    -------
    numpy.ndarray
    """
    lay = geom.layers[i]
    out = []
    for v in (lay.x_mm, lay.y_mm, lay.r_mm):
        v = np.asarray(v, dtype=np.float64)
        scale = float(np.abs(v).max()) if v.size else 0.0
        out.append(v / scale if scale > 0 else np.zeros_like(v))
    return np.stack(out, axis=1).astype(np.float32)


def neighbour_table(shape: tuple[int, int], circular_rows: bool) -> np.ndarray:
    """Flat indices of each cell's 3 x 3 neighbourhood on a ``shape`` grid (row-major), ``(n, 9)`` int64.

    Parameters
    ----------
    shape : tuple of int
        ``(rows, cols)``; cylindrical layers are ``(n_alpha, n_r)``.
    circular_rows : bool
        Wrap the row axis (the angle of a cylindrical layer); otherwise, and always along the columns, a
        neighbour beyond the edge is ``-1`` (padding).

    Returns
    -------
    numpy.ndarray
        Row ``k`` lists the neighbours of cell ``k`` in the order (dr, dc) = (-1, -1), (-1, 0), ..., (1, 1).
    """
    rows, cols = shape
    r, c = np.divmod(np.arange(rows * cols), cols)
    out = np.empty((rows * cols, 9), dtype=np.int64)
    k = 0
    for dr in (-1, 0, 1):
        for dc in (-1, 0, 1):
            rr, cc = r + dr, c + dc
            if circular_rows:
                rr = rr % rows
            ok = (rr >= 0) & (rr < rows) & (cc >= 0) & (cc < cols)
            out[:, k] = np.where(ok, rr * cols + cc, -1)
            k += 1
    return out


class _ShapeGroup(nn.Module):
    """One 3 x 3 convolution and ``depth - 1`` 1 x 1 convolutions, shared by the layers of one grid shape and kind."""

    def __init__(self, geom: CaloGeometry, layers: list[int], in_channels: int, channels: int, depth: int,
                 out_channels: int | None):
        super().__init__()
        self.layers = layers
        lay0 = geom.layers[layers[0]]
        shape = (int(lay0.shape[0]), int(lay0.shape[1]))
        n = shape[0] * shape[1]
        table = neighbour_table(shape, circular_rows=geom.kind == "cylindrical")
        # the group's cells side by side (layer j's at j * n ...); padding -> the zero row after the last cell
        n_all = len(layers) * n
        full = np.concatenate([np.where(table >= 0, table + j * n, n_all) for j in range(len(layers))])
        self.register_buffer("gather", torch.as_tensor(full.reshape(-1)), persistent=False)
        self.register_buffer("coords", torch.as_tensor(np.concatenate([layer_coordinates(geom, i) for i in layers])),
                             persistent=False)
        self.n_cells = n
        self.conv = nn.Linear(9 * in_channels + N_COORD, channels)
        self.pointwise = nn.ModuleList(nn.Linear(channels, channels) for _ in range(depth - 1))
        self.out = nn.Linear(channels, out_channels) if out_channels else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (n_layers_g * n_cells, B, C_in) -> (n_layers_g * n_cells, B, C_out): cells first, so that the
        gather copies whole rows (along the cell axis of (B, cells, C) it was 5x slower)."""
        m, b, ch = x.shape
        padded = torch.cat([x, x.new_zeros(1, b, ch)], dim=0)
        nb = padded.index_select(0, self.gather).view(m, 9, b, ch).transpose(1, 2).reshape(m, b, 9 * ch)
        nb = torch.cat([nb, self.coords.to(x.dtype)[:, None, :].expand(m, b, -1)], dim=2)
        h = F.leaky_relu(self.conv(nb), 0.2)
        for lin in self.pointwise:
            h = F.leaky_relu(lin(h), 0.2)
        return self.out(h) if self.out is not None else h


class LayerConvStream(nn.Module):
    """Small 3 x 3 convolution stacks over every layer's cell grid, one stack per distinct grid shape and kind.

    Parameters
    ----------
    geom : CaloGeometry
        The readout; cells are read in the geometry's flat order (layer by layer, row-major on the layer's shape).
    in_channels : int
        Values per cell given to :meth:`forward`.
    channels : int
        Width of the hidden convolutions.
    depth : int
        One 3 x 3 convolution (it also reads the coordinates) and ``depth - 1`` per-cell (1 x 1) layers, each
        followed by LeakyReLU(0.2). Only the first mixes neighbours: a second 3 x 3 convolution over ``channels``
        inputs made the critic step 10x slower on one CPU thread (memory traffic of the gathered taps).
    out_channels : int, optional
        A final per-cell linear map to this many channels (no activation); ``None``: the last hidden activations
        are the output (``channels`` per cell).
    """

    def __init__(self, geom: CaloGeometry, in_channels: int, channels: int, depth: int = 2,
                 out_channels: int | None = None):
        super().__init__()
        if channels < 1 or depth < 1:
            raise ValueError(f"LayerConvStream: channels and depth must be >= 1, got {channels}, {depth}")
        self.n_layers = geom.n_layers
        self.n_out = int(out_channels or channels)
        by_shape: dict[tuple[tuple[int, ...], str], list[int]] = {}
        for i, lay in enumerate(geom.layers):
            shape = tuple(int(s) for s in lay.shape)
            if len(shape) != 2:
                raise ValueError(f"LayerConvStream: layer {lay.index} has a {len(shape)}-d cell grid, expected 2-d")
            by_shape.setdefault((shape, geom.kind), []).append(i)
        self.groups = nn.ModuleList(_ShapeGroup(geom, idx, in_channels, channels, depth, out_channels)
                                    for idx in by_shape.values())
        starts = [geom.layer_slice(i).start for i in range(geom.n_layers)]
        order = np.concatenate([np.arange(starts[i], starts[i] + geom.layers[i].n_cells) for g in self.groups for i in g.layers])
        inv = np.empty_like(order)
        inv[order] = np.arange(len(order))
        self.register_buffer("order", torch.as_tensor(order), persistent=False)  # flat cells -> group order
        self.register_buffer("unorder", torch.as_tensor(inv), persistent=False)
        self.layer_order = [i for g in self.groups for i in g.layers]
        self.layer_sizes = [geom.layers[i].n_cells for i in self.layer_order]

    def forward(self, cells: torch.Tensor) -> torch.Tensor:
        """Per-cell outputs of every layer.

        Parameters
        ----------
        cells : torch.Tensor
            (B, n_cells, in_channels): per-cell inputs over all layers' cells in flat order (extras excluded).

        Returns
        -------
        torch.Tensor
            (B, n_cells, n_out) in the same flat order.
        """
        outs = [out for _, out in self._run(cells)]
        return torch.cat(outs, dim=0).index_select(0, self.unorder).transpose(0, 1)

    def pooled(self, cells: torch.Tensor) -> torch.Tensor:
        """The mean over each layer's grid of :meth:`forward`: ``(B, n_layers * n_out)``, layers in flat order."""
        means: list[torch.Tensor | None] = [None] * self.n_layers
        for g, out in self._run(cells):
            h = out.reshape(len(g.layers), g.n_cells, out.shape[1], -1).mean(dim=1)  # (n_layers_g, B, C)
            for j, i in enumerate(g.layers):
                means[i] = h[j]
        return torch.cat(means, dim=1)  # type: ignore[arg-type]

    def _run(self, cells: torch.Tensor) -> list[tuple[_ShapeGroup, torch.Tensor]]:
        x = cells.transpose(0, 1).index_select(0, self.order)  # (n_cells, B, C) in group order
        out, start = [], 0
        for g in self.groups:
            m = g.n_cells * len(g.layers)
            out.append((g, g(x[start : start + m])))
            start += m
        return out
