"""``threads``: the count in effect inside the forward is the one asked for, on every inference path, and the
process's setting is back afterwards, also after an error or a cancel; bad counts are refused with the fix."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from DualDINOv3Lib import machine, pca_feature_maps, segment_volume
from DualDINOv3Lib.cli import build_parser, run_command
from DualDINOv3Lib.errors import ConfigError
from DualDINOv3Lib.inference import Cancelled, segment_with_feature_maps
from DualDINOv3Lib.models import build_segmenter
from DualDINOv3Lib.runtime import cpu_threads

BEFORE = 2  # the process's setting in these tests; each job asks for 1 (possible on any machine)


@pytest.fixture(scope="module")
def segmenter():
    config = {"architecture": "dual_stream", "backbone": "vit_nano16", "preprocessing": {"crop_size": 64}}
    return build_segmenter(config).eval()


@pytest.fixture
def ct_pet():
    rng = np.random.default_rng(0)
    ct = np.full((5, 40, 40), -1000.0, np.float32)
    ct[:, 8:32, 6:34] = 40.0 + rng.normal(0, 5, (5, 24, 28))
    from DualDINOv3Lib.data import Volume

    return Volume(ct, (1.5, 1.5, 3.0), modality="CT"), Volume(rng.random((5, 40, 40), np.float32), (1.5, 1.5, 3.0))


@pytest.fixture
def process_setting():
    torch_before, itk_before = torch.get_num_threads(), sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    torch.set_num_threads(BEFORE)
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(BEFORE)
    yield
    torch.set_num_threads(torch_before)
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(itk_before)


def _record(module: torch.nn.Module, seen: list, fail: bool = False):
    def hook(*_):
        seen.append((torch.get_num_threads(), sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()))
        if fail:
            raise RuntimeError("forward failed")

    return module.register_forward_hook(hook)


def _assert_restored():
    assert torch.get_num_threads() == BEFORE
    assert sitk.ProcessObject.GetGlobalDefaultNumberOfThreads() == BEFORE


JOBS = {
    "segment_volume": lambda ct, pet, model, **kw: segment_volume(ct, pet, model, batch_size=2, **kw),
    "pca_feature_maps": lambda ct, pet, model, **kw: pca_feature_maps(ct, pet, model, batch_size=2, **kw),
    "segment_with_feature_maps": lambda ct, pet, model, **kw: segment_with_feature_maps(
        ct, pet, model, batch_size=2, **kw
    ),
}


@pytest.mark.parametrize("job", sorted(JOBS))
def test_the_forward_runs_with_the_requested_threads_and_the_setting_is_restored(
    job, segmenter, ct_pet, process_setting
):
    seen = []
    hook = _record(segmenter.encoders["ct_encoder"].blocks[0], seen)
    try:
        JOBS[job](*ct_pet, segmenter, threads=1)
        assert seen and set(seen) == {(1, 1)}
        _assert_restored()
        seen.clear()
        JOBS[job](*ct_pet, segmenter)  # None: the process's setting, untouched
        assert set(seen) == {(BEFORE, BEFORE)}
    finally:
        hook.remove()
    _assert_restored()


def test_the_setting_is_restored_after_an_error_and_after_a_cancel(segmenter, ct_pet, process_setting):
    seen = []
    hook = _record(segmenter.encoders["ct_encoder"].blocks[0], seen, fail=True)
    try:
        with pytest.raises(RuntimeError, match="forward failed"):
            segment_volume(*ct_pet, segmenter, threads=1)
    finally:
        hook.remove()
    assert seen == [(1, 1)]
    _assert_restored()

    calls = []
    hook = _record(segmenter.encoders["ct_encoder"].blocks[0], seen)
    try:
        with pytest.raises(Cancelled):
            segment_volume(
                *ct_pet, segmenter, batch_size=2, threads=1, cancel=lambda: calls.append(1) or len(calls) > 1
            )
    finally:
        hook.remove()
    assert seen[1:] == [(1, 1)]  # one batch ran, with the requested threads
    _assert_restored()


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2", None])
def test_bad_thread_counts_are_refused_with_the_limit_and_the_fix(bad, segmenter, ct_pet, process_setting):
    if bad is None:
        bad = machine.available_cpus() + 1
    with pytest.raises(
        ConfigError,
        match=rf"whole number from 1 to {machine.available_cpus()}.*use \d+ \(the physical cores\) or fewer",
    ):
        segment_volume(*ct_pet, segmenter, threads=bad)
    _assert_restored()
    assert machine.check_threads(np.int64(1)) == 1  # numpy integers are whole numbers too


def test_default_threads_are_the_physical_cores_shared_among_local_processes(monkeypatch):
    assert 1 <= machine.physical_cores() <= machine.available_cpus()
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert machine.default_threads() == machine.physical_cores()
    assert machine.default_threads(reserve=1) == max(1, machine.physical_cores() - 1)
    assert machine.default_threads(reserve=10_000) == 1
    monkeypatch.setenv("LOCAL_WORLD_SIZE", str(machine.physical_cores() * 2))  # torchrun: more processes than cores
    assert machine.default_threads() == 1
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
    assert machine.default_threads() == machine.physical_cores()


def test_cpu_threads_none_leaves_the_setting(process_setting):
    with cpu_threads(None) as n:
        assert n == torch.get_num_threads() == BEFORE
    with cpu_threads(1) as n:
        assert n == torch.get_num_threads() == 1
    _assert_restored()


REQUIRED = {
    "segment": ["--ct", "c", "--pet", "p", "-o", "o.nii.gz"],
    "pca": ["--ct", "c", "--pet", "p", "--out", "d"],
    "predict": ["--data", "d", "--out", "o"],
    "finetune": ["--config", "c", "--data", "d", "--out", "o"],
    "crossval": ["--data", "d", "--configs", "c", "--out", "o"],
    "pretrain": ["--config", "c", "--data", "s", "--out", "o"],
    "demo": [],
}


@pytest.mark.parametrize("command", sorted(REQUIRED))
def test_every_command_that_computes_takes_threads(command, capsys):
    parser = build_parser()
    assert parser.parse_args([command, *REQUIRED[command], "--threads", "1"]).threads == 1
    assert parser.parse_args([command, *REQUIRED[command]]).threads is None
    for bad in ("0", "many", str(machine.available_cpus() + 1)):
        with pytest.raises(SystemExit):
            parser.parse_args([command, *REQUIRED[command], "--threads", bad])
        assert "--threads" in capsys.readouterr().err


def test_the_command_runs_under_its_threads_default_the_physical_cores(process_setting, monkeypatch):
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    seen = []

    def func(_):
        seen.append(torch.get_num_threads())
        return 0

    assert run_command(argparse.Namespace(threads=1, func=func)) == 0
    assert run_command(argparse.Namespace(threads=None, func=func)) == 0
    assert run_command(argparse.Namespace(func=func)) == 0  # a command without --threads: untouched
    assert seen == [1, machine.default_threads(), BEFORE]
    _assert_restored()


def test_one_default_batch_size_for_every_inference_path():
    import inspect

    from DualDINOv3Lib.workflows.predict import predict_cases, predict_folder

    for job in (segment_volume, pca_feature_maps, segment_with_feature_maps, predict_folder, predict_cases):
        assert inspect.signature(job).parameters["batch_size"].default == machine.DEFAULT_BATCH_SIZE, job.__name__
    parser = build_parser()
    for command in ("segment", "pca", "predict"):
        assert parser.parse_args([command, *REQUIRED[command]]).batch_size == machine.DEFAULT_BATCH_SIZE
