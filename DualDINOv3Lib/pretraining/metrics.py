"""The metrics of a pretraining run: ``metrics.jsonl`` and ``metrics.csv`` (one row per logged step, every
loss term, teacher entropy, learning rate, weight decay, momentum, teacher temperature) and
``loss_curve.png`` (needs matplotlib; skipped with a warning without it)."""

from __future__ import annotations

import csv
import io
import json
import logging
from pathlib import Path

from ..files import atomic_write

log = logging.getLogger(__name__)

CURVES = ("total", "dino", "ibot", "koleo", "gram")


def write_metrics(folder: Path, history: list[dict]) -> None:
    lines = "".join(json.dumps(row) + "\n" for row in history)
    atomic_write(folder / "metrics.jsonl", lambda tmp: Path(tmp).write_text(lines))
    keys = list(dict.fromkeys(k for row in history for k in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=keys)
    writer.writeheader()
    writer.writerows(history)
    atomic_write(folder / "metrics.csv", lambda tmp: Path(tmp).write_text(buffer.getvalue()))


def write_loss_curve(folder: Path, history: list[dict]) -> Path | None:
    """``loss_curve.png``: each loss term and the teacher entropy against the step."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning("matplotlib is not installed: no loss_curve.png (pip install matplotlib)")
        return None
    if not history:
        return None
    steps = [row["step"] for row in history]
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for key in CURVES:
        if key in history[0]:
            ax.plot(steps, [row.get(key, float("nan")) for row in history], label=key)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend()
    ax2.plot(steps, [row["teacher_entropy"] for row in history], label="teacher entropy")
    ax2.axhline(history[0]["teacher_entropy_max"], color="grey", linestyle="--", label="ln K")
    ax2.set_xlabel("step")
    ax2.legend()
    fig.tight_layout()
    path = folder / "loss_curve.png"
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=100, format="png"))
    plt.close(fig)
    return path
