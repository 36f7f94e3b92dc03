"""Gram anchoring (paper eq. 12): the student's patch-to-patch similarity structure is pulled towards that
of a frozen Gram teacher, which keeps dense features local during long training.

Per image, the Gram matrix ``X X^T`` of the L2-normalised patch tokens ``X`` ``(N, D)``; the loss is the
mean squared difference between student and Gram-teacher matrices. The Gram teacher sees 2x larger crops
of the same region; its feature map is resized (bicubic) to the student's patch grid first.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def gram_matrices(patch_tokens: Tensor) -> Tensor:
    """``(B, N, N)`` Gram matrices of the L2-normalised tokens ``(B, N, D)``."""
    x = F.normalize(patch_tokens.float(), p=2, dim=-1)
    return x @ x.transpose(1, 2)


def resize_patch_tokens(tokens: Tensor, grid: tuple[int, int], size: tuple[int, int]) -> Tensor:
    """Patch tokens ``(B, h*w, D)`` on ``grid`` (h, w) resized bicubically to ``size`` -> ``(B, H*W, D)``."""
    b, n, d = tokens.shape
    if n != grid[0] * grid[1]:
        raise ValueError(f"{n} tokens do not form a {grid} grid")
    if tuple(grid) == tuple(size):
        return tokens
    maps = tokens.transpose(1, 2).reshape(b, d, *grid)
    maps = F.interpolate(maps.float(), size=size, mode="bicubic", align_corners=False)
    return maps.flatten(2).transpose(1, 2)


def gram_loss(student_patches: Tensor, teacher_patches: Tensor) -> Tensor:
    """MSE between the per-image Gram matrices of ``student_patches`` and ``teacher_patches`` ``(B, N, D)``."""
    if student_patches.shape[:2] != teacher_patches.shape[:2]:
        raise ValueError(f"student {tuple(student_patches.shape)} and teacher {tuple(teacher_patches.shape)} differ")
    return F.mse_loss(gram_matrices(student_patches), gram_matrices(teacher_patches).detach())
