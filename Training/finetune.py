"""Finetune a segmenter on a HECKTOR-layout folder (real HECKTOR or phantoms from `dualdinov3 phantom`).

    python Training/finetune.py --config Training/configs/5_dual_ct_pet.yaml --data DATA --out RUN
    python Training/finetune.py ... --resume                      # continue a killed run exactly
    torchrun --nproc_per_node 4 Training/finetune.py ...           # several GPUs (or CPU processes)

The config's ``training:`` section holds the paper's hyperparameters; options override them. Validation
cases come from ``--split FILE --fold K`` (made by crossval.py) or a seeded ``--val-fraction`` of the data.
Writes best/last segmenters, metrics.jsonl/csv, curves.png and the resolved config into ``--out``.
"""

from __future__ import annotations

import argparse
import logging
import sys

from curves import plot_training_curves

from DualDINOv3Lib.data.hecktor import list_hecktor_cases
from DualDINOv3Lib.errors import DualDINOv3Error
from DualDINOv3Lib.finetune.config import parse_finetune_config
from DualDINOv3Lib.finetune.splits import select_cases, split_validation
from DualDINOv3Lib.finetune.trainer import finetune
from DualDINOv3Lib.models.config import load_config, read_config_file
from DualDINOv3Lib.progress import ProgressBar


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", required=True, help="segmenter + training YAML/JSON (Training/configs)")
    p.add_argument("--data", required=True, help="HECKTOR-layout folder: CASE__CT.nii.gz, CASE__PT.nii.gz, CASE.nii.gz")
    p.add_argument("--out", required=True, help="run folder (checkpoints, metrics, curves)")
    p.add_argument("--split", default=None, help="splits JSON from crossval.py (with --fold)")
    p.add_argument("--fold", type=int, default=0, help="fold of --split to train (default 0)")
    p.add_argument("--val-fraction", type=float, default=0.2, help="without --split: share of cases for validation")
    p.add_argument("--resume", action="store_true", help="continue the run in --out where it stopped")
    p.add_argument("--device", default="auto", help="auto, cuda, mps or cpu")
    p.add_argument("--cache", default=None, help="preprocessing cache folder (default: OUT/cache)")
    for name, kind in [("epochs", int), ("iterations-per-epoch", int), ("batch-size", int), ("learning-rate", float),
                       ("warmup-epochs", int), ("seed", int)]:  # fmt: skip
        p.add_argument(f"--{name}", type=kind, default=None, help=f"override training.{name.replace('-', '_')}")
    p.add_argument("--no-augmentation", action="store_true", help="train without data augmentation")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    try:
        raw = read_config_file(args.config)
        config = load_config(args.config)
        cfg = parse_finetune_config(
            raw.get("training"),
            epochs=args.epochs,
            iterations_per_epoch=args.iterations_per_epoch,
            batch_size=args.batch_size,
            learning_rate=args.learning_rate,
            warmup_epochs=args.warmup_epochs,
            seed=args.seed,
            augmentation=False if args.no_augmentation else None,
        )
        cases = list_hecktor_cases(args.data, require_labels=True)
        if args.split is not None:
            train, val = select_cases(cases, args.split, args.fold)
        else:
            train, val = split_validation(cases, args.val_fraction, cfg.seed)
        print(f"{config.name}: {len(train)} training and {len(val)} validation cases, {cfg.epochs} epochs")
        result = finetune(
            config,
            train,
            val,
            args.out,
            cfg,
            device=args.device,
            resume=args.resume,
            cache_dir=args.cache,
            progress_factory=lambda epoch: ProgressBar(f"epoch {epoch + 1}"),
            on_epoch_end=lambda history: plot_training_curves(history, f"{args.out}/curves.png", config.labels),
        )
    except DualDINOv3Error as exc:
        print(f"finetune: error: {exc}", file=sys.stderr)
        return 2
    if result.history:
        last = result.history[-1]
        dice = ", ".join(f"{k} {v:.3f}" for k, v in last.items() if k.startswith("dice_"))
        print(f"done: {result.epochs} epochs, last loss {last['train_loss']:.4f}, {dice}; best: {result.best_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
