"""Images in and out: :class:`Volume` (voxels + physical geometry), reading/writing files and DICOM
series, PET DICOM to SUVbw, resampling one volume onto another's grid (PET onto CT), the paper's
finetuning/inference preprocessing and its inverse, HECKTOR-layout folders, synthetic head-and-neck
phantoms, and the pretraining slice stores. Needs SimpleITK, never slicer."""

from .dicom_header import PET_HEADER_TAGS, read_pet_header
from .hecktor import HecktorCase, list_hecktor_cases, read_hecktor_case, write_hecktor_case
from .io import read_volume, write_volume
from .labels import read_label
from .phantom import Phantom, make_phantom, write_phantom_cases
from .preprocess import CasePreprocessor, preprocess_case
from .pretrain_slices import (
    CtSliceParams,
    PetSliceParams,
    PretrainingSlices,
    build_pretraining_store,
    ct_pretraining_slices,
    pet_pretraining_slices,
    pretraining_slices,
)
from .resample import check_overlap, resample_pet_to_ct, resample_to_grid
from .slice_store import SliceProvenance, SliceStore, SliceStoreWriter
from .suv import SUVbwFactors, suvbw_factor, suvbw_factors
from .volume import LABEL_MODALITY, Volume

__all__ = [
    "LABEL_MODALITY",
    "PET_HEADER_TAGS",
    "CasePreprocessor",
    "CtSliceParams",
    "HecktorCase",
    "PetSliceParams",
    "Phantom",
    "PretrainingSlices",
    "SUVbwFactors",
    "SliceProvenance",
    "SliceStore",
    "SliceStoreWriter",
    "Volume",
    "build_pretraining_store",
    "check_overlap",
    "ct_pretraining_slices",
    "list_hecktor_cases",
    "make_phantom",
    "pet_pretraining_slices",
    "preprocess_case",
    "pretraining_slices",
    "read_hecktor_case",
    "read_label",
    "read_pet_header",
    "read_volume",
    "resample_pet_to_ct",
    "resample_to_grid",
    "suvbw_factor",
    "suvbw_factors",
    "write_hecktor_case",
    "write_phantom_cases",
    "write_volume",
]
