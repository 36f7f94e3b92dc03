"""The iBOT loss on masked patch tokens (paper eq. 4): for every patch the student saw as a mask token,
cross-entropy between the student's patch prediction and the teacher's (Sinkhorn-centred) output for that
patch of the unmasked image.

Weighting as in DINOv3: each masked token counts ``1 / (number of masked tokens of its image)``, so every
masked image weighs the same whatever its masking ratio; the sum is divided by the number of global
crops (masked or not), so the loss is ~0.5 ln K at initialisation when half of the crops are masked.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def masked_token_weights(masks: Tensor) -> Tensor:
    """``(M,)`` weights ``1/n_masked(image)`` of the masked tokens of ``masks`` ``(n_images, N)`` bool, in the
    row-major order of ``masks.nonzero()`` (the order of ``tokens[masks]``)."""
    counts = masks.sum(dim=1, keepdim=True).clamp_min(1).float()
    return (1.0 / counts).expand_as(masks)[masks]


def ibot_loss(student_logits: Tensor, teacher_probs: Tensor, masks: Tensor, student_temp: float = 0.1) -> Tensor:
    """``student_logits`` and ``teacher_probs`` ``(M, K)`` for the ``M`` masked tokens of ``masks``
    ``(n_images, N)`` (in ``tokens[masks]`` order); the mean over all ``n_images`` images."""
    n_images = masks.shape[0]
    if student_logits.shape[0] == 0:
        return student_logits.sum() * 0.0
    log_p = F.log_softmax(student_logits.float() / student_temp, dim=-1)
    per_token = -(teacher_probs.float() * log_p).sum(dim=-1)
    return (per_token * masked_token_weights(masks).to(per_token)).sum() / n_images
