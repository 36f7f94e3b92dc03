"""What preprocessing a segmenter expects (paper sec. 2.2): stored in every segmenter file, applied by
:class:`~DualDINOv3Lib.preprocessing.CasePreprocessor`. Plain data, no torch."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PreprocessingSpec:
    """The preprocessing a segmenter expects (paper sec. 2.2); applied by the data pipeline.

    ``spacing_mm``: in-plane (x, y) target spacing, ``None`` keeps the CT's; ``crop_size``: axial slices
    are cropped/padded to ``crop_size x crop_size``; CT is z-scored and PET min-max scaled per volume.
    """

    spacing_mm: tuple[float, float] | None = None
    crop_size: int = 512
    ct_normalization: str = "zscore"
    pet_normalization: str = "minmax"
