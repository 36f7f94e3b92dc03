"""The segmentation loss used for finetuning: soft Dice + cross-entropy, as in nnU-Net.

``loss = weight_dice * (1 - mean soft Dice over foreground classes) + weight_ce * cross-entropy``, both weights
1 by default. Soft Dice per class is ``(2 * sum(p * g) + smooth) / (sum(p) + sum(g) + smooth)`` with ``p`` the
softmax probability and ``g`` the one-hot truth, summed over the pixels of the whole batch (``batch_dice``,
nnU-Net's setting for 2D) or of each sample (then averaged over samples and classes); ``smooth = 1e-5``.
nnU-Net adds ``-Dice`` instead of ``1 - Dice``: the same gradients, but here a perfect prediction scores ~0.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError, DataError


class LossTerms(NamedTuple):
    """One loss evaluation. ``total``, ``dice`` and ``ce`` are scalars in the autograd graph; ``dice`` is the
    Dice term ``1 - mean soft Dice`` before weighting. ``class_dice`` ``(K,)`` is the soft Dice of each scored
    class (foreground classes unless ``include_background``), detached, NaN where a class was ignored."""

    total: Tensor
    dice: Tensor
    ce: Tensor
    class_dice: Tensor


def soft_dice_scores(
    probabilities: Tensor, labels: Tensor, *, batch_dice: bool = True, smooth: float = 1e-5
) -> tuple[Tensor, Tensor]:
    """Soft Dice of ``probabilities`` ``(B, C, H, W)`` against integer ``labels`` ``(B, H, W)`` for every class.

    Returns ``(dice, truth_pixels)``: shapes ``(C,)`` with ``batch_dice`` (sums over the batch), else ``(B, C)``;
    ``truth_pixels`` counts the pixels of each class in the truth (0 where a class is absent).
    """
    num_classes = probabilities.shape[1]
    with torch.no_grad():
        one_hot = F.one_hot(labels.long(), num_classes).permute(0, 3, 1, 2).to(probabilities.dtype)
    axes = (0, 2, 3) if batch_dice else (2, 3)
    intersection = (probabilities * one_hot).sum(axes)
    predicted = probabilities.sum(axes)
    truth = one_hot.sum(axes)
    dice = (2.0 * intersection + smooth) / (predicted + truth + smooth).clamp(min=1e-8)
    return dice, truth


class DiceCELoss(nn.Module):
    """Dice + cross-entropy on logits ``(B, C, H, W)`` and integer labels ``(B, H, W)`` in ``[0, C)``.

    ``include_background``: also score class 0 in the Dice term (nnU-Net does not).
    ``ignore_absent_classes``: leave out of the Dice mean each class absent from the truth (over the batch with
    ``batch_dice``, per sample otherwise) instead of pushing its predictions to zero through a Dice of ~0; if
    no class is left the Dice term is 0. Computed in float32 whatever the logits' dtype (mixed precision).
    """

    def __init__(
        self,
        *,
        weight_dice: float = 1.0,
        weight_ce: float = 1.0,
        batch_dice: bool = True,
        smooth: float = 1e-5,
        include_background: bool = False,
        ignore_absent_classes: bool = False,
    ) -> None:
        super().__init__()
        if weight_dice < 0 or weight_ce < 0 or weight_dice + weight_ce == 0:
            raise ConfigError(f"loss weights must be >= 0 and not both 0, got dice {weight_dice}, ce {weight_ce}")
        if smooth < 0:
            raise ConfigError(f"the Dice smoothing term must be >= 0, got {smooth}")
        self.weight_dice = float(weight_dice)
        self.weight_ce = float(weight_ce)
        self.batch_dice = batch_dice
        self.smooth = float(smooth)
        self.include_background = include_background
        self.ignore_absent_classes = ignore_absent_classes

    def forward(self, logits: Tensor, labels: Tensor) -> LossTerms:
        _check_inputs(logits, labels)
        logits = logits.float()
        ce = F.cross_entropy(logits, labels.long())
        dice_per_class, truth = soft_dice_scores(
            torch.softmax(logits, dim=1), labels, batch_dice=self.batch_dice, smooth=self.smooth
        )
        first = 0 if self.include_background else 1
        dice_per_class, truth = dice_per_class[..., first:], truth[..., first:]
        scored = truth > 0 if self.ignore_absent_classes else torch.ones_like(truth, dtype=torch.bool)
        count = scored.sum()
        mean_dice = torch.where(scored, dice_per_class, 0.0).sum() / count.clamp(min=1)
        # no scored class: a zero Dice term that still belongs to the graph
        dice_term = torch.where(count > 0, 1.0 - mean_dice, 0.0 * mean_dice)
        total = self.weight_dice * dice_term + self.weight_ce * ce
        with torch.no_grad():
            kept = torch.where(scored, dice_per_class, torch.nan)
            class_dice = kept if self.batch_dice else kept.nanmean(dim=0)
        return LossTerms(total=total, dice=dice_term, ce=ce, class_dice=class_dice.detach())


def _check_inputs(logits: Tensor, labels: Tensor) -> None:
    if logits.ndim != 4 or not logits.is_floating_point():
        shape = tuple(logits.shape)
        raise DataError(f"the loss expects floating-point logits (B, C, H, W), got {shape} {logits.dtype}")
    b, c, h, w = logits.shape
    if c < 2:
        raise DataError(f"the loss needs at least 2 classes (background + one structure), got logits with {c}")
    if labels.shape != (b, h, w):
        raise DataError(f"labels must be (B, H, W) = {(b, h, w)} to match the logits, got {tuple(labels.shape)}")
    if labels.is_floating_point() or labels.dtype == torch.bool:
        raise DataError(f"labels must hold integer class indices (e.g. int64), got {labels.dtype}")
    if bool(((labels < 0) | (labels >= c)).any()):
        low, high = int(labels.min()), int(labels.max())
        raise DataError(f"labels must lie in [0, {c - 1}] for {c} classes, found values in [{low}, {high}]")
