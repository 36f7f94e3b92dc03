"""What the user sees, rendered through Slicer's slice-view pipeline offscreen (slice_rendering.py): segment
outlines land where the segment is; pictures of the results (CT + PET-Heat + outlines, feature maps).

Set DUALDINOV3_WRITE_SCREENSHOTS=1 to (re)write the README's pictures in docs/screenshots/.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import slicer
import vtk
from DualDINOv3SegmentLib import DualDINOv3SegmentLogic
from DualDINOv3SegmentLib.SampleData import loadPhantom
from scipy import ndimage
from slice_rendering import OffscreenSliceView, writeRgbPng
from slicer_harness import REPO_ROOT

SCREENSHOTS = REPO_ROOT / "docs" / "screenshots"
ORIENTATIONS = ("Axial", "Coronal", "Sagittal")


def _centre_ras(volumeNode, mask: np.ndarray):
    k, j, i = np.argwhere(mask).mean(axis=0)
    matrix = vtk.vtkMatrix4x4()
    volumeNode.GetIJKToRASMatrix(matrix)
    return matrix.MultiplyPoint([i, j, k, 1.0])[:3]


def _label_under_pixels(view, labelNode) -> np.ndarray:
    """(H, W) label value of ``labelNode`` under each pixel centre of ``view`` (nearest voxel, 0 outside)."""
    labels = slicer.util.arrayFromVolume(labelNode)
    rasToIjk = vtk.vtkMatrix4x4()
    labelNode.GetRASToIJKMatrix(rasToIjk)
    xyToIjk = slicer.util.arrayFromVTKMatrix(rasToIjk) @ slicer.util.arrayFromVTKMatrix(view.sliceNode.GetXYToRAS())
    rows, cols = np.mgrid[0 : view.size, 0 : view.size]
    xy = np.stack([cols.ravel(), view.size - 1 - rows.ravel(), np.zeros(rows.size), np.ones(rows.size)])
    i, j, k = np.rint(xyToIjk @ xy)[:3].astype(int)
    inside = (i >= 0) & (j >= 0) & (k >= 0) & (k < labels.shape[0]) & (j < labels.shape[1]) & (i < labels.shape[2])
    out = np.zeros(rows.size, dtype=labels.dtype)
    out[inside] = labels[k[inside], j[inside], i[inside]]
    return out.reshape(view.size, view.size)


@pytest.fixture
def phantomScene(slicerApp):
    ct, pet, truth = loadPhantom(slicerApp.scene, withTruth=True)
    return slicerApp, ct, pet, truth


@pytest.mark.parametrize("orientation", ORIENTATIONS)
def test_segment_outline_pixels_land_where_the_segment_is(phantomScene, orientation):
    standIn, ct, _pet, truth = phantomScene
    logic = DualDINOv3SegmentLogic()
    segmentation = logic.segmentationFromLabels(slicer.util.arrayFromVolume(truth).astype(np.uint8), ct)
    view = OffscreenSliceView(standIn.scene, standIn.applicationLogic, orientation)
    logic.showResults(ct, None, segmentation)  # CT only: the outline is the only colour
    display = segmentation.GetDisplayNode()
    display.SetVisibility2DFill(False)
    view.show(_centre_ras(ct, slicer.util.arrayFromVolume(truth) == 1))
    display.SetVisibility(False)
    without = view.render().astype(int)
    display.SetVisibility(True)
    drawn = view.render().astype(int)
    view.close()

    outline = np.abs(drawn - without).max(axis=-1) > 40
    expected = _label_under_pixels(view, truth) > 0
    boundary = expected & ~ndimage.binary_erosion(expected)
    assert outline.sum() > 30 and boundary.sum() > 30, (outline.sum(), boundary.sum())
    near_boundary = ndimage.binary_dilation(boundary, iterations=2)
    assert (outline & near_boundary).sum() / outline.sum() > 0.9, "outline pixels away from the segment's edge"
    assert (boundary & ndimage.binary_dilation(outline, iterations=2)).sum() / boundary.sum() > 0.9, "edge not drawn"
    gtvp = segmentation.GetSegmentation().GetSegment(segmentation.GetSegmentation().GetSegmentIdBySegmentName("GTVp"))
    on_gtvp = outline & ndimage.binary_dilation(_label_under_pixels(view, truth) == 1, iterations=1)
    colours = drawn[on_gtvp].mean(axis=0) / 255.0
    assert np.argmax(colours) == int(np.argmax(gtvp.GetColor())), (colours, gtvp.GetColor())


@pytest.mark.slow
def test_pictures_of_segmentation_and_feature_maps(phantomScene, tmp_path):
    standIn, ct, pet, truth = phantomScene
    logic = DualDINOv3SegmentLogic(tempDirectory=str(tmp_path))
    segmentation = logic.segment(ct, pet, device="cpu")
    views = [OffscreenSliceView(standIn.scene, standIn.applicationLogic, o, size=300) for o in ORIENTATIONS]
    logic.showResults(ct, pet, segmentation)
    centre = _centre_ras(ct, slicer.util.arrayFromVolume(truth) == 1)
    for view in views:
        view.show(centre)
    results = np.concatenate([view.render() for view in views], axis=1)

    maps = logic.featureMaps(ct, pet, device="cpu")
    pictures = []
    for name in ("ct", "pet"):
        views[0].compositeNode.SetBackgroundVolumeID(maps[name].GetID())
        views[0].compositeNode.SetForegroundVolumeID(None)
        segmentation.GetDisplayNode().SetVisibility(False)
        views[0].show(centre)
        pictures.append(views[0].render())
    for view in views:
        view.close()
    features = np.concatenate(pictures, axis=1)

    assert results.shape == (300, 900, 3) and features.shape == (300, 600, 3)
    assert results.std() > 10 and features.std() > 10  # not blank
    assert not np.array_equal(pictures[0], pictures[1])  # the two encoders see differently
    red_orange = (results[..., 0] > 150) & (results[..., 2] < 100)
    assert red_orange.sum() > 50  # PET-Heat hot spots and the GTVp outline are visible
    folders = [tmp_path] + ([SCREENSHOTS] if os.environ.get("DUALDINOV3_WRITE_SCREENSHOTS") else [])
    for folder in folders:
        writeRgbPng(results, folder / "slice_views.png")
        writeRgbPng(features, folder / "feature_maps.png")
        assert (folder / "slice_views.png").stat().st_size > 1000
