"""Tables laid out like the paper's Table 1 (Markdown and CSV), the HECKTOR 2022 score table, p-values, per-case CSV.

Table 1: one row per configuration and tumour-volume stratum (small, medium, large, and "all"), columns
GTVp micro Dice (SD), GTVp macro Dice, GTVn micro Dice (SD), GTVn macro Dice; the caption gives the number of
subjects per stratum. CSV versions hold the same numbers unrounded plus the counts, one row per table row.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence

from ..domain import LARGE_ABOVE_CM3, SMALL_BELOW_CM3, TUMOUR_CLASSES
from .aggregate import STRATA_AND_ALL, ConfigurationSummary
from .metrics import CONVENTIONS, CaseMetrics
from .stats import PairedComparison

STRATUM_TITLES = {
    "small": f"Small (<{SMALL_BELOW_CM3:g} cm³)",
    "medium": f"Medium ({SMALL_BELOW_CM3:g}–{LARGE_ABOVE_CM3:g} cm³)",
    "large": f"Large (>{LARGE_ABOVE_CM3:g} cm³)",
    "all": "All",
}
MISSING = "n/a"


def fmt(value: float, digits: int = 4) -> str:
    """A number rounded to ``digits`` decimals as in the paper; ``"n/a"`` for NaN."""
    return MISSING if value is None or math.isnan(value) else f"{value:.{digits}f}"


def fmt_p(p: float) -> str:
    """A p-value: ``"<0.001"`` below 0.001, else 3 significant digits; ``"n/a"`` for NaN."""
    if math.isnan(p):
        return MISSING
    return "<0.001" if p < 0.001 else f"{p:.3g}"


def _classes(summaries: Sequence[ConfigurationSummary], class_names: Sequence[str] | None) -> list[str]:
    if class_names is not None:
        return list(class_names)
    return list(summaries[0].aggregated_dsc) if summaries else list(TUMOUR_CLASSES.values())


def _markdown(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _csv(rows: Sequence[Mapping[str, object]], fieldnames: Sequence[str]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(fieldnames), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: repr(v) if isinstance(v, float) else v for k, v in row.items()})
    return buffer.getvalue()


# --- Table 1 --------------------------------------------------------------------------------------------


def table1_rows(
    summaries: Sequence[ConfigurationSummary],
    strata: Sequence[str] = STRATA_AND_ALL,
    class_names: Sequence[str] | None = None,
) -> list[dict[str, object]]:
    """One dict per (configuration, stratum): ``configuration``, ``stratum`` and per class C ``C_n``,
    ``C_micro_dice``, ``C_micro_sd``, ``C_macro_dice``, ``C_aggregated_dsc``, ``C_hd95_median_mm`` (unrounded)."""
    rows = []
    for summary in summaries:
        for stratum in strata:
            row: dict[str, object] = {"configuration": summary.configuration, "stratum": stratum}
            for name in _classes(summaries, class_names):
                s = summary.stratum(name, stratum)
                row[f"{name}_n"] = s.n
                row[f"{name}_micro_dice"] = s.micro_dice
                row[f"{name}_micro_sd"] = s.micro_sd
                row[f"{name}_macro_dice"] = s.macro_dice
                row[f"{name}_aggregated_dsc"] = s.aggregated_dsc
                row[f"{name}_hd95_median_mm"] = s.hd95_median_mm
            rows.append(row)
    return rows


def table1_csv(
    summaries: Sequence[ConfigurationSummary],
    strata: Sequence[str] = STRATA_AND_ALL,
    class_names: Sequence[str] | None = None,
) -> str:
    """Table 1 as CSV text (header + one row per configuration and stratum, full precision, NaN as ``nan``)."""
    rows = table1_rows(summaries, strata, class_names)
    fields = ["configuration", "stratum"]
    for name in _classes(summaries, class_names):
        fields += [
            f"{name}_n",
            f"{name}_micro_dice",
            f"{name}_micro_sd",
            f"{name}_macro_dice",
            f"{name}_aggregated_dsc",
            f"{name}_hd95_median_mm",
        ]
    return _csv(rows, fields)


def table1_markdown(
    summaries: Sequence[ConfigurationSummary],
    strata: Sequence[str] = STRATA_AND_ALL,
    class_names: Sequence[str] | None = None,
    digits: int = 4,
) -> str:
    """Table 1 as Markdown: caption, then rows (configuration, stratum) and columns per class
    ``Micro Dice`` as ``mean (SD)`` and ``Macro Dice``, rounded to ``digits`` decimals like the paper."""
    names = _classes(summaries, class_names)
    header = ["Model", "Volume"]
    for name in names:
        header += [f"{name} Micro Dice", f"{name} Macro Dice"]
    rows = []
    for summary in summaries:
        for i, stratum in enumerate(strata):
            row = [summary.configuration if i == 0 else "", STRATUM_TITLES.get(stratum, stratum)]
            for name in names:
                s = summary.stratum(name, stratum)
                row += [f"{fmt(s.micro_dice, digits)} ({fmt(s.micro_sd, digits)})", fmt(s.macro_dice, digits)]
            rows.append(row)
    caption = (
        "Table 1: Dice stratified by truth tumour volume. Micro Dice: mean (SD) over subjects; macro Dice: "
        f"subject Dice weighted by truth tumour volume. {_counts_caption(summaries, strata, names)}\n\n"
    )
    return caption + _markdown(header, rows)


def _counts_caption(summaries: Sequence[ConfigurationSummary], strata: Sequence[str], names: Sequence[str]) -> str:
    def counts(summary: ConfigurationSummary) -> str:
        return "; ".join(
            f"{stratum}: " + ", ".join(f"{name} n={summary.stratum(name, stratum).n}" for name in names)
            for stratum in strata
        )

    texts = {s.configuration: counts(s) for s in summaries}
    if len(set(texts.values())) <= 1:
        return f"Subjects per stratum: {next(iter(texts.values()), 'none')}."
    return "Subjects per stratum differ between configurations: " + " | ".join(
        f"{name}: {text}" for name, text in texts.items()
    )


# --- HECKTOR 2022 score, p-values, per-case metrics -----------------------------------------------------------


def hecktor_rows(summaries: Sequence[ConfigurationSummary]) -> list[dict[str, object]]:
    """Per configuration: cases, aggregated DSC per class and mean, median HD95 per class (all subjects with
    the class), subjects without the class and false positives among them."""
    rows = []
    for summary in summaries:
        row: dict[str, object] = {"configuration": summary.configuration, "n_cases": summary.n_cases}
        for name, value in summary.aggregated_dsc.items():
            row[f"{name}_aggregated_dsc"] = value
        row["mean_aggregated_dsc"] = summary.aggregated_dsc_mean
        for name in summary.aggregated_dsc:
            row[f"{name}_hd95_median_mm"] = summary.stratum(name, "all").hd95_median_mm
            row[f"{name}_absent"] = summary.n_absent[name]
            row[f"{name}_false_positive"] = summary.n_false_positive[name]
        for name, counts in summary.lesions.items():
            row[f"{name}_lesions"] = counts.truth_lesions
            row[f"{name}_lesions_detected"] = counts.detected_lesions
            row[f"{name}_missed_cm3"] = counts.missed_cm3
            row[f"{name}_false_positive_regions"] = counts.false_positive_regions
            row[f"{name}_false_positive_cm3"] = counts.false_positive_cm3
        rows.append(row)
    return rows


def hecktor_csv(summaries: Sequence[ConfigurationSummary]) -> str:
    rows = hecktor_rows(summaries)
    return _csv(rows, list(rows[0]) if rows else ["configuration"])


def hecktor_markdown(summaries: Sequence[ConfigurationSummary], digits: int = 4) -> str:
    """The HECKTOR 2022 score (aggregated DSC per class and their mean) and median HD95 per configuration."""
    names = _classes(summaries, None)
    header = [
        "Model",
        "Cases",
        *(f"{n} DSCagg" for n in names),
        "Mean DSCagg",
        *(f"{n} HD95 median (mm)" for n in names),
    ]
    rows = [
        [
            s.configuration,
            str(s.n_cases),
            *(fmt(s.aggregated_dsc[n], digits) for n in names),
            fmt(s.aggregated_dsc_mean, digits),
            *(fmt(s.stratum(n, "all").hd95_median_mm, 2) for n in names),
        ]
        for s in summaries
    ]
    return _markdown(header, rows)


def lesions_markdown(summaries: Sequence[ConfigurationSummary]) -> str:
    """Lesion-wise detection per configuration and class, summed over the subjects: lesions found of all, the
    volume of those missed, and the predicted regions that touch no lesion (count and volume)."""
    names = _classes(summaries, None)
    header = ["Model"]
    for n in names:
        header += [f"{n} lesions found", f"{n} missed (cm³)", f"{n} false-positive regions (cm³)"]
    rows = []
    for s in summaries:
        row = [s.configuration]
        for n in names:
            c = s.lesions[n]
            row += [f"{c.detected_lesions} / {c.truth_lesions}", f"{c.missed_cm3:.1f}",
                    f"{c.false_positive_regions} ({c.false_positive_cm3:.1f})"]  # fmt: skip
        rows.append(row)
    return _markdown(header, rows)


def lesions_line(summary: ConfigurationSummary) -> str:
    """One line of :func:`lesions_markdown` for a terminal."""
    found = ", ".join(
        f"{n} {c.detected_lesions}/{c.truth_lesions} (missed {c.missed_cm3:.1f} cm³)"
        for n, c in summary.lesions.items()
    )
    false = ", ".join(
        f"{n} {c.false_positive_regions} ({c.false_positive_cm3:.1f} cm³)" for n, c in summary.lesions.items()
    )
    return f"{summary.configuration}: lesions found {found}; false-positive regions {false}"


def pvalue_rows(comparisons: Sequence[PairedComparison]) -> list[dict[str, object]]:
    return [
        {
            "first": c.first,
            "second": c.second,
            "class": c.class_name,
            "stratum": c.stratum,
            "n": c.test.n,
            "mean_dice_difference": c.test.mean_difference,
            "t": c.test.t,
            "df": c.test.df,
            "p": c.test.p,
            "note": c.test.note,
        }
        for c in comparisons
    ]


def pvalues_csv(comparisons: Sequence[PairedComparison]) -> str:
    """One row per pair, class and stratum: n, mean Dice difference (first - second), t, df, two-sided p."""
    return _csv(
        pvalue_rows(comparisons),
        ["first", "second", "class", "stratum", "n", "mean_dice_difference", "t", "df", "p", "note"],
    )


def pvalues_markdown(comparisons: Sequence[PairedComparison]) -> str:
    """Rows: ``first vs second``; columns: class x stratum; cells: two-sided p and the mean Dice difference."""
    columns = list(dict.fromkeys((c.class_name, c.stratum) for c in comparisons))
    pairs = list(dict.fromkeys((c.first, c.second) for c in comparisons))
    cell = {(c.first, c.second, c.class_name, c.stratum): c.test for c in comparisons}
    header = ["Pair", *(f"{name} {stratum}" for name, stratum in columns)]
    rows = []
    for first, second in pairs:
        row = [f"{first} vs {second}"]
        for name, stratum in columns:
            test = cell.get((first, second, name, stratum))
            if test is None:
                row.append("")
            elif math.isnan(test.mean_difference):
                row.append(MISSING)
            else:
                row.append(f"{fmt_p(test.p)} (Δ {test.mean_difference:+.3f})")
        rows.append(row)
    return _markdown(header, rows)


CASE_FIELDS = [
    "configuration",
    "case",
    "class",
    "label",
    "stratum",
    "truth_cm3",
    "pred_cm3",
    "intersection_cm3",
    "dice",
    "hd95_mm",
    "truth_lesions",
    "detected_lesions",
    "missed_cm3",
    "false_positive_regions",
    "false_positive_cm3",
]


def case_rows(cases_by_configuration: Mapping[str, Sequence[CaseMetrics]]) -> list[dict[str, object]]:
    return [
        {
            "configuration": name,
            "case": c.case,
            "class": c.class_name,
            "label": c.label,
            "stratum": c.stratum or "",
            "truth_cm3": c.truth_cm3,
            "pred_cm3": c.pred_cm3,
            "intersection_cm3": c.intersection_cm3,
            "dice": c.dice,
            "hd95_mm": c.hd95_mm,
            "truth_lesions": c.lesions.truth_lesions,
            "detected_lesions": c.lesions.detected_lesions,
            "missed_cm3": c.lesions.missed_cm3,
            "false_positive_regions": c.lesions.false_positive_regions,
            "false_positive_cm3": c.lesions.false_positive_cm3,
        }
        for name, cases in cases_by_configuration.items()
        for c in cases
    ]


def cases_csv(cases_by_configuration: Mapping[str, Sequence[CaseMetrics]]) -> str:
    """Per-case metrics of every configuration as CSV (empty stratum: class absent from the truth)."""
    return _csv(case_rows(cases_by_configuration), CASE_FIELDS)


def report_markdown(
    summaries: Sequence[ConfigurationSummary],
    comparisons: Sequence[PairedComparison] = (),
    strata: Sequence[str] = STRATA_AND_ALL,
) -> str:
    """The whole report: Table 1, the HECKTOR 2022 score table, the p-value table and the conventions."""
    parts = ["# Evaluation\n", table1_markdown(summaries, strata), "## HECKTOR 2022 aggregated DSC\n"]
    parts.append(hecktor_markdown(summaries))
    parts += [
        "## Lesion detection\n",
        "Summed over the subjects. A truth lesion (26-connected region of its class) is found when the prediction "
        "of that class touches it; a predicted region touching no lesion of its class is a false positive.\n",
        lesions_markdown(summaries),
    ]
    if comparisons:
        parts += [
            "## Paired t-tests (subject Dice)\n",
            "Two-sided p-value, with Δ = mean Dice of the first minus the second configuration.\n",
            pvalues_markdown(comparisons),
        ]
    parts += ["## Conventions\n", CONVENTIONS + "\n"]
    return "\n".join(parts)
