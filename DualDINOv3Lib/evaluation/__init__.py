"""Evaluation as in the paper (sec. 2.5, Table 1) and HECKTOR 2022: per-case Dice, HD95 and volumes; micro and
macro Dice per tumour-volume stratum; the aggregated DSC; lesion-wise detection (lesions found and missed,
false-positive regions); paired t-tests; Table-1 Markdown/CSV; on real cases with a lesion mask, Dice of any
label and false-positive components away from the lesion.

Needs only numpy and SimpleITK (no scipy, no matplotlib: the box plot lives in ``Training/plots.py``).
The conventions for empty masks and every definition are in :data:`CONVENTIONS`. Exports are lazy."""

from .._lazy import lazy_exports

_EXPORTS = {
    "FalsePositives": ".false_positives",
    "false_positive_components": ".false_positives",
    "RealCaseResult": ".real_data",
    "RealDataSummary": ".real_data",
    "evaluate_real_case": ".real_data",
    "summarize_real": ".real_data",
    "real_cases_csv": ".real_data",
    "real_summary_markdown": ".real_data",
    "ALL": ".aggregate",
    "SPLITS_FORMAT": ".splits",
    "load_splits": ".splits",
    "make_crossval_splits": ".splits",
    "save_splits": ".splits",
    "TUMOUR_CLASSES": "..domain",
    "CONVENTIONS": ".metrics",
    "STRATA": "..domain",
    "STRATA_AND_ALL": ".aggregate",
    "CaseMetrics": ".metrics",
    "ConfigurationSummary": ".aggregate",
    "PairedComparison": ".stats",
    "StratumSummary": ".aggregate",
    "TTestResult": ".stats",
    "aggregated_dsc": ".aggregate",
    "cases_csv": ".table",
    "compare_configurations": ".stats",
    "dice_coefficient": ".metrics",
    "evaluate_case": ".metrics",
    "evaluate_folders": ".folders",
    "find_label_files": "..data.hecktor",
    "hd95_mm": ".metrics",
    "hecktor_csv": ".table",
    "hecktor_markdown": ".table",
    "in_stratum": ".aggregate",
    "LesionCounts": ".lesions",
    "lesion_counts": ".lesions",
    "lesions_line": ".table",
    "lesions_markdown": ".table",
    "macro_dice": ".aggregate",
    "match_cases": ".folders",
    "micro_dice": ".aggregate",
    "paired_t_test": ".stats",
    "pvalues_csv": ".table",
    "pvalues_markdown": ".table",
    "read_label": "..data.labels",
    "regularized_incomplete_beta": ".stats",
    "report_markdown": ".table",
    "stratum_of": "..domain",
    "student_t_cdf": ".stats",
    "student_t_two_sided_p": ".stats",
    "summarize_configuration": ".aggregate",
    "summarize_stratum": ".aggregate",
    "surface_distances_mm": ".metrics",
    "table1_csv": ".table",
    "table1_markdown": ".table",
    "table1_rows": ".table",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
