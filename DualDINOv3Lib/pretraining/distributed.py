"""The process group of a ``torchrun`` pretraining run (one process per GPU, or gloo processes on a CPU).

``torchrun`` sets ``WORLD_SIZE``/``RANK``/``LOCAL_RANK``; without them the run is a single process. This is
the small part of :mod:`DualDINOv3Lib.finetune.distributed` that pretraining needs (a package of the same
layer may not import it).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class ProcessGroup:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def gather(self, obj) -> list:
        """``obj`` of every process, in rank order, on every process."""
        if not self.enabled:
            return [obj]
        out = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def all_finite(self, value: torch.Tensor) -> bool:
        """True when ``value`` is finite on every process."""
        flag = torch.tensor(float(torch.isfinite(value.detach()).all()), device=value.device)
        if self.enabled:
            dist.all_reduce(flag, op=dist.ReduceOp.MIN)
        return bool(flag.item() > 0)


def join(device: torch.device) -> tuple[ProcessGroup, torch.device]:
    """Joins the process group when launched by torchrun (nccl on CUDA, gloo otherwise)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return ProcessGroup(), device
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return ProcessGroup(rank, world_size, local_rank), device


def leave(group: ProcessGroup) -> None:
    if group.enabled and dist.is_initialized():
        dist.barrier()  # every process is done with the group before any tears it down
        dist.destroy_process_group()
