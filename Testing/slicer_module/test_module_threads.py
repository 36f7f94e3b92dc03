"""The module's CPU threads setting: stored in the parameter node, checked by the logic before any work, passed
in the job to the inference process, which applies it (0: all physical cores but one) to the library call."""

from __future__ import annotations

import json

import numpy as np
import pytest
from DualDINOv3SegmentLib import DualDINOv3SegmentLogic, InferenceWorker, Parameters
from slicer_harness import sceneSummary

import DualDINOv3Lib
from DualDINOv3Lib.data import Volume
from DualDINOv3Lib.errors import ConfigError
from DualDINOv3Lib.machine import DEFAULT_BATCH_SIZE, available_cpus, default_threads


def test_threads_are_a_parameter_and_bad_stored_values_mean_automatic(slicerApp):
    node = Parameters.parameterNode(slicerApp.scene)
    assert Parameters.SegmentParameters().threads == Parameters.AUTOMATIC_THREADS == 0
    assert Parameters.SegmentParameters().batchSize == DEFAULT_BATCH_SIZE  # the library's default, stated once
    Parameters.save(node, Parameters.SegmentParameters(threads=1))
    assert Parameters.load(node).threads == 1
    for text in ("-1", str(available_cpus() + 1), "many"):  # e.g. a scene saved on a larger machine
        node.SetParameter("threads", text)
        assert Parameters.load(node).threads == 0


@pytest.mark.parametrize("bad", [-1, available_cpus() + 1, 1.5])
def test_the_logic_refuses_a_bad_thread_count_before_any_work(bad, slicerApp, phantomNodes, tmp_path):
    ct, pet = phantomNodes
    before = sceneSummary(slicerApp.scene)
    logic = DualDINOv3SegmentLogic(tempDirectory=str(tmp_path))
    with pytest.raises(ConfigError, match=f"threads must be a whole number from 1 to {available_cpus()}"):
        logic.segment(ct, pet, device="cpu", threads=bad)
    with pytest.raises(ConfigError, match="threads must be a whole number"):
        logic.featureMaps(ct, pet, device="cpu", threads=bad)
    assert sceneSummary(slicerApp.scene) == before
    assert list(tmp_path.iterdir()) == []


def test_the_job_carries_the_threads(slicerApp, phantomNodes, tmp_path):
    ct, pet = phantomNodes
    job = DualDINOv3SegmentLogic(tempDirectory=str(tmp_path)).segment(
        ct, pet, device="cpu", threads=np.int64(1), waitForCompletion=False
    )
    try:
        (folder,) = tmp_path.iterdir()
        assert json.loads((folder / "job.json").read_text())["threads"] == 1
    finally:
        job.cancel()


def test_the_worker_passes_the_threads_and_automatic_leaves_a_core(monkeypatch, tmp_path):
    volume = Volume(np.zeros((2, 4, 4), np.float32), (1.0, 1.0, 1.0))
    calls = []

    def segment(ct, pet, model, **options):
        calls.append(options["threads"])
        return volume.with_array(np.zeros((2, 4, 4), np.uint8))

    def pca(ct, pet, model, **options):
        calls.append(options["threads"])
        return {"ct": volume.with_array(np.zeros((2, 4, 4, 3), np.uint8))}

    monkeypatch.setattr(DualDINOv3Lib, "read_volume", lambda path: volume)
    monkeypatch.setattr(DualDINOv3Lib, "segment_volume", segment)
    monkeypatch.setattr(DualDINOv3Lib, "pca_feature_maps", pca)
    for task in ("segment", "featureMaps"):
        for threads in (1, 0, None):
            job = {"task": task, "ct": "ct.nrrd", "pet": "pet.nrrd", "outputDir": str(tmp_path)}
            InferenceWorker.run(job if threads is None else {**job, "threads": threads})
    automatic = default_threads(reserve=InferenceWorker.SLICER_RESERVED_CORES)
    assert calls == [1, automatic, automatic] * 2
    assert automatic == max(1, default_threads() - 1)


def test_head_neck_only_goes_from_the_logic_through_the_job_to_segment_volume(
    slicerApp, phantomNodes, monkeypatch, tmp_path
):
    ct, pet = phantomNodes
    (tmp_path / "jobs").mkdir()
    job = DualDINOv3SegmentLogic(tempDirectory=str(tmp_path / "jobs")).segment(
        ct, pet, device="cpu", threads=1, headNeckOnly=False, waitForCompletion=False
    )
    try:
        (folder,) = (tmp_path / "jobs").iterdir()
        assert json.loads((folder / "job.json").read_text())["headNeckOnly"] is False
    finally:
        job.cancel()
    volume = Volume(np.zeros((2, 4, 4), np.float32), (1.0, 1.0, 1.0))
    seen = []

    def segment(ct, pet, model, **options):
        seen.append(options["head_neck_only"])
        return volume.with_array(np.zeros((2, 4, 4), np.uint8))

    monkeypatch.setattr(DualDINOv3Lib, "read_volume", lambda path: volume)
    monkeypatch.setattr(DualDINOv3Lib, "segment_volume", segment)
    base = {"task": "segment", "ct": "ct.nrrd", "pet": "pet.nrrd", "outputDir": str(tmp_path), "threads": 1}
    for extra in ({}, {"headNeckOnly": False}, {"headNeckOnly": True}):
        InferenceWorker.run({**base, **extra})
    assert seen == [True, False, True]  # on unless the job turns it off
