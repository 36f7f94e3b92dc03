"""Figures of training and evaluation runs (matplotlib, headless "Agg" backend): training curves and the
Dice box plot of Table 1's data.

matplotlib is an optional dependency (the ``train`` extra: ``pip install "dualdinov3[train]"``), imported
only when a figure is drawn, so the library itself never needs it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from ..domain import STRATA, TUMOUR_CLASSES
from ..errors import DualDINOv3Error, OutputExistsError
from ..evaluation.aggregate import in_stratum
from ..evaluation.metrics import CaseMetrics
from ..files import atomic_write


def _pyplot():
    """matplotlib.pyplot on the headless Agg backend, or a clear error naming the install command."""
    try:
        import matplotlib
    except ImportError as exc:
        raise DualDINOv3Error(
            'drawing figures needs matplotlib: pip install "dualdinov3[train]" (or pass --no-plot where offered)'
        ) from exc
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_training_curves(history: list[dict], path: str | os.PathLike, labels: tuple[str, ...] = ()) -> Path:
    """Train loss (left) and validation Dice per class and mean (right) against the epoch."""
    epochs = [row["epoch"] for row in history]
    plt = _pyplot()
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


SHOW_POINTS_UP_TO = 60
"""Boxes over at most this many subjects also show each subject as a point."""


def dice_boxplot(
    cases_by_configuration: Mapping[str, Sequence[CaseMetrics]],
    path: str | os.PathLike,
    *,
    class_names: Sequence[str] | None = None,
    strata: Sequence[str] = STRATA,
    title: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Writes a PNG box plot of subject Dice: one panel per class, groups by stratum, one box per configuration.

    Each box is over the subjects with the class in that stratum (the same subjects as Table 1's micro Dice);
    the group label says how many. Whiskers at 1.5 IQR, the mean as a white diamond, and each subject as a
    black point when there are at most :data:`SHOW_POINTS_UP_TO` (outliers as hollow points otherwise).
    Refuses to replace an existing ``path`` unless ``overwrite`` (:class:`OutputExistsError`).
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path}: already exists; pass overwrite=True (--overwrite) or choose another name")
    plt = _pyplot()
    class_names = list(class_names) if class_names is not None else list(TUMOUR_CLASSES.values())
    names = list(cases_by_configuration)
    colours = plt.get_cmap("tab10").colors
    width = 0.8 / max(len(names), 1)
    panel_width = 1.0 + len(strata) * (0.5 + 0.35 * max(len(names), 1))
    figure, axes = plt.subplots(1, len(class_names), figsize=(max(panel_width * len(class_names), 6.0), 4.8))
    jitter = np.random.default_rng(0)
    axes = [axes] if len(class_names) == 1 else list(axes)
    for ax, class_name in zip(axes, class_names, strict=True):
        labels = []
        for g, stratum in enumerate(strata):
            counts = set()
            for j, name in enumerate(names):
                dice = [c.dice for c in in_stratum(cases_by_configuration[name], class_name, stratum)]
                counts.add(len(dice))
                if not dice:
                    continue
                positions = [g + (j - (len(names) - 1) / 2) * width]
                box = ax.boxplot(
                    dice,
                    positions=positions,
                    widths=width * 0.85,
                    patch_artist=True,
                    showmeans=True,
                    showfliers=len(dice) > SHOW_POINTS_UP_TO,
                    meanprops={"marker": "D", "markerfacecolor": "white", "markeredgecolor": "black", "markersize": 4},
                    flierprops={"marker": "o", "markersize": 3, "alpha": 0.6},
                    medianprops={"color": "black"},
                )
                box["boxes"][0].set_facecolor(colours[j % len(colours)])
                if len(dice) <= SHOW_POINTS_UP_TO:
                    x = positions[0] + jitter.uniform(-0.25, 0.25, len(dice)) * width
                    ax.scatter(x, dice, s=8, color="black", alpha=0.5, zorder=3, linewidths=0)
            n_text = f"n={counts.pop()}" if len(counts) == 1 else "n=" + "/".join(str(n) for n in sorted(counts))
            labels.append(f"{stratum}\n{n_text}")
        ax.set_xticks(range(len(strata)), labels)
        ax.set_xlim(-0.6, len(strata) - 0.4)
        ax.set_ylim(-0.03, 1.03)
        ax.set_title(class_name)
        ax.set_ylabel("Dice")
        ax.grid(axis="y", alpha=0.3)
    handles = [plt.Rectangle((0, 0), 1, 1, facecolor=colours[j % len(colours)]) for j in range(len(names))]
    figure.legend(handles, names, loc="lower center", ncol=min(len(names), 5), frameon=False)
    figure.suptitle(title or "Subject Dice by tumour volume stratum")
    figure.tight_layout(rect=(0, 0.08 + 0.04 * ((len(names) - 1) // 5), 1, 1))
    try:
        atomic_write(path, lambda tmp: figure.savefig(tmp, dpi=120, format="png"))
    finally:
        plt.close(figure)
    return path
