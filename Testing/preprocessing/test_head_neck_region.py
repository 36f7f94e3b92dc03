"""Predicted regions where no head-and-neck GTV can be (below the thorax, inside the skull) are removed, found on
the phantoms' CTs; the tumours themselves, and everything in scans without those landmarks, are kept."""

from __future__ import annotations

import numpy as np
import pytest

from DualDINOv3Lib import segment_volume
from DualDINOv3Lib.data import Volume
from DualDINOv3Lib.inference.postprocess import remove_outside_head_neck
from DualDINOv3Lib.phantoms import make_phantom
from DualDINOv3Lib.preprocessing.head_neck_region import (
    INTRACRANIAL_MIN_CM2,
    INTRACRANIAL_REACH_MM,
    THORAX_MARGIN_MM,
    head_neck_region,
)


@pytest.fixture(scope="module")
def whole_body():
    return make_phantom(3, fov="whole_body")


def _block(shape, z: int, y: int, x: int, half: int = 2) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    mask[max(z - 1, 0) : z + 2, y - half : y + half + 1, x - half : x + half + 1] = True
    return mask


def _centre_of(mask: np.ndarray) -> tuple[int, int, int]:
    return tuple(round(c) for c in np.argwhere(mask).mean(axis=0))


@pytest.mark.slow
def test_below_the_thorax_is_removed_the_neck_kept(whole_body):
    ct, truth = whole_body.ct, np.asarray(whole_body.label.array)
    region = head_neck_region(ct)
    heights = region.slice_height_mm
    assert region.thorax_top_mm is not None
    tumour_bottom = heights[np.flatnonzero(truth.any(axis=(1, 2)))].min()
    assert tumour_bottom > region.thorax_top_mm + 50  # the oropharynx lies well above the lungs' full width
    body_centre = np.array(ct.shape[1:]) // 2
    pelvis = int(np.argmin(np.abs(heights - (region.thorax_top_mm - 400))))
    just_below = int(np.argmin(np.abs(heights - (region.thorax_top_mm - THORAX_MARGIN_MM / 2))))
    label = truth.copy()
    label[_block(ct.shape, pelvis, *body_centre)] = 1  # "GTVp" in the pelvis (the bladder's level)
    label[_block(ct.shape, pelvis + 5, *body_centre)] = 2
    label[_block(ct.shape, just_below, *body_centre)] = 2  # a low level-IV node: within the margin
    cleaned = np.asarray(remove_outside_head_neck(ct.with_array(label), ct).array)
    expected = truth.copy()
    expected[_block(ct.shape, just_below, *body_centre)] = 2
    np.testing.assert_array_equal(cleaned, expected)


@pytest.fixture(scope="module")
def brain_scan():
    return make_phantom(3, fov="brain")


@pytest.mark.slow
def test_inside_the_skull_is_removed(brain_scan):
    phantom = brain_scan
    ct, truth = phantom.ct, np.asarray(phantom.label.array)
    region = head_neck_region(ct)
    assert region.thorax_top_mm is None  # a brain scan starting in the neck: no thorax bound
    assert not region.intracranial[truth > 0].any()
    brain = region.intracranial & (np.arange(ct.shape[0])[:, None, None] > ct.shape[0] - 20)
    z, y, x = _centre_of(brain)
    label = truth.copy()
    label[_block(ct.shape, z, y, x, half=4)] = 1  # cortex or cerebellum taken for tumour
    cleaned = np.asarray(remove_outside_head_neck(ct.with_array(label), ct).array)
    np.testing.assert_array_equal(cleaned, truth)


@pytest.mark.slow
def test_brain_pockets_in_the_skull_base_are_intracranial(brain_scan):
    """Below the lowest slice with a large cranial cavity, the skull base holds small pockets of hot brain; they
    are intracranial down to INTRACRANIAL_REACH_MM, so a prediction there is removed; the tumours stay."""
    ct, truth = brain_scan.ct, np.asarray(brain_scan.label.array)
    region = head_neck_region(ct)
    area = region.intracranial.sum(axis=(1, 2)) * ct.spacing[0] * ct.spacing[1] / 100.0
    heights = region.slice_height_mm
    large = np.flatnonzero(area >= INTRACRANIAL_MIN_CM2)
    pockets = np.flatnonzero((area > 0) & (area < INTRACRANIAL_MIN_CM2) & (heights < heights[large].min()))
    assert pockets.size, "the skull base of this phantom holds brain below the large cranial cavity"
    assert heights[large].min() - heights[pockets].min() <= INTRACRANIAL_REACH_MM
    assert not region.intracranial[truth > 0].any()
    z = int(pockets.min())
    label = truth.copy()
    pocket = np.zeros(ct.shape, dtype=bool)
    pocket[z] = region.intracranial[z]
    label[pocket] = 1  # the lowest brain taken for tumour
    cleaned = np.asarray(remove_outside_head_neck(ct.with_array(label), ct).array)
    np.testing.assert_array_equal(cleaned, truth)


def test_without_landmarks_nothing_is_removed():
    phantom = make_phantom(7, fov="hecktor")  # a 144 mm crop below the skull base: neither lungs nor brain
    ct = phantom.ct
    region = head_neck_region(ct)
    assert region.thorax_top_mm is None and not region.intracranial.any()
    label = np.asarray(phantom.label.array).copy()
    label[_block(ct.shape, 2, 20, 20)] = 1
    label[_block(ct.shape, ct.shape[0] - 3, 100, 100)] = 2
    cleaned = np.asarray(remove_outside_head_neck(ct.with_array(label), ct).array)
    np.testing.assert_array_equal(cleaned, label)
    sagittal = Volume(np.asarray(ct.array), ct.spacing, direction=(0, 0, 1, 1, 0, 0, 0, 1, 0), modality="CT")
    assert head_neck_region(sagittal).slice_height_mm is None  # not axial: no height, no thorax bound


@pytest.mark.slow
def test_segment_volume_drops_what_lies_outside_by_default(whole_body):
    kept = segment_volume(whole_body.ct, whole_body.pet, device="cpu", threads=1, head_neck_only=False)
    cleaned = segment_volume(whole_body.ct, whole_body.pet, device="cpu", threads=1)
    kept, cleaned = np.asarray(kept.array), np.asarray(cleaned.array)
    assert np.all((cleaned == kept) | (cleaned == 0))  # only removals
    region = head_neck_region(whole_body.ct)
    low = region.slice_height_mm < region.thorax_top_mm - 100
    assert kept[low].any(), "the bundled model marks hot physiology below the thorax of this whole-body phantom"
    assert not cleaned[low].any()
    truth = np.asarray(whole_body.label.array) > 0
    assert (cleaned[truth] > 0).sum() == (kept[truth] > 0).sum()  # the tumour is untouched
