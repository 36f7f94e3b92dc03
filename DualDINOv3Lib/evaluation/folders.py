"""Evaluating folders of predicted label files against a HECKTOR-layout folder of truth labels."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path

from ..data.hecktor import find_label_files
from ..data.labels import read_label
from ..domain import TUMOUR_CLASSES
from ..errors import DataError
from .metrics import CaseMetrics, evaluate_case

log = logging.getLogger(__name__)

Progress = Callable[[float, str], None]
"""``progress(fraction in [0, 1], message)``."""


def match_cases(
    truth: Mapping[str, Path], predictions: Mapping[str, Mapping[str, Path]], allow_missing: bool = False
) -> list[str]:
    """The case names to evaluate: every truth case, checked against each configuration's prediction files.

    A prediction without a truth label is an error (wrong folder?). A truth case without a prediction in some
    configuration is an error unless ``allow_missing``; then only the cases every configuration predicted are
    kept, so that all configurations are scored on the same subjects (paired tests need that).
    """
    cases = list(truth)
    for name, files in predictions.items():
        orphans = sorted(set(files) - set(truth))
        if orphans:
            raise DataError(
                f"configuration {name}: predictions {orphans[:5]}{' ...' if len(orphans) > 5 else ''} have no "
                "truth label of the same case name; check that the truth folder and the prediction folder match"
            )
        missing = [case for case in cases if case not in files]
        if missing and not allow_missing:
            raise DataError(
                f"configuration {name}: no prediction for {len(missing)} of {len(truth)} truth cases "
                f"({', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}); predict them, or allow missing "
                "predictions to evaluate only the cases every configuration predicted"
            )
        if missing:
            log.warning("configuration %s: %d truth cases have no prediction and are skipped", name, len(missing))
        cases = [case for case in cases if case in files]
    if not cases:
        raise DataError("no case has a truth label and a prediction in every configuration: nothing to evaluate")
    return cases


def evaluate_folders(
    truth_folder: str | os.PathLike,
    prediction_folders: Mapping[str, str | os.PathLike],
    *,
    allow_missing: bool = False,
    classes: Mapping[int, str] = TUMOUR_CLASSES,
    progress: Progress | None = None,
) -> dict[str, list[CaseMetrics]]:
    """Per-case metrics of every configuration: configuration name -> list over cases and classes.

    ``truth_folder``: HECKTOR layout (``CASE.nii.gz`` labels beside ``CASE__CT/PT`` images, or ``labelsTr/``).
    ``prediction_folders``: configuration name -> folder of ``CASE.nii.gz`` predicted labels. Every truth label
    is read once; predictions on another grid are nearest-neighbour resampled onto the truth grid.
    """
    if not prediction_folders:
        raise DataError("no prediction folder given: pass at least one configuration NAME=FOLDER")
    truth = find_label_files(truth_folder)
    predictions = {name: find_label_files(folder) for name, folder in prediction_folders.items()}
    cases = match_cases(truth, predictions, allow_missing)
    results: dict[str, list[CaseMetrics]] = {name: [] for name in prediction_folders}
    for i, case in enumerate(cases):
        truth_volume = read_label(truth[case])
        for name, files in predictions.items():
            try:
                results[name].extend(evaluate_case(truth_volume, read_label(files[case]), case, classes))
            except DataError as exc:
                raise DataError(f"configuration {name}, {files[case]}: {exc}") from exc
        if progress is not None:
            progress((i + 1) / len(cases), f"evaluated {case}")
        log.debug("evaluated %s (%d/%d)", case, i + 1, len(cases))
    return results
