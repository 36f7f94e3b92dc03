"""Images in and out: reading NIfTI/DICOM into Volume, bad inputs, writing back, PET-to-CT resampling.

Real data: the IBSI soft-tissue-sarcoma PET/CT phantom STS_042 (CC BY 3.0, see Testing/data/README.md),
available both as DICOM series and as NIfTI, cropped around the tumour, with its tumour masks in NIfTI.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from DualDINOv3Lib.data import LABEL_MODALITY, Volume, read_volume, resample_pet_to_ct, resample_to_grid, write_volume
from DualDINOv3Lib.errors import DataError, DualDINOv3Error, OutputExistsError

CASE = Path(__file__).resolve().parent / "ibsi-sts-petct"
DICOM = CASE / "STS_042_dicom"
NIFTI = CASE / "STS_042_nifti"
GEOMETRY_TOL_MM = 1e-3


@pytest.fixture(scope="module")
def case() -> dict[str, Volume]:
    return {
        "ct_dicom": read_volume(DICOM / "CT" / "image"),
        "pet_dicom": read_volume(DICOM / "PET" / "image"),
        "ct": read_volume(NIFTI / "CT_image.nii.gz", modality="CT"),
        "pet": read_volume(NIFTI / "PET_image.nii.gz", modality="PT"),
    }


def assert_same_geometry(a: Volume, b: Volume, tol: float = GEOMETRY_TOL_MM) -> None:
    assert a.shape == b.shape
    np.testing.assert_allclose(a.spacing, b.spacing, rtol=0, atol=tol)
    np.testing.assert_allclose(a.origin, b.origin, rtol=0, atol=tol)
    np.testing.assert_allclose(a.direction, b.direction, rtol=0, atol=tol)
    assert a.same_grid(b, tol)


# --- (a) DICOM and NIfTI copies of the IBSI case agree ----------------------------------------------------


def test_ct_dicom_and_nifti_are_the_same_volume(case):
    dicom, nifti = case["ct_dicom"], case["ct"]
    assert dicom.array.dtype == np.float32 and nifti.array.dtype == np.float32
    assert dicom.modality == "CT" and dicom.units == "HU"
    assert_same_geometry(dicom, nifti)
    np.testing.assert_array_equal(dicom.array, nifti.array)  # HU, exactly (integers after rescale)
    assert dicom.array.min() == -1000.0


def test_pet_dicom_and_nifti_are_the_same_volume(case):
    dicom, nifti = case["pet_dicom"], case["pet"]
    # this phantom's DICOM PET is already in SUV: Units (0054,1001) = GML; SUV conversion of
    # Bq/ml series (from the patient weight and injected dose) comes in a later increment
    assert dicom.modality == "PT" and dicom.units == "SUV"
    assert_same_geometry(dicom, nifti)
    # the ratio is one constant (1) wherever there is activity, and both are zero at the same voxels
    active = nifti.array != 0
    np.testing.assert_array_equal(dicom.array == 0, ~active)
    ratio = dicom.array[active].astype(np.float64) / nifti.array[active]
    np.testing.assert_allclose(ratio, 1.0, rtol=1e-5)
    np.testing.assert_allclose(dicom.array, nifti.array, rtol=1e-6, atol=1e-6)


def test_dicom_folder_with_several_series_reads_the_largest_or_refuses_a_tie(tmp_path, caplog):
    for modality in ("CT", "PET"):
        for f in (DICOM / modality / "image").glob("*.dcm"):
            shutil.copy(f, tmp_path / f"{modality}_{f.name}")
    shutil.copy(DICOM / "CT" / "mask" / "RS.dcm", tmp_path / "RS.dcm")  # an RTSTRUCT: not an image series
    with pytest.raises(DataError, match="ambiguous") as excinfo:
        read_volume(tmp_path)
    assert "1.3.6.1.4.1.14519.5.2.1.5168.1900.423719235554522783661949243966" in str(excinfo.value)
    for f in sorted(tmp_path.glob("PET_*.dcm"))[:5]:
        f.unlink()
    with caplog.at_level("WARNING"):
        volume = read_volume(tmp_path)
    assert volume.modality == "CT" and volume.shape == (49, 162, 134)
    assert "reading the largest" in caplog.text


def test_folder_with_only_an_rtstruct_is_refused():
    with pytest.raises(DataError, match="not image slices"):
        read_volume(DICOM / "CT" / "mask")


# --- (b) PET onto the CT grid --------------------------------------------------------------------------


def _max_point(volume: Volume, mask: np.ndarray) -> tuple[np.ndarray, float]:
    """Physical position (x, y, z) mm and value of the highest voxel inside mask."""
    values = np.where(mask, volume.array, -np.inf)
    z, y, x = np.unravel_index(np.argmax(values), values.shape)
    return volume.index_to_physical((x, y, z)), float(volume.array[z, y, x])


def test_pet_resampled_onto_ct_keeps_the_tumour_suv_max(case):
    ct, pet = case["ct"], case["pet"]
    pet_mask = read_volume_mask(NIFTI / "PET_mask.nii.gz")
    ct_mask = read_volume_mask(NIFTI / "CT_mask.nii.gz")
    assert pet_mask.same_grid(pet) and ct_mask.same_grid(ct)

    resampled = resample_pet_to_ct(pet, ct)
    assert resampled.spacing == ct.spacing and resampled.origin == ct.origin and resampled.direction == ct.direction
    assert resampled.shape == ct.shape and resampled.array.dtype == np.float32
    assert resampled.modality == "PT"

    where_before, suv_max_before = _max_point(pet, pet_mask.array > 0)
    where_after, suv_max_after = _max_point(resampled, ct_mask.array > 0)
    assert np.all(np.abs(where_after - where_before) <= np.asarray(pet.spacing)), (where_before, where_after)
    assert suv_max_after == pytest.approx(suv_max_before, rel=0.05)
    assert resampled.array.max() <= pet.array.max() * (1 + 1e-6)  # linear interpolation cannot overshoot


def read_volume_mask(path: Path) -> Volume:
    image = sitk.ReadImage(str(path))
    return Volume.from_sitk(image, modality=LABEL_MODALITY)


def test_resample_to_its_own_grid_is_the_identity(case):
    pet = case["pet"]
    for interpolation in ("linear", "nearest", "bspline"):
        same = resample_to_grid(pet, pet, interpolation=interpolation)
        np.testing.assert_allclose(same.array, pet.array, atol=1e-4)
    with pytest.raises(ValueError, match="unknown interpolation"):
        resample_to_grid(pet, pet, interpolation="cubic")


def test_labels_resampled_with_nearest_keep_their_type(case):
    mask = read_volume_mask(NIFTI / "PET_mask.nii.gz")
    on_ct = resample_to_grid(mask, case["ct"], interpolation="nearest")
    assert on_ct.array.dtype == np.uint8 and set(np.unique(on_ct.array)) == {0, 1}
    assert on_ct.modality == LABEL_MODALITY and on_ct.same_grid(case["ct"], 0.0)


# --- (e) no physical overlap ---------------------------------------------------------------------------


def test_non_overlapping_pet_and_ct_are_refused(case):
    pet, ct = case["pet"], case["ct"]
    shifted = dataclasses.replace(pet, origin=(pet.origin[0] + 1000.0, pet.origin[1], pet.origin[2]))
    with pytest.raises(DataError, match="overlap") as excinfo:
        resample_pet_to_ct(shifted, ct)
    message = str(excinfo.value)
    assert "PET spans x[" in message and "CT spans x[" in message and "same study" in message


# --- (c) bad inputs ------------------------------------------------------------------------------------


def _write(image: sitk.Image, path: Path) -> Path:
    sitk.WriteImage(image, str(path))
    return path


def _random(shape, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).random(shape).astype(np.float32)


def bad_inputs(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """name -> (path, a phrase the error message must contain).

    NaN voxels are written as NRRD: ITK's NIfTI reader already turns NaN into 0.
    """
    nan = _random((4, 5, 6))
    nan[1, 2, 3] = np.nan
    inf = _random((4, 5, 6))
    inf[0, 0, 0] = np.inf
    frames = [sitk.GetImageFromArray(_random((3, 4, 5), seed)) for seed in range(2)]
    text = tmp_path / "notes.nii.gz"
    text.write_text("this is not an image\n")
    (tmp_path / "empty").mkdir()
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "readme.txt").write_text("no DICOM here\n")
    return {
        "missing": (tmp_path / "missing.nii.gz", "no such file"),
        "2d": (_write(sitk.GetImageFromArray(_random((8, 9))), tmp_path / "slice.nii.gz"), "2D image"),
        "4d": (_write(sitk.JoinSeries(frames), tmp_path / "series.nii.gz"), "4D image"),
        "vector": (
            _write(sitk.GetImageFromArray(np.zeros((3, 4, 5, 3), np.uint8) + 7, isVector=True), tmp_path / "rgb.nrrd"),
            "multi-component",
        ),
        "constant": (
            _write(sitk.GetImageFromArray(np.full((3, 4, 5), 2.5, np.float32)), tmp_path / "c.mha"),
            "constant",
        ),
        "nan": (_write(sitk.GetImageFromArray(nan), tmp_path / "nan.nrrd"), "NaN or infinite"),
        "inf": (_write(sitk.GetImageFromArray(inf), tmp_path / "inf.mha"), "NaN or infinite"),
        "text": (text, "cannot be read as an image"),
        "empty_folder": (tmp_path / "empty", "no DICOM files found"),
        "folder_without_dicom": (tmp_path / "other", "no DICOM files found"),
    }


def test_every_bad_input_raises_a_data_error_naming_the_problem(tmp_path):
    for name, (path, phrase) in bad_inputs(tmp_path).items():
        with pytest.raises(DataError) as excinfo:
            read_volume(path)
        message = str(excinfo.value)
        assert phrase in message, (name, message)
        assert str(path) in message, (name, message)
        assert isinstance(excinfo.value, (DualDINOv3Error, ValueError))


def test_empty_image_is_refused(tmp_path):
    path = tmp_path / "empty.mha"
    path.write_text(
        "ObjectType = Image\nNDims = 3\nDimSize = 4 5 0\nElementType = MET_FLOAT\nElementDataFile = LOCAL\n"
    )
    with pytest.raises(DataError, match="empty image"):
        read_volume(path)


# --- (d) writing ---------------------------------------------------------------------------------------


def test_label_volume_round_trip_keeps_geometry_and_values(case, tmp_path):
    ct = case["ct"]
    labels = ct.with_array((ct.array > 0).astype(np.int64) * 2, modality=LABEL_MODALITY)
    for name in ("labels.nrrd", "labels.nii.gz", "labels.mha"):
        path = write_volume(labels, tmp_path / name)
        image = sitk.ReadImage(str(path))
        assert image.GetPixelID() == sitk.sitkUInt8, name
        back = Volume.from_sitk(image)
        assert_same_geometry(back, ct)
        np.testing.assert_array_equal(back.array, labels.array)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels.mha", "labels.nii.gz", "labels.nrrd"]  # no temp files
    boolean = write_volume(ct.with_array(ct.array > 0), tmp_path / "bool.nrrd")
    assert sitk.ReadImage(str(boolean)).GetPixelID() == sitk.sitkUInt8


def test_rgb_volume_round_trip_keeps_geometry_and_values(case, tmp_path):
    ct = case["ct"]
    rgb = np.random.default_rng(0).integers(0, 256, (*ct.shape, 3), dtype=np.uint8)
    path = write_volume(ct.with_array(rgb), tmp_path / "features.nrrd")
    image = sitk.ReadImage(str(path))
    assert image.GetNumberOfComponentsPerPixel() == 3 and image.GetPixelID() == sitk.sitkVectorUInt8
    back = Volume.from_sitk(image)
    assert back.is_vector and back.spacing == ct.spacing and back.origin == ct.origin
    np.testing.assert_array_equal(back.array, rgb)


def test_write_refuses_to_overwrite_unless_asked(case, tmp_path):
    ct = case["ct"]
    path = write_volume(ct.with_array(np.zeros(ct.shape, np.uint8), modality=LABEL_MODALITY), tmp_path / "out.nrrd")
    before = path.read_bytes()
    ones = ct.with_array(np.ones(ct.shape, np.uint8), modality=LABEL_MODALITY)
    with pytest.raises(OutputExistsError, match="overwrite=True"):
        write_volume(ones, path)
    assert path.read_bytes() == before
    write_volume(ones, path, overwrite=True)
    assert sitk.GetArrayFromImage(sitk.ReadImage(str(path))).min() == 1
    assert [p.name for p in tmp_path.iterdir()] == ["out.nrrd"]


def test_write_refuses_bad_labels_and_formats(case, tmp_path):
    ct = case["ct"]
    with pytest.raises(DataError, match=r"0\.\.255"):
        write_volume(ct.with_array(np.full(ct.shape, 300), modality=LABEL_MODALITY), tmp_path / "a.nrrd")
    with pytest.raises(DataError, match=r"cannot write '\.mhd'"):
        write_volume(ct, tmp_path / "a.mhd")
    with pytest.raises(DataError, match="does not exist"):
        write_volume(ct, tmp_path / "no" / "a.nrrd")
    assert list(tmp_path.iterdir()) == []


# --- Volume itself -------------------------------------------------------------------------------------


def test_volume_is_immutable_and_keeps_its_geometry(case):
    ct = case["ct"]
    with pytest.raises(ValueError):
        ct.array[0, 0, 0] = 1.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        ct.origin = (0.0, 0.0, 0.0)
    with pytest.raises(DataError, match="does not fit"):
        ct.with_array(np.zeros((2, 3, 4), np.float32))
    assert Volume.from_sitk(ct.to_sitk(), units="HU").same_grid(ct, 0.0)
    with pytest.raises(DataError, match="3D image"):
        Volume.from_sitk(sitk.Image(4, 5, sitk.sitkFloat32))
