"""The domain rules, each stated once: what the label values mean and how tumours are grouped by volume.

- Labels (HECKTOR 2022): 0 background, 1 GTVp (primary tumour), 2 GTVn (lymph nodes), on the CT grid.
- Tumour-volume strata (the paper's Table 1): small < 5 cm3, medium 5-15 cm3 (both ends included),
  large > 15 cm3; a class absent from a case (0 cm3) has no stratum.

Only the standard library and numpy: every layer of the package may import this.
"""

from __future__ import annotations

import math

import numpy as np

LABEL_NAMES: tuple[str, ...] = ("background", "GTVp", "GTVn")
"""Label value -> name (index = value), the default classes of every segmenter."""
LABEL_VALUES: dict[int, str] = dict(enumerate(LABEL_NAMES))
"""``{0: "background", 1: "GTVp", 2: "GTVn"}``."""
TUMOUR_CLASSES: dict[int, str] = {value: name for value, name in LABEL_VALUES.items() if value > 0}
"""The foreground classes that are evaluated: ``{1: "GTVp", 2: "GTVn"}``."""
GTVP, GTVN = 1, 2

SMALL_BELOW_CM3 = 5.0
LARGE_ABOVE_CM3 = 15.0
STRATA: tuple[str, ...] = ("small", "medium", "large")
"""Tumour-volume strata of the paper: small < 5 cm3, medium 5-15 cm3 (both ends included), large > 15 cm3."""


def stratum_of(volume_cm3: float) -> str | None:
    """``"small"`` (< 5 cm3), ``"medium"`` (5-15 cm3, both included), ``"large"`` (> 15 cm3); None for 0."""
    if not math.isfinite(volume_cm3) or volume_cm3 < 0:
        raise ValueError(f"a tumour volume must be a finite number >= 0 cm3, got {volume_cm3}")
    if volume_cm3 == 0:
        return None
    if volume_cm3 < SMALL_BELOW_CM3:
        return "small"
    if volume_cm3 <= LARGE_ABOVE_CM3:
        return "medium"
    return "large"


def class_volume_cm3(labels: np.ndarray, spacing_mm, value: int) -> float:
    """The volume in cm3 of the voxels of ``labels`` equal to ``value``, for voxels of ``spacing_mm``."""
    return float(np.count_nonzero(np.asarray(labels) == value)) * float(np.prod(spacing_mm)) / 1000.0
