"""Per configuration, class and tumour-volume stratum: micro and macro Dice, HD95 summary, aggregated DSC.

Definitions (the paper's sec. 2.5 and HECKTOR 2022; see :data:`~DualDINOv3Lib.evaluation.metrics.CONVENTIONS`):

- micro Dice: the unweighted mean of the subjects' Dice, with its sample SD (n - 1 degrees of freedom);
- macro Dice: the subjects' Dice weighted by their truth tumour volume, ``sum(V_i D_i) / sum(V_i)``;
- aggregated DSC (HECKTOR 2022): ``2 sum_i |T_i n P_i| / sum_i (|T_i| + |P_i|)`` over a set of subjects, in mm3
  (equivalently cm3); the challenge score is its mean over GTVp and GTVn on every subject evaluated.

A stratum's subjects are those whose truth volume of the class lies in it; ``"all"`` is every subject with the
class in its truth. Subjects without the class in the truth are in no stratum (but count in the aggregated DSC).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ..domain import STRATA, TUMOUR_CLASSES
from .lesions import NO_LESIONS, LesionCounts
from .metrics import CaseMetrics

ALL = "all"
STRATA_AND_ALL: tuple[str, ...] = (*STRATA, ALL)


@dataclass(frozen=True)
class StratumSummary:
    """Statistics of one configuration for one class and stratum (``"small"``, ``"medium"``, ``"large"``, ``"all"``).

    ``n``: subjects; ``micro_dice`` / ``micro_sd`` / ``macro_dice`` as defined above (NaN when n = 0; SD NaN
    when n < 2); ``aggregated_dsc`` over these subjects; ``hd95_median_mm`` / ``hd95_mean_mm`` over the
    ``n_hd95`` subjects whose prediction is not empty; ``n_missed``: subjects with an empty prediction.
    """

    configuration: str
    class_name: str
    stratum: str
    n: int
    micro_dice: float
    micro_sd: float
    macro_dice: float
    aggregated_dsc: float
    hd95_median_mm: float
    hd95_mean_mm: float
    n_hd95: int
    n_missed: int


@dataclass(frozen=True)
class ConfigurationSummary:
    """Everything Table 1 and the HECKTOR table need about one configuration.

    ``strata``: one :class:`StratumSummary` per class and stratum, classes in order, strata in
    :data:`STRATA_AND_ALL` order. ``aggregated_dsc``: class name -> HECKTOR 2022 aggregated DSC over every
    subject; ``aggregated_dsc_mean``: its mean over the classes. ``n_absent``: class name -> subjects without
    the class in the truth; ``n_false_positive``: of those, how many have it in the prediction. ``lesions``:
    class name -> lesion-wise detection summed over the subjects (:class:`.lesions.LesionCounts`).
    """

    configuration: str
    n_cases: int
    strata: tuple[StratumSummary, ...]
    aggregated_dsc: dict[str, float]
    aggregated_dsc_mean: float
    n_absent: dict[str, int]
    n_false_positive: dict[str, int]
    lesions: dict[str, LesionCounts]

    def stratum(self, class_name: str, stratum: str) -> StratumSummary:
        """The summary of one class and stratum; KeyError naming the valid choices otherwise."""
        for summary in self.strata:
            if summary.class_name == class_name and summary.stratum == stratum:
                return summary
        known = sorted({(s.class_name, s.stratum) for s in self.strata})
        raise KeyError(f"no summary for class {class_name!r}, stratum {stratum!r}; known: {known}")


def micro_dice(dice: Sequence[float]) -> tuple[float, float]:
    """(mean, sample SD) of subject Dice scores; (NaN, NaN) for none, SD NaN for a single subject."""
    if len(dice) == 0:
        return math.nan, math.nan
    mean = math.fsum(dice) / len(dice)
    return mean, statistics.stdev(dice) if len(dice) > 1 else math.nan


def macro_dice(dice: Sequence[float], truth_volumes: Sequence[float]) -> float:
    """Subject Dice weighted by truth tumour volume (any unit): ``sum(V_i D_i) / sum(V_i)``; NaN if sum(V) = 0."""
    if len(dice) != len(truth_volumes):
        raise ValueError(f"{len(dice)} Dice values but {len(truth_volumes)} volumes; give one volume per subject")
    total = math.fsum(truth_volumes)
    if total <= 0:
        return math.nan
    return math.fsum(v * d for v, d in zip(truth_volumes, dice, strict=True)) / total


def aggregated_dsc(cases: Iterable[CaseMetrics]) -> float:
    """HECKTOR 2022 aggregated DSC of one class over ``cases``: 2 sum|T n P| / sum(|T| + |P|); NaN if all empty."""
    cases = list(cases)
    denominator = math.fsum(c.truth_cm3 + c.pred_cm3 for c in cases)
    if denominator == 0:
        return math.nan
    return 2.0 * math.fsum(c.intersection_cm3 for c in cases) / denominator


def in_stratum(cases: Iterable[CaseMetrics], class_name: str, stratum: str) -> list[CaseMetrics]:
    """The cases of one class in one stratum (``"all"``: every case with the class in the truth), in order."""
    if stratum not in STRATA_AND_ALL:
        raise ValueError(f"unknown stratum {stratum!r}; use one of {STRATA_AND_ALL}")
    return [
        c
        for c in cases
        if c.class_name == class_name and c.stratum is not None and (stratum == ALL or c.stratum == stratum)
    ]


def summarize_stratum(
    configuration: str, cases: Sequence[CaseMetrics], class_name: str, stratum: str
) -> StratumSummary:
    """The :class:`StratumSummary` of one class and stratum over ``cases`` (all classes and strata mixed)."""
    chosen = in_stratum(cases, class_name, stratum)
    dice = [c.dice for c in chosen]
    mean, sd = micro_dice(dice)
    hd95 = sorted(c.hd95_mm for c in chosen if math.isfinite(c.hd95_mm))
    return StratumSummary(
        configuration=configuration,
        class_name=class_name,
        stratum=stratum,
        n=len(chosen),
        micro_dice=mean,
        micro_sd=sd,
        macro_dice=macro_dice(dice, [c.truth_cm3 for c in chosen]),
        aggregated_dsc=aggregated_dsc(chosen),
        hd95_median_mm=statistics.median(hd95) if hd95 else math.nan,
        hd95_mean_mm=math.fsum(hd95) / len(hd95) if hd95 else math.nan,
        n_hd95=len(hd95),
        n_missed=sum(1 for c in chosen if c.pred_cm3 == 0),
    )


def summarize_configuration(
    configuration: str, cases: Sequence[CaseMetrics], class_names: Sequence[str] | None = None
) -> ConfigurationSummary:
    """Summary of one configuration from its per-case metrics (every class of every case).

    ``class_names``: the classes to report, default GTVp and GTVn. Raises ValueError if a case appears twice
    for one class (two predictions of one subject would be counted twice).
    """
    class_names = list(class_names) if class_names is not None else list(TUMOUR_CLASSES.values())
    seen: set[tuple[str, str]] = set()
    for c in cases:
        key = (c.case, c.class_name)
        if key in seen:
            raise ValueError(f"configuration {configuration!r}: case {c.case!r} ({c.class_name}) is listed twice")
        seen.add(key)
    by_class = {name: [c for c in cases if c.class_name == name] for name in class_names}
    aggregated = {name: aggregated_dsc(by_class[name]) for name in class_names}
    return ConfigurationSummary(
        configuration=configuration,
        n_cases=len({c.case for c in cases}),
        strata=tuple(
            summarize_stratum(configuration, cases, name, stratum) for name in class_names for stratum in STRATA_AND_ALL
        ),
        aggregated_dsc=aggregated,
        aggregated_dsc_mean=math.fsum(aggregated.values()) / len(aggregated) if aggregated else math.nan,
        n_absent={name: sum(1 for c in by_class[name] if not c.truth_present) for name in class_names},
        n_false_positive={name: sum(1 for c in by_class[name] if c.false_positive) for name in class_names},
        lesions={name: sum((c.lesions for c in by_class[name]), NO_LESIONS) for name in class_names},
    )
