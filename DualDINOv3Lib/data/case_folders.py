"""Folders of real PET/CT cases with a truth mask, for checking a model on real data.

Two layouts are recognised (:func:`find_masked_cases`):

- **HECKTOR** (:mod:`.hecktor`): ``CASE__CT.nii.gz``, ``CASE__PT.nii.gz`` and the label ``CASE.nii.gz``
  (0 background, 1 GTVp, 2 GTVn) in the folder or in ``imagesTr/`` + ``labelsTr/``.
- **image/mask pairs**: one subfolder per case (its name is the case id) holding a CT, a PET and a mask,
  told apart by the words in their file names: a *mask* has ``mask``, ``label``, ``seg``, ``gtv`` or ``roi``
  in its name, the *CT* ``ct`` and the *PET* ``pet``, ``pt`` or ``suv`` (words split at ``_``, ``-``, ``.``
  and digits: the IBSI names ``CT_image``, ``PET_image``, ``CT_mask``/``PET_mask`` fit). With several masks,
  the one named for the CT is taken. A folder that itself holds such files is one case.

The mask may lie on the CT or the PET grid (or any grid overlapping the CT): :func:`read_masked_case` puts it
on the CT grid (nearest neighbour). Subfolders holding no image file at all (DICOM series, notes) are not
cases; they are reported, not read.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..domain import LABEL_VALUES
from ..errors import DataError
from .hecktor import HecktorCase, image_case, list_hecktor_cases, read_hecktor_case
from .io import READ_SUFFIXES, read_volume
from .labels import read_label
from .resample import check_overlap, resample_to_grid
from .volume import LABEL_MODALITY, Volume

log = logging.getLogger(__name__)

HECKTOR, PAIRS = "hecktor", "pairs"
"""The two layouts :func:`find_masked_cases` recognises."""
MASK_WORDS = frozenset({"mask", "masks", "label", "labels", "labelmap", "seg", "segmentation", "gtv", "roi"})
CT_WORDS = frozenset({"ct"})
PET_WORDS = frozenset({"pet", "pt", "suv"})
_WORD_BREAKS = re.compile(r"[^a-z0-9]+|(?<=[a-z])(?=[0-9])|(?<=[0-9])(?=[a-z])")
_EXPECTED = (
    "one subfolder per case holding a CT, a PET and a mask whose file names say which is which (e.g. CT_image.nii.gz, "
    "PET_image.nii.gz, CT_mask.nii.gz), or the HECKTOR layout (CASE__CT.nii.gz, CASE__PT.nii.gz, CASE.nii.gz)"
)


@dataclass(frozen=True)
class MaskedCase:
    """One real case: its id, the paths of its CT, PET and truth mask, and the layout it was found in."""

    case_id: str
    ct: Path
    pet: Path
    mask: Path
    layout: str


@dataclass(frozen=True)
class MaskedCaseFolder:
    """The cases of a folder, its layout, and the subfolders that were not cases (with the reason)."""

    layout: str
    cases: list[MaskedCase]
    skipped: list[str]


@dataclass(frozen=True)
class MaskedCaseVolumes:
    """A case read for evaluation: CT (HU), PET (SUV, own grid), the truth (uint8 on the CT grid) and whether
    the truth holds HECKTOR classes (1 GTVp, 2 GTVn) rather than one lesion (any non-zero value)."""

    ct: Volume
    pet: Volume
    truth: Volume
    classes: bool
    notes: tuple[str, ...] = ()


def name_words(path: str | os.PathLike) -> set[str]:
    """The lower-case words of a file name without its image suffix: ``CT_image.nii.gz`` -> {ct, image},
    ``pet2.nrrd`` -> {pet, 2}."""
    name = Path(path).name.lower()
    suffix = next((s for s in sorted(READ_SUFFIXES, key=len, reverse=True) if name.endswith(s)), "")
    return {w for w in _WORD_BREAKS.split(name[: len(name) - len(suffix)]) if w}


def _image_files(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.name.lower().endswith(READ_SUFFIXES)
    )


def _names(paths) -> str:
    return ", ".join(p.name for p in paths)


def _one(folder: Path, kind: str, found: list[Path], files: list[Path], hint: str) -> Path:
    if len(found) == 1:
        return found[0]
    if not found:
        raise DataError(
            f"{folder}: no {kind} found among {_names(files)}; expected a file whose name holds {hint}. "
            "Rename the file, or remove the folder from the data folder"
        )
    raise DataError(
        f"{folder}: several files could be the {kind}: {_names(found)}; keep one of them in the case folder "
        "(move the others out) so that the choice is not a guess"
    )


def pair_case(folder: str | os.PathLike) -> MaskedCase:
    """The case held by ``folder`` (image/mask pairs layout); see the module docstring for the naming.

    Raises :class:`DataError` naming the folder and what was expected for a missing or ambiguous CT, PET or
    mask.
    """
    folder = Path(folder)
    files = _image_files(folder)
    if not files:
        raise DataError(f"{folder}: holds no image file ({', '.join(READ_SUFFIXES)}); expected {_EXPECTED}")
    words = {p: name_words(p) for p in files}
    masks = [p for p in files if words[p] & MASK_WORDS]
    images = [p for p in files if p not in masks]
    cts = [p for p in images if words[p] & CT_WORDS and not words[p] & PET_WORDS]
    pets = [p for p in images if words[p] & PET_WORDS and not words[p] & CT_WORDS]
    ct = _one(folder, "CT image", cts, files, "the word 'ct' (e.g. CT_image.nii.gz, ct.nii.gz)")
    pet = _one(folder, "PET image", pets, files, "the word 'pet', 'pt' or 'suv' (e.g. PET_image.nii.gz)")
    if len(masks) > 1:  # IBSI ships the mask on both grids: the CT's needs no resampling
        ct_masks = [p for p in masks if words[p] & CT_WORDS and not words[p] & PET_WORDS]
        masks = ct_masks if len(ct_masks) == 1 else masks
    mask = _one(folder, "truth mask", masks, files, "'mask', 'label', 'seg', 'gtv' or 'roi' (e.g. CT_mask.nii.gz)")
    return MaskedCase(folder.name, ct, pet, mask, PAIRS)


def find_masked_cases(folder: str | os.PathLike) -> MaskedCaseFolder:
    """The cases of a real-data folder, sorted by case id, in the HECKTOR or the image/mask pairs layout.

    Raises :class:`DataError` (before anything is read) for a missing folder, a folder with no case, and any
    case folder without a clear CT, PET or mask (all such folders are named at once).
    """
    folder = Path(folder)
    if not folder.is_dir():
        what = "is a file, not a folder" if folder.exists() else "no such folder"
        raise DataError(f"{folder}: {what}; pass the folder holding the cases: {_EXPECTED}")
    hecktor_dirs = [folder, folder / "imagesTr", folder / "imagesTs"]
    if any(image_case(p) for d in hecktor_dirs if d.is_dir() for p in d.iterdir()):
        cases = list_hecktor_cases(folder, require_labels=True)
        return MaskedCaseFolder(HECKTOR, [MaskedCase(c.case_id, c.ct, c.pet, c.label, HECKTOR) for c in cases], [])
    subfolders = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    with_images = [p for p in subfolders if _image_files(p)]
    skipped = [f"{p.name} (no {'/'.join(READ_SUFFIXES)} image file)" for p in subfolders if p not in with_images]
    if _image_files(folder):
        if with_images:
            raise DataError(
                f"{folder}: holds image files itself and case subfolders ({_names(with_images[:3])}); put every "
                "case in its own subfolder, or pass one case folder"
            )
        return MaskedCaseFolder(PAIRS, [pair_case(folder)], skipped)
    if not with_images:
        held = _names(sorted(folder.iterdir())[:8]) or "nothing"
        raise DataError(f"{folder}: no case found (it holds {held}); expected {_EXPECTED}")
    cases, problems = [], []
    for sub in with_images:
        try:
            cases.append(pair_case(sub))
        except DataError as exc:
            problems.append(str(exc))
    if problems:
        raise DataError(f"{len(problems)} of {len(with_images)} case folders cannot be used: " + " | ".join(problems))
    return MaskedCaseFolder(PAIRS, cases, skipped)


def read_masked_case(case: MaskedCase) -> MaskedCaseVolumes:
    """The CT, PET and truth of ``case``; the truth on the CT grid (nearest-neighbour resampled if it lies on
    another grid, e.g. the PET's). A pairs mask with values other than 0, 1, 2 is taken as one lesion (any
    non-zero voxel, stored as 1); its classes count as HECKTOR's only when it holds the value 2."""
    if case.layout == HECKTOR:
        ct, pet, label = read_hecktor_case(HecktorCase(case.case_id, case.ct, case.pet, case.mask))
        return MaskedCaseVolumes(ct, pet, label, classes=True)
    ct = read_volume(case.ct, modality="CT")
    ct = ct.with_array(ct.array, units="HU")
    pet = read_volume(case.pet, modality="PT")
    check_overlap(pet, ct, (f"PET {case.pet.name}", f"CT {case.ct.name}"))
    mask = read_label(case.mask)
    notes = []
    if not mask.same_grid(ct, tol=1e-2):
        check_overlap(mask, ct, (f"mask {case.mask.name}", f"CT {case.ct.name}"))
        mask = resample_to_grid(mask, ct, interpolation="nearest", default_value=0)
        notes.append(f"{case.mask.name} resampled (nearest) onto the CT grid")
    array = np.asarray(mask.array)
    values = set(np.unique(array).tolist())
    classes = values <= set(LABEL_VALUES) and 2 in values
    if not values <= set(LABEL_VALUES) or not classes:
        array = (array > 0).astype(np.uint8)
    if not array.any():
        notes.append(f"{case.mask.name} is empty: every predicted voxel counts as a false positive")
    truth = ct.with_array(array.astype(np.uint8), units=None, modality=LABEL_MODALITY)
    for note in notes:
        log.info("%s: %s", case.case_id, note)
    return MaskedCaseVolumes(ct, pet, truth, classes=classes, notes=tuple(notes))
