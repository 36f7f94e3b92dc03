"""The body rule, in one place: the body is the largest connected region of CT voxels above -500 HU.

Taking the largest region drops the scanner table, the head rest and small air-bubble artefacts. Used to
centre the model's crop window and to z-score the CT (:mod:`.slices`), to skip slices without body at
inference, and to choose the CT pretraining slices (:mod:`DualDINOv3Lib.pretraining.slices`).
numpy and SimpleITK only.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from ..data.volume import Volume
from ..errors import DataError

BODY_THRESHOLD_HU = -500.0
"""CT voxels above this (HU) are body (soft tissue, bone) rather than air/lung."""
AIR_HU = -1000.0


def largest_region(mask: np.ndarray) -> np.ndarray:
    """The largest face-connected 3D region of ``mask`` (Z, Y, X) bool (all False if ``mask`` is empty)."""
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return mask
    labels = sitk.RelabelComponent(
        sitk.ConnectedComponent(sitk.GetImageFromArray(mask.astype(np.uint8))), sortByObjectSize=True
    )
    return sitk.GetArrayFromImage(labels) == 1


def body_mask(ct: Volume | np.ndarray, threshold_hu: float = BODY_THRESHOLD_HU) -> np.ndarray:
    """Boolean ``(Z, Y, X)``: the largest connected region of CT voxels (HU) above ``threshold_hu``.

    Raises :class:`~DualDINOv3Lib.errors.DataError` when no voxel is above the threshold (not a CT in HU).
    """
    array = np.asarray(ct.array if isinstance(ct, Volume) else ct)
    above = array > threshold_hu
    if not above.any():
        raise DataError(
            f"the CT has no voxel above {threshold_hu:g} HU, so no body was found; is it a CT in Hounsfield "
            f"units (value range {float(array.min()):g}..{float(array.max()):g})?"
        )
    return largest_region(above)
