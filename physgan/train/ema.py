"""Exponential moving average of the generator's weights (used for sampling)."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["update_ema"]


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, beta: float, step: int) -> None:
    """``ema = b * ema + (1 - b) * model`` with warm-up ``b = min(beta, (1 + step) / (10 + step))``.

    Buffers are copied. The warm-up keeps early samples from being dominated by
    the random initial weights.
    """
    b = min(beta, (1.0 + step) / (10.0 + step))
    for pe, p in zip(ema.parameters(), model.parameters()):
        pe.lerp_(p.detach(), 1.0 - b)
    for be, bm in zip(ema.buffers(), model.buffers()):
        be.copy_(bm)
