"""A critic branch over the sequence of a shower's layers, one set of weights for every layer (issue 19).

The calo critic's physics MLP reads every layer's energy, occupancy, centres and widths as one flat vector: on the
CaloChallenge dataset-2 geometry that is 45 layers x 8 features, and a discrepancy that every layer shares a little
(each centre's spread 2 % off, say) has to be learned 45 times, once per input column. A high-level classifier finds
exactly that: on dataset 2 every family of features separates generated from simulated showers only jointly over the
layers (``bench/RESULTS.md`` §13, thirteenth session: median separation 0.01-0.025 per feature, AUC 0.99).

:class:`LayerSequenceStream` reads each layer's features together with its two neighbours' (a kernel-3 convolution
along the depth, zero padding at the front and back faces), with the layer's relative depth and the incident energy
as channels, through two such convolutions with the same weights at every depth, and averages the result over the
layers: a sum of per-layer terms, the form of a log-likelihood ratio whose layers differ in the same way. The
convolution is written as a concatenation of shifted copies and one linear layer: twice differentiable, and on one
CPU thread cheaper than ``torch.nn.Conv1d``'s double backward (see :mod:`.spatial` for the measured 2-D case).

Per-layer input channels: ``log(E_l / E_inc + 1e-6) / 4``, the soft occupancy, then the centre and the width for each
axis slot (x, y for every layer, with r for cylindrical ones; an axis the layer lacks, e.g. x and y of a
cylindrical layer with one angular bin, is a zero channel), the relative depth ``l / (L - 1)`` and the normalised log
incident energy (condition 0). Nothing is fitted: the features are the critic's own
(:meth:`~physgan.domains.calo.model.CaloCritic.physics_features`).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from physgan.domains.calo.geometry import CaloGeometry

__all__ = ["LayerSequenceStream", "axis_slots"]

#: Negative slope of the stream's LeakyReLU (the critic's).
LEAKY_SLOPE = 0.2


def axis_slots(geom: CaloGeometry, col_layer: list[int]) -> np.ndarray:
    """Where each lateral-moment column goes: ``(n_layers, n_slots)`` column indices, ``len(col_layer)`` where absent.

    Slots are x, y for a Cartesian geometry and x, y, r for a cylindrical one; the columns of each layer are in the
    order of :func:`~physgan.domains.calo.transform.lateral_moments` (x, y when the layer has them, then r).
    """
    cyl = geom.kind == "cylindrical"
    n_slots = 3 if cyl else 2
    table = np.full((geom.n_layers, n_slots), len(col_layer), dtype=np.int64)
    for i, lay in enumerate(geom.layers):
        cols = [j for j, owner in enumerate(col_layer) if owner == i]
        slots = ([0, 1] if not cyl or lay.n_alpha > 1 else []) + ([2] if cyl else [])
        if len(cols) != len(slots):
            raise ValueError(f"layer {i}: {len(cols)} lateral columns, expected {len(slots)} for this geometry")
        table[i, slots] = cols
    return table


class LayerSequenceStream(nn.Module):
    """Two kernel-3 convolutions along the layers over per-layer features, averaged over the layers.

    Parameters
    ----------
    geom : CaloGeometry
        The readout (its layers and their axes).
    col_layer : list of int
        The layer of each lateral-moment column (:func:`~physgan.domains.calo.transform.lateral_moments`).
    channels : int
        Hidden and output channels (the width of the pooled output).
    """

    def __init__(self, geom: CaloGeometry, col_layer: list[int], channels: int):
        super().__init__()
        if channels < 1:
            raise ValueError(f"channels must be >= 1, got {channels}")
        self.n_layers = geom.n_layers
        self.channels = int(channels)
        slots = axis_slots(geom, col_layer)
        self.n_slots = slots.shape[1]
        self.register_buffer("slots", torch.as_tensor(slots.reshape(-1)), persistent=False)
        depth = np.arange(geom.n_layers, dtype=np.float32) / max(1, geom.n_layers - 1)
        self.register_buffer("depth", torch.as_tensor(depth), persistent=False)
        n_in = 2 + 2 * self.n_slots + 2
        self.conv1 = nn.Linear(3 * n_in, channels)
        self.conv2 = nn.Linear(3 * channels, channels)
        self.act = nn.LeakyReLU(LEAKY_SLOPE)

    @staticmethod
    def _neighbours(x: torch.Tensor) -> torch.Tensor:
        """``(B, L, C) -> (B, L, 3 C)``: each layer's channels beside its predecessor's and successor's (0 beyond)."""
        pad = x.new_zeros(x.shape[0], 1, x.shape[2])
        return torch.cat([torch.cat([pad, x[:, :-1]], dim=1), x, torch.cat([x[:, 1:], pad], dim=1)], dim=2)

    def forward(self, log_e: torch.Tensor, occupancy: torch.Tensor, mean: torch.Tensor, width: torch.Tensor,
                t: torch.Tensor) -> torch.Tensor:
        """Pooled features ``(B, channels)``.

        Parameters
        ----------
        log_e, occupancy : torch.Tensor
            (B, n_layers) per-layer log energy (scaled) and soft occupancy.
        mean, width : torch.Tensor
            (B, n_columns) centres and widths of every lateral-moment column.
        t : torch.Tensor
            (B,) normalised log incident energy.
        """
        b, n = log_e.shape[0], self.n_layers
        zero = mean.new_zeros(b, 1)
        m = torch.cat([mean, zero], dim=1)[:, self.slots].reshape(b, n, self.n_slots)
        w = torch.cat([width, zero], dim=1)[:, self.slots].reshape(b, n, self.n_slots)
        x = torch.cat([log_e[:, :, None], occupancy[:, :, None], m, w,
                       self.depth[None, :, None].expand(b, n, 1).to(log_e.dtype),
                       t.to(log_e.dtype)[:, None, None].expand(b, n, 1)], dim=2)
        h = self.act(self.conv1(self._neighbours(x)))
        h = self.act(self.conv2(self._neighbours(h)))
        return h.mean(dim=1)
