"""Whole-volume segmentation: PET/CT volumes in, a label volume on the CT grid out."""

from __future__ import annotations

import contextlib
import logging
import os
import time

import numpy as np
import torch

from ..data.volume import LABEL_MODALITY, Volume
from ..machine import DEFAULT_BATCH_SIZE
from ..models.segmenter import Segmenter
from ..preprocessing.slices import CasePreprocessor
from ..runtime import (
    CancelFlag,
    ProgressCallback,
    autocast,
    batches,
    check_cancel,
    mixed_precision_dtype,
    report,
    resolve_device,
    with_cpu_threads,
)
from .memory import check_batch_memory
from .postprocess import clean_label

log = logging.getLogger(__name__)


def resolve_segmenter(segmenter: Segmenter | str | os.PathLike | None) -> Segmenter:
    """A :class:`Segmenter` as given, or loaded from a ``.safetensors`` path; ``None`` means the bundled model."""
    if isinstance(segmenter, Segmenter):
        return segmenter
    from ..models.segmenter_checkpoint import load_segmenter

    return load_segmenter(segmenter) if segmenter is not None else load_segmenter()


@contextlib.contextmanager
def evaluating(model: torch.nn.Module, device: torch.device):
    """``model`` in eval mode on ``device`` for the duration; its mode and device are restored afterwards."""
    was_training = model.training
    try:
        original = next(model.parameters()).device
    except StopIteration:
        original = device
    model.eval().to(device)
    try:
        yield model
    finally:
        model.train(was_training).to(original)


MATMUL_LAYERS = (torch.nn.Linear, torch.nn.Conv2d, torch.nn.ConvTranspose2d)


@contextlib.contextmanager
def matmul_weights_in(model: torch.nn.Module, dtype: torch.dtype | None):
    """The weights and biases of ``model``'s linear and convolution layers held in ``dtype`` for the duration
    (``None``: unchanged); the float32 originals are put back afterwards, untouched.

    Why: autocast casts a float32 weight to bf16/fp16 in every call, and under ``torch.inference_mode`` (or for
    frozen weights) it keeps no cache, so each forward re-casts every weight of both encoders. Casting them once
    per volume gives the same numbers (autocast rounds the same way) without the repeated copies. Other
    parameters (norms, layer scales, tokens) and buffers stay float32, as autocast would use them.
    """
    swapped = []
    if dtype is not None:
        for module in model.modules():
            if isinstance(module, MATMUL_LAYERS):
                for param in (module.weight, module.bias):
                    if param is not None and param.dtype == torch.float32:
                        swapped.append((param, param.data))
                        param.data = param.data.to(dtype)
    try:
        yield model
    finally:
        for param, original in swapped:
            param.data = original


@with_cpu_threads
def segment_volume(
    ct: Volume,
    pet: Volume,
    segmenter: Segmenter | str | os.PathLike | None = None,
    *,
    device: str | torch.device = "auto",
    batch_size: int = DEFAULT_BATCH_SIZE,
    mixed_precision: bool | None = None,
    check_inputs: bool = True,
    skip_empty_slices: bool = True,
    min_component_mm3: float = 0.0,
    head_neck_only: bool = True,
    threads: int | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelFlag = None,
) -> Volume:
    """Segment a PET/CT case slice by slice; returns a label volume on exactly the CT's grid.

    ``ct``: CT in HU; ``pet``: PET in SUV on any grid that overlaps the CT (resampled onto it).
    ``segmenter``: a :class:`~DualDINOv3Lib.models.Segmenter`, a path to a segmenter ``.safetensors`` file,
    or ``None`` for the bundled demo model. Its stored preprocessing is applied
    (:class:`~DualDINOv3Lib.preprocessing.CasePreprocessor`), slices run in batches of ``batch_size``,
    and class probabilities are mapped back onto the CT slice grid before the arg-max.

    ``device``: ``"auto"`` (cuda, then mps, then cpu) or a device name. ``mixed_precision``: autocast
    (bf16, fp16 on GPUs without bf16); ``None`` = on for CUDA and for CPUs with native bf16 (AVX-512-BF16 or
    AMX; :func:`~DualDINOv3Lib.runtime.mixed_precision_dtype`), ``False`` = float32. ``skip_empty_slices``:
    slices with (almost) no body are labelled background without running the model. ``check_inputs``: refuse
    implausible inputs (CT not in HU, PET not in SUV, the same image twice, CT and PET swapped; see
    :mod:`DualDINOv3Lib.data.plausibility`);
    NaN/inf voxels and impossible spacings are refused always. ``min_component_mm3``: connected regions smaller than
    this are removed from the result. ``head_neck_only``: regions where no head-and-neck GTV can be (entirely
    below the thorax, or mostly inside the skull, as found on the CT,
    :mod:`~DualDINOv3Lib.preprocessing.head_neck_region`; regions without FDG uptake; and regions whose hot part is
    water on the CT, tracer excreted into urine, or fat, brown fat:
    :func:`~DualDINOv3Lib.inference.postprocess.clean_label`) are removed.
    ``threads``: CPU threads for torch and SimpleITK during the job, restored afterwards
    (:func:`~DualDINOv3Lib.runtime.cpu_threads`; ``None``: the process's setting, by default the physical cores).
    ``progress(fraction, message)`` is called after each batch; ``cancel`` (a ``threading.Event`` or a function)
    stops the job between batches by raising
    :class:`~DualDINOv3Lib.inference.Cancelled`.

    Memory: one batch of inputs and logits at a time plus the uint8 output; it does not grow with the number
    of slices beyond the volumes themselves. On the CPU a batch that would need more than the memory available
    is refused before any work, naming the batch size that fits (:mod:`~DualDINOv3Lib.inference.memory`).

    Returns a :class:`~DualDINOv3Lib.data.Volume` of uint8 labels (0 = background, then the segmenter's
    ``label_names[1:]``, e.g. 1 = GTVp, 2 = GTVn), modality ``"label"``.
    """
    start = time.perf_counter()
    model = resolve_segmenter(segmenter)
    report(progress, 0.0, "preprocessing")
    prep = CasePreprocessor(ct, pet, model.config.preprocessing, check_inputs=check_inputs)
    indices = np.flatnonzero(prep.body_slices) if skip_empty_slices else np.arange(prep.num_slices)
    output = np.zeros(ct.shape, dtype=np.uint8)
    device = resolve_device(device)
    check_batch_memory(model, min(batch_size, max(len(indices), 1)), device, mixed_precision)
    done = 0
    weights = matmul_weights_in(model, mixed_precision_dtype(device, mixed_precision, inference=True))
    with evaluating(model, device), weights, torch.inference_mode():
        for chunk in batches(indices, batch_size):
            check_cancel(cancel, "segmentation")
            x = prep.images(chunk).to(device)
            with autocast(device, mixed_precision, inference=True):
                logits = model(x)
            probabilities = torch.softmax(logits.float(), dim=1)
            output[chunk] = prep.probabilities_to_ct_grid(probabilities).argmax(dim=1).to(torch.uint8).cpu().numpy()
            done += len(chunk)
            report(progress, done / max(len(indices), 1), f"segmented {done}/{len(indices)} slices")
    check_cancel(cancel, "segmentation")
    label = ct.with_array(output, modality=LABEL_MODALITY, units=None)
    label = clean_label(label, ct, prep.pet, min_component_mm3=min_component_mm3, head_neck_only=head_neck_only)
    log.info(
        "segmented %d of %d slices on %s in %.1f s", len(indices), prep.num_slices, device, time.perf_counter() - start
    )
    report(progress, 1.0, "done")
    return label
