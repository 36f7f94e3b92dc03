"""Checking a model on real PET/CT cases with a truth mask: per-case Dice and false positives
(:mod:`.false_positives`), a summary against the bundled model's targets, and their CSV/Markdown.

The targets (issue 13: what a model must do before a user meets it on real data): the false-positive volume's
median over the cases at most :data:`FP_MEDIAN_TARGET_CM3`, and no case above :data:`FP_CASE_LIMIT_CM3`.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..data.volume import Volume
from ..domain import GTVN, GTVP, TUMOUR_CLASSES, class_volume_cm3
from ..errors import DataError
from .false_positives import FalsePositives, false_positive_components
from .metrics import dice_coefficient

FP_MEDIAN_TARGET_CM3 = 1.0
FP_CASE_LIMIT_CM3 = 5.0

CSV_COLUMNS = (
    "case",
    "dice_any",
    "dice_GTVp",
    "dice_GTVn",
    "truth_cm3",
    "pred_cm3",
    "pred_GTVp_cm3",
    "pred_GTVn_cm3",
    "fp_cm3",
    "fp_components",
    "largest_fp_cm3",
    "largest_fp_slice",
)

DEFINITIONS = (
    "Dice (any label): predicted tumour of any class (label > 0) against the truth lesion (mask > 0), on the CT "
    "grid (a mask on another grid is nearest-neighbour resampled onto it). GTVp/GTVn Dice: per class, only when "
    "the truth holds HECKTOR labels (1 GTVp, 2 GTVn). False positives: the 26-connected components of the "
    "predicted foreground that share no voxel with the truth mask; FP cm3 is their total volume, 'largest' the "
    f"biggest one. Targets: FP median <= {FP_MEDIAN_TARGET_CM3:g} cm3 and no case above {FP_CASE_LIMIT_CM3:g} cm3."
)


@dataclass(frozen=True)
class RealCaseResult:
    """One case: Dice of any label against the lesion, per-class Dice (None unless the truth has HECKTOR
    classes), truth and predicted volumes (cm3) and the false positives."""

    case: str
    dice_any: float
    dice_gtvp: float | None
    dice_gtvn: float | None
    truth_cm3: float
    pred_cm3: float
    pred_gtvp_cm3: float
    pred_gtvn_cm3: float
    false_positives: FalsePositives


@dataclass(frozen=True)
class RealDataSummary:
    """Over the cases: median and max false-positive volume (cm3, with the case of the max), the cases above
    :data:`FP_CASE_LIMIT_CM3`, the median Dice of any label, and whether the targets are met."""

    cases: int
    median_fp_cm3: float
    max_fp_cm3: float
    max_fp_case: str
    above_limit: tuple[str, ...]
    median_dice_any: float

    @property
    def targets_met(self) -> bool:
        return self.median_fp_cm3 <= FP_MEDIAN_TARGET_CM3 and not self.above_limit


def evaluate_real_case(case: str, truth: Volume, prediction: Volume, *, classes: bool) -> RealCaseResult:
    """Scores ``prediction`` (labels 0/1/2 on the CT grid) against ``truth`` (on the same grid); ``classes``:
    the truth holds HECKTOR classes (per-class Dice), otherwise any non-zero voxel is the lesion."""
    if not truth.same_grid(prediction, tol=1e-2):
        raise DataError(f"case {case}: the prediction is not on the truth's grid; resample it (nearest) first")
    t, p = np.asarray(truth.array), np.asarray(prediction.array)
    per_class = {c: dice_coefficient(t == c, p == c) if classes else None for c in TUMOUR_CLASSES}
    return RealCaseResult(
        case=case,
        dice_any=dice_coefficient(t > 0, p > 0),
        dice_gtvp=per_class[GTVP],
        dice_gtvn=per_class[GTVN],
        truth_cm3=float(np.count_nonzero(t)) * float(np.prod(truth.spacing)) / 1000.0,
        pred_cm3=float(np.count_nonzero(p)) * float(np.prod(prediction.spacing)) / 1000.0,
        pred_gtvp_cm3=class_volume_cm3(p, prediction.spacing, GTVP),
        pred_gtvn_cm3=class_volume_cm3(p, prediction.spacing, GTVN),
        false_positives=false_positive_components(p, t, truth.spacing),
    )


def summarize_real(results: Sequence[RealCaseResult]) -> RealDataSummary:
    """The summary of :class:`RealDataSummary` over ``results`` (at least one case)."""
    if not results:
        raise DataError("no case was evaluated: nothing to summarise")
    fp = np.array([r.false_positives.volume_cm3 for r in results])
    worst = int(np.argmax(fp))
    return RealDataSummary(
        cases=len(results),
        median_fp_cm3=float(np.median(fp)),
        max_fp_cm3=float(fp[worst]),
        max_fp_case=results[worst].case,
        above_limit=tuple(r.case for r in results if r.false_positives.volume_cm3 > FP_CASE_LIMIT_CM3),
        median_dice_any=float(np.median([r.dice_any for r in results])),
    )


def _number(value: float | None, digits: int) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def real_cases_csv(results: Sequence[RealCaseResult]) -> str:
    """One row per case, :data:`CSV_COLUMNS`; per-class Dice empty when not defined; volumes in cm3."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r in results:
        fp = r.false_positives
        writer.writerow(
            [r.case, _number(r.dice_any, 4), _number(r.dice_gtvp, 4), _number(r.dice_gtvn, 4)]
            + [_number(v, 3) for v in (r.truth_cm3, r.pred_cm3, r.pred_gtvp_cm3, r.pred_gtvn_cm3, fp.volume_cm3)]
            + [fp.components, _number(fp.largest_cm3, 3), "" if fp.largest_slice is None else fp.largest_slice]
        )
    return out.getvalue()


def case_line(result: RealCaseResult) -> str:
    """One line for the terminal, e.g. ``STS_002: Dice 0.412, FP 3.21 cm3 in 4 components (largest 2.10 cm3)``."""
    fp = result.false_positives
    classes = ""
    if result.dice_gtvp is not None:
        classes = f" (GTVp {result.dice_gtvp:.3f}, GTVn {result.dice_gtvn:.3f})"
    return (
        f"{result.case}: Dice {result.dice_any:.3f}{classes}, FP {fp.volume_cm3:.2f} cm3 in {fp.components} "
        f"component{'s' if fp.components != 1 else ''} (largest {fp.largest_cm3:.2f} cm3)"
    )


def summary_lines(summary: RealDataSummary) -> list[str]:
    """The summary in words: FP median and max, cases above the limit, median Dice, the targets."""
    above = f" ({', '.join(summary.above_limit)})" if summary.above_limit else ""
    median_ok = "met" if summary.median_fp_cm3 <= FP_MEDIAN_TARGET_CM3 else "NOT met"
    limit_ok = "met" if not summary.above_limit else "NOT met"
    return [
        f"{summary.cases} case{'s' if summary.cases != 1 else ''}: false-positive volume median "
        f"{summary.median_fp_cm3:.2f} cm3, max "
        f"{summary.max_fp_cm3:.2f} cm3 ({summary.max_fp_case}); {len(summary.above_limit)} case(s) above "
        f"{FP_CASE_LIMIT_CM3:g} cm3{above}; median Dice (any label) {summary.median_dice_any:.3f}",
        f"targets: FP median <= {FP_MEDIAN_TARGET_CM3:g} cm3 {median_ok}; no case above {FP_CASE_LIMIT_CM3:g} cm3 "
        f"{limit_ok}",
    ]


def _cell(value: float | None, digits: int) -> str:
    return _number(value, digits) or "–"


def real_summary_markdown(
    results: Sequence[RealCaseResult], summary: RealDataSummary, *, title: str, details: Sequence[str] = ()
) -> str:
    """``summary.md``: a title, ``details`` lines (data, model, options), the per-case table, the summary and
    the definitions."""
    lines = [f"# {title}", "", *[f"- {d}" for d in details], ""]
    lines += [
        "| case | Dice (any label) | GTVp Dice | GTVn Dice | truth cm3 | predicted cm3 | FP cm3 | FP components "
        "| largest FP cm3 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        fp = r.false_positives
        lines.append(
            f"| {r.case} | {r.dice_any:.3f} | {_cell(r.dice_gtvp, 3)} | {_cell(r.dice_gtvn, 3)} | {r.truth_cm3:.2f} "
            f"| {r.pred_cm3:.2f} | {fp.volume_cm3:.2f} | {fp.components} | {fp.largest_cm3:.2f} |"
        )
    lines += ["", *[f"**{line}**" if i == 0 else line for i, line in enumerate(summary_lines(summary))], ""]
    lines += [DEFINITIONS, ""]
    return "\n".join(lines)
