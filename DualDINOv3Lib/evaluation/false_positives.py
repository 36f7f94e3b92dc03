"""False positives on real data: predicted tumour regions away from the truth lesion.

On a real scan whose only tumour is the masked lesion, every predicted region that misses the lesion is the
model calling physiology (brain, glands, muscle, bladder...) tumour. Definition (one place):

- the predicted foreground is every voxel with a label > 0 (GTVp and GTVn together);
- it is split into 26-connected components (voxels touching by a face, an edge or a corner belong together);
- a component is a **false positive** when it shares no voxel with the truth mask (truth > 0); a component
  that overlaps the lesion by even one voxel is not, however far it reaches beyond it (its excess lowers Dice);
- volumes are voxel counts times the voxel volume (product of the spacing, mm3) / 1000, in cm3.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from ..errors import DataError
from .lesions import untouched_regions


@dataclass(frozen=True)
class FalsePositives:
    """The false-positive components of one prediction.

    ``volume_cm3``: their total volume; ``components``: how many; ``largest_cm3``: the volume of the largest;
    ``largest_slice``: the axial slice (index along z of the ``(Z, Y, X)`` array) holding most voxels of the
    largest one, None when there is none.
    """

    volume_cm3: float
    components: int
    largest_cm3: float
    largest_slice: int | None


NO_FALSE_POSITIVES = FalsePositives(0.0, 0, 0.0, None)


def false_positive_components(prediction: np.ndarray, truth: np.ndarray, spacing: Iterable[float]) -> FalsePositives:
    """The false positives of ``prediction`` against ``truth`` (label or boolean arrays ``(Z, Y, X)`` on one
    grid with voxel ``spacing`` (x, y, z) mm); see the module docstring for the definition."""
    prediction, truth = np.asarray(prediction), np.asarray(truth)
    if prediction.shape != truth.shape or prediction.ndim != 3:
        raise DataError(
            f"prediction {prediction.shape} and truth {truth.shape} must be 3D arrays on the same grid; "
            "resample the prediction onto the truth's grid first (nearest neighbour)"
        )
    spacing = tuple(float(s) for s in spacing)
    if len(spacing) != 3 or not all(np.isfinite(spacing)) or min(spacing) <= 0:
        raise DataError(f"voxel spacing must be 3 positive numbers (x, y, z) in mm, got {spacing}")
    components, sizes, is_false = untouched_regions(prediction > 0, truth > 0)
    false_ids = np.flatnonzero(is_false)
    if false_ids.size == 0:
        return NO_FALSE_POSITIVES
    voxel_cm3 = float(np.prod(spacing)) / 1000.0
    largest = int(false_ids[np.argmax(sizes[false_ids])])
    per_slice = (components == largest).sum(axis=(1, 2))
    return FalsePositives(
        volume_cm3=float(sizes[false_ids].sum()) * voxel_cm3,
        components=int(false_ids.size),
        largest_cm3=float(sizes[largest]) * voxel_cm3,
        largest_slice=int(np.argmax(per_slice)),
    )
