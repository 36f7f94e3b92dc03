"""Per-step schedules (paper sec. 2.3): learning rate (linear warm-up then cosine), weight decay (cosine),
EMA momentum (0.996 -> 1 over the stage), teacher temperature (linear warm-up 0.04 -> 0.07) and the
last-layer freeze. Each is a pure function of the step, so a resumed run needs to save only the step.
"""

from __future__ import annotations

import math


def cosine(step: int, start: float, end: float, total: int, warmup: int = 0, warmup_start: float = 0.0) -> float:
    """Linear from ``warmup_start`` to ``start`` over ``warmup`` steps, then cosine to ``end`` at ``total``."""
    if step < warmup:
        return warmup_start + (start - warmup_start) * step / warmup
    span = max(total - warmup, 1)
    progress = min(max((step - warmup) / span, 0.0), 1.0)
    return end + 0.5 * (start - end) * (1.0 + math.cos(math.pi * progress))


def linear(step: int, start: float, end: float, total: int) -> float:
    """``start`` at step 0 to ``end`` at ``total``, constant afterwards."""
    if total <= 0:
        return end
    return start + (end - start) * min(max(step / total, 0.0), 1.0)


def learning_rate(step: int, base: float, total: int, warmup: int, final: float = 0.0) -> float:
    """Linear warm-up from 0 over ``warmup`` steps, then cosine decay to ``final`` at ``total``."""
    return cosine(step, base, final, total, warmup, 0.0)


def teacher_temperature(step: int, start: float, end: float, warmup: int) -> float:
    return linear(step, start, end, warmup)


def ema_momentum(step: int, start: float, total: int, end: float = 1.0) -> float:
    """Linear from ``start`` to ``end`` (1.0) over the stage (the paper's schedule)."""
    return linear(step, start, end, total)


def scaled_learning_rate(base: float, global_batch: int, reference_batch: int = 1024) -> float:
    """Square-root scaling of a learning rate tuned at ``reference_batch`` to ``global_batch`` (as DINOv3)."""
    return base * math.sqrt(global_batch / reference_batch)
