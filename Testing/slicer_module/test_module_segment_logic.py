"""DualDINOv3SegmentLogic.segment / featureMaps on phantoms, through Slicer's real MRML (slicer-core)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import slicer
from DualDINOv3SegmentLib import DualDINOv3SegmentLogic
from DualDINOv3SegmentLib.MRMLVolumes import ijkToRasMatrix, volumeFromNode
from slicer_harness import MODULE_DIR, addVolume, sceneSummary, segmentArray, startSlicer, stopSlicer

TERM_FILE = MODULE_DIR / "Resources" / "Terminology" / "SegmentationCategoryTypeModifier-DualDINOv3.term.json"


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.count_nonzero(a & b) / max(np.count_nonzero(a) + np.count_nonzero(b), 1)


@pytest.fixture(scope="module")
def segmented(phantom, tmp_path_factory):
    """One segmentation of the phantom (the model runs once for all the checks below)."""
    standIn = startSlicer()
    ct = addVolume(standIn.scene, phantom.ct, "Phantom CT")
    pet = addVolume(standIn.scene, phantom.pet, "Phantom PET")
    before = {"ct": slicer.util.arrayFromVolume(ct).copy(), "pet": slicer.util.arrayFromVolume(pet).copy()}
    mtimes = (ct.GetMTime(), pet.GetMTime())
    count = standIn.scene.GetNumberOfNodes()
    temp = tmp_path_factory.mktemp("jobs")
    logic = DualDINOv3SegmentLogic(tempDirectory=str(temp))
    segmentation = logic.segment(ct, pet, device="cpu")
    yield standIn, ct, pet, segmentation, before, mtimes, count, temp
    stopSlicer(standIn)


@pytest.mark.slow  # shares one ~15 s segmentation run
def test_segments_names_terminology_colours_and_label_values(segmented):
    _, _, _, segmentation, *_ = segmented
    codes = json.loads(TERM_FILE.read_text())["SegmentationCodes"]["Category"][0]
    expected = {t["3dSlicerLabel"]: t for t in codes["Type"]}
    seg = segmentation.GetSegmentation()
    assert seg.GetNumberOfSegments() == 2
    for value, name in ((1, "GTVp"), (2, "GTVn")):
        segment = seg.GetSegment(seg.GetSegmentIdBySegmentName(name))
        assert segment.GetLabelValue() == value
        terminology = segment.GetTerminology()
        assert f"SCT^{codes['CodeValue']}^{codes['CodeMeaning']}" in terminology
        assert f"SCT^{expected[name]['CodeValue']}^{expected[name]['CodeMeaning']}" in terminology
        rgb = np.array(expected[name]["recommendedDisplayRGBValue"]) / 255.0
        np.testing.assert_allclose(segment.GetColor(), rgb, atol=1e-6)
    assert "86049000" in seg.GetSegment(seg.GetSegmentIdBySegmentName("GTVp")).GetTerminology()  # primary
    assert "14799000" in seg.GetSegment(seg.GetSegmentIdBySegmentName("GTVn")).GetTerminology()  # secondary


@pytest.mark.slow  # shares one ~15 s segmentation run
def test_reference_geometry_is_the_ct_and_dice_against_the_truth(segmented, phantom):
    _, ct, _, segmentation, *_ = segmented
    geometry = segmentation.GetSegmentation().GetConversionParameter(
        slicer.vtkSegmentationConverter.GetReferenceImageGeometryParameterName()
    )
    reference = slicer.vtkOrientedImageData()
    slicer.vtkSegmentationConverter.DeserializeImageGeometry(geometry, reference)
    matrix = slicer.vtkMatrix4x4() if hasattr(slicer, "vtkMatrix4x4") else __import__("vtk").vtkMatrix4x4()
    reference.GetImageToWorldMatrix(matrix)
    np.testing.assert_allclose(slicer.util.arrayFromVTKMatrix(matrix), ijkToRasMatrix(ct), atol=1e-6)
    assert reference.GetDimensions() == ct.GetImageData().GetDimensions()

    truth = phantom.label.array
    scores = {}
    for value, name in ((1, "GTVp"), (2, "GTVn")):
        mask = segmentArray(segmentation, name, ct)
        assert mask.shape == truth.shape
        scores[name] = dice(mask > 0, truth == value)
    assert scores["GTVp"] >= 0.4, scores  # the demo model: GTVp micro Dice 0.45 on held-out phantoms (README)


@pytest.mark.slow  # shares one ~15 s segmentation run
def test_inputs_untouched_and_only_the_new_segmentation_added(segmented):
    standIn, ct, pet, segmentation, before, mtimes, count, temp = segmented
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(ct), before["ct"])
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(pet), before["pet"])
    assert (ct.GetMTime(), pet.GetMTime()) == mtimes
    added = [standIn.scene.GetNthNode(i) for i in range(count, standIn.scene.GetNumberOfNodes())]
    assert segmentation in added
    assert {n.GetClassName() for n in added} <= {"vtkMRMLSegmentationNode", "vtkMRMLSegmentationDisplayNode"}
    # the job's temporary folder is gone; what stays is the feature maps it computed, for Show feature maps
    assert [p.name for p in temp.iterdir()] == ["DualDINOv3-feature-maps"]


@pytest.mark.slow  # shares one ~15 s segmentation run
def test_output_segmentation_is_reused_and_other_segments_kept(segmented, phantom):
    standIn, ct, *_ = segmented
    output = standIn.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "mine")
    output.GetSegmentation().AddEmptySegment("keep", "keep")
    other = standIn.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "someone else's")
    other.GetSegmentation().AddEmptySegment("GTVp", "GTVp")
    otherTime = other.GetMTime()
    logic = DualDINOv3SegmentLogic()
    result = logic.segmentationFromLabels(phantom.label.array, ct, output)
    assert result is output
    names = sorted(output.GetSegmentation().GetSegment(i).GetName() for i in output.GetSegmentation().GetSegmentIDs())
    assert names == ["GTVn", "GTVp", "keep"]
    assert other.GetMTime() == otherTime
    mask = segmentArray(output, "GTVn", ct)
    np.testing.assert_array_equal(mask > 0, phantom.label.array == 2)


def test_volume_node_round_trip_keeps_the_geometry(phantomNodes, phantom):
    ct, pet = phantomNodes
    for node, volume in ((ct, phantom.ct), (pet, phantom.pet)):
        back = volumeFromNode(node)
        assert back.same_grid(volume, tol=1e-4)
        np.testing.assert_array_equal(back.array, volume.array)


@pytest.mark.slow
def test_feature_maps_are_rgb_vector_volumes_on_the_ct_geometry(phantomNodes, slicerApp, tmp_path):
    ct, pet = phantomNodes
    count = slicerApp.scene.GetNumberOfNodes()
    maps = DualDINOv3SegmentLogic(tempDirectory=str(tmp_path)).featureMaps(ct, pet, device="cpu")
    assert sorted(maps) == ["ct", "pet"]
    for name, node in maps.items():
        assert node.IsA("vtkMRMLVectorVolumeNode")
        array = slicer.util.arrayFromVolume(node)
        assert array.shape == (*slicer.util.arrayFromVolume(ct).shape, 3) and array.dtype == np.uint8
        assert array.max() > 0
        np.testing.assert_allclose(ijkToRasMatrix(node), ijkToRasMatrix(ct), atol=1e-9)
        assert name.upper() in node.GetName()
    assert slicerApp.scene.GetNumberOfNodes() > count
    assert list(tmp_path.iterdir()) == []
    assert sceneSummary(slicerApp.scene)


@pytest.mark.slow  # shares the segmentation run, plus one fresh feature-map run to compare with
def test_show_feature_maps_after_segment_loads_that_runs_maps_without_a_worker(segmented, monkeypatch, tmp_path):
    from DualDINOv3SegmentLib import Jobs

    standIn, ct, pet, *_, temp = segmented
    started = []
    processJob = Jobs.ProcessJob
    monkeypatch.setattr(Jobs, "ProcessJob", lambda *a, **k: started.append(a) or processJob(*a, **k))
    logic = DualDINOv3SegmentLogic(standIn.scene, tempDirectory=str(temp))  # a new logic: the maps stayed on disk
    progress, done = [], []
    job = logic.featureMaps(ct, pet, device="cpu", waitForCompletion=False, progress=lambda f, m: progress.append(f),
                            completion=done.append)  # fmt: skip
    assert started == [] and done == []  # callbacks come from poll(), on the caller's thread, as for a worker
    assert job.poll() and job.state == Jobs.COMPLETED and progress == [1.0] and done == [job]
    cached = job.result
    assert sorted(cached) == ["ct", "pet"] and all(node.IsA("vtkMRMLVectorVolumeNode") for node in cached.values())

    fresh = DualDINOv3SegmentLogic(standIn.scene, tempDirectory=str(tmp_path), featureMapCache=False)
    fresh = fresh.featureMaps(ct, pet, device="cpu")
    assert len(started) == 1  # the fresh run needed its worker
    for name in ("ct", "pet"):
        a = slicer.util.arrayFromVolume(cached[name]).astype(int)
        b = slicer.util.arrayFromVolume(fresh[name]).astype(int)
        assert np.abs(a - b).max() <= 2 and (a == b).mean() > 0.99, name  # kept tokens are float16
    only = logic.featureMaps(ct, pet, encoders="pet", device="cpu")
    assert list(only) == ["pet"] and len(started) == 1
