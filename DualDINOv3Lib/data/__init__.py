"""Images in and out: :class:`Volume` (voxels + physical geometry), reading/writing files and DICOM
series, and resampling one volume onto another's grid (PET onto CT). Needs SimpleITK, never slicer."""

from .io import read_volume, write_volume
from .resample import check_overlap, resample_pet_to_ct, resample_to_grid
from .volume import LABEL_MODALITY, Volume

__all__ = [
    "LABEL_MODALITY",
    "Volume",
    "check_overlap",
    "read_volume",
    "resample_pet_to_ct",
    "resample_to_grid",
    "write_volume",
]
