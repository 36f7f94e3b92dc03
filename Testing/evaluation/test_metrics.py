"""Per-case metrics: Dice, HD95, volumes and strata on label files written and read back with SimpleITK.

Expected values are worked out by hand in the comments; HD95 is also checked against a brute-force
all-pairs computation on random masks.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from DualDINOv3Lib.data import LABEL_MODALITY, Volume
from DualDINOv3Lib.errors import DataError
from DualDINOv3Lib.evaluation import (
    CONVENTIONS,
    dice_coefficient,
    evaluate_case,
    find_label_files,
    hd95_mm,
    read_label,
    stratum_of,
    surface_distances_mm,
)

IBSI = Path(__file__).resolve().parents[1] / "data" / "ibsi-sts-petct" / "STS_042_nifti"


def write_label(path: Path, array: np.ndarray, spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0)) -> Path:
    image = sitk.GetImageFromArray(np.asarray(array, dtype=np.uint8))
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    sitk.WriteImage(image, str(path))
    return path


def by_class(results):
    return {m.class_name: m for m in results}


# --- Dice and HD95 by hand ------------------------------------------------------------------------------


def test_shifted_cube_and_plate_on_anisotropic_grid(tmp_path):
    spacing = (0.8, 1.2, 3.0)  # x, y, z mm
    truth = np.zeros((12, 10, 10), np.uint8)
    pred = np.zeros_like(truth)
    truth[2:6, 2:6, 2:6] = 1  # GTVp: a 4x4x4 cube ...
    pred[3:7, 2:6, 2:6] = 1  # ... predicted one voxel (3 mm) higher in z
    truth[9, 2:7, 2:7] = 2  # GTVn: a one-voxel-thick 5x5 plate ...
    pred[9, 3:8, 2:7] = 2  # ... predicted one voxel (1.2 mm) along y
    t = read_label(write_label(tmp_path / "truth.nii.gz", truth, spacing))
    p = read_label(write_label(tmp_path / "pred.nii.gz", pred, spacing))
    gtvp, gtvn = by_class(evaluate_case(t, p, "A")).values()

    # cube: overlap 3 of 4 layers -> Dice 2*48/(64+64) = 0.75. Surfaces (56 voxels each): the truth's bottom
    # layer (16) is 3 mm from the prediction's bottom layer; the 4 inner voxels of the truth's top layer are
    # 0.8 mm (one x step) from the prediction's side face; the 36 side voxels lie on the prediction's side
    # faces (0 mm); the prediction is symmetric. Pooled: 72 x 0, 8 x 0.8, 32 x 3.0 -> 95th percentile 3.0 mm.
    assert gtvp.dice == pytest.approx(0.75, abs=1e-12)
    assert gtvp.hd95_mm == pytest.approx(3.0, abs=1e-5)
    values, counts = np.unique(np.round(surface_distances_mm(truth == 1, pred == 1, spacing), 4), return_counts=True)
    assert dict(zip(values.tolist(), counts.tolist(), strict=True)) == {0.0: 72, 0.8: 8, 3.0: 32}
    voxel_cm3 = 0.8 * 1.2 * 3.0 / 1000
    assert gtvp.truth_cm3 == pytest.approx(64 * voxel_cm3) and gtvp.pred_cm3 == pytest.approx(64 * voxel_cm3)
    assert gtvp.intersection_cm3 == pytest.approx(48 * voxel_cm3)
    assert gtvp.stratum == "small"

    # plate: 20 of 25 voxels overlap -> Dice 0.8; 5 voxels of each are 1.2 mm (one y step) from the other,
    # 40 of the 50 pooled distances are 0 -> 95th percentile 1.2 mm.
    assert gtvn.dice == pytest.approx(0.8, abs=1e-12)
    assert gtvn.hd95_mm == pytest.approx(1.2, abs=1e-5)
    assert (gtvn.case, gtvn.label) == ("A", 2)


def test_single_voxels_far_apart():
    spacing = (0.5, 2.0, 3.0)
    truth = np.zeros((5, 4, 8), bool)
    pred = np.zeros_like(truth)
    truth[1, 1, 1] = True
    pred[3, 2, 5] = True  # (dz, dy, dx) = (2, 1, 4) voxels = (6, 2, 2) mm
    assert dice_coefficient(truth, pred) == 0.0
    assert hd95_mm(truth, pred, spacing) == pytest.approx(math.sqrt(36 + 4 + 4), abs=1e-5)


def test_image_edge_counts_as_outside():
    # truth fills the whole 3x4x4 image, the prediction its two lower z layers. With the edge as outside,
    # the truth surface is 44 voxels (all but the 4 centre ones of z=1), the prediction's 32 (all).
    # truth z=2 (16 voxels) -> 2.5 mm to the prediction; prediction z=1 centre (4) -> 0.7 mm (x step) to the
    # truth's side face; the rest 0. Pooled 76: 56 x 0, 4 x 0.7, 16 x 2.5 -> HD95 = 2.5 mm.
    spacing = (0.7, 0.9, 2.5)
    truth = np.ones((3, 4, 4), bool)
    pred = truth.copy()
    pred[2] = False
    distances = np.round(surface_distances_mm(truth, pred, spacing), 4)
    values, counts = np.unique(distances, return_counts=True)
    assert dict(zip(values.tolist(), counts.tolist(), strict=True)) == {0.0: 56, 0.7: 4, 2.5: 16}
    assert hd95_mm(truth, pred, spacing) == pytest.approx(2.5, abs=1e-5)
    assert dice_coefficient(truth, pred) == pytest.approx(2 * 32 / (48 + 32))


def _brute_force_hd95(truth: np.ndarray, pred: np.ndarray, spacing) -> float:
    """All-pairs distances between surface voxel centres (face neighbours, image edge = outside)."""

    def surface_points(mask):
        padded = np.pad(mask, 1)
        points = []
        for z, y, x in zip(*np.nonzero(mask), strict=True):
            neighbours = [
                padded[z, y + 1, x + 1],
                padded[z + 2, y + 1, x + 1],
                padded[z + 1, y, x + 1],
                padded[z + 1, y + 2, x + 1],
                padded[z + 1, y + 1, x],
                padded[z + 1, y + 1, x + 2],
            ]
            if not all(neighbours):
                points.append((z, y, x))
        return np.asarray(points, float) * np.asarray(spacing[::-1])

    a, b = surface_points(truth), surface_points(pred)
    pairwise = np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))
    return float(np.percentile(np.concatenate([pairwise.min(axis=1), pairwise.min(axis=0)]), 95))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_hd95_equals_brute_force_on_random_masks(seed):
    rng = np.random.default_rng(seed)
    spacing = (0.7, 1.3, 2.9)
    truth = rng.random((9, 11, 13)) < 0.35
    pred = rng.random((9, 11, 13)) < 0.2
    pred[:3] = False  # make the two differ in extent, not only in texture
    assert hd95_mm(truth, pred, spacing) == pytest.approx(_brute_force_hd95(truth, pred, spacing), abs=1e-5)
    expected_dice = 2 * np.count_nonzero(truth & pred) / (truth.sum() + pred.sum())
    assert dice_coefficient(truth, pred) == pytest.approx(expected_dice, abs=1e-12)


# --- volumes, strata, empty masks ----------------------------------------------------------------------


def test_volume_in_cm3_with_anisotropic_spacing(tmp_path):
    truth = np.zeros((12, 22, 22), np.uint8)
    truth[1:11, 1:21, 1:21] = 1  # 10 x 20 x 20 = 4000 voxels of 0.5 x 1.5 x 2.0 = 1.5 mm3 -> 6.0 cm3
    truth[0, 0, 0:2] = 2  # 2 voxels -> 0.003 cm3
    path = write_label(tmp_path / "CASE.nii.gz", truth, spacing=(0.5, 1.5, 2.0))
    t = read_label(path)
    assert t.modality == LABEL_MODALITY and t.array.dtype == np.uint8
    gtvp, gtvn = by_class(evaluate_case(t, t, "CASE")).values()
    assert gtvp.truth_cm3 == pytest.approx(6.0, rel=1e-12) and gtvp.stratum == "medium"
    assert gtvn.truth_cm3 == pytest.approx(0.003, rel=1e-12) and gtvn.stratum == "small"
    assert gtvp.dice == 1.0 and gtvp.hd95_mm == 0.0


@pytest.mark.parametrize(
    ("volume", "stratum"),
    [(0.0, None), (1e-6, "small"), (4.99, "small"), (5.0, "medium"), (15.0, "medium"), (15.01, "large"), (80, "large")],
)
def test_strata_boundaries(volume, stratum):
    assert stratum_of(volume) == stratum


@pytest.mark.parametrize("bad", [-1.0, math.nan, math.inf])
def test_stratum_rejects_impossible_volumes(bad):
    with pytest.raises(ValueError, match="volume"):
        stratum_of(bad)


def test_empty_mask_conventions(tmp_path):
    truth = np.zeros((6, 6, 6), np.uint8)
    truth[1:4, 1:4, 1:4] = 1  # GTVp present in the truth, GTVn absent
    pred = np.zeros_like(truth)
    pred[2, 2, 2] = 2  # the prediction misses GTVp and has a GTVn the truth does not
    t = read_label(write_label(tmp_path / "t.nii.gz", truth))
    p = read_label(write_label(tmp_path / "p.nii.gz", pred))
    gtvp, gtvn = by_class(evaluate_case(t, p)).values()
    assert (gtvp.dice, gtvp.stratum, gtvp.pred_cm3) == (0.0, "small", 0.0) and math.isnan(gtvp.hd95_mm)
    assert not gtvp.false_positive and gtvp.truth_present
    assert (gtvn.dice, gtvn.stratum, gtvn.truth_cm3) == (0.0, None, 0.0) and math.isnan(gtvn.hd95_mm)
    assert gtvn.false_positive and gtvn.pred_cm3 == pytest.approx(0.001)

    # both empty for GTVn: Dice 1 by convention, no HD95, no stratum
    both_empty = by_class(evaluate_case(t, t))["GTVn"]
    assert (both_empty.dice, both_empty.stratum, both_empty.false_positive) == (1.0, None, False)
    assert math.isnan(both_empty.hd95_mm)
    assert "both empty -> Dice 1" in CONVENTIONS and "Dice 0" in CONVENTIONS


# --- grids and bad input -----------------------------------------------------------------------------


def test_prediction_on_coarser_grid_is_nearest_neighbour_resampled(tmp_path):
    coarse = np.zeros((6, 8, 8), np.uint8)
    coarse[1:4, 2:5, 3:6] = 1
    coarse[4, 5:7, 1:3] = 2
    # truth on a grid twice as fine in x and y: each coarse voxel (centre 2k + 0.5 mm) covers the fine
    # voxels 2k and 2k + 1 (centres 0.5 mm away), so the truth is the coarse mask repeated twice in x, y.
    fine = np.repeat(np.repeat(coarse, 2, axis=1), 2, axis=2)
    t = read_label(write_label(tmp_path / "t.nii.gz", fine, spacing=(1.0, 1.0, 2.0)))
    p = read_label(write_label(tmp_path / "p.nii.gz", coarse, spacing=(2.0, 2.0, 2.0), origin=(0.5, 0.5, 0.0)))
    assert not p.same_grid(t)
    for m in evaluate_case(t, p):
        assert m.dice == 1.0 and m.hd95_mm == 0.0
        assert m.pred_cm3 == pytest.approx(m.truth_cm3)
    # moved by one coarse voxel (2 mm) in x: GTVp overlaps in 4 of 6 fine x columns -> Dice 2/3; the end faces
    # lie 2 mm apart, and those 40 of the 184 pooled distances (the rest 0 or 1 mm) exceed 5% -> HD95 2 mm
    shifted = read_label(write_label(tmp_path / "s.nii.gz", coarse, spacing=(2.0, 2.0, 2.0), origin=(2.5, 0.5, 0.0)))
    gtvp = by_class(evaluate_case(t, shifted))["GTVp"]
    assert gtvp.dice == pytest.approx(2 / 3) and gtvp.hd95_mm == pytest.approx(2.0, abs=1e-5)


def test_prediction_far_from_truth_is_an_error(tmp_path):
    mask = np.zeros((4, 4, 4), np.uint8)
    mask[1, 1, 1] = 1
    t = read_label(write_label(tmp_path / "t.nii.gz", mask))
    p = read_label(write_label(tmp_path / "p.nii.gz", mask, origin=(500.0, 0.0, 0.0)))
    with pytest.raises(DataError, match="do not overlap"):
        evaluate_case(t, p, "X")


def test_bad_label_values_and_files(tmp_path):
    mask = np.zeros((4, 4, 4), np.uint8)
    mask[1, 1, 1] = 3
    t = read_label(write_label(tmp_path / "t.nii.gz", np.zeros((4, 4, 4))))  # an empty label is readable
    assert t.array.max() == 0
    with pytest.raises(DataError, match=r"case X: the prediction holds label values \[3\]"):
        evaluate_case(t, read_label(write_label(tmp_path / "p.nii.gz", mask)), "X")
    probabilities = sitk.GetImageFromArray(np.full((4, 4, 4), 0.4, np.float32))
    sitk.WriteImage(probabilities, str(tmp_path / "prob.nii.gz"))
    with pytest.raises(DataError, match="whole numbers"):
        read_label(tmp_path / "prob.nii.gz")
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((4, 4), np.uint8)), str(tmp_path / "flat.nii.gz"))
    with pytest.raises(DataError, match="3D scalar"):
        read_label(tmp_path / "flat.nii.gz")
    with pytest.raises(DataError, match="no such label file"):
        read_label(tmp_path / "missing.nii.gz")
    with pytest.raises(DataError, match="integer label volume"):
        evaluate_case(t, Volume(np.zeros((4, 4, 4), np.float32), (1, 1, 1)))


def test_real_ibsi_masks_on_different_grids():
    # the IBSI phantom's tumour drawn on CT (1 x 1 x 3.27 mm) and on PET (5.5 mm): the PET mask is
    # nearest-neighbour resampled onto the CT grid, compared with an independent SimpleITK resample.
    truth, pred = read_label(IBSI / "CT_mask.nii.gz"), read_label(IBSI / "PET_mask.nii.gz")
    gtvp = by_class(evaluate_case(truth, pred, "STS_042"))["GTVp"]
    ct_mask, pet_mask = sitk.ReadImage(str(IBSI / "CT_mask.nii.gz")), sitk.ReadImage(str(IBSI / "PET_mask.nii.gz"))
    resampled = sitk.GetArrayFromImage(sitk.Resample(pet_mask, ct_mask, sitk.Transform(), sitk.sitkNearestNeighbor))
    t, p = sitk.GetArrayFromImage(ct_mask) > 0, resampled > 0
    voxel_cm3 = np.prod(ct_mask.GetSpacing()) / 1000
    assert gtvp.truth_cm3 == pytest.approx(t.sum() * voxel_cm3) and gtvp.truth_cm3 > 15
    assert gtvp.stratum == "large"
    assert gtvp.pred_cm3 == pytest.approx(p.sum() * voxel_cm3)
    assert gtvp.dice == pytest.approx(2 * (t & p).sum() / (t.sum() + p.sum()), abs=1e-12)
    assert 0.5 < gtvp.dice < 1.0  # the same tumour, drawn on two resolutions
    assert 0 < gtvp.hd95_mm < 20


# --- finding label files ------------------------------------------------------------------------------


def test_find_label_files_in_hecktor_layout(tmp_path):
    mask = np.zeros((3, 3, 3), np.uint8)
    for case in ("CHUM-002", "CHUM-001"):
        write_label(tmp_path / f"{case}.nii.gz", mask)
        write_label(tmp_path / f"{case}__CT.nii.gz", mask)
        write_label(tmp_path / f"{case}__PT.nii.gz", mask)
    (tmp_path / ".hidden.nii.gz").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("not a label")
    found = find_label_files(tmp_path)
    assert list(found) == ["CHUM-001", "CHUM-002"]
    assert found["CHUM-001"].name == "CHUM-001.nii.gz"

    challenge = tmp_path / "challenge"
    (challenge / "labelsTr").mkdir(parents=True)
    write_label(challenge / "labelsTr" / "MDA-010.nii.gz", mask)
    assert list(find_label_files(challenge)) == ["MDA-010"]
    (challenge / "labelsTs").mkdir()
    write_label(challenge / "labelsTs" / "MDA-020.nii.gz", mask)
    assert list(find_label_files(challenge)) == ["MDA-010", "MDA-020"]

    write_label(tmp_path / "CHUM-001.nii", mask)
    with pytest.raises(DataError, match="two label files"):
        find_label_files(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no label files"):
        find_label_files(tmp_path / "empty")
    with pytest.raises(DataError, match="no such folder"):
        find_label_files(tmp_path / "absent")
