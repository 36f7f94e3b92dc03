"""Checking a model on real PET/CT cases with truth masks: the job behind ``dualdinov3 evaluate-real``.

Every case of the folder (HECKTOR layout or image/mask pairs, :mod:`DualDINOv3Lib.data.case_folders`) is
segmented with :func:`~DualDINOv3Lib.segment_volume` (the path of ``dualdinov3 segment`` and the Slicer module)
and scored by :mod:`DualDINOv3Lib.evaluation.real_data`: Dice of any label against the lesion and the
false-positive components away from it. Files written into ``out`` (when given):

- ``cases.csv``         one row per case (:data:`~DualDINOv3Lib.evaluation.real_data.CSV_COLUMNS`);
- ``summary.md``        the per-case table, the summary (FP median/max, cases above 5 cm3, median Dice) and
                        the definitions;
- ``CASE_lesion.png``   CT and PET through the lesion's largest slice, truth contour (green) and predicted labels
                        (GTVp magenta, GTVn orange);
- ``CASE_fp.png``       the same through the largest false-positive component, for cases that have one.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data.case_folders import MaskedCase, find_masked_cases, read_masked_case
from ..data.resample import resample_pet_to_ct
from ..errors import DataError, DualDINOv3Error, OutputExistsError
from ..evaluation.real_data import (
    RealCaseResult,
    RealDataSummary,
    evaluate_real_case,
    real_cases_csv,
    real_summary_markdown,
    summarize_real,
)
from ..files import check_output_folder, write_text
from ..inference.segment import resolve_segmenter, segment_volume
from ..machine import DEFAULT_BATCH_SIZE
from ..rendering import write_png
from ..runtime import with_cpu_threads
from .demo import overlay_picture

log = logging.getLogger(__name__)

TABLES = ("cases.csv", "summary.md")
LESION_PNG, FP_PNG = "{case}_lesion.png", "{case}_fp.png"


@dataclass(frozen=True)
class RealEvaluationReport:
    """The per-case results, their summary, the folders that were not cases, the cases that could not be used
    (``"CASE: reason"``), and the files written."""

    results: list[RealCaseResult]
    summary: RealDataSummary
    skipped: list[str]
    failed: list[str]
    written: list[Path]


def _our_outputs(out: Path, cases: list[MaskedCase]) -> list[Path]:
    names = [*TABLES]
    for case in cases:
        names += [LESION_PNG.format(case=case.case_id), FP_PNG.format(case=case.case_id)]
    return [out / name for name in names]


def check_real_outputs(out: Path, data: Path, cases: list[MaskedCase], *, overwrite: bool) -> None:
    """Raises before any work if ``out`` is a file, is the data folder or one of its cases, or already holds
    outputs of this job (unless ``overwrite``)."""
    if out.exists() and not out.is_dir():
        raise DualDINOv3Error(f"--out {out} is a file; pass a folder")
    resolved = out.resolve()
    for inside in [data, *(c.ct.parent for c in cases)]:
        if resolved == inside.resolve():
            what = "the data folder" if inside == data else "a case folder"
            raise DualDINOv3Error(f"--out {out} is {what}; choose a folder of its own for the results")
    existing = [p.name for p in _our_outputs(out, cases) if p.exists()]
    if existing and not overwrite:
        more = f" and {len(existing) - 4} more" if len(existing) > 4 else ""
        raise OutputExistsError(
            f"{out} already holds {', '.join(existing[:4])}{more}; pass --overwrite to replace them, or choose "
            "another --out"
        )


def _pictures(case_id: str, volumes, prediction, fp_slice: int | None, out: Path) -> list[Path]:
    """The lesion picture (and the false-positive one when ``fp_slice`` is given), written atomically."""
    truth = np.asarray(volumes.truth.array)
    pred = np.asarray(prediction.array)
    area = (truth > 0).sum(axis=(1, 2)) if truth.any() else (pred > 0).sum(axis=(1, 2))
    lesion_slice = int(np.argmax(area)) if area.any() else truth.shape[0] // 2
    pet_on_ct = resample_pet_to_ct(volumes.pet, volumes.ct)
    written = []
    for name, z in ((LESION_PNG, lesion_slice), (FP_PNG, fp_slice)):
        path = out / name.format(case=case_id)
        if z is None:
            if path.exists():  # a picture of an earlier run (--overwrite) that this model no longer has
                path.unlink()
            continue
        picture = overlay_picture(volumes.ct, pet_on_ct, volumes.truth, prediction, z)
        written.append(write_png(picture, path, overwrite=True))
    return written


def _model_name(model) -> str:
    if model is None:
        return "the bundled demo model"
    return f"`{model}`" if isinstance(model, (str, os.PathLike)) else f"a {type(model).__name__} given from Python"


@with_cpu_threads
def evaluate_real_folder(
    data: str | os.PathLike,
    out: str | os.PathLike | None = None,
    model=None,
    *,
    device: str = "auto",
    batch_size: int = DEFAULT_BATCH_SIZE,
    threads: int | None = None,
    min_component_mm3: float = 0.0,
    head_neck_only: bool = True,
    overwrite: bool = False,
    on_case: Callable[[int, int, RealCaseResult], None] | None = None,
) -> RealEvaluationReport:
    """Segments and scores every case of ``data``; writes the tables and pictures into ``out`` (nothing is
    written when ``out`` is None). ``model``: a segmenter, a ``.safetensors`` path, or None for the bundled demo
    model. ``min_component_mm3`` is passed to :func:`~DualDINOv3Lib.segment_volume` (predicted regions smaller
    than this are dropped before scoring), and so is ``head_neck_only`` (regions below the thorax, inside
    the skull, without FDG uptake, of excreted tracer or of brown fat are dropped). ``threads``: CPU threads for
    the whole job (None: leave the process's setting). ``on_case(index, total, result)`` is called after each case.

    The folder's layout and every output are checked before the first case is segmented. A case whose images
    turn out unusable (unreadable, implausible, not overlapping: a :class:`DataError`) is listed in
    ``failed`` and the others are evaluated; if none can be, the :class:`DataError` names them all.
    """
    data = Path(data)
    found = find_masked_cases(data)
    if out is not None:
        out = Path(out)
        check_real_outputs(out, data, found.cases, overwrite=overwrite)
    model_name = _model_name(model)
    model = resolve_segmenter(model)
    if out is not None:
        check_output_folder(out)
    results, failed, written = [], [], []
    for i, case in enumerate(found.cases, start=1):
        try:
            volumes = read_masked_case(case)
            prediction = segment_volume(
                volumes.ct,
                volumes.pet,
                model,
                device=device,
                batch_size=batch_size,
                min_component_mm3=min_component_mm3,
                head_neck_only=head_neck_only,
            )
            result = evaluate_real_case(case.case_id, volumes.truth, prediction, classes=volumes.classes)
        except DataError as exc:  # this case's input is unusable: say why, go on with the others
            failed.append(f"{case.case_id}: {exc}")
            log.warning("case %s cannot be used: %s", case.case_id, exc)
            continue
        results.append(result)
        if out is not None:
            written += _pictures(case.case_id, volumes, prediction, result.false_positives.largest_slice, out)
        if on_case is not None:
            on_case(i, len(found.cases), result)
    if not results:
        raise DataError(f"none of the {len(found.cases)} cases of {data} could be used: " + " | ".join(failed))
    summary = summarize_real(results)
    if out is not None:
        details = [
            f"data: `{data}` ({found.layout} layout, {len(results)} cases)",
            f"model: {model_name}",
            f"options: --min-component-mm3 {min_component_mm3:g}"
            + ("" if head_neck_only else " --keep-outside-head-neck"),
        ]
        details += [f"not a case: {s}" for s in found.skipped] + [f"could not be used: {f}" for f in failed]
        markdown = real_summary_markdown(results, summary, title="Model check on real PET/CT", details=details)
        written += [write_text(out / "cases.csv", real_cases_csv(results)), write_text(out / "summary.md", markdown)]
    log.info("evaluated %d cases of %s", len(results), data)
    return RealEvaluationReport(results, summary, found.skipped, failed, written)
