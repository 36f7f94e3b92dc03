"""Validation during finetuning: 3D Dice per case and class on the model grid, the cases shared out over
the processes of a distributed run."""

from __future__ import annotations

import math

import numpy as np
import torch

from ..distributed import DistributedContext
from ..models.segmenter import Segmenter
from ..runtime import autocast
from .dataset import CachedCase


def case_dice_scores(
    model: Segmenter, cases: list[CachedCase], device: torch.device, batch_size: int, num_classes: int
) -> list[list[float]]:
    """Per foreground class, the 3D Dice on the model grid of each case in which the class is in the truth
    or the prediction (a case where both are empty does not count for that class)."""
    per_class: list[list[float]] = [[] for _ in range(1, num_classes)]
    model.eval()
    with torch.inference_mode():
        for case in cases:
            inter = np.zeros(num_classes)
            sums = np.zeros(num_classes)
            for start in range(0, case.images.shape[0], batch_size):
                x = case.inputs(np.arange(start, min(start + batch_size, case.images.shape[0]))).to(device)
                with autocast(device):
                    pred = model(x).argmax(dim=1).cpu().numpy()
                truth = np.asarray(case.labels[start : start + batch_size])
                for c in range(1, num_classes):
                    p, t = pred == c, truth == c
                    inter[c] += np.logical_and(p, t).sum()
                    sums[c] += p.sum() + t.sum()
            for c in range(1, num_classes):
                if sums[c] > 0:
                    per_class[c - 1].append(float(2 * inter[c] / sums[c]))
    return per_class


def summarize_dice(per_class: list[list[float]]) -> dict[str, float]:
    """``{"dice_<c>": mean over cases, "dice_mean": mean over classes}`` (NaN where no case counts)."""
    out = {f"dice_{c}": float(np.mean(v)) if v else math.nan for c, v in enumerate(per_class, start=1)}
    valid = [v for v in out.values() if not math.isnan(v)]
    out["dice_mean"] = float(np.mean(valid)) if valid else math.nan
    return out


def distributed_validation(model, val, ctx: DistributedContext, device, batch_size: int, num_classes: int) -> dict:
    """Validation Dice with the cases shared out over the processes (no rank idles at a barrier while the
    main one validates alone, which could exceed the process group's timeout on large validation sets)."""
    mine = case_dice_scores(model, val[ctx.rank :: ctx.world_size], device, batch_size, num_classes)
    gathered = ctx.gather_objects(mine)
    return summarize_dice([[d for rank in gathered for d in rank[c]] for c in range(num_classes - 1)])
