"""Input checks (each bad input: its message, nothing changed), background jobs, progress and cancel."""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pytest
from DualDINOv3SegmentLib import DualDINOv3SegmentLogic
from DualDINOv3SegmentLib.Jobs import CANCELLED, COMPLETED
from slicer_harness import addVolume, jobLeftovers, sceneSummary

from DualDINOv3Lib.errors import DualDINOv3Error


def _shifted(volume, mm: float):
    return dataclasses.replace(volume, origin=np.asarray(volume.origin) + mm)


def _constant(volume):
    return volume.with_array(np.full(volume.shape, 3.0, dtype=np.float32))


BAD_INPUTS = {
    "no CT": (lambda s, ct, pet, p: (None, pet), "Select a CT volume."),
    "no PET": (lambda s, ct, pet, p: (ct, None), "Select a PET volume."),
    "same node": (lambda s, ct, pet, p: (ct, ct), "must be different volumes"),
    "no image data": (
        lambda s, ct, pet, p: (ct, s.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "Empty")),
        "has no image data",
    ),
    "constant PET": (lambda s, ct, pet, p: (ct, addVolume(s, _constant(p.pet), "Flat PET")), "constant image"),
    "no overlap": (
        lambda s, ct, pet, p: (ct, addVolume(s, _shifted(p.pet, 5000.0), "Far PET")),
        "do not overlap physically",
    ),
    "2D CT": (
        lambda s, ct, pet, p: (addVolume(s, dataclasses.replace(p.ct, array=p.ct.array[:1].copy()), "One slice"), pet),
        "is not 3D",
    ),
    "under a transform": (
        lambda s, ct, pet, p: (ct, _transformed(s, pet)),
        "harden the transform",
    ),
}


def _transformed(scene, node):
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "shift")
    node.SetAndObserveTransformNodeID(transform.GetID())
    return node


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_each_bad_input_gives_its_message_and_changes_nothing(case, slicerApp, phantomNodes, phantom, tmp_path):
    make, expected = BAD_INPUTS[case]
    ct, pet = make(slicerApp.scene, *phantomNodes, phantom)
    before = sceneSummary(slicerApp.scene)
    logic = DualDINOv3SegmentLogic(tempDirectory=str(tmp_path))
    with pytest.raises(DualDINOv3Error, match=expected.replace(".", r"\.")):
        logic.segment(ct, pet, device="cpu")
    with pytest.raises(DualDINOv3Error, match=expected.replace(".", r"\.")):
        logic.featureMaps(ct, pet, device="cpu")
    assert sceneSummary(slicerApp.scene) == before
    assert jobLeftovers(tmp_path) == []


def test_output_that_is_not_a_segmentation_and_unknown_model_are_refused(slicerApp, phantomNodes, tmp_path):
    ct, pet = phantomNodes
    before = sceneSummary(slicerApp.scene)
    logic = DualDINOv3SegmentLogic(tempDirectory=str(tmp_path))
    with pytest.raises(DualDINOv3Error, match="is not a segmentation node"):
        logic.segment(ct, pet, outputSegmentation=pet)
    with pytest.raises(DualDINOv3Error, match="neither a segmenter file nor a catalogue entry"):
        logic.segment(ct, pet, model="no-such-model")
    with pytest.raises(DualDINOv3Error, match="unknown device"):
        logic.segment(ct, pet, device="tpu")
    assert sceneSummary(slicerApp.scene) == before
    assert jobLeftovers(tmp_path) == []


def test_pet_that_does_not_look_like_suv_is_warned_about(slicerApp, phantomNodes, phantom):
    from DualDINOv3SegmentLib.Inputs import checkInputs

    ct, _ = phantomNodes
    bqml = addVolume(slicerApp.scene, phantom.pet.with_array(phantom.pet.array * 5000.0), "PET Bq/ml")
    checked = checkInputs(ct, bqml)
    assert any("implausible for SUV" in w for w in checked.warnings)
    scaled = phantom.pet.with_array(phantom.pet.array / phantom.pet.array.max())
    normalised = addVolume(slicerApp.scene, scaled, "PET 0..1")
    assert any("stays below SUV 1.5 everywhere" in w for w in checkInputs(ct, normalised).warnings)
    assert not checkInputs(ct, phantomNodes[1]).warnings


def _runUntil(job, condition, limit_s=300.0):
    end = time.monotonic() + limit_s
    while not condition() and time.monotonic() < end:
        job.poll()
        time.sleep(0.02)


@pytest.mark.slow
def test_background_job_delivers_progress_and_completion(slicerApp, phantomNodes, tmp_path):
    ct, pet = phantomNodes
    reports, completed = [], []
    logic = DualDINOv3SegmentLogic(tempDirectory=str(tmp_path))
    job = logic.segment(
        ct,
        pet,
        device="cpu",
        waitForCompletion=False,
        progress=lambda f, m: reports.append((f, m)),
        completion=completed.append,
    )
    assert not job.finished
    _runUntil(job, lambda: job.finished)
    assert job.state == COMPLETED, job.error
    assert completed == [job]
    assert reports and reports[-1][0] == 1.0
    fractions = [f for f, _ in reports]
    assert fractions == sorted(fractions)
    assert any("slices" in m for _, m in reports)
    assert job.result.IsA("vtkMRMLSegmentationNode") and job.result.GetScene() is slicerApp.scene
    assert jobLeftovers(tmp_path) == []


def test_cancel_mid_run_leaves_the_scene_unchanged_and_no_temporary_files(slicerApp, phantomNodes, tmp_path):
    ct, pet = phantomNodes
    before = sceneSummary(slicerApp.scene)
    reports, completed = [], []
    logic = DualDINOv3SegmentLogic(tempDirectory=str(tmp_path))
    job = logic.segment(
        ct,
        pet,
        device="cpu",
        batchSize=1,
        waitForCompletion=False,
        progress=lambda f, m: reports.append(f),
        completion=completed.append,
    )
    assert list(tmp_path.iterdir())  # the job's inputs are written
    _runUntil(job, lambda: any(0.0 < f < 1.0 for f in reports) or job.finished)  # it is segmenting slices
    assert not job.finished, "the job ended before it could be cancelled"
    job.cancel()
    assert job.state == CANCELLED and completed == [job]
    assert job._process.returncode is not None  # the worker process is gone
    assert sceneSummary(slicerApp.scene) == before
    assert jobLeftovers(tmp_path) == []
    with pytest.raises(DualDINOv3Error, match="cancelled"):
        job.wait()


def test_worker_errors_come_back_with_the_library_wording(slicerApp, phantomNodes, tmp_path):
    ct, pet = phantomNodes
    bad = tmp_path / "not-a-model.safetensors"
    bad.write_bytes(b"not safetensors at all")
    before = sceneSummary(slicerApp.scene)
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    with pytest.raises(DualDINOv3Error) as raised:
        DualDINOv3SegmentLogic(tempDirectory=str(jobs)).segment(ct, pet, model=str(bad), device="cpu")
    assert "not-a-model.safetensors" in str(raised.value)
    assert sceneSummary(slicerApp.scene) == before
    assert list(jobs.iterdir()) == []
