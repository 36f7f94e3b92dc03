"""Evaluation as in the paper (sec. 2.5, Table 1) and HECKTOR 2022: per-case Dice, HD95 and volumes; micro and
macro Dice per tumour-volume stratum; the aggregated DSC; paired t-tests; Table-1 Markdown/CSV.

Needs only numpy and SimpleITK (no scipy, no matplotlib: the box plot lives in ``Training/plots.py``).
The conventions for empty masks and every definition are in :data:`CONVENTIONS`.
"""

from ..data.labels import read_label
from .aggregate import (
    ALL,
    STRATA_AND_ALL,
    ConfigurationSummary,
    StratumSummary,
    aggregated_dsc,
    in_stratum,
    macro_dice,
    micro_dice,
    summarize_configuration,
    summarize_stratum,
)
from .folders import evaluate_folders, match_cases
from .labels import find_label_files
from .metrics import (
    CLASSES,
    CONVENTIONS,
    STRATA,
    CaseMetrics,
    dice_coefficient,
    evaluate_case,
    hd95_mm,
    stratum_of,
    surface_distances_mm,
)
from .stats import (
    PairedComparison,
    TTestResult,
    compare_configurations,
    paired_t_test,
    regularized_incomplete_beta,
    student_t_cdf,
    student_t_two_sided_p,
)
from .table import (
    cases_csv,
    hecktor_csv,
    hecktor_markdown,
    pvalues_csv,
    pvalues_markdown,
    report_markdown,
    table1_csv,
    table1_markdown,
    table1_rows,
)

__all__ = [
    "ALL",
    "CLASSES",
    "CONVENTIONS",
    "STRATA",
    "STRATA_AND_ALL",
    "CaseMetrics",
    "ConfigurationSummary",
    "PairedComparison",
    "StratumSummary",
    "TTestResult",
    "aggregated_dsc",
    "cases_csv",
    "compare_configurations",
    "dice_coefficient",
    "evaluate_case",
    "evaluate_folders",
    "find_label_files",
    "hd95_mm",
    "hecktor_csv",
    "hecktor_markdown",
    "in_stratum",
    "macro_dice",
    "match_cases",
    "micro_dice",
    "paired_t_test",
    "pvalues_csv",
    "pvalues_markdown",
    "read_label",
    "regularized_incomplete_beta",
    "report_markdown",
    "stratum_of",
    "student_t_cdf",
    "student_t_two_sided_p",
    "summarize_configuration",
    "summarize_stratum",
    "surface_distances_mm",
    "table1_csv",
    "table1_markdown",
    "table1_rows",
]
