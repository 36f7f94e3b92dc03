"""The DINO loss on the cls token (paper eq. 1-3): cross-entropy between the student's softmax (at the
student temperature) and the teacher's Sinkhorn-centred targets, over every pair of a student crop and a
teacher global crop that are different views.

Pairs: each of the ``n_l`` local crops against each of the ``n_g`` teacher global crops, and each student
global crop against the *other* teacher global crops (the diagonal is excluded). As in DINOv3 the global
and local terms are weighted by their pair counts, so the total is the plain mean over all pairs.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor


class DinoLoss(NamedTuple):
    total: Tensor
    global_term: Tensor
    local_term: Tensor


def cross_entropy_sum(student_logits: Tensor, teacher_probs: Tensor, student_temp: float) -> Tensor:
    """``-sum_s sum_t sum_b sum_k t[t,b,k] log softmax(s[s,b,:]/T)[k]`` for student ``(S, B, K)`` and
    teacher ``(T, B, K)``: the cross-entropies of all ``S x T`` crop pairs, summed over the batch."""
    log_p = F.log_softmax(student_logits.float() / student_temp, dim=-1)
    return -torch.einsum("sbk,tbk->st", log_p, teacher_probs.float())


def dino_loss(
    student_global: Tensor, student_local: Tensor | None, teacher_probs: Tensor, student_temp: float = 0.1
) -> DinoLoss:
    """``student_global`` ``(n_g, B, K)``, ``student_local`` ``(n_l, B, K)`` or None, ``teacher_probs``
    ``(n_g, B, K)`` (rows sum to 1). Terms are means over pairs and samples."""
    n_g, batch = student_global.shape[:2]
    pairs = cross_entropy_sum(student_global, teacher_probs, student_temp)
    off_diagonal = ~torch.eye(n_g, dtype=torch.bool, device=pairs.device)
    n_global_pairs = int(off_diagonal.sum())
    global_sum = pairs[off_diagonal].sum()
    zero = global_sum.new_zeros(())
    global_term = global_sum / (n_global_pairs * batch) if n_global_pairs else zero
    n_local_pairs = 0 if student_local is None else student_local.shape[0] * n_g
    if n_local_pairs:
        local_sum = cross_entropy_sum(student_local, teacher_probs, student_temp).sum()
        local_term = local_sum / (n_local_pairs * batch)
    else:
        local_sum, local_term = zero, zero
    n_pairs = n_global_pairs + n_local_pairs
    if n_pairs == 0:
        raise ValueError("the DINO loss needs at least two global crops or one local crop")
    total = (global_sum + local_sum) / (n_pairs * batch)
    return DinoLoss(total, global_term, local_term)
