"""Input checks before any work: the CT and PET nodes, their overlap, and the PET's units (SUV).

Every problem raises :class:`DualDINOv3Lib.errors.DataError` (the library's own error type and wording),
before anything is written or added to the scene. A PET loaded through Slicer's DICOM browser holds the
stored values (Bq/ml for most scanners): it is converted to SUVbw from the headers of its DICOM files
(found through the node's instance UIDs in Slicer's DICOM database) with the library's SUV code.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from .MRMLVolumes import volumeFromNode

log = logging.getLogger(__name__)

INSTANCE_UIDS_ATTRIBUTE = "DICOM.instanceUIDs"
"""Node attribute Slicer's DICOM plugins set: the instance UIDs of the files the volume was loaded from."""


@dataclass
class CheckedInputs:
    """CT (HU) and PET (SUV) as library volumes, and what the user should be told about them."""

    ct: object
    pet: object
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _dataError(message: str):
    from DualDINOv3Lib.errors import DataError

    return DataError(message)


def nodeProblems(ctVolumeNode, petVolumeNode) -> list[str]:
    """What is wrong with the chosen nodes themselves (cheap: no voxel is read); empty when they can be used."""
    problems = []
    for modality, node in (("CT", ctVolumeNode), ("PET", petVolumeNode)):
        if node is None:
            problems.append(f"Select a {modality} volume.")
            continue
        name = node.GetName()
        image = node.GetImageData() if node.IsA("vtkMRMLScalarVolumeNode") else None
        if not node.IsA("vtkMRMLScalarVolumeNode"):
            problems.append(f"The {modality} input '{name}' is not a scalar volume.")
        elif image is None:
            problems.append(f"The {modality} volume '{name}' has no image data.")
        elif image.GetNumberOfScalarComponents() != 1 or node.IsA("vtkMRMLVectorVolumeNode"):
            problems.append(f"The {modality} volume '{name}' has several components per voxel; choose a scalar image.")
        elif min(image.GetDimensions()) < 2:
            problems.append(
                f"The {modality} volume '{name}' is not 3D (size {image.GetDimensions()}); choose a whole scan."
            )
        elif node.GetParentTransformNode() is not None:
            problems.append(
                f"The {modality} volume '{name}' is under a transform; harden the transform (Data module) first."
            )
    if ctVolumeNode is not None and petVolumeNode is not None and ctVolumeNode is petVolumeNode:
        problems.append("The CT and PET inputs must be different volumes.")
    return problems


def _checkValues(volume, modality: str, name: str) -> None:
    array = volume.array
    if not np.isfinite(array).all():
        raise _dataError(f"The {modality} volume '{name}' contains NaN or infinite voxels; reload the original image.")
    low, high = float(array.min()), float(array.max())
    if low == high:
        raise _dataError(
            f"The {modality} volume '{name}' is a constant image (every voxel = {low:g}), so it holds no anatomy;"
            " check that the right series was loaded."
        )


def dicomPetToSuv(petVolumeNode, pet, dicomDatabase):
    """``(pet in SUVbw, note)`` for a PET node loaded from DICOM; ``(pet, None)`` when it was not."""
    uids = (petVolumeNode.GetAttribute(INSTANCE_UIDS_ATTRIBUTE) or "").split()
    if not uids:
        return pet, None
    if dicomDatabase is None:
        raise _dataError(
            f"The PET volume '{petVolumeNode.GetName()}' was loaded from DICOM, but Slicer's DICOM database is not"
            " available to read its headers; open the DICOM module once, or load the PET from a file in SUV."
        )
    from DualDINOv3Lib.data.dicom_header import read_pet_header
    from DualDINOv3Lib.data.suv import suvbw_factors

    files = [dicomDatabase.fileForInstance(uid) for uid in uids]
    if not all(files):
        raise _dataError(
            f"The DICOM files of the PET volume '{petVolumeNode.GetName()}' are no longer in Slicer's DICOM database;"
            " re-import the series."
        )
    headers = [read_pet_header(f) for f in files]
    result = suvbw_factors(headers, source=f"PET '{petVolumeNode.GetName()}'")
    if result.units == "GML":
        return pet.with_array(pet.array, units="SUV"), f"PET '{petVolumeNode.GetName()}': {result.description}."
    factors = _factorsPerSlice(result.factors, headers, pet)
    array = (pet.array * factors[:, None, None]).astype(np.float32)
    span = f"factor {factors[0]:.6g}" if result.uniform else f"factors {factors.min():.6g} to {factors.max():.6g}"
    note = f"PET '{petVolumeNode.GetName()}' converted from DICOM to SUVbw ({span}; {result.description})."
    return pet.with_array(array, units="SUV", notes=(*pet.notes, note)), note


def _factorsPerSlice(factors, headers, pet) -> np.ndarray:
    """One factor per slice (k) of ``pet``: files are matched to slices by their ImagePositionPatient."""
    if max(factors) - min(factors) <= 1e-12 * max(abs(f) for f in factors):
        return np.full(pet.shape[0], factors[0])
    direction = np.reshape(pet.direction, (3, 3))
    out = np.full(pet.shape[0], np.nan)
    for factor, header in zip(factors, headers, strict=True):
        position = np.asarray([float(v) for v in header["ImagePositionPatient"]])
        k = round(float(np.linalg.solve(direction, position - np.asarray(pet.origin))[2] / pet.spacing[2]))
        if 0 <= k < len(out):
            out[k] = factor
    if np.isnan(out).any():
        raise _dataError("The PET's DICOM files do not match its slices; re-import the series.")
    return out


def checkInputs(ctVolumeNode, petVolumeNode, dicomDatabase=None) -> CheckedInputs:
    """The checked CT and PET volumes (PET in SUV); raises ``DataError`` naming the first problem."""
    problems = nodeProblems(ctVolumeNode, petVolumeNode)
    if problems:
        raise _dataError(" ".join(problems))
    from DualDINOv3Lib.data.io import SUSPICIOUS_SUV
    from DualDINOv3Lib.data.resample import check_overlap
    from DualDINOv3Lib.inference.postprocess import MIN_TUMOUR_SUV

    ct = volumeFromNode(ctVolumeNode, units="HU", modality="CT")
    pet = volumeFromNode(petVolumeNode, units="SUV", modality="PT")
    _checkValues(ct, "CT", ctVolumeNode.GetName())
    _checkValues(pet, "PET", petVolumeNode.GetName())
    check_overlap(pet, ct, (f"PET '{petVolumeNode.GetName()}'", f"CT '{ctVolumeNode.GetName()}'"))
    checked = CheckedInputs(ct, pet)
    pet, note = dicomPetToSuv(petVolumeNode, pet, dicomDatabase)
    if note:
        checked.notes.append(note)
    checked.pet = pet
    high = float(pet.array.max())
    if high > SUSPICIOUS_SUV:
        checked.warnings.append(
            f"The PET volume '{petVolumeNode.GetName()}' reaches {high:.6g}, implausible for SUV (tumours reach tens):"
            " it is probably in Bq/ml or counts. Load the original DICOM series (converted to SUV from its headers)"
            " or convert it to SUV first."
        )
    if high < MIN_TUMOUR_SUV:
        checked.warnings.append(
            f"The PET volume '{petVolumeNode.GetName()}' stays below SUV {MIN_TUMOUR_SUV:g} everywhere"
            f" (highest {high:.3g}): an FDG PET in SUV has far more uptake, so with 'Head and neck only' every region"
            " found would be removed as without uptake. Check that it is in SUV (not normalised to 0..1 or rescaled)."
        )
    if float(ct.array.min()) >= 0 and float(ct.array.max()) < 4096:
        checked.warnings.append(
            f"The CT volume '{ctVolumeNode.GetName()}' has no negative values; is it in Hounsfield units (air -1000)?"
        )
    for message in checked.warnings:
        log.warning("%s", message)
    return checked


def _modality(node) -> str:
    """The DICOM Modality of a volume loaded from DICOM (subject hierarchy or node attribute), else ''."""
    import slicer

    scene = node.GetScene()
    shNode = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene) if scene is not None else None
    if shNode is not None:
        item = shNode.GetItemByDataNode(node)
        for candidate in (item, shNode.GetItemParent(item) if item else 0):
            if candidate and shNode.GetItemAttribute(candidate, "DICOM.Modality"):
                return shNode.GetItemAttribute(candidate, "DICOM.Modality").upper()
    return (node.GetAttribute("DICOM.Modality") or "").upper()


def guessInputs(scene):
    """``(ct, pet)`` nodes to pre-select: DICOM modality CT / PT first, then names containing CT / PT or PET."""
    import re

    nodes = [n for n in scene.GetNodesByClass("vtkMRMLScalarVolumeNode") if not n.IsA("vtkMRMLLabelMapVolumeNode")]
    nodes = [n for n in nodes if not n.IsA("vtkMRMLVectorVolumeNode") and not n.GetHideFromEditors()]

    def pick(modality: str, pattern: str):
        for node in nodes:
            if _modality(node) == modality:
                return node
        for node in nodes:
            if re.search(pattern, node.GetName(), flags=re.IGNORECASE):
                return node
        return None

    return pick("CT", r"(?<![a-z])CT(?![a-z])|_CT|CT_"), pick("PT", r"(?<![a-z])(PET|PT)(?![a-z])|PET|_PT")
