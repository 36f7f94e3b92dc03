"""Sinkhorn-Knopp centring of the teacher's outputs (DINOv3; paper eq. 2-3).

The teacher's softmax is replaced by a doubly normalised assignment: every sample's distribution over the
``K`` prototypes sums to 1 and every prototype receives ``B/K`` of the batch's total mass, which keeps the
teacher from collapsing onto a few prototypes. Sums over the batch are all-reduced, so ``n`` processes
give the result of one process on the concatenated batch.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def all_reduce(tensor: Tensor, op=None) -> Tensor:
    """In-place sum (or ``op``) over the processes; a no-op in a single process."""
    if _distributed():
        dist.all_reduce(tensor, op=op or dist.ReduceOp.SUM)
    return tensor


@torch.no_grad()
def sinkhorn_knopp(teacher_logits: Tensor, teacher_temp: float, n_iterations: int = 3) -> Tensor:
    """Centred teacher targets ``(B, K)`` from teacher logits ``(B, K)``, computed in float32.

    ``exp(logits / T)`` overflows float32 once logits exceed ~3.5 at T = 0.04, so the *global* maximum
    (over all samples and processes) is subtracted first: the first step divides by the grand total, so a
    global constant factor cancels exactly (a per-sample maximum would not: it rescales columns before the
    prototype normalisation). Entries that would underflow to 0 are kept at the smallest normal float, so a
    sample far below the global maximum still gets a distribution instead of 0/0.
    """
    logits = teacher_logits.float() / float(teacher_temp)
    peak = logits.max().detach().clone() if logits.numel() else logits.new_tensor(float("-inf"))
    all_reduce(peak, dist.ReduceOp.MAX if _distributed() else None)
    q = torch.exp(logits - peak).clamp_min(torch.finfo(torch.float32).tiny).t()  # (K, B)
    n_prototypes = q.shape[0]
    n_samples = all_reduce(torch.tensor(float(q.shape[1]), device=q.device))
    q /= all_reduce(q.sum())
    for _ in range(n_iterations):
        q /= all_reduce(q.sum(dim=1, keepdim=True))  # each prototype's total ...
        q /= n_prototypes  # ... becomes 1/K
        q /= q.sum(dim=0, keepdim=True)  # each sample's total ...
        q /= n_samples  # ... becomes 1/B
    return (q * n_samples).t()
