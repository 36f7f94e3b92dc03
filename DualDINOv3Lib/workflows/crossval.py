"""Cross-validation of one or more configurations, evaluated like the paper's Table 1: the job behind
``dualdinov3 crossval`` and ``Training/crossval.py``.

1. Splits the labelled cases of ``data`` (HECKTOR layout) into folds stratified by GTVp volume stratum,
   60/20/20 train/validation/test per fold for 5 folds, saved to ``out/splits.json`` (reused when present).
2. For each configuration and fold, finetunes (``out/<config>/fold_<k>``, resumable: rerun the same
   command) and predicts the fold's test cases with ``segment_volume`` (``out/<config>/predictions/``;
   under ``torchrun`` shared out over the processes, see :mod:`.predict`).
3. Evaluates all predictions: ``out/evaluation/table1.md``, the CSVs and the box plot.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from ..data.hecktor import HecktorCase, list_hecktor_cases
from ..data.labels import read_label
from ..domain import GTVP, class_volume_cm3, stratum_of
from ..errors import DualDINOv3Error
from ..evaluation.splits import load_splits, make_crossval_splits, save_splits
from ..files import write_text
from ..finetune.config import RunConfig, load_run_config
from ..finetune.trainer import STATE_FILE, finetune
from ..progress import ProgressBar
from .evaluate import EvaluationReport, evaluate_to_folder
from .figures import plot_training_curves
from .predict import predict_cases

DONE_MARKER = "done"


def case_strata(cases: Sequence[HecktorCase]) -> dict[str, str | None]:
    """GTVp volume stratum of every case, from its truth label (None where there is no GTVp)."""
    strata = {}
    for case in cases:
        label = read_label(case.label)
        strata[case.case_id] = stratum_of(class_volume_cm3(label.array, label.spacing, GTVP))
    return strata


def crossval_splits(out: Path, cases: Sequence[HecktorCase], n_folds: int, seed: int) -> dict:
    """The splits saved in ``out/splits.json``, checked to fit the cases and options; made and saved first."""
    path = out / "splits.json"
    ids = sorted(c.case_id for c in cases)
    if path.exists():
        splits = load_splits(path)
        if sorted(splits["strata"]) != ids or splits["n_folds"] != n_folds or splits["seed"] != seed:
            raise DualDINOv3Error(
                f"{path} was made for other cases, folds or seed; use another --out or the same data and options"
            )
        return splits
    splits = make_crossval_splits(case_strata(cases), n_folds, seed)
    save_splits(splits, path)
    return splits


def run_fold(run: RunConfig, fold: dict, by_id: dict[str, HecktorCase], out: Path, device: str) -> Path:
    """Finetunes ``run`` on one fold (resuming a stopped run) and predicts its test cases; returns the
    predictions folder. A fold already trained and predicted (its ``done`` marker) is skipped."""
    name, k = run.segmenter.name, fold["fold"]
    run_dir = out / name / f"fold_{k}"
    predictions = out / name / "predictions"
    if not (run_dir / DONE_MARKER).exists():
        print(f"{name} fold {k}: training on {len(fold['train'])} cases")
        result = finetune(
            run.segmenter,
            [by_id[c] for c in fold["train"]],
            [by_id[c] for c in fold["validation"]],
            run_dir,
            run.training,
            device=device,
            resume=(run_dir / STATE_FILE).exists(),
            cache_dir=out / "cache",
            progress_factory=lambda epoch: ProgressBar(f"{name} f{k} e{epoch + 1}"),
            on_epoch_end=lambda history: plot_training_curves(history, run_dir / "curves.png", run.segmenter.labels),
        )
        # under torchrun the fold's test cases are shared out over the processes
        predict_cases([by_id[c] for c in fold["test"]], predictions, result.best_path, device=device, overwrite=True)
        write_text(run_dir / DONE_MARKER, "trained and predicted\n")
    print(f"{name} fold {k}: test predictions in {predictions}")
    return predictions


def run_crossval(
    data: str | os.PathLike,
    configs: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    *,
    n_folds: int = 5,
    run_folds: Sequence[int] | None = None,
    seed: int = 0,
    device: str = "auto",
    **overrides,
) -> EvaluationReport:
    """Cross-validates every configuration file of ``configs`` on ``data`` into ``out``; see the module
    docstring. ``overrides`` replace ``training:`` values of every configuration (e.g. ``epochs=2``)."""
    out = Path(out)
    cases = list_hecktor_cases(data, require_labels=True)
    by_id = {c.case_id: c for c in cases}
    runs = [load_run_config(path, **overrides) for path in configs]
    names = [run.segmenter.name for run in runs]
    if len(set(names)) != len(names):
        raise DualDINOv3Error(f"configurations need distinct names, got {names}")
    folds = list(range(n_folds)) if run_folds is None else list(run_folds)
    bad = [k for k in folds if not 0 <= k < n_folds]
    if bad:
        raise DualDINOv3Error(f"--run-folds {bad} outside 0..{n_folds - 1}")
    out.mkdir(parents=True, exist_ok=True)
    splits = crossval_splits(out, cases, n_folds, seed)
    predictions = {}
    for run in runs:
        for k in folds:
            predictions[run.segmenter.name] = run_fold(run, splits["folds"][k], by_id, out, device)
    return evaluate_to_folder(data, predictions, out / "evaluation", allow_missing=len(folds) < n_folds, overwrite=True)
