"""The up-front check that one batch of slices fits in memory on the CPU: a run that would exhaust the memory
is refused before any work with the fix (a smaller batch), instead of being ended by the system part-way."""

from __future__ import annotations

import torch

from .. import machine
from ..errors import DualDINOv3Error
from ..models.segmenter import Segmenter
from ..runtime import mixed_precision_dtype

GB = 2**30


ENCODER_ACTIVATIONS = 40
"""Token-sized float32 tensors alive at once per encoder in one forward (a block's activations, the kept taps and
the fusion's streams), calibrated with ``Testing/benchmarks/bench_memory.py``: a dual ViT-B/16 at 512x512 needs
about 0.3 GB per slice in float32, 0.25 GB in bf16 (the residual stream stays float32 under autocast)."""


def batch_memory_bytes(model: Segmenter, batch_size: int, size: int, dtype: torch.dtype | None) -> int:
    """Estimated working memory of a forward of ``batch_size`` slices of ``size x size`` (``dtype``: the
    autocast precision, None for float32): the encoders' token activations plus the decoder's largest maps."""
    element_bytes = 4 if dtype is None else torch.finfo(dtype).bits // 8
    encoders = sum(
        ENCODER_ACTIVATIONS * ((size // enc.patch_size) ** 2 + enc.n_prefix_tokens) * enc.config.embed_dim * 4
        for enc in model.encoders.values()
    )
    return batch_size * (encoders + model.decoder.working_memory_bytes(size, size, element_bytes))


def check_batch_memory(model: Segmenter, batch_size: int, device: torch.device, mixed_precision: bool | None) -> None:
    """Raises a DualDINOv3Error naming the batch size that fits when a batch would need more than the memory
    available now (CPU only; GPUs report their own out-of-memory error, which the commands explain)."""
    available = machine.available_memory_bytes() if device.type == "cpu" else None
    if available is None:
        return
    size = model.config.preprocessing.crop_size
    dtype = mixed_precision_dtype(device, mixed_precision, inference=True)
    need = batch_memory_bytes(model, batch_size, size, dtype)
    if need <= available:
        return
    per_slice = batch_memory_bytes(model, 1, size, dtype)
    fits = available // per_slice
    fix = f"use a batch size of {fits} or less (--batch-size)" if fits else "free memory or use a machine with more"
    raise DualDINOv3Error(
        f"a batch of {batch_size} slices of {size}x{size} needs about {need / GB:.1f} GB of working memory with this "
        f"model ({'float32' if dtype is None else 'bf16/fp16'}), but only {available / GB:.1f} GB is available; "
        f"{fix}, or close other programs"
    )
