"""Evaluate predicted label folders against a HECKTOR-layout truth folder: the paper's Table 1 and more.

    python Training/evaluate.py --truth DATA/ --pred scratch=runs/1/pred --pred dual=runs/5/pred --out results/

``--truth``: a HECKTOR-layout folder (``CASE.nii.gz`` labels beside ``CASE__CT.nii.gz`` / ``CASE__PT.nii.gz``,
or a ``labelsTr/`` subfolder); each ``--pred NAME=FOLDER`` holds one configuration's ``CASE.nii.gz``
predictions (any grid: they are nearest-neighbour resampled onto the truth grid). Writes into ``--out``:

- ``cases.csv``       per configuration, case and class: Dice, HD95 (mm), truth/predicted/overlap volume (cm3),
                      stratum;
- ``table1.md``       Table 1 laid out as in the paper (micro Dice (SD) and macro Dice per class and stratum),
                      the HECKTOR 2022 aggregated DSC, the paired t-test p-values and the conventions;
- ``table1.csv``      Table 1's numbers unrounded, with counts, aggregated DSC and median HD95 per stratum;
- ``hecktor.csv``     aggregated DSC per class and mean, median HD95, absent classes and false positives;
- ``pvalues.csv``     paired t-tests per pair of configurations, class and stratum;
- ``dice_boxplot.png`` subject Dice per configuration, class and stratum.

Existing outputs are kept unless ``--overwrite``. Bad input ends with one ``evaluate: error: ...`` line and
exit status 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from plots import dice_boxplot

from DualDINOv3Lib.errors import DualDINOv3Error, OutputExistsError
from DualDINOv3Lib.evaluation import (
    cases_csv,
    compare_configurations,
    evaluate_folders,
    hecktor_csv,
    pvalues_csv,
    report_markdown,
    summarize_configuration,
    table1_csv,
    table1_markdown,
)
from DualDINOv3Lib.files import atomic_write

log = logging.getLogger("dualdinov3.evaluate")

OUTPUTS = ("cases.csv", "table1.md", "table1.csv", "hecktor.csv", "pvalues.csv", "dice_boxplot.png")


def parse_prediction(text: str) -> tuple[str, Path]:
    """``NAME=FOLDER`` -> (name, folder)."""
    name, sep, folder = text.partition("=")
    name = name.strip()
    if not sep or not name or not folder:
        raise argparse.ArgumentTypeError(f"expected NAME=FOLDER (e.g. dual=runs/5/pred), got {text!r}")
    if any(ch in name for ch in "|\n\r"):
        raise argparse.ArgumentTypeError(f"a configuration name may not hold '|' or line breaks: {name!r}")
    return name, Path(folder)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="evaluate",
        description="Dice, HD95, Table 1 (micro/macro Dice by tumour volume), HECKTOR aggregated DSC, paired t-tests",
    )
    parser.add_argument("--truth", required=True, type=Path, help="HECKTOR-layout folder of CASE.nii.gz truth labels")
    parser.add_argument(
        "--pred",
        required=True,
        action="append",
        type=parse_prediction,
        metavar="NAME=FOLDER",
        help="a configuration's folder of CASE.nii.gz predictions (repeat for several configurations)",
    )
    parser.add_argument("--out", required=True, type=Path, help="folder for the tables and the plot")
    parser.add_argument("--reference", help="test every configuration against this one only (default: all pairs)")
    parser.add_argument(
        "--allow-missing",
        action="store_true",
        help="skip truth cases some configuration did not predict (default: error)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs in --out")
    parser.add_argument("--no-plot", action="store_true", help="do not draw the box plot")
    parser.add_argument("-q", "--quiet", action="store_true", help="print only errors")
    return parser


def check_arguments(args: argparse.Namespace) -> dict[str, Path]:
    """The configuration -> folder mapping; raises DualDINOv3Error before any work on bad arguments/outputs."""
    predictions: dict[str, Path] = {}
    for name, folder in args.pred:
        if name in predictions:
            raise DualDINOv3Error(f"configuration name {name!r} is given twice; give each --pred a distinct NAME")
        predictions[name] = folder
    if args.reference is not None and args.reference not in predictions:
        raise DualDINOv3Error(f"--reference {args.reference!r} is not one of the configurations {list(predictions)}")
    if args.out.exists() and not args.out.is_dir():
        raise DualDINOv3Error(f"--out {args.out} is a file; pass a folder")
    outputs = [n for n in OUTPUTS if not (args.no_plot and n.endswith(".png"))]
    existing = [n for n in outputs if (args.out / n).exists()]
    if existing and not args.overwrite:
        raise OutputExistsError(
            f"{args.out} already holds {', '.join(existing)}; pass --overwrite to replace them, or choose another --out"
        )
    return predictions


def run(args: argparse.Namespace) -> int:
    predictions = check_arguments(args)

    def progress(fraction: float, message: str) -> None:
        log.info("[%3.0f%%] %s", 100 * fraction, message)

    results = evaluate_folders(args.truth, predictions, allow_missing=args.allow_missing, progress=progress)
    summaries = [summarize_configuration(name, cases) for name, cases in results.items()]
    pairs = None
    if args.reference is not None:
        pairs = [(args.reference, name) for name in results if name != args.reference]
    comparisons = compare_configurations(results, pairs) if len(results) > 1 else []

    args.out.mkdir(parents=True, exist_ok=True)
    texts = {
        "cases.csv": cases_csv(results),
        "table1.md": report_markdown(summaries, comparisons),
        "table1.csv": table1_csv(summaries),
        "hecktor.csv": hecktor_csv(summaries),
        "pvalues.csv": pvalues_csv(comparisons),
    }
    for name, text in texts.items():
        atomic_write(args.out / name, lambda tmp, text=text: Path(tmp).write_text(text, encoding="utf-8"))
    if not args.no_plot:
        dice_boxplot(results, args.out / "dice_boxplot.png", overwrite=True)
    if not args.quiet:
        print(table1_markdown(summaries))
        for s in summaries:
            scores = ", ".join(f"{k} {v:.4f}" for k, v in s.aggregated_dsc.items())
            print(f"{s.configuration}: HECKTOR aggregated DSC {scores}, mean {s.aggregated_dsc_mean:.4f}")
        written = [*texts, *([] if args.no_plot else ["dice_boxplot.png"])]
        print(f"wrote {', '.join(written)} to {args.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s")
    try:
        return run(args)
    except (DualDINOv3Error, OSError) as exc:
        print(f"evaluate: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
