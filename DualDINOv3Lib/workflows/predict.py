"""Segmenting every case of a HECKTOR-layout folder: ``CASE.nii.gz`` label files, each on its case's CT grid.
Uses :func:`~DualDINOv3Lib.segment_volume`, the same path as ``dualdinov3 segment`` and the Slicer module.

Under ``torchrun`` the cases are shared out: process ``rank`` of ``world`` segments cases ``i`` with
``i % world == rank`` (one process per GPU; on CPU gloo, each process with its share of the cores) and writes
them itself, atomically. The main process checks every output before any work, and every process learns the
outcome, so a refusal stops all of them; a failure on one process during the run stops all of them at the end
(the files written are whole). The outputs are the files one process writes.

    torchrun --nproc_per_node 4 Training/predict.py --model M --data DIR --out OUT   (= dualdinov3 predict ...)
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

from ..data.hecktor import HecktorCase, list_hecktor_cases, read_hecktor_case
from ..data.io import write_volume
from ..distributed import init_distributed, shutdown_distributed
from ..files import check_output_folder, check_output_path
from ..inference.segment import resolve_segmenter, segment_volume
from ..machine import DEFAULT_BATCH_SIZE
from ..runtime import resolve_device, with_cpu_threads

CaseCallback = Callable[[int, int, Path], None]


def predict_folder(
    data: str | os.PathLike,
    out: str | os.PathLike,
    model=None,
    *,
    device: str = "auto",
    batch_size: int = DEFAULT_BATCH_SIZE,
    threads: int | None = None,
    head_neck_only: bool = True,
    overwrite: bool = False,
    on_case: CaseCallback | None = None,
) -> list[Path]:
    """Writes ``out/CASE.nii.gz`` for every case of ``data``; returns the paths of all cases' outputs.

    Every output is checked before the first case is segmented (existing files need ``overwrite``).
    ``model``: a segmenter, a ``.safetensors`` path, or None for the bundled demo model. ``threads``: CPU
    threads (:func:`~DualDINOv3Lib.runtime.cpu_threads`; None: the process's setting). ``head_neck_only``: as
    in :func:`~DualDINOv3Lib.segment_volume`.
    ``on_case(index, total, path)`` is called after each case this process wrote. Under ``torchrun`` the
    cases are shared out over the processes (module docstring); every process returns the same list.
    """
    return _predict(lambda: list_hecktor_cases(data), out, model, device=device, batch_size=batch_size,
                    threads=threads, head_neck_only=head_neck_only, overwrite=overwrite, on_case=on_case)  # fmt: skip


def predict_cases(
    cases: Sequence[HecktorCase],
    out: str | os.PathLike,
    model=None,
    *,
    device: str = "auto",
    batch_size: int = DEFAULT_BATCH_SIZE,
    threads: int | None = None,
    head_neck_only: bool = True,
    overwrite: bool = False,
    on_case: CaseCallback | None = None,
) -> list[Path]:
    """:func:`predict_folder` for the given cases (cross-validation's test cases of a fold)."""
    return _predict(lambda: list(cases), out, model, device=device, batch_size=batch_size, threads=threads,
                    head_neck_only=head_neck_only, overwrite=overwrite, on_case=on_case)  # fmt: skip


@with_cpu_threads
def _predict(list_cases, out, model, *, device, batch_size, threads, head_neck_only, overwrite, on_case) -> list[Path]:
    ctx, device = init_distributed(resolve_device(device))
    try:
        error, cases, targets = None, [], []
        try:  # the checks, inside the agreement: a refusal on any process stops every process
            cases = list_cases()
            targets = [Path(out) / f"{case.case_id}.nii.gz" for case in cases]
            model = resolve_segmenter(model)
            if ctx.is_main:
                check_output_folder(out)
                for case, target in zip(cases, targets, strict=True):
                    check_output_path(target, overwrite=overwrite, inputs=(case.ct, case.pet, case.label))
        except Exception as exc:
            error = exc
        ctx.raise_if_any_failed(error)
        try:
            for i, (case, target) in enumerate(zip(cases, targets, strict=True)):
                if i % ctx.world_size != ctx.rank:
                    continue
                ct, pet, _ = read_hecktor_case(case)
                label = segment_volume(
                    ct, pet, model, device=device, batch_size=batch_size, head_neck_only=head_neck_only
                )
                write_volume(label, target, overwrite=overwrite)
                if on_case is not None:
                    on_case(i + 1, len(cases), target)
        except Exception as exc:
            error = exc
        ctx.raise_if_any_failed(error)  # also the end barrier: every output is written when any process returns
        return targets
    finally:
        shutdown_distributed(ctx)
