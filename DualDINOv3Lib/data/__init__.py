"""Images in and out, with no torch: :class:`Volume` (voxels + physical geometry), reading/writing files and
DICOM series, PET DICOM to SUVbw, resampling one volume onto another's grid (PET onto CT), label volumes,
HECKTOR-layout folders and folders of real cases with truth masks. Needs numpy and SimpleITK, never slicer.
Exports are lazy."""

from .._lazy import lazy_exports

_EXPORTS = {
    "LABEL_MODALITY": ".volume",
    "Volume": ".volume",
    "read_volume": ".io",
    "write_volume": ".io",
    "PET_HEADER_TAGS": ".dicom_header",
    "read_pet_header": ".dicom_header",
    "SUVbwFactors": ".suv",
    "suvbw_factor": ".suv",
    "suvbw_factors": ".suv",
    "check_overlap": ".resample",
    "resample_pet_to_ct": ".resample",
    "resample_to_grid": ".resample",
    "read_label": ".labels",
    "HecktorCase": ".hecktor",
    "find_label_files": ".hecktor",
    "list_hecktor_cases": ".hecktor",
    "read_hecktor_case": ".hecktor",
    "write_hecktor_case": ".hecktor",
    "MaskedCase": ".case_folders",
    "find_masked_cases": ".case_folders",
    "read_masked_case": ".case_folders",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
