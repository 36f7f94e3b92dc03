"""Reading label volumes (segmentations): uint8 with their geometry, empty ones allowed."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..errors import DataError
from .integrity import check_image_file
from .volume import LABEL_MODALITY, Volume


def read_label(path: str | os.PathLike) -> Volume:
    """A label volume (uint8, modality ``"label"``) with its geometry, read from a single-file image.

    Unlike :func:`DualDINOv3Lib.data.read_volume` an all-background (empty) label is accepted, because an
    empty prediction or an absent class is a valid outcome. Raises :class:`DataError` for a missing or
    unreadable file, a non-3D or multi-component image, and voxels that are not integers 0..255.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such label file; check the path and the case name (CASE.nii.gz)")
    check_image_file(path)
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise DataError(
            f"{path}: cannot be read as a label volume ({str(exc).strip().splitlines()[-1]}); "
            "re-export it as NIfTI (.nii.gz)"
        ) from exc
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise DataError(
            f"{path}: a label volume must be a 3D scalar image, got a {image.GetDimension()}D image with "
            f"{image.GetNumberOfComponentsPerPixel()} component(s) per voxel; export the segmentation as a labelmap"
        )
    array = sitk.GetArrayFromImage(image)
    if array.dtype.kind == "f":
        if not np.all(np.isfinite(array)) or not np.array_equal(array, np.round(array)):
            raise DataError(
                f"{path}: label voxels must be whole numbers (0 background, 1 GTVp, 2 GTVn), but the file holds "
                "fractional or NaN values; this looks like a probability map or an image: threshold/argmax it first"
            )
    if array.size and (array.min() < 0 or array.max() > 255):
        raise DataError(
            f"{path}: label values must lie in 0..255, got [{array.min()}, {array.max()}]; "
            "this is not a label volume (an image?)"
        )
    return Volume(
        array=array.astype(np.uint8),
        spacing=image.GetSpacing(),
        origin=image.GetOrigin(),
        direction=image.GetDirection(),
        modality=LABEL_MODALITY,
    )
