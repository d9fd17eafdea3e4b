"""Normalisation of physical conditions: optional log, then standardisation.

Statistics come from the training data and are saved in the run, so sampling
uses exactly the mapping the networks were trained with.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from physgan.errors import ConfigError

__all__ = ["ConditionNormaliser"]


class ConditionNormaliser:
    """Map physical conditions ``(B, k)`` to standardised network inputs.

    Parameters
    ----------
    names : list of str
        Condition names, in column order.
    scales : dict
        ``{name: 'log' | 'linear'}``; unnamed conditions are linear.
    """

    def __init__(self, names: list[str], scales: dict[str, str] | None = None):
        self.names = list(names)
        self.scales = {n: (scales or {}).get(n, "linear") for n in self.names}
        self.mean: list[float] = [0.0] * len(names)
        self.std: list[float] = [1.0] * len(names)
        self.min: list[float] = [float("-inf")] * len(names)
        self.max: list[float] = [float("inf")] * len(names)

    def _pre(self, c):
        out = []
        for j, n in enumerate(self.names):
            col = c[:, j]
            if self.scales[n] == "log":
                col = torch.log(col.clamp_min(1e-30)) if isinstance(col, torch.Tensor) else np.log(np.maximum(col, 1e-30))
            out.append(col)
        if isinstance(c, torch.Tensor):
            return torch.stack(out, 1) if out else c
        return np.stack(out, 1) if out else c

    def fit(self, c: np.ndarray) -> ConditionNormaliser:
        """Statistics (and the training range) from the training conditions."""
        c = np.asarray(c, dtype=np.float64).reshape(len(c), len(self.names))
        for j, n in enumerate(self.names):
            if self.scales[n] == "log" and (c[:, j] <= 0).any():
                raise ConfigError(f"condition '{n}' is normalised on a log scale but has values <= 0 (min {c[:, j].min():.4g})")
        pre = self._pre(c)
        self.mean = pre.mean(0).tolist() if len(self.names) else []
        self.std = (pre.std(0) + 1e-8).tolist() if len(self.names) else []
        self.std = [s if s > 1e-6 else 1.0 for s in self.std]  # a constant condition stays constant
        self.min = c.min(0).tolist() if len(self.names) else []
        self.max = c.max(0).tolist() if len(self.names) else []
        return self

    def __call__(self, c: torch.Tensor) -> torch.Tensor:
        if not self.names:
            return c.reshape(len(c), 0)
        mean = torch.as_tensor(self.mean, dtype=c.dtype, device=c.device)
        std = torch.as_tensor(self.std, dtype=c.dtype, device=c.device)
        return (self._pre(c) - mean) / std

    def inverse(self, u: torch.Tensor) -> torch.Tensor:
        """Standardised network inputs ``(B, k)`` back to physical conditions (differentiable)."""
        if not self.names:
            return u
        mean = torch.as_tensor(self.mean, dtype=u.dtype, device=u.device)
        std = torch.as_tensor(self.std, dtype=u.dtype, device=u.device)
        pre = u * std + mean
        cols = [torch.exp(pre[:, j]) if self.scales[n] == "log" else pre[:, j] for j, n in enumerate(self.names)]
        return torch.stack(cols, 1)

    def state_dict(self) -> dict[str, Any]:
        return {"names": self.names, "scales": self.scales, "mean": self.mean, "std": self.std, "min": self.min, "max": self.max}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> ConditionNormaliser:
        obj = cls(state["names"], state["scales"])
        for k in ("mean", "std", "min", "max"):
            setattr(obj, k, list(state[k]))
        return obj
