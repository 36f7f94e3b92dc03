"""Which volumes a pretraining store is built from: image files, DICOM series folders, and folders searched
recursively. In a HECKTOR-layout tree (``CASE__CT.nii.gz`` / ``CASE__PT.nii.gz``) only the images of the
wanted modality are taken; otherwise every image file and every folder holding DICOM files of that
modality (or of unknown modality)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import SimpleITK as sitk

from ..data.hecktor import image_case
from ..data.io import NON_IMAGE_MODALITIES, READ_SUFFIXES, is_dicom_file
from ..errors import DualDINOv3Error
from .slices import CtSliceParams, PetSliceParams, slice_params

log = logging.getLogger("dualdinov3.pretraining")


def _is_image_file(path: Path) -> bool:
    name = path.name.lower()
    return path.is_file() and any(name.endswith(suffix) for suffix in READ_SUFFIXES)


def _dicom_files(folder: Path) -> list[Path]:
    return [p for p in sorted(folder.iterdir()) if p.is_file() and (p.suffix.lower() == ".dcm" or is_dicom_file(p))]


def find_inputs(paths: list[str], modality: str) -> list[Path]:
    """The volumes (image files, DICOM series folders) named by ``paths``, in a stable order, each once."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if _is_image_file(path):
            found.append(path)
        elif path.is_file():
            raise DualDINOv3Error(f"{path}: not an image file; pass {', '.join(READ_SUFFIXES)} files or folders")
        elif path.is_dir():
            found.extend(_search_folder(path, modality))
        else:
            raise DualDINOv3Error(f"{path}: no such file or folder; check the path")
    unique = list(dict.fromkeys(p.resolve() for p in found))
    if not unique:
        raise DualDINOv3Error(f"no {modality} images found in {paths}; pass image files or folders holding them")
    return unique


def _search_folder(folder: Path, modality: str) -> list[Path]:
    if _dicom_files(folder):
        return [folder]
    hecktor = [(p, named) for p in folder.rglob("*__*") if p.is_file() and (named := image_case(p)) is not None]
    if hecktor:
        picked = sorted(p for p, (_, found) in hecktor if found == modality)
        if not picked:
            raise DualDINOv3Error(
                f"{folder}: a HECKTOR-layout folder (CASE__CT/CASE__PT images) without any {modality} image; "
                f"pass the folder holding the {modality} images"
            )
        return picked
    files = sorted(p for p in folder.rglob("*") if _is_image_file(p))
    series = []
    for sub in sorted(d for d in folder.rglob("*") if d.is_dir() and _dicom_files(d)):
        found = _dicom_modality(sub)
        if found in (modality, None):
            series.append(sub)
        else:
            log.info("%s: a DICOM %s folder, not %s; not used", sub, found or "non-image", modality)
    return files + series


def _dicom_modality(folder: Path) -> str | None:
    """The Modality (0008,0060) of the first DICOM file in ``folder``; "" if it is not an image."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(_dicom_files(folder)[0]))
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        return ""
    value = reader.GetMetaData("0008|0060").strip().upper() if reader.HasMetaDataKey("0008|0060") else None
    return "" if value in NON_IMAGE_MODALITIES else value


def parse_slice_settings(items: list[str], modality: str) -> PetSliceParams | CtSliceParams:
    """The modality's slice parameters with ``NAME=VALUE`` overrides (values parsed as JSON when they can be)."""
    overrides = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep:
            raise DualDINOv3Error(f"--set {item!r}: use NAME=VALUE, e.g. --set dilation_mm=8")
        try:
            overrides[name.strip()] = json.loads(text)
        except json.JSONDecodeError:
            overrides[name.strip()] = text
    return slice_params(modality, overrides)
