"""HECKTOR-layout PET/CT folders: listing and reading cases, and writing (phantom) cases.

The HECKTOR 2022 naming: case ``CHUM-001`` has ``CHUM-001__CT.nii.gz`` (HU), ``CHUM-001__PT.nii.gz``
(SUV) and the label ``CHUM-001.nii.gz`` (0 background, 1 GTVp, 2 GTVn, on the CT grid). The files lie
either all in one folder, or as in the challenge's download: images in ``imagesTr/`` (``imagesTs/``) and
labels in ``labelsTr/`` (``labelsTs/``) beside it.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..domain import LABEL_VALUES
from ..errors import DataError, OutputExistsError
from .io import read_volume, write_volume
from .labels import read_label
from .resample import check_overlap
from .volume import LABEL_MODALITY, Volume

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha")
SUBFOLDERS = (("imagesTr", "labelsTr"), ("imagesTs", "labelsTs"))
"""(images, labels) subfolder pairs of the challenge's download, looked for inside the given folder."""
LABEL_SUBFOLDERS = tuple(labels for _, labels in SUBFOLDERS)
IMAGE_SEPARATOR = "__"
"""``CASE__CT.nii.gz`` / ``CASE__PT.nii.gz`` are images; a label ``CASE.nii.gz`` never holds this."""
_IMAGE_NAME = re.compile(r"^(?P<case>.+)__(?P<modality>CT|PT)(?P<suffix>\.nii\.gz|\.nii|\.nrrd|\.mha)$", re.IGNORECASE)


@dataclass(frozen=True)
class HecktorCase:
    """One case of a HECKTOR-layout folder: its id and the paths of its CT, PET and (optional) label."""

    case_id: str
    ct: Path
    pet: Path
    label: Path | None = None

    @property
    def centre(self) -> str:
        """The contributing centre, the id's part before the first ``-`` (``CHUM`` for ``CHUM-001``)."""
        return self.case_id.split("-", 1)[0]


def _suffix(name: str) -> str | None:
    lower = name.lower()
    return next((s for s in IMAGE_SUFFIXES if lower.endswith(s)), None)


def image_case(path: str | os.PathLike) -> tuple[str, str] | None:
    """``(case id, "CT" or "PT")`` for an image file named ``CASE__CT.nii.gz`` / ``CASE__PT.nii.gz`` (or .nii,
    .nrrd, .mha); None for any other name."""
    match = _IMAGE_NAME.match(Path(path).name)
    return (match["case"], match["modality"].upper()) if match else None


def label_case(path: str | os.PathLike) -> str | None:
    """The case id of a label file ``CASE.nii.gz`` (or .nii, .nrrd, .mha); None for images and other files."""
    name = Path(path).name
    suffix = _suffix(name)
    if suffix is None:
        return None
    stem = name[: -len(suffix)]
    return stem if stem and IMAGE_SEPARATOR not in stem and not stem.startswith(".") else None


def list_hecktor_cases(folder: str | os.PathLike, *, require_labels: bool = False) -> list[HecktorCase]:
    """The cases of a HECKTOR-layout folder, sorted by case id.

    Every case needs a CT and a PET; a label is optional unless ``require_labels``. Raises
    :class:`~DualDINOv3Lib.errors.DataError` for a missing folder, a folder with no cases, a CT without its
    PET (or the reverse), a case found twice (two suffixes, or both in the folder and in ``imagesTr/``),
    or, with ``require_labels``, cases without a label.
    """
    folder = Path(folder)
    if not folder.exists():
        raise DataError(f"{folder}: no such folder; pass the folder holding CASE__CT.nii.gz/CASE__PT.nii.gz files")
    if not folder.is_dir():
        raise DataError(f"{folder}: is a file, not a folder; pass the folder holding the case files")
    images: dict[str, dict[str, Path]] = {}
    label_folders: dict[str, Path] = {}
    for image_dir, label_dir in [(folder, folder)] + [(folder / i, folder / lab) for i, lab in SUBFOLDERS]:
        if not image_dir.is_dir():
            continue
        for path in sorted(image_dir.iterdir()):
            found_name = image_case(path)
            if path.name.startswith(".") or found_name is None or not path.is_file():
                continue
            case_id, modality = found_name
            found = images.setdefault(case_id, {})
            if modality in found:
                raise DataError(
                    f"case {case_id} has two {modality} images, {found[modality]} and {path}; "
                    "keep one of them (one suffix, one folder)"
                )
            found[modality] = path
            label_folders[case_id] = label_dir
    if not images:
        raise DataError(_no_cases_message(folder))
    unpaired = {cid: ("PT" if "CT" in mods else "CT") for cid, mods in images.items() if len(mods) < 2}
    if unpaired:
        listing = ", ".join(f"{cid} has no {missing}" for cid, missing in sorted(unpaired.items())[:5])
        more = f" (and {len(unpaired) - 5} more)" if len(unpaired) > 5 else ""
        raise DataError(
            f"{folder}: {len(unpaired)} case(s) lack an image: {listing}{more}. Every case needs CASE__CT and "
            "CASE__PT files; add the missing image or remove the incomplete case"
        )
    cases = []
    for case_id in sorted(images):
        labels = [label_folders[case_id] / f"{case_id}{s}" for s in IMAGE_SUFFIXES]
        labels = [p for p in labels if p.is_file()]
        if len(labels) > 1:
            raise DataError(f"case {case_id} has several labels {[str(p) for p in labels]}; keep one of them")
        cases.append(HecktorCase(case_id, images[case_id]["CT"], images[case_id]["PT"], labels[0] if labels else None))
    unlabelled = [c.case_id for c in cases if c.label is None]
    if require_labels and unlabelled:
        raise DataError(
            f"{folder}: {len(unlabelled)} of {len(cases)} case(s) have no label (CASE.nii.gz beside the images, "
            f"or in labelsTr/): {', '.join(unlabelled[:5])}{' ...' if len(unlabelled) > 5 else ''}; "
            "add the labels or remove those cases"
        )
    _warn_orphan_labels(folder, set(images))
    return cases


def _no_cases_message(folder: Path) -> str:
    names = sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))
    hint = ""
    nested = [p for p in folder.glob("*/imagesTr")] + [p for p in folder.glob("*/*/imagesTr")]
    if nested:
        hint = f" Did you mean {nested[0].parent}?"
    found = f"it holds {', '.join(names[:8])}{' ...' if len(names) > 8 else ''}." if names else "it is empty."
    return (
        f"{folder}: no HECKTOR cases found; {found}{hint} Expected CASE__CT.nii.gz and CASE__PT.nii.gz (label "
        "CASE.nii.gz) in the folder itself, or images in imagesTr/ and labels in labelsTr/"
    )


def _warn_orphan_labels(folder: Path, case_ids: set[str]) -> None:
    for _, label_dir in SUBFOLDERS:
        if (folder / label_dir).is_dir():
            orphans = [p.name for p in (folder / label_dir).iterdir() if label_case(p) not in (None, *case_ids)]
            if orphans:
                log.warning("%s: %d label(s) without images ignored: %s", folder / label_dir, len(orphans), orphans[:5])


def read_hecktor_case(case: HecktorCase) -> tuple[Volume, Volume, Volume | None]:
    """The CT (HU), PET (SUV, each on its own grid, float32) and label (uint8 on the CT grid, or None).

    PET files of this layout carry no units: their values are taken as SUV (as in HECKTOR), which is
    logged. Raises :class:`~DualDINOv3Lib.errors.DataError` for unreadable images, a PET that does not
    overlap the CT, or a label that is not on the CT grid or holds values other than 0, 1, 2.
    """
    ct = read_volume(case.ct, modality="CT")
    ct = ct.with_array(ct.array, units="HU")
    pet = read_volume(case.pet, modality="PT")
    if pet.units is None:  # read_volume did not mark (and log) it as SUV
        log.warning("%s: the PET file carries no units; its values are taken as SUV", case.pet)
        pet = pet.with_array(pet.array, units="SUV")
    check_overlap(pet, ct, (f"PET {case.pet.name}", f"CT {case.ct.name}"))
    label = None if case.label is None else _read_label(case.label, ct)
    return ct, pet, label


def _read_label(path: Path, ct: Volume) -> Volume:
    label = read_label(path)
    values = np.unique(label.array)
    bad = [v for v in values.tolist() if v not in LABEL_VALUES]
    if bad:
        raise DataError(
            f"{path}: label values must be 0 (background), 1 (GTVp) or 2 (GTVn), found {bad[:10]}; "
            "relabel the file (HECKTOR 2022 convention)"
        )
    if not label.same_grid(ct, tol=1e-2):
        raise DataError(
            f"{path}: the label is not on the CT grid (label {label.shape} voxels, spacing {label.spacing}, "
            f"origin {label.origin}; CT {ct.shape}, {ct.spacing}, {ct.origin}). HECKTOR labels lie on the CT "
            "grid: resample it with resample_to_grid(label, ct, interpolation='nearest')"
        )
    # the CT's geometry tuples, so label.same_grid(ct) holds to the bit
    return ct.with_array(label.array.astype(np.uint8), units=None, modality=LABEL_MODALITY)


def find_label_files(folder: str | os.PathLike) -> dict[str, Path]:
    """Case name -> label file for every ``CASE.nii.gz`` in ``folder`` (or in its ``labelsTr``/``labelsTs``).

    Image files ``CASE__CT.nii.gz`` / ``CASE__PT.nii.gz`` and hidden files are skipped. Sorted by case name.
    Raises :class:`DataError` if the folder does not exist, holds no label file, or holds one case twice
    (e.g. ``A.nii`` and ``A.nii.gz``).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: no such folder; pass a folder holding CASE.nii.gz label files")
    found = _labels_in(folder)
    if not found:
        for sub in (folder / name for name in LABEL_SUBFOLDERS if (folder / name).is_dir()):
            for case, path in _labels_in(sub).items():
                if case in found:
                    raise DataError(f"{folder}: case {case} has labels in two subfolders, {found[case]} and {path}")
                found[case] = path
    if not found:
        raise DataError(
            f"{folder}: holds no label files CASE.nii.gz (images CASE__CT/CASE__PT are not labels); "
            "pass the folder (HECKTOR layout) that holds the label volumes"
        )
    return dict(sorted(found.items()))


def _labels_in(folder: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        name = label_case(path) if path.is_file() else None
        if name is None:
            continue
        if name in found:
            raise DataError(
                f"{folder}: case {name} has two label files, {found[name].name} and {path.name}; "
                "keep one of them (which one is right cannot be guessed)"
            )
        found[name] = path
    return found


# --- writing -------------------------------------------------------------------------------------------


def case_paths(folder: str | os.PathLike, case_id: str) -> HecktorCase:
    """Where :func:`write_hecktor_case` writes ``case_id`` in ``folder`` (flat layout, .nii.gz)."""
    folder = Path(folder)
    if not case_id or "/" in case_id or "\\" in case_id or case_id.startswith(".") or "__" in case_id:
        raise DataError(f"case id {case_id!r} cannot name HECKTOR files: use letters, digits and '-' (e.g. CHUM-001)")
    return HecktorCase(
        case_id, folder / f"{case_id}__CT.nii.gz", folder / f"{case_id}__PT.nii.gz", folder / f"{case_id}.nii.gz"
    )


def check_case_outputs(folder: str | os.PathLike, case_ids: list[str], *, overwrite: bool = False) -> None:
    """Checks, before anything is computed, that the cases can be written to ``folder``.

    ``folder`` must be a writable folder, or not exist yet under a writable folder; without ``overwrite``
    none of the cases' files may exist (:class:`~DualDINOv3Lib.errors.OutputExistsError` lists them).
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise DataError(f"{folder}: is a file; the output must be a folder (choose another path)")
    existing_parent = folder
    while not existing_parent.exists():
        existing_parent = existing_parent.parent
    if not existing_parent.is_dir():
        raise DataError(f"{folder}: cannot be created because {existing_parent} is a file")
    if not os.access(existing_parent, os.W_OK | os.X_OK):
        raise DataError(f"{folder}: cannot write in {existing_parent} (permission denied); choose another folder")
    if not overwrite:
        taken = [p for cid in case_ids for p in _files(case_paths(folder, cid)) if p.exists()]
        if taken:
            names = ", ".join(p.name for p in taken[:4]) + (f" and {len(taken) - 4} more" if len(taken) > 4 else "")
            raise OutputExistsError(
                f"{folder}: {names} already exist; pass overwrite=True (--overwrite) to replace them, "
                "or choose another folder"
            )


def _files(case: HecktorCase) -> list[Path]:
    return [case.ct, case.pet] + ([case.label] if case.label is not None else [])


def write_hecktor_case(
    folder: str | os.PathLike, case_id: str, ct: Volume, pet: Volume, label: Volume | None, *, overwrite: bool = False
) -> HecktorCase:
    """Writes one case into ``folder`` (created if missing) in the flat HECKTOR layout: ``CASE__CT.nii.gz``
    (int16 when the HU are integers, as scanners store them), ``CASE__PT.nii.gz`` and ``CASE.nii.gz`` (uint8).

    Each file is written atomically; existing files are only replaced with ``overwrite=True``
    (:class:`~DualDINOv3Lib.errors.OutputExistsError` otherwise, before anything is written).
    """
    case = case_paths(folder, case_id)
    if label is None:
        case = HecktorCase(case.case_id, case.ct, case.pet, None)
    check_case_outputs(folder, [case_id], overwrite=overwrite)
    Path(folder).mkdir(parents=True, exist_ok=True)
    hu = ct.array
    if np.array_equal(hu, np.round(hu)) and hu.min() >= -32768 and hu.max() <= 32767:
        ct = ct.with_array(hu.astype(np.int16))  # integer HU: half the size, exact
    write_volume(ct, case.ct, overwrite=overwrite)
    write_volume(pet, case.pet, overwrite=overwrite)
    if label is not None:
        write_volume(label.with_array(np.asarray(label.array, dtype=np.uint8)), case.label, overwrite=overwrite)
    return case
