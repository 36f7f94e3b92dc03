"""Lesion-wise detection (``evaluation/lesions.py``): lesions found and missed, false-positive regions, with
the counts and volumes worked out by hand; and through ``evaluate_case`` on label files read back."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from DualDINOv3Lib.evaluation import LesionCounts, evaluate_case, false_positive_components, lesion_counts, read_label


def test_found_missed_and_false_positive_regions_by_hand():
    truth = np.zeros((10, 12, 12), bool)
    truth[1:3, 1:3, 1:3] = True  # lesion A: 8 voxels
    truth[3, 3, 3] = True  # touches A only by a corner: still lesion A (26-connected), 9 voxels in all
    truth[6:9, 6:9, 6:9] = True  # lesion B: 27 voxels
    pred = np.zeros_like(truth)
    pred[3, 3, 3:6] = True  # touches A by one voxel and runs on beyond it: found, not a false positive
    pred[0, 10:12, 10:12] = True  # a 4-voxel region far from both: a false positive
    pred[9, 0, 0] = True  # and a 1-voxel one
    counts = lesion_counts(truth, pred, voxel_cm3=0.5)
    assert counts == LesionCounts(
        truth_lesions=2, detected_lesions=1, missed_cm3=27 * 0.5, false_positive_regions=2, false_positive_cm3=2.5
    )
    assert counts.missed_lesions == 1
    # the real-data false-positive definition is the same rule on all tumour labels: the same two regions
    fp = false_positive_components(pred.astype(np.uint8), truth, (1.0, 1.0, 1.0))
    assert (fp.components, fp.volume_cm3) == (2, pytest.approx(0.005))


def test_empty_masks_and_sums():
    empty = np.zeros((4, 4, 4), bool)
    assert lesion_counts(empty, empty, 1.0) == LesionCounts()
    only_truth = empty.copy()
    only_truth[1, 1, 1] = True
    assert lesion_counts(only_truth, empty, 2.0) == LesionCounts(1, 0, 2.0, 0, 0.0)
    assert lesion_counts(empty, only_truth, 2.0) == LesionCounts(0, 0, 0.0, 1, 2.0)
    total = LesionCounts(1, 0, 2.0, 0, 0.0) + LesionCounts(2, 2, 0.0, 3, 1.5)
    assert total == LesionCounts(3, 2, 2.0, 3, 1.5) and total.missed_lesions == 1
    with pytest.raises(ValueError, match="same grid"):
        lesion_counts(empty, empty[:3], 1.0)


def test_a_node_called_primary_is_missed_as_node_and_false_as_primary(tmp_path):
    truth = np.zeros((8, 16, 16), np.uint8)
    truth[2:5, 2:6, 2:6] = 1  # the primary, found
    truth[2:5, 10:13, 10:13] = 2  # a node ...
    pred = truth.copy()
    pred[pred == 2] = 1  # ... predicted as primary
    files = {}
    for name, array in (("truth", truth), ("pred", pred)):
        image = sitk.GetImageFromArray(array)
        image.SetSpacing((2.0, 2.0, 5.0))  # 20 mm3 voxels
        sitk.WriteImage(image, str(tmp_path / f"{name}.nii.gz"))
        files[name] = read_label(tmp_path / f"{name}.nii.gz")
    gtvp, gtvn = evaluate_case(files["truth"], files["pred"], "X")
    assert gtvp.lesions == LesionCounts(1, 1, 0.0, 1, 27 * 0.02)
    assert gtvn.lesions == LesionCounts(1, 0, 27 * 0.02, 0, 0.0)
