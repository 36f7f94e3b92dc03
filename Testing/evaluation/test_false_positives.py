"""False-positive components and the real-data report on constructed arrays, with every expected number worked
out by hand in the comments (``evaluation/false_positives.py``, ``evaluation/real_data.py``)."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest

from DualDINOv3Lib.data import LABEL_MODALITY, Volume
from DualDINOv3Lib.errors import DataError
from DualDINOv3Lib.evaluation import (
    evaluate_real_case,
    false_positive_components,
    real_cases_csv,
    real_summary_markdown,
    summarize_real,
)
from DualDINOv3Lib.evaluation.false_positives import NO_FALSE_POSITIVES, FalsePositives
from DualDINOv3Lib.evaluation.real_data import CSV_COLUMNS, RealCaseResult, case_line, summary_lines

SPACING = (0.5, 0.8, 3.0)  # x, y, z mm: one voxel is 1.2 mm3, 1000 voxels 1.2 cm3


def lesion_and_prediction() -> tuple[np.ndarray, np.ndarray]:
    truth = np.zeros((12, 40, 40), np.uint8)
    truth[2:6, 5:15, 5:15] = 1  # the lesion: 4 x 10 x 10 = 400 voxels
    pred = np.zeros_like(truth)
    pred[5:8, 14:20, 14:20] = 1  # overlaps the lesion in one corner (1 x 1 x 1 voxel), reaches far beyond it
    pred[8, 20, 20] = 2  # touches that component only by a corner (26-connected): part of it, not a false positive
    pred[1:6, 25:35, 25:35] = 1  # away from the lesion: 5 x 10 x 10 = 500 voxels = 0.6 cm3, a false positive
    pred[10, 30:32, 5:8] = 2  # a GTVn-labelled 1 x 2 x 3 = 6 voxels = 0.0072 cm3 elsewhere, a false positive too
    return truth, pred


def test_a_component_overlapping_the_lesion_is_not_false_positive_a_separate_one_is():
    truth, pred = lesion_and_prediction()
    fp = false_positive_components(pred, truth, SPACING)
    assert fp.components == 2
    assert fp.volume_cm3 == pytest.approx((500 + 6) * 1.2 / 1000)
    assert fp.largest_cm3 == pytest.approx(0.6)
    assert fp.largest_slice in range(1, 6)  # the 500-voxel block spans slices 1..5, all equally


def test_largest_slice_is_where_the_largest_component_is_widest():
    truth = np.zeros((10, 20, 20), np.uint8)
    pred = np.zeros_like(truth)
    pred[2:5, 2:4, 2:4] = 1  # 12 voxels
    pred[6, 10:18, 10:18] = 1  # the largest: 64 voxels on slice 6 ...
    pred[7, 12:14, 12:14] = 1  # ... and 4 more on slice 7
    fp = false_positive_components(pred, truth, (1.0, 1.0, 1.0))
    assert (fp.components, fp.largest_slice) == (2, 6)
    assert fp.largest_cm3 == pytest.approx(0.068) and fp.volume_cm3 == pytest.approx(0.080)


def test_connectivity_is_26_and_labels_merge():
    truth = np.zeros((6, 10, 10), np.uint8)
    truth[1, 1, 1] = 1
    pred = np.zeros_like(truth)
    pred[1, 1, 1] = 1  # on the lesion
    pred[2, 2, 2] = 2  # corner neighbour of it: the same component even though labelled GTVn
    pred[3, 3, 3] = 1  # and again a corner neighbour
    assert false_positive_components(pred, truth, (1, 1, 1)) == NO_FALSE_POSITIVES
    pred[1, 1, 1] = 0  # the chain no longer reaches the lesion: 2 voxels, one component
    fp = false_positive_components(pred, truth, (2.0, 2.0, 2.0))
    assert (fp.components, fp.volume_cm3) == (1, pytest.approx(2 * 8 / 1000))


def test_a_component_beside_the_lesion_sharing_no_voxel_is_a_false_positive():
    truth = np.zeros((4, 10, 10), np.uint8)
    truth[1:3, 2:5, 2:5] = 1
    pred = np.zeros_like(truth)
    pred[1:3, 2:5, 5:7] = 1  # face to face with the lesion, no common voxel: 2 x 3 x 2 = 12 voxels
    fp = false_positive_components(pred, truth, (1.0, 1.0, 1.0))
    assert (fp.components, fp.volume_cm3) == (1, pytest.approx(0.012))


def test_empty_prediction_and_bad_input():
    truth = np.ones((3, 4, 4), np.uint8)
    assert false_positive_components(np.zeros_like(truth), truth, (1, 1, 1)) == NO_FALSE_POSITIVES
    every = false_positive_components(np.ones_like(truth), np.zeros_like(truth), (1, 1, 2))  # empty truth
    assert (every.components, every.volume_cm3) == (1, pytest.approx(48 * 2 / 1000))
    with pytest.raises(DataError, match="same grid"):
        false_positive_components(np.zeros((3, 4, 5)), truth, (1, 1, 1))
    with pytest.raises(DataError, match="spacing"):
        false_positive_components(truth, truth, (1, 0, 1))


def _volume(array: np.ndarray) -> Volume:
    return Volume(array, SPACING, origin=(1.0, 2.0, 3.0), modality=LABEL_MODALITY)


def test_evaluate_real_case_dice_of_any_label_and_per_class_only_with_classes():
    truth, pred = lesion_and_prediction()
    result = evaluate_real_case("A", _volume(truth), _volume(pred), classes=False)
    t, p = truth > 0, pred > 0
    assert result.dice_any == pytest.approx(2 * (t & p).sum() / (t.sum() + p.sum()))
    assert result.dice_gtvp is None and result.dice_gtvn is None
    assert result.truth_cm3 == pytest.approx(400 * 1.2 / 1000)
    assert result.pred_cm3 == pytest.approx(p.sum() * 1.2 / 1000)
    assert result.pred_gtvn_cm3 == pytest.approx(7 * 1.2 / 1000)  # the corner voxel and the 6-voxel block
    assert result.pred_gtvp_cm3 + result.pred_gtvn_cm3 == pytest.approx(result.pred_cm3)
    assert result.false_positives.components == 2
    with_classes = evaluate_real_case("A", _volume(truth), _volume(pred), classes=True)
    assert with_classes.dice_gtvp == pytest.approx(2 / (400 + (pred == 1).sum()))  # 1 common GTVp voxel
    assert with_classes.dice_gtvn == 0.0  # no GTVn in the truth, 7 voxels predicted
    moved = Volume(pred, SPACING, origin=(1.0, 2.0, 4.0), modality=LABEL_MODALITY)
    with pytest.raises(DataError, match="not on the truth's grid"):
        evaluate_real_case("A", _volume(truth), moved, classes=False)


def _result(case: str, fp_cm3: float, dice: float) -> RealCaseResult:
    fp = FalsePositives(fp_cm3, 1 if fp_cm3 else 0, fp_cm3, 3 if fp_cm3 else None)
    return RealCaseResult(case, dice, None, None, 10.0, 8.0 + fp_cm3, 8.0 + fp_cm3, 0.0, fp)


def test_summary_median_max_and_cases_above_the_limit():
    results = [_result("a", 0.0, 0.5), _result("b", 0.4, 0.7), _result("c", 6.0, 0.1), _result("d", 5.0, 0.9)]
    summary = summarize_real(results)
    assert summary.median_fp_cm3 == pytest.approx(2.7)  # (0.4 + 5.0) / 2
    assert (summary.max_fp_cm3, summary.max_fp_case) == (6.0, "c")
    assert summary.above_limit == ("c",)  # 5.0 is not above 5 cm3
    assert summary.median_dice_any == pytest.approx(0.6)
    assert not summary.targets_met
    assert summarize_real(results[:2]).targets_met  # median 0.2, none above 5
    assert not summarize_real(results[:3]).targets_met  # median 0.4 but one case above 5
    assert "NOT met" in summary_lines(summary)[1]
    with pytest.raises(DataError, match="no case"):
        summarize_real([])


def test_csv_markdown_and_terminal_lines_carry_the_same_numbers():
    truth, pred = lesion_and_prediction()
    results = [
        evaluate_real_case("lesion-only", _volume(truth), _volume(np.where(truth > 0, 1, 0)), classes=True),
        evaluate_real_case("with-fp", _volume(truth), _volume(pred), classes=False),
    ]
    rows = list(csv.DictReader(io.StringIO(real_cases_csv(results))))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert rows[0]["dice_any"] == "1.0000" and rows[0]["dice_GTVp"] == "1.0000" and rows[0]["fp_components"] == "0"
    assert rows[0]["largest_fp_slice"] == ""
    assert rows[1]["dice_GTVp"] == "" and float(rows[1]["fp_cm3"]) == pytest.approx(0.6072, abs=1e-3)
    assert int(rows[1]["fp_components"]) == 2 and float(rows[1]["largest_fp_cm3"]) == pytest.approx(0.6)
    assert case_line(results[1]) == (
        f"with-fp: Dice {results[1].dice_any:.3f}, FP 0.61 cm3 in 2 components (largest 0.60 cm3)"
    )
    assert case_line(results[0]).startswith("lesion-only: Dice 1.000 (GTVp 1.000, GTVn 1.000), FP 0.00 cm3 in 0")
    text = real_summary_markdown(results, summarize_real(results), title="T", details=["model: m"])
    assert text.startswith("# T\n\n- model: m\n")
    assert "| with-fp | " in text and "| 0.61 | 2 | 0.60 |" in text and "| – | – |" in text
    assert "median 0.30 cm3" in text  # (0 + 0.607) / 2
