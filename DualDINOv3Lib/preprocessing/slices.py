"""The paper's finetuning/inference preprocessing (sec. 2.2) and its exact inverse.

A PET/CT pair becomes a stack of model inputs ``(Z, 2, S, S)`` (channel 0 = CT, 1 = PET), one per axial
CT slice, and model outputs come back onto the original CT grid voxel for voxel:

1. PET is resampled onto the CT grid in physical space (linear), so both share slices.
2. Each axial slice is resampled in-plane to the target spacing (``PreprocessingSpec.spacing_mm``; cubic
   for images, nearest for labels). The resampled grid covers exactly the same extent as the CT slice
   (nnU-Net's convention), z is never resampled.
3. Every slice is cropped/padded to ``S x S`` (``crop_size``, 512 in the paper) by one window for the
   whole volume, centred on the body (the largest connected region above -500 HU) in-plane. Padding is
   air for CT and 0 for PET.
4. CT is z-scored with the mean and standard deviation of the body voxels; PET is min-max scaled to
   [0, 1] with the minimum and maximum of the whole volume (on the CT grid). With ``context_mm`` (2.5D) each
   input also holds both modalities ``context_mm`` before and after the slice (:mod:`.context`).

The inverse (:meth:`SliceGeometry.inverse`) undoes 3 and 2: maps ``(N, C, S, S)`` back to
``(N, C, Y, X)`` on the CT slice grid. For label maps with a target spacing finer than or equal to the
CT's it is exact (``nearest-exact`` sampling both ways); for probabilities it is bilinear.
Everything works slice by slice, so memory does not grow with the number of slices.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..data.plausibility import check_pet_ct
from ..data.resample import resample_pet_to_ct, resample_to_grid
from ..data.volume import Volume
from ..errors import DataError
from .body import AIR_HU, body_mask
from .context import with_context
from .spec import PET_NORMALIZATIONS, PreprocessingSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SliceGeometry:
    """How an axial CT slice ``(Y, X)`` maps to a model input ``(S, S)`` and back.

    ``resampled_shape``: the slice size (y, x) after in-plane resampling to the target spacing.
    ``crop_start``: (y, x) index in the resampled slice of the input's pixel (0, 0); negative or
    past-the-end windows mean padding.
    """

    source_shape: tuple[int, int]
    resampled_shape: tuple[int, int]
    crop_start: tuple[int, int]
    size: int

    @property
    def resamples(self) -> bool:
        return self.source_shape != self.resampled_shape

    def forward(self, slices: Tensor, *, mode: str, fill: float) -> Tensor:
        """``(N, C, Y, X)`` CT-grid slices -> ``(N, C, S, S)`` model-grid slices.

        ``mode``: ``"bicubic"`` for images, ``"nearest-exact"`` for labels; ``fill`` pads outside the slice.
        """
        if self.resamples:
            kwargs = {"align_corners": False} if mode in ("bicubic", "bilinear") else {}
            slices = F.interpolate(slices, size=self.resampled_shape, mode=mode, **kwargs)
        return _window(slices, self.crop_start, (self.size, self.size), fill)

    def inverse(self, maps: Tensor, *, mode: str, fill: float | Tensor) -> Tensor:
        """``(N, C, S, S)`` model-grid maps -> ``(N, C, Y, X)`` on the CT slice grid.

        ``mode``: ``"nearest-exact"`` for label maps, ``"bilinear"`` for probabilities. ``fill`` is the
        value outside the crop window (a scalar, or a ``(C,)`` tensor, e.g. a background one-hot).
        """
        start = (-self.crop_start[0], -self.crop_start[1])
        maps = _window(maps, start, self.resampled_shape, fill)
        if self.resamples:
            kwargs = {"align_corners": False} if mode == "bilinear" else {}
            maps = F.interpolate(maps, size=self.source_shape, mode=mode, **kwargs)
        return maps


MAX_RESAMPLED_BYTES = 2 << 30
"""The most one batch of resampled slices may take (4 slices, 2 channels, float32, with copies): 2 GiB."""


def _check_slice_memory(resampled: tuple[int, int], spacing, target) -> None:
    """A memory estimate before the in-plane resampling allocates: a clear error instead of a failed allocation."""
    needed = 4 * 2 * 4 * 3 * resampled[0] * resampled[1]
    if needed > MAX_RESAMPLED_BYTES:
        raise DataError(
            f"resampling the CT slices from {tuple(round(s, 4) for s in spacing[:2])} mm to the model's "
            f"{tuple(target)} mm pixels gives {resampled[1]} x {resampled[0]} pixels per slice, about "
            f"{needed / 2**30:.0f} GiB per batch; the CT's spacing is probably wrong (in µm?)"
        )


def _window(x: Tensor, start: tuple[int, int], size: tuple[int, int], fill: float | Tensor) -> Tensor:
    """``x[..., y0:y0+h, x0:x0+w]`` where indices outside ``x`` read ``fill`` (scalar or per channel)."""
    n, c, height, width = x.shape
    out = x.new_empty((n, c, *size))
    if isinstance(fill, Tensor):
        out[:] = fill.to(out).view(1, c, 1, 1)
    else:
        out.fill_(fill)
    y0, x0 = start
    sy0, sx0 = max(y0, 0), max(x0, 0)
    sy1, sx1 = min(y0 + size[0], height), min(x0 + size[1], width)
    if sy1 > sy0 and sx1 > sx0:
        out[:, :, sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = x[:, :, sy0:sy1, sx0:sx1]
    return out


@dataclass(frozen=True)
class Normalization:
    """Volume-level intensity statistics: CT ``(x - ct_mean) / ct_std``, PET ``(x - pet_min) / (pet_max - pet_min)``."""

    ct_mean: float
    ct_std: float
    pet_min: float
    pet_max: float


class CasePreprocessor:
    """One PET/CT case prepared for a segmenter: model inputs per slice, and the way back to the CT grid.

    ``ct``: CT in HU. ``pet``: PET in SUV on any grid overlapping the CT (resampled onto it here).
    ``spec``: the segmenter's :class:`~DualDINOv3Lib.models.PreprocessingSpec`.
    ``min_body_fraction``: a slice "has body" when at least this fraction of it is body (see
    :attr:`body_slices`); slices without body can be skipped at inference.
    ``check_inputs``: refuse implausible inputs (:mod:`DualDINOv3Lib.data.plausibility`: CT not in HU, PET
    not in SUV, the same image twice, CT and PET swapped); NaN/inf voxels and impossible spacings are
    refused always.
    """

    def __init__(
        self,
        ct: Volume,
        pet: Volume,
        spec: PreprocessingSpec,
        *,
        min_body_fraction: float = 0.01,
        check_inputs: bool = True,
    ) -> None:
        if spec.ct_normalization != "zscore" or spec.pet_normalization not in PET_NORMALIZATIONS:
            raise DataError(
                f"unsupported normalisation CT={spec.ct_normalization!r}, PET={spec.pet_normalization!r}; "
                "this version implements the paper's CT 'zscore' and PET 'minmax'"
            )
        ct, pet = check_pet_ct(ct, pet, check_inputs=check_inputs)
        if ct.is_vector or pet.is_vector:
            raise DataError("CT and PET must be scalar volumes, not multi-component (RGB) images")
        self.ct = ct
        self.pet = pet if pet.same_grid(ct) else resample_pet_to_ct(pet, ct)
        self.spec = spec
        body = body_mask(ct)
        self.body_slices = body.reshape(ct.shape[0], -1).mean(axis=1) >= min_body_fraction
        """Boolean ``(Z,)``: slices where the body covers at least ``min_body_fraction`` of the slice."""
        self.geometry = self._geometry(body)
        ct_body = np.asarray(ct.array, dtype=np.float64)[body]
        pet_array = np.asarray(self.pet.array)
        pet_min, pet_max = float(pet_array.min()), float(pet_array.max())
        if pet_max <= pet_min:
            raise DataError(
                f"the PET is constant ({pet_min:g}) where it overlaps the CT; check that PET and CT are the "
                "same study and overlap"
            )
        self.normalization = Normalization(
            ct_mean=float(ct_body.mean()), ct_std=max(float(ct_body.std()), 1e-6), pet_min=pet_min, pet_max=pet_max
        )

    def _geometry(self, body: np.ndarray) -> SliceGeometry:
        _, y, x = self.ct.shape
        if self.spec.spacing_mm is None:
            resampled = (y, x)
        else:
            target_x, target_y = self.spec.spacing_mm
            resampled = (
                max(1, round(y * self.ct.spacing[1] / target_y)),
                max(1, round(x * self.ct.spacing[0] / target_x)),
            )
            _check_slice_memory(resampled, self.ct.spacing, self.spec.spacing_mm)
        rows = np.flatnonzero(body.any(axis=(0, 2)))
        cols = np.flatnonzero(body.any(axis=(0, 1)))
        # body centre in source pixels, then in resampled pixels (same extent, different pixel size)
        centre_y = (rows[0] + rows[-1] + 1) / 2 * resampled[0] / y
        centre_x = (cols[0] + cols[-1] + 1) / 2 * resampled[1] / x
        size = self.spec.crop_size
        return SliceGeometry((y, x), resampled, (round(centre_y - size / 2), round(centre_x - size / 2)), size)

    @property
    def num_slices(self) -> int:
        return self.ct.shape[0]

    def images(self, indices) -> Tensor:
        """Model inputs ``(N, C, S, S)`` float32 for the axial slices ``indices`` (CT z-scored, PET in [0, 1]).
        ``C`` is 2 (CT, PET), or 6 with the spec's ``context_mm`` (see :func:`.context.with_context`)."""
        indices = np.atleast_1d(np.asarray(indices, dtype=np.int64))
        if self.spec.context_mm > 0:
            return with_context(self._slices, indices, self.num_slices, self.ct.spacing[2], self.spec.context_mm)
        return self._slices(indices)

    def _slices(self, indices: np.ndarray) -> Tensor:
        """``(N, 2, S, S)``: CT and PET of the axial slices ``indices``."""
        norm = self.normalization
        ct = torch.from_numpy(np.asarray(self.ct.array[indices], dtype=np.float32))
        pet = torch.from_numpy(np.asarray(self.pet.array[indices], dtype=np.float32))
        ct = self.geometry.forward(ct[:, None], mode="bicubic", fill=AIR_HU)
        pet = self.geometry.forward(pet[:, None], mode="bicubic", fill=norm.pet_min)
        ct = (ct - norm.ct_mean) / norm.ct_std
        pet = ((pet - norm.pet_min) / (norm.pet_max - norm.pet_min)).clamp_(0.0, 1.0)
        return torch.cat([ct, pet], dim=1)

    def labels(self, label: Volume, indices) -> Tensor:
        """Label maps ``(N, S, S)`` int64 for the axial slices ``indices`` (nearest resampling)."""
        if not label.same_grid(self.ct):
            label = resample_to_grid(label, self.ct, interpolation="nearest")
        indices = np.atleast_1d(np.asarray(indices, dtype=np.int64))
        maps = torch.from_numpy(np.asarray(label.array[indices], dtype=np.int64))
        out = self.geometry.forward(maps[:, None].to(torch.float32), mode="nearest-exact", fill=0.0)
        return out[:, 0].round().to(torch.int64)

    def labels_to_ct_grid(self, maps: Tensor) -> Tensor:
        """Label maps ``(N, S, S)`` on the model grid -> ``(N, Y, X)`` uint8 on the CT slice grid (nearest)."""
        out = self.geometry.inverse(maps[:, None].to(torch.float32), mode="nearest-exact", fill=0.0)
        return out[:, 0].round().to(torch.uint8)

    def probabilities_to_ct_grid(self, probabilities: Tensor) -> Tensor:
        """Class probabilities ``(N, C, S, S)`` -> ``(N, C, Y, X)`` on the CT slice grid (bilinear).

        Outside the crop window the result is certain background (class 0).
        """
        background = torch.zeros(probabilities.shape[1], dtype=probabilities.dtype)
        background[0] = 1.0
        return self.geometry.inverse(probabilities, mode="bilinear", fill=background)


def preprocess_case(
    ct: Volume, pet: Volume, spec: PreprocessingSpec, label: Volume | None = None
) -> tuple[np.ndarray, np.ndarray | None, CasePreprocessor]:
    """A whole case as arrays (for training caches): images ``(Z, 2, S, S)`` float32, labels ``(Z, S, S)``
    uint8 (or ``None``), and the :class:`CasePreprocessor` that made them (geometry, statistics)."""
    prep = CasePreprocessor(ct, pet, spec)
    all_slices = np.arange(prep.num_slices)
    images = prep.images(all_slices).numpy()
    labels = None if label is None else prep.labels(label, all_slices).to(torch.uint8).numpy()
    log.debug("preprocessed %d slices to %s", prep.num_slices, images.shape[-2:])
    return images, labels, prep
