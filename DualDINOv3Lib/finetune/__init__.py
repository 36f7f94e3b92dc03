"""Finetuning: the run configuration, the training loop with exact resume (:func:`finetune`), nnU-Net-style
batch augmentation on tensors and the Dice + cross-entropy loss. Exports are lazy."""

from .._lazy import lazy_exports

_EXPORTS = {
    "FinetuneConfig": ".config",
    "RunConfig": ".config",
    "load_run_config": ".config",
    "parse_finetune_config": ".config",
    "FinetuneResult": ".trainer",
    "finetune": ".trainer",
    "TrainingState": ".state",
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
