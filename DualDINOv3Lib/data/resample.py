"""Resampling in physical space: one volume onto another volume's voxel grid (e.g. PET onto CT)."""

from __future__ import annotations

import dataclasses

import numpy as np
import SimpleITK as sitk

from ..errors import DataError
from .volume import Volume

INTERPOLATORS = {
    "linear": sitk.sitkLinear,
    "nearest": sitk.sitkNearestNeighbor,
    "bspline": sitk.sitkBSpline,
}


def resample_to_grid(
    moving: Volume, reference: Volume, *, interpolation: str = "linear", default_value: float = 0.0
) -> Volume:
    """``moving`` resampled onto ``reference``'s grid, matching by physical position (identity transform).

    Returns a volume with exactly ``reference``'s shape (z, y, x), spacing, origin and direction, and
    ``moving``'s units and modality. Points of the grid outside ``moving`` get ``default_value``.
    ``interpolation``: ``"linear"`` or ``"bspline"`` (output float32) for intensities, ``"nearest"``
    (keeps the voxel type) for label maps. Multi-component volumes are resampled per component.
    """
    if interpolation not in INTERPOLATORS:
        raise ValueError(f"unknown interpolation {interpolation!r}; use one of {sorted(INTERPOLATORS)}")
    moving_image = moving.to_sitk()
    if interpolation != "nearest" and moving.array.dtype != np.float32:
        moving_image = sitk.Cast(moving_image, sitk.sitkVectorFloat32 if moving.is_vector else sitk.sitkFloat32)
    resampler = sitk.ResampleImageFilter()
    resampler.SetSize(reference.size_xyz)
    resampler.SetOutputSpacing(reference.spacing)
    resampler.SetOutputOrigin(reference.origin)
    resampler.SetOutputDirection(reference.direction)
    resampler.SetTransform(sitk.Transform(3, sitk.sitkIdentity))
    resampler.SetInterpolator(INTERPOLATORS[interpolation])
    resampler.SetDefaultPixelValue(float(default_value))
    resampler.SetOutputPixelType(moving_image.GetPixelID())
    array = sitk.GetArrayFromImage(resampler.Execute(moving_image))
    # the reference's own geometry tuples, so the result is on exactly the same grid
    return dataclasses.replace(reference, array=array, units=moving.units, modality=moving.modality, notes=moving.notes)


def _extent_text(volume: Volume) -> str:
    extent = volume.physical_extent()
    return " ".join(f"{axis}[{low:.1f}, {high:.1f}]" for axis, (low, high) in zip("xyz", extent, strict=True))


def check_overlap(moving: Volume, reference: Volume, names: tuple[str, str] = ("moving", "reference")) -> None:
    """Raises :class:`~DualDINOv3Lib.errors.DataError` if the physical boxes of the two volumes do not overlap."""
    a, b = moving.physical_extent(), reference.physical_extent()
    if np.any(a[:, 0] >= b[:, 1]) or np.any(b[:, 0] >= a[:, 1]):
        raise DataError(
            f"{names[0]} and {names[1]} do not overlap physically: {names[0]} spans {_extent_text(moving)} mm, "
            f"{names[1]} spans {_extent_text(reference)} mm. Are they from the same study? If so, one of the "
            "headers has a wrong origin or direction: re-export both from the same DICOM study"
        )


def resample_pet_to_ct(pet: Volume, ct: Volume) -> Volume:
    """PET resampled linearly onto the CT grid (outside the PET field of view: 0).

    Raises :class:`~DualDINOv3Lib.errors.DataError` if the two do not overlap in physical space.
    """
    if pet.is_vector or ct.is_vector:
        raise DataError("PET and CT must be scalar volumes (z, y, x), not multi-component ones")
    check_overlap(pet, ct, ("PET", "CT"))
    return resample_to_grid(pet, ct, interpolation="linear", default_value=0.0)
