"""Segmentation and feature maps from one encoder pass: what ``dualdinov3 segment --pca-out`` and the Slicer
module's "Segment, then show feature maps" need, without running the encoders again for the maps.

Pass 1 runs each batch of slices through the encoders once: the tapped maps are decoded into labels, and
the tokens of the PCA's block are added to each encoder's PCA fit (body slices only) and, while they fit in
``token_budget_mb``, kept (as float16 on the CPU) for pass 2, which projects them to colours. Past the
budget, pass 2 runs the encoders again for the slices whose tokens were not kept, so memory stays bounded.
"""

from __future__ import annotations

import os

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
from .pca import RGB_MODALITY, TokenPCA, body_patches
from .postprocess import clean_label
from .segment import evaluating, matmul_weights_in, resolve_segmenter


@with_cpu_threads
def segment_with_feature_maps(
    ct: Volume,
    pet: Volume,
    segmenter: Segmenter | str | os.PathLike | None = None,
    *,
    encoders: str | list[str] | None = None,
    layer: int = -1,
    device: str | torch.device = "auto",
    batch_size: int = DEFAULT_BATCH_SIZE,
    mixed_precision: bool | None = None,
    check_inputs: bool = True,
    skip_empty_slices: bool = True,
    min_component_mm3: float = 0.0,
    head_neck_only: bool = True,
    token_budget_mb: float = 1024.0,
    threads: int | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelFlag = None,
) -> tuple[Volume, dict[str, Volume]]:
    """The label volume of :func:`~DualDINOv3Lib.segment_volume` and the maps of
    :func:`~DualDINOv3Lib.pca_feature_maps` (same arguments, ``threads`` too), from one pass through the encoders.

    ``token_budget_mb``: how much memory the kept tokens may take; slices past it are encoded again in the
    second pass (0: never keep, always encode twice).
    """
    model = resolve_segmenter(segmenter)
    names = model.check_layer(layer, encoders)
    prep = CasePreprocessor(ct, pet, model.config.preprocessing, check_inputs=check_inputs)
    indices = np.flatnonzero(prep.body_slices) if skip_empty_slices else np.arange(prep.num_slices)
    device = resolve_device(device)
    check_batch_memory(model, min(batch_size, max(len(indices), 1)), device, mixed_precision)
    patch = model.patch_size
    pca = {name: TokenPCA(name) for name in names}
    labels = np.zeros(ct.shape, dtype=np.uint8)
    kept: dict[int, dict[str, torch.Tensor]] = {}
    budget = token_budget_mb * 2**20
    body_chunks, done = [], 0
    weights = matmul_weights_in(model, mixed_precision_dtype(device, mixed_precision, inference=True))
    with evaluating(model, device), weights, torch.inference_mode():
        for chunk in batches(indices, batch_size):  # pass 1: labels, PCA fit, tokens kept within the budget
            check_cancel(cancel, "segmentation")
            x = prep.images(chunk).to(device)
            with autocast(device, mixed_precision, inference=True):
                feats, tokens = model.features_and_tokens(x, layer, names)
                logits = model.decode_features(feats)[..., : x.shape[-2], : x.shape[-1]]
            probabilities = torch.softmax(logits.float(), dim=1)
            labels[chunk] = prep.probabilities_to_ct_grid(probabilities).argmax(dim=1).to(torch.uint8).cpu().numpy()
            in_body = torch.from_numpy(prep.body_slices[chunk]).to(x.device)
            if in_body.any():
                body = body_patches(x[in_body], prep, patch)
                for name in names:
                    pca[name].add(tokens[name][in_body].float(), body)
                body_chunks.append(chunk[prep.body_slices[chunk]])
                size = sum(t[in_body].numel() * 2 for t in tokens.values())
                if budget >= size:
                    kept[len(body_chunks) - 1] = {n: tokens[n][in_body].to("cpu", torch.float16) for n in names}
                    budget -= size
            done += len(chunk)
            report(progress, 0.8 * done / max(len(indices), 1), f"segmented {done}/{len(indices)} slices")
        maps = {name: np.zeros((*ct.shape, 3), dtype=np.uint8) for name in names}
        for k, chunk in enumerate(body_chunks):  # pass 2: colours, from the kept tokens or a second encoding
            check_cancel(cancel, "PCA")
            x = prep.images(chunk).to(device)
            if k in kept:
                tokens = {n: t.to(device, torch.float32) for n, t in kept.pop(k).items()}
            else:
                with autocast(device, mixed_precision, inference=True):
                    tokens = {n: t.float() for n, t in model.encoder_tokens(x, layer, names).items()}
            body = body_patches(x, prep, patch)
            for name in names:
                maps[name][chunk] = pca[name].rgb_on_ct_grid(tokens[name], body, x.shape[-2:], prep, patch)
            report(progress, 0.8 + 0.2 * (k + 1) / len(body_chunks), f"feature maps {k + 1}/{len(body_chunks)}")
    check_cancel(cancel, "segmentation")
    label = ct.with_array(labels, modality=LABEL_MODALITY, units=None)
    label = clean_label(label, ct, prep.pet, min_component_mm3=min_component_mm3, head_neck_only=head_neck_only)
    report(progress, 1.0, "done")
    return label, {name: ct.with_array(arr, modality=RGB_MODALITY, units=None) for name, arr in maps.items()}
