"""What every long-running job shares: device choice, mixed precision, progress reports and cancelling."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable

import torch

from .errors import DualDINOv3Error

log = logging.getLogger(__name__)

ProgressCallback = Callable[[float, str], None]
"""``progress(fraction, message)`` with ``fraction`` in [0, 1]."""
CancelFlag = threading.Event | Callable[[], bool] | None
"""A ``threading.Event`` (set it to cancel) or a function returning True to cancel."""

DEVICE_CHOICES = ("auto", "cuda", "mps", "cpu")


class Cancelled(DualDINOv3Error):
    """Raised when a job is cancelled through its cancel flag; nothing was written and inputs are intact."""


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> cuda if available, then mps, then cpu; other names are checked to exist."""
    if isinstance(device, torch.device):
        return device
    name = str(device).lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise DualDINOv3Error(
            f"device {device!r} was asked for but this torch has no CUDA GPU; use --device cpu or auto"
        )
    if name == "mps" and not (getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()):
        raise DualDINOv3Error("device 'mps' was asked for but Apple MPS is not available; use --device cpu or auto")
    try:
        return torch.device(name)
    except RuntimeError as exc:
        raise DualDINOv3Error(f"unknown device {device!r}; use one of {', '.join(DEVICE_CHOICES)}") from exc


def autocast(device: torch.device, enabled: bool | None = None) -> contextlib.AbstractContextManager:
    """Mixed precision for inference: bf16 on CUDA GPUs that support it, else fp16; off on CPU.

    ``enabled=None`` means on for CUDA only.
    """
    if enabled is None:
        enabled = device.type == "cuda"
    if not enabled or device.type == "cpu":
        return contextlib.nullcontext()
    dtype = torch.float16
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        dtype = torch.bfloat16
    return torch.autocast(device_type=device.type, dtype=dtype)


def is_cancelled(cancel: CancelFlag) -> bool:
    if cancel is None:
        return False
    if isinstance(cancel, threading.Event):
        return cancel.is_set()
    return bool(cancel())


def check_cancel(cancel: CancelFlag, what: str) -> None:
    if is_cancelled(cancel):
        raise Cancelled(f"{what} was cancelled")


def report(progress: ProgressCallback | None, fraction: float, message: str) -> None:
    if progress is not None:
        progress(min(max(float(fraction), 0.0), 1.0), message)
    log.debug("%3.0f%% %s", 100 * fraction, message)


def batches(indices, batch_size: int):
    """Consecutive chunks of ``indices`` of at most ``batch_size``."""
    if batch_size < 1:
        raise DualDINOv3Error(f"batch size must be at least 1, got {batch_size}")
    for start in range(0, len(indices), batch_size):
        yield indices[start : start + batch_size]
