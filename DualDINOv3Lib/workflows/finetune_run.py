"""Finetuning one configuration on a HECKTOR-layout folder (real HECKTOR, or phantoms from
``dualdinov3 phantom``): the job behind ``dualdinov3 finetune`` and ``Training/finetune.py``.

Validation cases come from a splits file (``split`` + ``fold``, made by ``dualdinov3 crossval``) or a seeded
``val_fraction`` of the data. Writes best/last segmenters, metrics.jsonl/csv, curves.png and the resolved
config into ``out``.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..data.hecktor import list_hecktor_cases
from ..finetune.config import load_run_config
from ..finetune.splits import select_cases, split_validation
from ..finetune.trainer import FinetuneResult, finetune
from ..progress import ProgressBar
from .figures import plot_training_curves


def run_finetune(
    config: str | os.PathLike,
    data: str | os.PathLike,
    out: str | os.PathLike,
    *,
    split: str | os.PathLike | None = None,
    fold: int = 0,
    val_fraction: float = 0.2,
    resume: bool = False,
    device: str = "auto",
    cache: str | os.PathLike | None = None,
    **overrides,
) -> FinetuneResult:
    """Finetunes the segmenter of ``config`` (its ``training:`` section, with ``overrides``) on ``data``."""
    run = load_run_config(config, **overrides)
    cases = list_hecktor_cases(data, require_labels=True)
    if split is not None:
        train, val = select_cases(cases, split, fold)
    else:
        train, val = split_validation(cases, val_fraction, run.training.seed)
    print(f"{run.segmenter.name}: {len(train)} training and {len(val)} validation cases, {run.training.epochs} epochs")
    curves = Path(out) / "curves.png"
    return finetune(
        run.segmenter,
        train,
        val,
        out,
        run.training,
        device=device,
        resume=resume,
        cache_dir=cache,
        progress_factory=lambda epoch: ProgressBar(f"epoch {epoch + 1}"),
        on_epoch_end=lambda history: plot_training_curves(history, curves, run.segmenter.labels),
    )
