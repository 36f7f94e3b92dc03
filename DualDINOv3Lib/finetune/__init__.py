"""Finetuning parts: nnU-Net-style batch augmentation on tensors and the Dice + cross-entropy loss."""

from .augment import (
    AugmentationConfig,
    AugmentationParams,
    apply_augmentation,
    augment_batch,
    sample_augmentation,
)
from .losses import DiceCELoss, LossTerms, soft_dice_scores

__all__ = [
    "AugmentationConfig",
    "AugmentationParams",
    "DiceCELoss",
    "LossTerms",
    "apply_augmentation",
    "augment_batch",
    "sample_augmentation",
    "soft_dice_scores",
]
