"""Training curves (loss and validation Dice per epoch) as a PNG, with matplotlib (Agg backend)."""

from __future__ import annotations

import math
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from DualDINOv3Lib.files import atomic_write


def plot_training_curves(history: list[dict], path: str | os.PathLike, labels: tuple[str, ...] = ()) -> Path:
    """Train loss (left) and validation Dice per class and mean (right) against the epoch."""
    epochs = [row["epoch"] for row in history]
    fig, (ax_loss, ax_dice) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(epochs, [row["train_loss"] for row in history], marker=".")
    ax_loss.set(xlabel="epoch", ylabel="Dice + CE loss", title="training loss")
    for key in sorted(k for k in {k for row in history for k in row} if k.startswith("dice_")):
        values = [row.get(key, math.nan) for row in history]
        suffix = key.removeprefix("dice_")
        name = labels[int(suffix)] if suffix.isdigit() and int(suffix) < len(labels) else suffix
        ax_dice.plot(epochs, values, marker=".", label=name)
    ax_dice.set(xlabel="epoch", ylabel="Dice", title="validation Dice", ylim=(0, 1))
    if ax_dice.lines:
        ax_dice.legend()
    fig.tight_layout()
    path = Path(path)
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=100))
    plt.close(fig)
    return path
