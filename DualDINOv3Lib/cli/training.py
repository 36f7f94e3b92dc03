"""``dualdinov3 finetune | crossval | predict | evaluate | evaluate-real``: training runs and their evaluation on
HECKTOR-layout folders, and a model's check on real cases with truth masks. ``Training/*.py`` are thin wrappers
of these commands."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..machine import DEFAULT_BATCH_SIZE
from .arguments import (
    add_head_neck_option,
    add_threads_option,
    fraction,
    non_negative_float,
    positive_float,
    positive_int,
)

TRAINING_OVERRIDES = (
    ("epochs", positive_int),
    ("iterations-per-epoch", positive_int),
    ("batch-size", positive_int),
    ("learning-rate", positive_float),
    ("warmup-epochs", int),
    ("seed", int),
)


def _overrides(args: argparse.Namespace, names) -> dict:
    return {name.replace("-", "_"): getattr(args, name.replace("-", "_")) for name, _ in names}


def _last_epoch_line(result) -> str:
    last = result.history[-1]
    dice = ", ".join(f"{k} {v:.3f}" for k, v in last.items() if k.startswith("dice_"))
    return f"done: {result.epochs} epochs, last loss {last['train_loss']:.4f}, {dice}; best: {result.best_path}"


def cmd_finetune(args: argparse.Namespace) -> int:
    from ..workflows.finetune_run import run_finetune

    result = run_finetune(
        args.config,
        args.data,
        args.out,
        split=args.split,
        fold=args.fold,
        val_fraction=args.val_fraction,
        resume=args.resume,
        device=args.device,
        cache=args.cache,
        augmentation=False if args.no_augmentation else None,
        **_overrides(args, TRAINING_OVERRIDES),
    )
    if result.history:
        print(_last_epoch_line(result))
    return 0


def cmd_crossval(args: argparse.Namespace) -> int:
    from ..workflows.crossval import run_crossval

    report = run_crossval(
        args.data,
        args.configs,
        args.out,
        n_folds=args.folds,
        run_folds=args.run_folds,
        seed=args.seed,
        device=args.device,
        **_overrides(args, TRAINING_OVERRIDES[:3]),
    )
    _print_evaluation(report, quiet=False)
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from ..workflows.predict import predict_folder

    predict_folder(
        args.data,
        args.out,
        args.model,
        device=args.device,
        batch_size=args.batch_size,
        head_neck_only=not args.keep_outside_head_neck,
        overwrite=args.overwrite,
        on_case=lambda i, n, path: print(f"[{i}/{n}] {path}", flush=True),
    )
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from ..errors import DualDINOv3Error
    from ..workflows.evaluate import evaluate_to_folder

    predictions: dict[str, Path] = {}
    for name, folder in args.pred:
        if name in predictions:
            raise DualDINOv3Error(f"configuration name {name!r} is given twice; give each --pred a distinct NAME")
        predictions[name] = folder
    report = evaluate_to_folder(
        args.truth,
        predictions,
        args.out,
        reference=args.reference,
        allow_missing=args.allow_missing,
        overwrite=args.overwrite,
        plot=not args.no_plot,
    )
    _print_evaluation(report, quiet=args.quiet)
    return 0


def cmd_evaluate_real(args: argparse.Namespace) -> int:
    from ..evaluation.real_data import case_line, summary_lines
    from ..workflows.evaluate_real import evaluate_real_folder

    report = evaluate_real_folder(
        args.data,
        args.out,
        args.model,
        device=args.device,
        batch_size=args.batch_size,
        min_component_mm3=args.min_component_mm3,
        head_neck_only=not args.keep_outside_head_neck,
        overwrite=args.overwrite,
        on_case=lambda i, n, result: print(f"[{i}/{n}] {case_line(result)}", flush=True),
    )
    for line in summary_lines(report.summary):
        print(line)
    for skipped in report.skipped:
        print(f"not a case: {skipped}")
    if report.written:
        print(f"wrote cases.csv, summary.md and {len(report.written) - 2} pictures to {args.out}")
    for failed in report.failed:
        print(f"could not be used: {failed}", file=sys.stderr)
    return 1 if report.failed else 0


def _print_evaluation(report, *, quiet: bool) -> None:
    from ..evaluation import lesions_line, table1_markdown

    if quiet:
        return
    print(table1_markdown(report.summaries))
    for s in report.summaries:
        scores = ", ".join(f"{k} {v:.4f}" for k, v in s.aggregated_dsc.items())
        print(f"{s.configuration}: HECKTOR aggregated DSC {scores}, mean {s.aggregated_dsc_mean:.4f}")
        print(lesions_line(s))
    folder = report.written[0].parent if report.written else ""
    print(f"wrote {', '.join(p.name for p in report.written)} to {folder}")


def _prediction(text: str) -> tuple[str, Path]:
    from ..workflows.evaluate import parse_prediction

    try:
        return parse_prediction(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _add_overrides(p: argparse.ArgumentParser, names) -> None:
    for name, kind in names:
        p.add_argument(f"--{name}", type=kind, default=None, help=f"override training.{name.replace('-', '_')}")


def add_parsers(sub) -> None:
    p = sub.add_parser(
        "finetune",
        help="finetune a segmenter on a HECKTOR-layout folder (resumable; torchrun for several processes)",
        description="The config's training: section holds the paper's hyperparameters; options override them. "
        "Validation cases come from --split FILE --fold K (made by crossval) or a seeded --val-fraction of the "
        "data. Writes best/last segmenters, metrics.jsonl/csv, curves.png and the resolved config into --out.",
    )
    p.add_argument("--config", required=True, help="segmenter + training YAML/JSON (Training/configs)")
    p.add_argument("--data", required=True, help="HECKTOR-layout folder: CASE__CT.nii.gz, CASE__PT.nii.gz, CASE.nii.gz")
    p.add_argument("--out", required=True, help="run folder (checkpoints, metrics, curves)")
    p.add_argument("--split", default=None, help="splits JSON from crossval (with --fold)")
    p.add_argument("--fold", type=int, default=0, help="fold of --split to train (default 0)")
    p.add_argument("--val-fraction", type=fraction, default=0.2, help="without --split: share of cases to validate")
    p.add_argument("--resume", action="store_true", help="continue the run in --out where it stopped")
    p.add_argument("--device", default="auto", help="auto, cuda, mps or cpu")
    p.add_argument("--cache", default=None, help="preprocessing cache folder (default: OUT/cache)")
    add_threads_option(p)
    _add_overrides(p, TRAINING_OVERRIDES)
    p.add_argument("--no-augmentation", action="store_true", help="train without data augmentation")
    p.set_defaults(func=cmd_finetune)

    p = sub.add_parser(
        "crossval",
        help="k-fold cross-validation of configurations, stratified by GTVp volume, evaluated as Table 1",
        description="Splits the labelled cases into folds stratified by GTVp volume stratum (60/20/20 for 5 "
        "folds, OUT/splits.json), finetunes and predicts every configuration per fold (rerun the same command "
        "to resume) and evaluates all predictions into OUT/evaluation.",
    )
    p.add_argument("--data", required=True, type=Path, help="HECKTOR-layout folder with labels")
    p.add_argument("--configs", required=True, nargs="+", type=Path, help="configuration YAML/JSON files")
    p.add_argument("--out", required=True, type=Path, help="cross-validation folder")
    p.add_argument("--folds", type=int, default=5, help="number of folds (default 5: 60/20/20)")
    p.add_argument("--run-folds", type=int, nargs="+", default=None, help="only these folds (default: all)")
    p.add_argument("--seed", type=int, default=0, help="seed of the splits")
    p.add_argument("--device", default="auto")
    _add_overrides(p, TRAINING_OVERRIDES[:3])
    add_threads_option(p)
    p.set_defaults(func=cmd_crossval)

    p = sub.add_parser("predict", help="segment every case of a HECKTOR-layout folder into CASE.nii.gz files")
    p.add_argument("--model", default=None, help="segmenter .safetensors (default: the bundled demo model)")
    p.add_argument("--data", required=True, type=Path, help="HECKTOR-layout folder (labels not needed)")
    p.add_argument("--out", required=True, type=Path, help="folder for CASE.nii.gz predictions")
    p.add_argument("--device", default="auto")
    p.add_argument("--batch-size", type=positive_int, default=DEFAULT_BATCH_SIZE, help="slices per forward pass")
    add_threads_option(p)
    add_head_neck_option(p)
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser(
        "evaluate",
        help="Dice, HD95, Table 1 (micro/macro Dice by tumour volume), HECKTOR aggregated DSC, paired t-tests",
        description="--truth: a HECKTOR-layout folder (CASE.nii.gz labels, or labelsTr/); each --pred NAME=FOLDER "
        "holds one configuration's CASE.nii.gz predictions (any grid: resampled onto the truth's, nearest). Writes "
        "cases.csv, table1.md/.csv, hecktor.csv, pvalues.csv and dice_boxplot.png into --out.",
    )
    p.add_argument("--truth", required=True, type=Path, help="HECKTOR-layout folder of CASE.nii.gz truth labels")
    p.add_argument(
        "--pred",
        required=True,
        action="append",
        type=_prediction,
        metavar="NAME=FOLDER",
        help="a configuration's folder of CASE.nii.gz predictions (repeat for several configurations)",
    )
    p.add_argument("--out", required=True, type=Path, help="folder for the tables and the plot")
    p.add_argument("--reference", help="test every configuration against this one only (default: all pairs)")
    p.add_argument("--allow-missing", action="store_true", help="skip truth cases some configuration did not predict")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs in --out")
    p.add_argument("--no-plot", action="store_true", help="do not draw the box plot")
    p.add_argument("-q", "--quiet", action="store_true", help="print only errors")
    p.set_defaults(func=cmd_evaluate, log_info=True)

    p = sub.add_parser(
        "evaluate-real",
        help="check a model on real PET/CT cases with truth masks: Dice and false-positive volume per case",
        description="Segments every case of --data (HECKTOR layout: CASE__CT/CASE__PT/CASE.nii.gz; or one subfolder "
        "per case holding a CT, a PET and a mask named e.g. CT_image, PET_image, CT_mask; the mask may lie on the CT "
        "or the PET grid) and prints per case the Dice of any predicted label against the lesion (per class for "
        "HECKTOR labels) and the false positives: predicted 26-connected regions sharing no voxel with the mask "
        "(total cm3, count, largest); then the median and max FP volume, the cases above 5 cm3 and the median "
        "Dice. With --out, writes cases.csv, summary.md and per case CASE_lesion.png (and CASE_fp.png).",
    )
    p.add_argument("--data", required=True, type=Path, help="folder of real cases (HECKTOR or image/mask pairs)")
    p.add_argument("--model", default=None, help="segmenter .safetensors (default: the bundled demo model)")
    p.add_argument("--out", default=None, type=Path, help="folder for cases.csv, summary.md and pictures")
    p.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cuda, cuda:N, mps or cpu")
    p.add_argument(
        "--batch-size", type=positive_int, default=DEFAULT_BATCH_SIZE, help="slices per forward pass (default: 4)"
    )
    add_threads_option(p)
    p.add_argument(
        "--min-component-mm3",
        type=non_negative_float,
        default=0.0,
        help="drop predicted regions smaller than this before scoring (as dualdinov3 segment does)",
    )
    add_head_neck_option(p)
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs in --out")
    p.set_defaults(func=cmd_evaluate_real)
