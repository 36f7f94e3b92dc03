"""Evaluating folders of predictions against a HECKTOR-layout truth folder and writing the paper's Table 1
and more: the job behind ``dualdinov3 evaluate`` and ``Training/evaluate.py``.

Files written into ``out``:

- ``cases.csv``        per configuration, case and class: Dice, HD95 (mm), truth/predicted/overlap volume (cm3),
                       stratum, lesions found / missed (cm3), false-positive regions (count, cm3);
- ``table1.md``        Table 1 laid out as in the paper (micro Dice (SD) and macro Dice per class and stratum),
                       the HECKTOR 2022 aggregated DSC, lesion detection, the paired t-test p-values and the
                       conventions;
- ``table1.csv``       Table 1's numbers unrounded, with counts, aggregated DSC and median HD95 per stratum;
- ``hecktor.csv``      aggregated DSC per class and mean, median HD95, absent classes and false positives,
                       lesion detection summed over the cases;
- ``pvalues.csv``      paired t-tests per pair of configurations, class and stratum;
- ``dice_boxplot.png`` subject Dice per configuration, class and stratum (unless ``plot=False``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ..errors import DualDINOv3Error, OutputExistsError
from ..evaluation import (
    ConfigurationSummary,
    cases_csv,
    compare_configurations,
    evaluate_folders,
    hecktor_csv,
    pvalues_csv,
    report_markdown,
    summarize_configuration,
    table1_csv,
)
from ..files import write_text
from .figures import dice_boxplot

log = logging.getLogger(__name__)

OUTPUTS = ("cases.csv", "table1.md", "table1.csv", "hecktor.csv", "pvalues.csv", "dice_boxplot.png")


@dataclass(frozen=True)
class EvaluationReport:
    summaries: list[ConfigurationSummary]
    written: list[Path]


def parse_prediction(text: str) -> tuple[str, Path]:
    """``NAME=FOLDER`` -> (name, folder); a ``ValueError`` naming the expected form otherwise."""
    name, sep, folder = text.partition("=")
    name = name.strip()
    if not sep or not name or not folder:
        raise ValueError(f"expected NAME=FOLDER (e.g. dual=runs/5/pred), got {text!r}")
    if any(ch in name for ch in "|\n\r"):
        raise ValueError(f"a configuration name may not hold '|' or line breaks: {name!r}")
    return name, Path(folder)


def check_evaluation_outputs(
    out: Path, predictions: Mapping[str, Path], *, reference: str | None, overwrite: bool, plot: bool
) -> None:
    """Raises :class:`DualDINOv3Error` before any work on a bad reference or output folder."""
    if reference is not None and reference not in predictions:
        raise DualDINOv3Error(f"--reference {reference!r} is not one of the configurations {list(predictions)}")
    if out.exists() and not out.is_dir():
        raise DualDINOv3Error(f"--out {out} is a file; pass a folder")
    outputs = [n for n in OUTPUTS if plot or not n.endswith(".png")]
    existing = [n for n in outputs if (out / n).exists()]
    if existing and not overwrite:
        raise OutputExistsError(
            f"{out} already holds {', '.join(existing)}; pass --overwrite to replace them, or choose another --out"
        )


def evaluate_to_folder(
    truth: str | os.PathLike,
    predictions: Mapping[str, str | os.PathLike],
    out: str | os.PathLike,
    *,
    reference: str | None = None,
    allow_missing: bool = False,
    overwrite: bool = False,
    plot: bool = True,
) -> EvaluationReport:
    """Evaluates each configuration's prediction folder (``{name: folder}``) against ``truth`` and writes
    the tables (and the box plot) into ``out``; see the module docstring."""
    out = Path(out)
    predictions = {name: Path(folder) for name, folder in predictions.items()}
    check_evaluation_outputs(out, predictions, reference=reference, overwrite=overwrite, plot=plot)

    def progress(fraction: float, message: str) -> None:
        log.info("[%3.0f%%] %s", 100 * fraction, message)

    results = evaluate_folders(truth, predictions, allow_missing=allow_missing, progress=progress)
    summaries = [summarize_configuration(name, cases) for name, cases in results.items()]
    pairs = None if reference is None else [(reference, name) for name in results if name != reference]
    comparisons = compare_configurations(results, pairs) if len(results) > 1 else []
    out.mkdir(parents=True, exist_ok=True)
    texts = {
        "cases.csv": cases_csv(results),
        "table1.md": report_markdown(summaries, comparisons),
        "table1.csv": table1_csv(summaries),
        "hecktor.csv": hecktor_csv(summaries),
        "pvalues.csv": pvalues_csv(comparisons),
    }
    written = []
    for name, text in texts.items():
        written.append(write_text(out / name, text))
    if plot:
        written.append(dice_boxplot(results, out / "dice_boxplot.png", overwrite=True))
    return EvaluationReport(summaries, written)
