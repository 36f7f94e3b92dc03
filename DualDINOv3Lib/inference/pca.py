"""PCA maps of what each encoder sees: patch tokens -> 3 principal components -> RGB on the CT grid.

The PCA is fitted once per encoder on the body tokens of the whole volume (streamed: only the mean and
the D x D covariance are accumulated), so a colour means the same thing on every slice. The components
are scaled by their standard deviation (+/- 2.5 SD -> 0..255) and their signs fixed, so the result is
deterministic.
"""

from __future__ import annotations

import logging
import os

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..data.volume import Volume
from ..errors import DualDINOv3Error
from ..machine import DEFAULT_BATCH_SIZE
from ..models.segmenter import Segmenter
from ..preprocessing.body import BODY_THRESHOLD_HU
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
from .segment import evaluating, matmul_weights_in, resolve_segmenter

log = logging.getLogger(__name__)

RGB_MODALITY = "RGB"
SD_RANGE = 2.5


@with_cpu_threads
def pca_feature_maps(
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
    threads: int | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelFlag = None,
) -> dict[str, Volume]:
    """RGB PCA maps of encoder patch tokens, one per encoder, on the CT grid.

    ``encoders``: ``"ct"``, ``"pet"`` (dual-stream), ``"encoder"`` (single-stream) or a list; ``None`` = all.
    ``layer``: the encoder block whose (final-normed) output tokens are used; default ``-1``, the last.
    Other arguments (``threads`` too) as :func:`~DualDINOv3Lib.inference.segment_volume`. Slices without body are black.

    Returns ``{name: Volume}`` with uint8 arrays ``(Z, Y, X, 3)`` and the CT's geometry (modality ``"RGB"``).
    Two passes over the body slices: one to fit the PCA, one to project.
    """
    model = resolve_segmenter(segmenter)
    names = model.check_layer(layer, encoders)  # before any work
    prep = CasePreprocessor(ct, pet, model.config.preprocessing, check_inputs=check_inputs)
    indices = np.flatnonzero(prep.body_slices)
    device = resolve_device(device)
    patch = model.patch_size
    total = 2 * max(len(indices), 1)

    def token_batches(stage: str):
        """Per batch of body slices: slice indices, model inputs, tokens per encoder, body-patch mask."""
        done = 0
        for chunk in batches(indices, batch_size):
            check_cancel(cancel, "PCA")
            x = prep.images(chunk).to(device)
            with autocast(device, mixed_precision, inference=True):
                tokens = {n: t.float() for n, t in model.encoder_tokens(x, layer, names).items()}
            yield chunk, x, tokens, body_patches(x, prep, patch)
            done += len(chunk)
            offset = 0 if stage == "fit" else len(indices)
            report(progress, (offset + done) / total, f"PCA {stage} {done}/{len(indices)} slices")

    pca = {name: TokenPCA(name) for name in names}
    weights = matmul_weights_in(model, mixed_precision_dtype(device, mixed_precision, inference=True))
    with evaluating(model, device), weights, torch.inference_mode():
        for _, _, tokens, body in token_batches("fit"):  # pass 1: mean and covariance of body tokens
            for name, maps in tokens.items():
                pca[name].add(maps, body)
        outputs = {name: np.zeros((*ct.shape, 3), dtype=np.uint8) for name in names}
        for chunk, x, tokens, body in token_batches("maps"):  # pass 2: project and map back to the CT grid
            for name, maps in tokens.items():
                outputs[name][chunk] = pca[name].rgb_on_ct_grid(maps, body, x.shape[-2:], prep, patch)
    check_cancel(cancel, "PCA")
    report(progress, 1.0, "done")
    return {name: ct.with_array(arr, modality=RGB_MODALITY, units=None) for name, arr in outputs.items()}


class TokenPCA:
    """One encoder's PCA, fitted streaming (sum and sum of outer products of body tokens) and applied per batch."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.count = 0
        self.sums: list[Tensor] | None = None
        self._basis: tuple[Tensor, Tensor, Tensor] | None = None

    def add(self, maps: Tensor, body: Tensor) -> None:
        """Adds the body tokens of ``maps`` ``(N, D, h, w)`` (``body``: ``(N, h, w)`` bool) to the fit."""
        t = maps.permute(0, 2, 3, 1)[body].double()
        first, second = t.sum(0), t.T @ t
        if self.sums is None:
            self.sums = [first, second]
        else:
            self.sums[0] += first
            self.sums[1] += second
        self.count += t.shape[0]

    def rgb_on_ct_grid(self, maps: Tensor, body: Tensor, size, prep: CasePreprocessor, patch: int) -> np.ndarray:
        """``(N, Y, X, 3)`` uint8 colours on the CT slice grid of the tokens ``maps`` (black outside the body)."""
        if self._basis is None:
            self._basis = _principal_axes(self.sums, self.count, self.name)
        mean, axes, scale = self._basis
        proj = (maps.permute(0, 2, 3, 1).double() - mean) @ axes / scale  # (N, h, w, 3) in SD units
        rgb = ((proj / SD_RANGE).clamp(-1, 1) + 1) / 2 * body[..., None]
        rgb = rgb.permute(0, 3, 1, 2).float()
        rgb = F.interpolate(rgb, scale_factor=patch, mode="bilinear", align_corners=False)[..., : size[0], : size[1]]
        back = prep.geometry.inverse(rgb, mode="bilinear", fill=0.0)
        return (back.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def body_patches(x: Tensor, prep: CasePreprocessor, patch: int) -> Tensor:
    """``(N, h, w)`` bool: patches whose pixels are mostly body (CT above the body threshold)."""
    norm = prep.normalization
    body = (x[:, 0:1] > (BODY_THRESHOLD_HU - norm.ct_mean) / norm.ct_std).float()
    body = F.pad(body, (0, (-body.shape[-1]) % patch, 0, (-body.shape[-2]) % patch))  # as the segmenter pads
    return F.avg_pool2d(body, patch)[:, 0] > 0.5


def _principal_axes(sums, count: int, name: str) -> tuple[Tensor, Tensor, Tensor]:
    """Mean ``(D,)``, the first 3 principal axes ``(D, 3)`` (sign: largest entry positive), their SDs ``(3,)``."""
    if sums is None or count < 4:
        raise DualDINOv3Error(
            f"too few body tokens ({count}) to fit a PCA of the {name} encoder; does the CT contain a body?"
        )
    first, second = sums
    mean = first / count
    cov = second / count - torch.outer(mean, mean)
    values, vectors = torch.linalg.eigh(cov)  # ascending
    values, vectors = values.flip(0)[:3], vectors.flip(1)[:, :3]
    signs = torch.sign(vectors.gather(0, vectors.abs().argmax(0, keepdim=True)))
    vectors = vectors * signs
    return mean, vectors, values.clamp_min(1e-12).sqrt()
