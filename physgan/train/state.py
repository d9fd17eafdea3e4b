"""The state a training run carries from step to step, and how it goes into and out of a checkpoint."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

from physgan.train.checkpoint import rng_state, set_rng_state
from physgan.train.diagnostics import TrainingMonitor
from physgan.train.distributed import DistInfo

__all__ = ["TrainState", "latent_seed"]


def latent_seed(seed: int, dist_info: DistInfo, salt: int = 0) -> int:
    """Seed of a rank's latent stream: distinct per rank, ``salt`` for fresh streams (rollbacks, reseeding)."""
    return seed * dist_info.world_size + dist_info.rank + salt


@dataclass
class TrainState:
    """Networks, optimisers, batch position, latent and global random streams, counters and health monitor.

    Everything here is saved in every checkpoint (:meth:`state_dict`), so a resumed run continues
    bit for bit.
    """

    G: torch.nn.Module
    D: torch.nn.Module
    G_ema: torch.nn.Module
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    sampler: Any
    zgen: torch.Generator
    monitor: TrainingMonitor
    step: int = 0
    best_score: float = math.inf
    rollbacks: int = 0
    #: the latest validation metrics (not saved: the statistics hold them)
    last_metrics: dict[str, float] = field(default_factory=dict)

    def state_dict(self) -> dict[str, Any]:
        return {
            "G": self.G.state_dict(),
            "D": self.D.state_dict(),
            "G_ema": self.G_ema.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "sampler": self.sampler.state_dict(),
            "zgen": self.zgen.get_state(),
            "rng": rng_state(),
            "step": self.step,
            "best_score": self.best_score,
            "rollbacks": self.rollbacks,
            "diagnostics": self.monitor.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any], dist_info: DistInfo, seed: int) -> str | None:
        """Restore everything but the counters from a checkpoint; a note when the latent streams were reseeded."""
        self.G.load_state_dict(state["G"])
        self.D.load_state_dict(state["D"])
        self.G_ema.load_state_dict(state["G_ema"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.sampler.load_state_dict(state["sampler"])
        self.monitor.load_state_dict(state.get("diagnostics", {}))
        per_rank = state.get("rank_rng")
        if not dist_info.enabled:
            self.zgen.set_state(state["zgen"])
            set_rng_state(state["rng"])
        elif per_rank is not None and len(per_rank) == dist_info.world_size:  # each rank continues its own stream
            self.zgen.set_state(per_rank[dist_info.rank]["zgen"])
            set_rng_state(per_rank[dist_info.rank]["rng"])
        else:  # saved by another world size (or by a best-only save): fresh, distinct streams per rank
            self.zgen.manual_seed(latent_seed(seed, dist_info, 7919 * (int(state["step"]) + 1)))
            return f"rank {dist_info.rank}: the checkpoint holds no random state for {dist_info.world_size} ranks; latents reseeded"
        return None

    def resume(self, state: dict[str, Any], dist_info: DistInfo, seed: int) -> str | None:
        """:meth:`load_state_dict` and the counters (``--resume``)."""
        note = self.load_state_dict(state, dist_info, seed)
        self.step, self.best_score = int(state["step"]), float(state.get("best_score", math.inf))
        self.rollbacks = int(state.get("rollbacks", 0))
        return note
