"""Multi-process jobs through ``torchrun`` (finetuning, pretraining, prediction over many cases): the same
script runs on 1 CPU, 1 GPU or many GPUs/nodes.

``torchrun`` sets ``WORLD_SIZE``/``RANK``/``LOCAL_RANK``; without them everything is a single process.
The backend is nccl on CUDA and gloo on CPU. A job that joins the process group owns it and leaves it at the
end; a job called where a group exists already (a caller's own torchrun script) uses that group and leaves it
to its owner.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from .errors import DualDINOv3Error


@dataclass(frozen=True)
class DistributedContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False
    """True when this context joined the process group (and :func:`shutdown_distributed` leaves it)."""

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def all_finite(self, value: torch.Tensor) -> bool:
        """True when ``value`` is finite on every process."""
        flag = torch.tensor(float(torch.isfinite(value.detach()).all()), device=value.device)
        if self.enabled:
            dist.all_reduce(flag, op=dist.ReduceOp.MIN)
        return bool(flag.item() > 0)

    def raise_if_any_failed(self, error: BaseException | None) -> None:
        """Collective: each process passes its error (None when it succeeded); if any failed, every process
        raises (the failing one its own error, the others a DualDINOv3Error with the first failure's message).
        So a refusal or failure on one process never leaves the others waiting at a later collective."""
        failures = self.gather_objects(None if error is None else str(error))
        if error is not None:
            raise error
        for rank, message in enumerate(failures):
            if message is not None:
                raise DualDINOv3Error(message if self.world_size == 1 else f"process {rank} failed: {message}")

    def gather_objects(self, obj) -> list:
        """``obj`` from every rank, in rank order (on every rank)."""
        if not self.enabled:
            return [obj]
        out = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out


def init_distributed(device: torch.device) -> tuple[DistributedContext, torch.device]:
    """Joins the process group when launched by torchrun; returns the context and this process's device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistributedContext(), device
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    owns = not dist.is_initialized()
    if owns:
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistributedContext(rank, world_size, local_rank, owns), device


def shutdown_distributed(ctx: DistributedContext) -> None:
    """Leaves the process group if ``ctx`` joined it (see :class:`DistributedContext.owns_group`)."""
    if ctx.enabled and ctx.owns_group and dist.is_initialized():
        # every rank must be done with the group (rank 0 writes files after the last collective); a rank
        # tearing down gloo while another still uses it aborts that one ("terminate called ...")
        dist.barrier()
        dist.destroy_process_group()


def parameter_checksums(model: torch.nn.Module) -> list[float]:
    """One float64 sum per parameter tensor: equal lists on every rank mean the replicas are in sync."""
    with torch.no_grad():
        return [float(p.detach().double().sum()) for p in model.parameters()]
