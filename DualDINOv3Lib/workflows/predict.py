"""Segmenting every case of a HECKTOR-layout folder: ``CASE.nii.gz`` label files, each on its case's CT grid.
Uses :func:`~DualDINOv3Lib.segment_volume`, the same path as ``dualdinov3 segment`` and the Slicer module."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from ..data.hecktor import list_hecktor_cases, read_hecktor_case
from ..data.io import write_volume
from ..files import check_output_folder, check_output_path
from ..inference.segment import resolve_segmenter, segment_volume


def predict_folder(
    data: str | os.PathLike,
    out: str | os.PathLike,
    model=None,
    *,
    device: str = "auto",
    batch_size: int = 4,
    overwrite: bool = False,
    on_case: Callable[[int, int, Path], None] | None = None,
) -> list[Path]:
    """Writes ``out/CASE.nii.gz`` for every case of ``data``; returns the written paths.

    Every output is checked before the first case is segmented (existing files need ``overwrite``).
    ``model``: a segmenter, a ``.safetensors`` path, or None for the bundled demo model.
    ``on_case(index, total, path)`` is called after each case is written.
    """
    cases = list_hecktor_cases(data)
    out = check_output_folder(out)
    for case in cases:
        check_output_path(out / f"{case.case_id}.nii.gz", overwrite=overwrite, inputs=(case.ct, case.pet, case.label))
    model = resolve_segmenter(model)
    written = []
    for i, case in enumerate(cases, start=1):
        ct, pet, _ = read_hecktor_case(case)
        label = segment_volume(ct, pet, model, device=device, batch_size=batch_size)
        written.append(write_volume(label, out / f"{case.case_id}.nii.gz", overwrite=overwrite))
        if on_case is not None:
            on_case(i, len(cases), written[-1])
    return written
