"""Conditioning blocks for continuous physical parameters.

* :class:`ConditionEmbedding`: small MLP from normalised conditions to a vector.
* :class:`FiLM`: feature-wise affine modulation of generator features
  (Perez et al. 2018), ``h * (1 + gamma(e)) + beta(e)``.
* :class:`ProjectionHead`: the projection critic output
  ``f(x, y) = psi(phi(x)) + <V e(y), phi(x)>`` (Miyato & Koyama 2018).

References
----------
.. [1] E. Perez et al., "FiLM: Visual Reasoning with a General Conditioning
   Layer", AAAI 2018, arXiv:1709.07871.
.. [2] T. Miyato and M. Koyama, "cGANs with Projection Discriminator",
   ICLR 2018, arXiv:1802.05637.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["ConditionEmbedding", "FiLM", "ProjectionHead"]


class ConditionEmbedding(nn.Module):
    """MLP embedding of ``(B, n_cond)`` normalised conditions into ``(B, dim)``.

    With ``n_cond == 0`` it returns zeros (unconditional data share the code).
    """

    def __init__(self, n_cond: int, dim: int = 32, hidden: int = 64):
        super().__init__()
        self.n_cond, self.dim = n_cond, dim
        if n_cond > 0:
            self.net = nn.Sequential(nn.Linear(n_cond, hidden), nn.SiLU(), nn.Linear(hidden, dim), nn.SiLU())

    def forward(self, c: torch.Tensor) -> torch.Tensor:
        if self.n_cond == 0:
            return c.new_zeros(c.shape[0], self.dim)
        return self.net(c)


class FiLM(nn.Module):
    """Modulate features ``h`` (B, C, ...) by an embedding ``e`` (B, E).

    Initialised to the identity map (gamma = beta = 0).
    """

    def __init__(self, embed_dim: int, channels: int):
        super().__init__()
        self.to_gamma_beta = nn.Linear(embed_dim, 2 * channels)
        nn.init.zeros_(self.to_gamma_beta.weight)
        nn.init.zeros_(self.to_gamma_beta.bias)

    def forward(self, h: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.to_gamma_beta(e).chunk(2, dim=1)
        shape = (h.shape[0], h.shape[1]) + (1,) * (h.ndim - 2)
        return h * (1 + gamma.view(shape)) + beta.view(shape)


class ProjectionHead(nn.Module):
    """Critic output ``psi(phi) + <V e, phi>`` from features ``phi`` (B, F)."""

    def __init__(self, features: int, embed_dim: int):
        super().__init__()
        self.psi = nn.Linear(features, 1)
        self.V = nn.Linear(embed_dim, features, bias=False)

    def forward(self, phi: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        return self.psi(phi).squeeze(1) + (self.V(e) * phi).sum(dim=1)
