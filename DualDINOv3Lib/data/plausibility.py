"""Plausibility checks at the edge of every path into a model (files, and ``Volume`` objects handed to the
Python API, which is how the Slicer module calls it): a wrong input gives a clear error naming the problem
and the fix instead of a silently wrong segmentation.

Always errors: not a :class:`Volume`; NaN/inf voxels; a spacing outside a physical range (a file in µm or
m). Errors that a user who knows better may skip (``check_inputs=False`` in the API,
``--no-input-checks`` in the commands): a CT without air (not in HU, e.g. stored values 0..4095), a PET
with HU-like or clearly negative values, the same image given twice, CT and PET swapped.
"""

from __future__ import annotations

import numpy as np

from ..errors import DataError
from .volume import Volume

SPACING_RANGE_MM = (0.05, 30.0)
"""Voxel sizes of real CT and PET (from fine in-plane CT to thick PET slices); outside is a unit mistake."""
CT_AIR_BELOW_HU = -900.0
"""A head-and-neck CT in HU has air (about -1000 HU) around the body."""
PET_HU_LIKE_BELOW = -100.0
"""PET (SUV) is never this negative; a CT is (air, fat)."""
NEGATIVE_SUV = -1.0
NEGATIVE_SHARE = 0.01
"""Reconstruction noise makes a few voxels slightly negative; more than 1% below -1 SUV is not PET in SUV."""
SKIP = "to proceed anyway, pass --no-input-checks (check_inputs=False in Python)"


def require_volume(value: object, role: str) -> Volume:
    """``value`` if it is a :class:`Volume`; a :class:`DataError` saying how to make one otherwise."""
    if isinstance(value, Volume):
        return value
    if isinstance(value, np.ndarray):
        raise DataError(
            f"the {role} is a bare numpy array, which carries no geometry; wrap it: Volume(array, spacing=(x, y, z) "
            "in mm, origin=..., direction=...), or read the file with read_volume(path)"
        )
    raise DataError(f"the {role} must be a Volume (e.g. read_volume(path)), got {type(value).__name__}")


def check_geometry(volume: Volume, role: str) -> None:
    low, high = SPACING_RANGE_MM
    if not all(low <= s <= high for s in volume.spacing):
        raise DataError(
            f"the {role}'s voxel spacing {tuple(round(s, 6) for s in volume.spacing)} mm is outside the physical "
            f"range {low}-{high} mm of CT and PET; the file's spacing is probably in µm or m. Fix the spacing in the "
            "file (or the Volume's spacing=) before segmenting"
        )


def check_finite(volume: Volume, role: str) -> None:
    array = np.asarray(volume.array)
    if array.dtype.kind == "f":
        bad = int(array.size - np.count_nonzero(np.isfinite(array)))
        if bad:
            raise DataError(
                f"the {role} has {bad} NaN or infinite voxels of {array.size}; the image is corrupt or was made by a "
                "failed computation: re-export it, or replace those voxels (e.g. numpy.nan_to_num) if you know why"
            )


def _range(volume: Volume) -> tuple[float, float]:
    array = np.asarray(volume.array)
    return float(array.min()), float(array.max())


def check_ct_values(ct: Volume, ct_range: tuple[float, float] | None = None) -> None:
    low, high = ct_range or _range(ct)
    if low >= -10.0 and high >= 1000.0:
        raise DataError(
            f"the CT's values run from {low:g} to {high:g} with no air below 0: these look like stored values "
            "(HU + 1024, 0..4095), not Hounsfield units. Apply the rescale intercept (subtract 1024) or read the "
            f"original DICOM series, which is converted; {SKIP}"
        )
    if low > CT_AIR_BELOW_HU:
        raise DataError(
            f"the CT has no air (its lowest value is {low:g}, air is about -1000 HU): it is not a CT in Hounsfield "
            f"units (a PET or a mask given as CT?), or its field of view lies inside the body; {SKIP}"
        )


def check_pet_values(pet: Volume, pet_range: tuple[float, float] | None = None) -> None:
    array = np.asarray(pet.array)
    low = (pet_range or _range(pet))[0]
    if low < PET_HU_LIKE_BELOW:
        raise DataError(
            f"the PET has values down to {low:g}, like a CT in HU (air -1000); PET in SUV is never that negative. "
            f"Is a CT given as PET? {SKIP}"
        )
    share = float(np.count_nonzero(array < NEGATIVE_SUV)) / array.size
    if share > NEGATIVE_SHARE:
        raise DataError(
            f"{100 * share:.1f}% of the PET's voxels are below {NEGATIVE_SUV:g} SUV (lowest {low:g}); reconstruction "
            "noise makes only a few slightly negative. Check the PET's units and scaling (rescale slope and "
            f"intercept); {SKIP}"
        )


def check_pair(ct: Volume, pet: Volume, ct_range=None, pet_range=None) -> None:
    ct_low, ct_high = ct_range or _range(ct)
    pet_low = (pet_range or _range(pet))[0]
    if ct is pet or (ct.shape == pet.shape and np.array_equal(ct.array, pet.array)):
        raise DataError(f"the same image was given as CT and as PET; pass the CT and the PET of one study; {SKIP}")
    ct_looks_like_pet = ct_low > PET_HU_LIKE_BELOW and ct_high < 500.0
    if ct_looks_like_pet and pet_low < -500.0:
        raise DataError(
            f"CT and PET seem swapped: the image given as CT has no negative HU values ({ct_low:g} to "
            f"{ct_high:g}) and the one given as PET has CT-like values down to {pet_low:g}. "
            f"Exchange the two inputs; {SKIP}"
        )


def check_pet_ct(ct: object, pet: object, *, check_inputs: bool = True) -> tuple[Volume, Volume]:
    """The CT and PET, checked: always that they are finite :class:`Volume` objects with physical spacings;
    with ``check_inputs`` also that CT is in HU, PET in SUV, and they are neither the same nor swapped."""
    ct, pet = require_volume(ct, "CT"), require_volume(pet, "PET")
    for volume, role in ((ct, "CT"), (pet, "PET")):
        check_finite(volume, role)
        check_geometry(volume, role)
    if check_inputs:
        ct_range, pet_range = _range(ct), _range(pet)  # one min/max pass over each volume
        check_pair(ct, pet, ct_range, pet_range)
        check_ct_values(ct, ct_range)
        check_pet_values(pet, pet_range)
    return ct, pet
