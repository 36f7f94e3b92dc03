"""Five-fold cross-validation of one or more configurations, evaluated like the paper's Table 1.

    python Training/crossval.py --data DATA --configs Training/configs/1_scratch.yaml \
        Training/configs/5_dual_ct_pet.yaml --out CV [--folds 5] [--run-folds 0 1] [--seed 0]

1. Splits the labelled cases of DATA (HECKTOR layout) into folds stratified by GTVp volume stratum,
   60/20/20 train/validation/test per fold, saved to ``CV/splits.json`` (reused when present).
2. For each configuration and fold, finetunes (``CV/<config>/fold_<k>``, resumable: rerun the same command)
   and predicts the fold's test cases with ``segment_volume`` (``CV/<config>/predictions/CASE.nii.gz``).
3. Evaluates all predictions (``Training/evaluate.py``): ``CV/evaluation/table1.md`` and CSVs, box plot.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import evaluate
from curves import plot_training_curves

from DualDINOv3Lib.data import write_volume
from DualDINOv3Lib.data.hecktor import list_hecktor_cases, read_hecktor_case
from DualDINOv3Lib.data.labels import read_label
from DualDINOv3Lib.domain import GTVP, class_volume_cm3, stratum_of
from DualDINOv3Lib.errors import DualDINOv3Error
from DualDINOv3Lib.evaluation.splits import load_splits, make_crossval_splits, save_splits
from DualDINOv3Lib.finetune.config import parse_finetune_config
from DualDINOv3Lib.finetune.trainer import STATE_FILE, finetune
from DualDINOv3Lib.inference import segment_volume
from DualDINOv3Lib.models import load_segmenter
from DualDINOv3Lib.models.config import load_config, read_config_file
from DualDINOv3Lib.progress import ProgressBar

log = logging.getLogger("crossval")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, type=Path, help="HECKTOR-layout folder with labels")
    p.add_argument("--configs", required=True, nargs="+", type=Path, help="configuration YAML/JSON files")
    p.add_argument("--out", required=True, type=Path, help="cross-validation folder")
    p.add_argument("--folds", type=int, default=5, help="number of folds (default 5: 60/20/20)")
    p.add_argument("--run-folds", type=int, nargs="+", default=None, help="only these folds (default: all)")
    p.add_argument("--seed", type=int, default=0, help="seed of the splits")
    p.add_argument("--device", default="auto")
    for name, kind in [("epochs", int), ("iterations-per-epoch", int), ("batch-size", int)]:
        p.add_argument(f"--{name}", type=kind, default=None, help=f"override training.{name.replace('-', '_')}")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def case_strata(cases) -> dict[str, str | None]:
    """GTVp volume stratum of every case, from its truth label."""
    strata = {}
    for case in cases:
        label = read_label(case.label)
        strata[case.case_id] = stratum_of(class_volume_cm3(label.array, label.spacing, GTVP))
    return strata


def get_splits(args, cases) -> dict:
    path = args.out / "splits.json"
    ids = sorted(c.case_id for c in cases)
    if path.exists():
        splits = load_splits(path)
        if sorted(splits["strata"]) != ids or splits["n_folds"] != args.folds or splits["seed"] != args.seed:
            raise DualDINOv3Error(
                f"{path} was made for other cases, folds or seed; use another --out or the same data and options"
            )
        return splits
    splits = make_crossval_splits(case_strata(cases), args.folds, args.seed)
    save_splits(splits, path)
    return splits


def run_fold(args, config_path: Path, fold: dict, by_id: dict) -> None:
    config = load_config(config_path)
    cfg = parse_finetune_config(
        read_config_file(config_path).get("training"),
        epochs=args.epochs,
        iterations_per_epoch=args.iterations_per_epoch,
        batch_size=args.batch_size,
    )
    run_dir = args.out / config.name / f"fold_{fold['fold']}"
    predictions = args.out / config.name / "predictions"
    done_marker = run_dir / "done"
    if not done_marker.exists():
        print(f"{config.name} fold {fold['fold']}: training on {len(fold['train'])} cases")
        result = finetune(
            config,
            [by_id[c] for c in fold["train"]],
            [by_id[c] for c in fold["validation"]],
            run_dir,
            cfg,
            device=args.device,
            resume=(run_dir / STATE_FILE).exists(),
            cache_dir=args.out / "cache",
            progress_factory=lambda epoch: ProgressBar(f"{config.name} f{fold['fold']} e{epoch + 1}"),
            on_epoch_end=lambda history: plot_training_curves(history, run_dir / "curves.png", config.labels),
        )
        model = load_segmenter(result.best_path)
        predictions.mkdir(parents=True, exist_ok=True)
        for case_id in fold["test"]:
            ct, pet, _ = read_hecktor_case(by_id[case_id])
            label = segment_volume(ct, pet, model, device=args.device)
            write_volume(label, predictions / f"{case_id}.nii.gz", overwrite=True)
        done_marker.write_text("trained and predicted\n")
    print(f"{config.name} fold {fold['fold']}: test predictions in {predictions}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    try:
        cases = list_hecktor_cases(args.data, require_labels=True)
        by_id = {c.case_id: c for c in cases}
        names = [load_config(p).name for p in args.configs]
        if len(set(names)) != len(names):
            raise DualDINOv3Error(f"configurations need distinct names, got {names}")
        args.out.mkdir(parents=True, exist_ok=True)
        splits = get_splits(args, cases)
        run_folds = args.run_folds if args.run_folds is not None else list(range(args.folds))
        bad = [k for k in run_folds if not 0 <= k < args.folds]
        if bad:
            raise DualDINOv3Error(f"--run-folds {bad} outside 0..{args.folds - 1}")
        for config_path in args.configs:
            for k in run_folds:
                run_fold(args, config_path, splits["folds"][k], by_id)
        evaluation = ["--truth", str(args.data), "--out", str(args.out / "evaluation"), "--overwrite"]
        for name in names:
            evaluation += ["--pred", f"{name}={args.out / name / 'predictions'}"]
        if len(run_folds) < args.folds:
            evaluation.append("--allow-missing")
        return evaluate.main(evaluation)
    except DualDINOv3Error as exc:
        print(f"crossval: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
