"""What preprocessing a segmenter expects (paper sec. 2.2): stored in every segmenter file, applied by
:class:`~DualDINOv3Lib.preprocessing.CasePreprocessor`. Plain data, no torch."""

from __future__ import annotations

from dataclasses import dataclass

CONTEXT_CHANNELS = 6
"""Channels of a 2.5D input: CT and PET of the slice, then both ``context_mm`` before it, then both after it."""
CT_SLICES = (2, 0, 4)
"""The CT channels of a 2.5D input in slice order (before, at, after): what the CT encoder takes."""
PET_SLICES = (3, 1, 5)
"""The PET channels of a 2.5D input in slice order: what the PET encoder takes."""
SWAPPED_CONTEXT = (0, 1, 4, 5, 2, 3)
"""The channel order of the same input with before and after exchanged (a scan stored the other way round)."""
PET_NORMALIZATIONS = ("minmax",)
"""The PET scalings a segmenter may ask for (see :class:`PreprocessingSpec`)."""


@dataclass(frozen=True)
class PreprocessingSpec:
    """The preprocessing a segmenter expects (paper sec. 2.2); applied by the data pipeline.

    ``spacing_mm``: in-plane (x, y) target spacing, ``None`` keeps the CT's; ``crop_size``: axial slices
    are cropped/padded to ``crop_size x crop_size``; CT is z-scored over the body (``ct_normalization``
    ``"zscore"``, the only one) and PET min-max scaled to [0, 1] per volume (``pet_normalization``
    ``"minmax"``, the only one).
    """

    spacing_mm: tuple[float, float] | None = None
    crop_size: int = 512
    ct_normalization: str = "zscore"
    pet_normalization: str = "minmax"
    context_mm: float = 0.0
    """0 (the paper's): each input is one axial slice. ``> 0`` (2.5D, dual-stream only): each encoder also sees
    its modality ``context_mm`` before and after the slice along the slice axis (linearly interpolated between
    slices, the end slice repeated beyond the volume) as its three input channels, in place of one slice
    replicated three times. A node (round: smaller or gone 8 mm away) and a vessel or muscle (a tube: the
    same 8 mm away) then look different."""

    @property
    def input_channels(self) -> int:
        """Channels of a model input: 2 (CT, PET), or 6 with context (CT, PET, then CT and PET ``context_mm``
        before the slice, then CT and PET ``context_mm`` after it)."""
        return CONTEXT_CHANNELS if self.context_mm > 0 else 2

    @property
    def channel_modalities(self) -> tuple[int, ...]:
        """For each input channel, 0 if it holds CT and 1 if PET."""
        return tuple(c % 2 for c in range(self.input_channels))
