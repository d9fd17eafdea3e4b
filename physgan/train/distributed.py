"""Process-group set-up from torchrun or Slurm variables.

Launch commands::

    # one process (CPU or one GPU)
    physgan train calo --data calo.h5 --run runs/calo
    # two processes on one node (gloo on CPU, nccl on GPU)
    torchrun --standalone --nproc-per-node 2 -m physgan train calo --data calo.h5 --run-dir runs/calo
    # Slurm: srun torchrun ... (see README), or plain srun: SLURM_PROCID/SLURM_NTASKS are read
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

__all__ = [
    "DistInfo",
    "launcher_env",
    "launch_rank",
    "init_distributed",
    "cleanup_distributed",
    "barrier",
    "all_gather_objects",
    "check_consistency",
]


@dataclass
class DistInfo:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _env_int(*names: str, default: int) -> int:
    for n in names:
        if n in os.environ:
            return int(os.environ[n])
    return default


def launcher_env() -> tuple[int, int, int]:
    """``(rank, local_rank, world_size)`` as the launcher set them: torchrun (``RANK``, ``LOCAL_RANK``,
    ``WORLD_SIZE``) or Slurm (``SLURM_PROCID``, ``SLURM_LOCALID``, ``SLURM_NTASKS`` with ``MASTER_ADDR``);
    ``(0, 0, 1)`` for a plain process. Training and sharded generation both read them here.
    """
    world = _env_int("WORLD_SIZE", default=1)
    if world == 1 and "SLURM_NTASKS" in os.environ and "MASTER_ADDR" in os.environ:
        world = int(os.environ["SLURM_NTASKS"])
    return _env_int("RANK", "SLURM_PROCID", default=0), _env_int("LOCAL_RANK", "SLURM_LOCALID", default=0), world


def launch_rank() -> int:
    """This process's rank as its launcher set it (torchrun ``RANK`` or Slurm ``SLURM_PROCID``); 0 alone."""
    return launcher_env()[0]


def init_distributed(device_type: str) -> DistInfo:
    """Start the process group when launched by torchrun (or srun); no-op otherwise."""
    rank, local_rank, world = launcher_env()
    if world <= 1:
        return DistInfo()
    os.environ.setdefault("RANK", str(rank))
    os.environ.setdefault("WORLD_SIZE", str(world))
    if not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        if device_type == "cuda":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend)
    return DistInfo(rank=rank, local_rank=local_rank, world_size=world)


def cleanup_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def all_gather_objects(obj: Any, info: DistInfo) -> list[Any]:
    """Every rank's ``obj`` (picklable), in rank order; ``[obj]`` on one process."""
    if not info.enabled:
        return [obj]
    out: list[Any] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


@torch.no_grad()
def check_consistency(module: torch.nn.Module, info: DistInfo) -> float:
    """Max absolute difference of ``module``'s parameters between this rank and rank 0.

    Raises RuntimeError when ranks disagree (they must stay bit-identical under DDP).
    """
    if not info.enabled:
        return 0.0
    flat = torch.cat([p.detach().reshape(-1).float() for p in module.parameters()])
    ref = flat.clone()
    dist.broadcast(ref, src=0)
    diff = (flat - ref).abs().max()
    worst = diff.clone()
    dist.all_reduce(worst, op=dist.ReduceOp.MAX)
    if float(worst) != 0.0:
        raise RuntimeError(f"DDP ranks diverged: parameters differ by up to {float(worst):.3g} between ranks")
    return float(worst)
