"""Lesion-wise detection: which truth lesions a prediction finds, and which predicted regions touch no lesion.

Dice mixes three different errors: a lesion not found at all, a found lesion drawn too small or too large, and a
region drawn where there is no tumour. These counts separate them (the autoPET challenge's false-negative and
false-positive volumes, per class). Definitions (one place):

- a **region** is a 26-connected component of a mask (voxels touching by a face, an edge or a corner belong
  together), so a lesion cut into pieces by a diagonal is still one lesion;
- a truth lesion of a class is **detected** when the prediction of the same class shares at least one voxel with
  it; otherwise it is **missed**, and its whole volume is the missed (false-negative) volume. A lesion predicted
  as the other class is missed for its own class (and that prediction is a false positive of the other class);
- a predicted region of a class is a **false positive** when it shares no voxel with the truth of that class;
  a region that touches a lesion is not, however far it reaches beyond it (its excess lowers Dice).
- volumes are voxel counts times the voxel volume, in cm3.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk


def connected_regions(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(regions, sizes)``: the 26-connected components of a boolean ``(Z, Y, X)`` mask, numbered from 1
    (0 = outside the mask), and the voxel count of each number (``sizes[0]``: the voxels outside)."""
    image = sitk.GetImageFromArray(np.asarray(mask, dtype=np.uint8))
    regions = sitk.GetArrayFromImage(sitk.ConnectedComponent(image, True))  # True: fully (26-) connected
    return regions, np.bincount(regions.ravel())


@dataclass(frozen=True)
class LesionCounts:
    """Lesion-wise detection of one class in one case (or summed over cases); see the module docstring.

    ``truth_lesions`` / ``detected_lesions``: truth regions, and those the prediction touches; ``missed_cm3``: the
    volume of the missed ones; ``false_positive_regions`` / ``false_positive_cm3``: predicted regions touching no
    truth, and their volume."""

    truth_lesions: int = 0
    detected_lesions: int = 0
    missed_cm3: float = 0.0
    false_positive_regions: int = 0
    false_positive_cm3: float = 0.0

    @property
    def missed_lesions(self) -> int:
        return self.truth_lesions - self.detected_lesions

    def __add__(self, other: LesionCounts) -> LesionCounts:
        return LesionCounts(
            self.truth_lesions + other.truth_lesions,
            self.detected_lesions + other.detected_lesions,
            self.missed_cm3 + other.missed_cm3,
            self.false_positive_regions + other.false_positive_regions,
            self.false_positive_cm3 + other.false_positive_cm3,
        )


NO_LESIONS = LesionCounts()


def untouched_regions(mask: np.ndarray, other: np.ndarray) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """``(regions, sizes, untouched)`` of a boolean mask against another on the same grid: its 26-connected regions
    and their voxel counts (as :func:`connected_regions`; ``regions`` None when the mask is empty), and for each
    region number whether it shares no voxel with ``other`` (``untouched[0]``, outside the mask, is False)."""
    if not mask.any():
        return None, np.zeros(1, dtype=np.int64), np.zeros(1, dtype=bool)
    regions, sizes = connected_regions(mask)
    untouched = np.ones(sizes.size, dtype=bool)
    untouched[0] = False
    untouched[np.unique(regions[mask & other])] = False
    return regions, sizes, untouched


def lesion_counts(truth: np.ndarray, prediction: np.ndarray, voxel_cm3: float) -> LesionCounts:
    """Detection counts of one class from its boolean truth and predicted masks (same ``(Z, Y, X)`` grid)."""
    truth, prediction = np.asarray(truth, dtype=bool), np.asarray(prediction, dtype=bool)
    if truth.shape != prediction.shape:
        raise ValueError(f"truth {truth.shape} and prediction {prediction.shape} must be on the same grid")
    _, lesion_sizes, missed = untouched_regions(truth, prediction)
    _, region_sizes, false = untouched_regions(prediction, truth)
    return LesionCounts(
        truth_lesions=lesion_sizes.size - 1,
        detected_lesions=lesion_sizes.size - 1 - int(np.count_nonzero(missed)),
        missed_cm3=float(lesion_sizes[missed].sum()) * voxel_cm3,
        false_positive_regions=int(np.count_nonzero(false)),
        false_positive_cm3=float(region_sizes[false].sum()) * voxel_cm3,
    )
