"""Label volumes for evaluation: reading one label file, and finding the label files of a HECKTOR-layout folder.

HECKTOR layout (the challenge's and this project's phantoms): one folder holding, per case ``CASE``, the images
``CASE__CT.nii.gz`` and ``CASE__PT.nii.gz`` and the label volume ``CASE.nii.gz`` (0 background, 1 GTVp,
2 GTVn). The challenge's own download puts the labels in ``labelsTr``/``labelsTs`` subfolders; accepted too.
A folder of predictions holds ``CASE.nii.gz`` files in the same way.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import DataError

LABEL_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha")
"""File suffixes recognised as label volumes in a folder (single-file formats)."""

LABEL_SUBFOLDERS = ("labelsTr", "labelsTs")
"""Subfolders of the challenge's download holding the labels, looked in when the folder itself holds none."""

IMAGE_SEPARATOR = "__"
"""``CASE__CT.nii.gz`` / ``CASE__PT.nii.gz`` are images, not labels: names holding this are skipped."""


def case_name(path: Path) -> str | None:
    """``CASE`` for a label file ``CASE.nii.gz`` (or .nii/.nrrd/.mha); None for images and other files."""
    name = path.name
    for suffix in LABEL_SUFFIXES:
        if name.lower().endswith(suffix):
            stem = name[: -len(suffix)]
            if stem and IMAGE_SEPARATOR not in stem and not stem.startswith("."):
                return stem
    return None


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
        name = case_name(path) if path.is_file() else None
        if name is None:
            continue
        if name in found:
            raise DataError(
                f"{folder}: case {name} has two label files, {found[name].name} and {path.name}; "
                "keep one of them (which one is right cannot be guessed)"
            )
        found[name] = path
    return found
