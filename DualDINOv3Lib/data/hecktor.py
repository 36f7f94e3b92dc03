"""HECKTOR-layout PET/CT folders: listing and reading cases, and writing (phantom) cases.

The HECKTOR 2022 naming: case ``CHUM-001`` has ``CHUM-001__CT.nii.gz`` (HU), ``CHUM-001__PT.nii.gz``
(SUV) and the label ``CHUM-001.nii.gz`` (0 background, 1 GTVp, 2 GTVn, on the CT grid). The files lie
either all in one folder, or as in the challenge's download: images in ``imagesTr/`` (``imagesTs/``) and
labels in ``labelsTr/`` (``labelsTs/``) beside it.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError, OutputExistsError
from ..files import atomic_write
from .io import read_volume, write_volume
from .labels import read_label
from .resample import check_overlap
from .volume import LABEL_MODALITY, Volume

log = logging.getLogger(__name__)

LABEL_VALUES = {0: "background", 1: "GTVp", 2: "GTVn"}
IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha")
SUBFOLDERS = (("imagesTr", "labelsTr"), ("imagesTs", "labelsTs"))
"""(images, labels) subfolder pairs of the challenge's download, looked for inside the given folder."""
CASES_JSON, CASES_CSV = "cases.json", "cases.csv"
CASES_FORMAT = "dualdinov3-phantom-cases"
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
            match = _IMAGE_NAME.match(path.name)
            if path.name.startswith(".") or not match or not path.is_file():
                continue
            case_id, modality = match["case"], match["modality"].upper()
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
            orphans = [
                p.name
                for p in (folder / label_dir).iterdir()
                if _suffix(p.name) and p.name[: -len(_suffix(p.name))] not in case_ids
            ]
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
    none of the cases' files may exist (:class:`~DualDINOv3Lib.errors.OutputExistsError` lists them). A
    ``cases.json`` there must be one this package wrote.
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
    _read_cases_table(folder)


def _files(case: HecktorCase) -> list[Path]:
    return [case.ct, case.pet] + ([case.label] if case.label is not None else [])


def write_hecktor_case(phantom, folder: str | os.PathLike, *, overwrite: bool = False) -> HecktorCase:
    """Writes a :class:`~.phantom.Phantom` as ``CASE__CT.nii.gz`` (int16 HU), ``CASE__PT.nii.gz`` (float32
    SUV) and ``CASE.nii.gz`` (uint8 label) into ``folder`` (created if missing), and adds its facts
    (``phantom.facts()``) to ``cases.json`` and ``cases.csv`` there.

    Each file is written atomically; existing files are only replaced with ``overwrite=True``
    (:class:`~DualDINOv3Lib.errors.OutputExistsError` otherwise, before anything is written).
    Returns the written case's paths.
    """
    case = case_paths(folder, phantom.case_id)
    check_case_outputs(folder, [phantom.case_id], overwrite=overwrite)
    Path(folder).mkdir(parents=True, exist_ok=True)
    ct = phantom.ct
    hu = ct.array
    if np.array_equal(hu, np.round(hu)) and hu.min() >= -32768 and hu.max() <= 32767:
        ct = ct.with_array(hu.astype(np.int16))  # integer HU as scanners store them: half the size, exact
    write_volume(ct, case.ct, overwrite=overwrite)
    write_volume(phantom.pet, case.pet, overwrite=overwrite)
    write_volume(phantom.label, case.label, overwrite=overwrite)
    records = {r["case_id"]: r for r in _read_cases_table(Path(folder))}
    records[phantom.case_id] = phantom.facts()
    _write_cases_table(Path(folder), [records[k] for k in sorted(records)])
    return case


def _read_cases_table(folder: Path) -> list[dict]:
    """The records of ``folder/cases.json`` ([] if there is none); refuses a file this package did not write."""
    path = folder / CASES_JSON
    if not path.exists():
        if (folder / CASES_CSV).exists():
            raise DataError(
                f"{folder / CASES_CSV}: exists without {CASES_JSON}, so it was not written here and would be "
                "replaced; move it away or choose another folder"
            )
        return []
    try:
        table = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: is not a readable case table ({exc}); move it away or choose another folder") from exc
    if not isinstance(table, dict) or table.get("format") != CASES_FORMAT or not isinstance(table.get("cases"), list):
        raise DataError(
            f"{path}: was not written by dualdinov3 (no format {CASES_FORMAT!r}) and would be replaced; "
            "move it away or choose another folder"
        )
    return table["cases"]


def _write_cases_table(folder: Path, records: list[dict]) -> None:
    text = json.dumps({"format": CASES_FORMAT, "version": 1, "cases": records}, indent=2) + "\n"
    atomic_write(folder / CASES_JSON, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    columns = list(dict.fromkeys(key for record in records for key in record))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(records)
    atomic_write(folder / CASES_CSV, lambda tmp: Path(tmp).write_text(buffer.getvalue(), encoding="utf-8"))


def read_cases_table(folder: str | os.PathLike) -> list[dict]:
    """The per-case facts (``case_id``, ``seed``, ``stratum``, ``gtvp_cm3``...) of a phantom folder's
    ``cases.json``, or [] when the folder has none (e.g. real HECKTOR data)."""
    return list(_read_cases_table(Path(folder)))
