"""Choosing training and validation cases: a seeded validation share, or one fold of a splits file."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ..data.hecktor import HecktorCase
from ..errors import DataError
from ..evaluation.splits import load_splits


def split_validation(
    cases: list[HecktorCase], fraction: float, seed: int
) -> tuple[list[HecktorCase], list[HecktorCase]]:
    """A seeded random ``fraction`` of ``cases`` (at least one) for validation, the rest for training."""
    if len(cases) < 2:
        raise DataError(f"need at least 2 labelled cases to train and validate, found {len(cases)}")
    if not 0 < fraction < 1:
        raise DataError(f"the validation fraction must be between 0 and 1, got {fraction}")
    order = torch.randperm(len(cases), generator=torch.Generator().manual_seed(seed)).tolist()
    n_val = min(max(1, round(fraction * len(cases))), len(cases) - 1)
    val = sorted((cases[i] for i in order[:n_val]), key=lambda c: c.case_id)
    train = sorted((cases[i] for i in order[n_val:]), key=lambda c: c.case_id)
    return train, val


def select_cases(
    cases: list[HecktorCase], split_file: str | os.PathLike, fold: int
) -> tuple[list[HecktorCase], list[HecktorCase]]:
    """The ``train`` and ``validation`` cases of ``fold`` in a splits JSON (``{"folds": [{"train": [...],
    "validation": [...], "test": [...]}, ...]}``); every listed case must be in ``cases``."""
    splits = load_splits(split_file)
    try:
        if fold < 0:
            raise IndexError(fold)
        chosen = splits["folds"][fold]
        names = {part: list(chosen[part]) for part in ("train", "validation")}
    except (KeyError, IndexError, TypeError) as exc:
        raise DataError(
            f"{split_file}: has no fold {fold} with train/validation lists ({splits.get('n_folds')} folds); "
            "pass a fold the file holds"
        ) from exc
    path = Path(split_file)
    by_id = {c.case_id: c for c in cases}
    missing = [n for part in names.values() for n in part if n not in by_id]
    if missing:
        raise DataError(f"{path}: fold {fold} lists cases that are not in the data folder: {missing[:5]}")
    return [by_id[n] for n in names["train"]], [by_id[n] for n in names["validation"]]
