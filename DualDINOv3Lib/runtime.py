"""What every long-running job shares: device choice, CPU threads, mixed precision, progress reports and
cancelling."""

from __future__ import annotations

import contextlib
import functools
import logging
import re
import threading
from collections.abc import Callable
from pathlib import Path

import torch

from .errors import DualDINOv3Error
from .machine import check_threads

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


@contextlib.contextmanager
def cpu_threads(threads: int | None):
    """Run the block with ``threads`` CPU threads for torch and SimpleITK, restoring both afterwards (also on an
    error or a cancel), so a long-lived process such as Slicer's is left as it was.

    ``None`` leaves the process's setting (torch's default: the physical cores, or ``OMP_NUM_THREADS``).
    A count outside 1..the CPUs this process may use raises :class:`~DualDINOv3Lib.errors.ConfigError`
    (:func:`DualDINOv3Lib.machine.check_threads`). Yields the thread count in effect.
    """
    if threads is None:
        yield torch.get_num_threads()
        return
    threads = check_threads(threads)
    import SimpleITK as sitk

    before = torch.get_num_threads(), sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    torch.set_num_threads(threads)
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)
    try:
        yield threads
    finally:
        torch.set_num_threads(before[0])
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(before[1])


def with_cpu_threads(job):
    """Decorator: runs ``job`` under :func:`cpu_threads` with its keyword argument ``threads`` (default None).

    The job declares ``threads`` in its signature (so it is documented and checked like any option) and
    this decorator applies it around the whole job, preprocessing and resampling included.
    """

    @functools.wraps(job)
    def run(*args, **kwargs):
        with cpu_threads(kwargs.get("threads")):
            return job(*args, **kwargs)

    return run


@functools.cache
def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX-512-BF16 or AMX-BF16; read from /proc/cpuinfo).

    Other CPUs can run bf16 autocast too, but emulated and slower than float32.
    """
    try:
        flags = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return False
    return bool(re.search(r"\b(avx512_bf16|amx_bf16)\b", flags))


def mixed_precision_dtype(
    device: torch.device, enabled: bool | None = None, *, inference: bool = False
) -> torch.dtype | None:
    """The reduced precision autocast uses on ``device``, or None for float32.

    ``enabled=None`` (automatic): on for CUDA (bf16 where supported, else fp16); for inference
    (``inference=True``) also on CPUs that compute bf16 natively (:func:`cpu_has_native_bf16`: AVX-512-BF16 or
    AMX), where it is about 2.5x faster and was measured safe (``Testing/inference/test_precision_default.py``);
    off on other CPUs (emulated bf16 is slower than float32), on MPS, and on CPU for training (bf16 finetuning
    was reported worse than fp32). ``enabled=True``: CUDA as above, bf16 on CPU, fp16 on MPS.
    ``enabled=False``: float32 everywhere.
    """
    if enabled is None:
        enabled = device.type == "cuda" or (inference and device.type == "cpu" and cpu_has_native_bf16())
    if not enabled:
        return None
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu":
        return torch.bfloat16
    return torch.float16


def autocast(
    device: torch.device, enabled: bool | None = None, *, inference: bool = False
) -> contextlib.AbstractContextManager:
    """Mixed precision for inference and training (:func:`mixed_precision_dtype`); a no-op for float32."""
    dtype = mixed_precision_dtype(device, enabled, inference=inference)
    if dtype is None:
        return contextlib.nullcontext()
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
