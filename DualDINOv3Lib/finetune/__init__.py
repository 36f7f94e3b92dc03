"""Finetuning parts: nnU-Net-style batch augmentation on tensors and the Dice + cross-entropy loss. Exports are lazy."""

from .._lazy import lazy_exports

_EXPORTS = {
    "AugmentationConfig": ".augment",
    "AugmentationParams": ".augment",
    "DiceCELoss": ".losses",
    "LossTerms": ".losses",
    "apply_augmentation": ".augment",
    "augment_batch": ".augment",
    "sample_augmentation": ".augment",
    "soft_dice_scores": ".losses",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
