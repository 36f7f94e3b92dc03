"""Folders of real cases with truth masks (``data/case_folders.py``): the HECKTOR layout, image/mask pairs with
IBSI and other names, the errors that name the folder and what was expected, and masks on the PET grid."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from DualDINOv3Lib.data import find_masked_cases, read_masked_case
from DualDINOv3Lib.data.case_folders import HECKTOR, PAIRS, name_words, pair_case
from DualDINOv3Lib.errors import DataError

IBSI = Path(__file__).resolve().parent / "ibsi-sts-petct"


def write(path: Path, array, spacing=(2.0, 2.0, 3.0), origin=(0.0, 0.0, 0.0)) -> Path:
    image = sitk.GetImageFromArray(np.asarray(array))
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path))
    return path


def ct_pet_mask(shape=(6, 16, 16)):
    ct = np.full(shape, -1000.0, np.float32)
    ct[:, 3:13, 3:13] = 40.0
    pet = np.where(ct > -500, 1.0, 0.0).astype(np.float32)
    pet[2:4, 6:9, 6:9] = 8.0
    mask = np.zeros(shape, np.uint8)
    mask[2:4, 6:9, 6:9] = 1
    return ct, pet, mask


def write_pair_case(folder: Path, names=("CT_image", "PET_image", "CT_mask"), suffix=".nii.gz", mask=None) -> Path:
    ct, pet, default_mask = ct_pet_mask()
    for name, array in zip(names, (ct, pet, default_mask if mask is None else mask), strict=True):
        write(folder / f"{name}{suffix}", array)
    return folder


def test_name_words_split_at_separators_and_digits():
    assert name_words("CT_image.nii.gz") == {"ct", "image"}
    assert name_words("patient-12_PET2.nrrd") == {"patient", "12", "pet", "2"}
    assert name_words("seg.mha") == {"seg"}
    assert "ct" not in name_words("ctres.nii.gz") and "pet" not in name_words("petct.nii")


def test_pairs_layout_with_ibsi_names_prefers_the_ct_mask(tmp_path):
    for case in ("STS_2", "STS_1"):
        write_pair_case(tmp_path / case)
        write(tmp_path / case / "PET_mask.nii.gz", np.zeros((3, 4, 4), np.uint8), spacing=(5.0, 5.0, 3.0))
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "README.txt").write_text("not a case")
    (tmp_path / "LICENSE.md").write_text("a file beside the cases is not a case")
    found = find_masked_cases(tmp_path)
    assert found.layout == PAIRS
    assert [c.case_id for c in found.cases] == ["STS_1", "STS_2"]
    assert found.cases[0].mask.name == "CT_mask.nii.gz" and found.cases[0].ct.name == "CT_image.nii.gz"
    assert found.cases[0].pet.name == "PET_image.nii.gz"
    assert len(found.skipped) == 1 and found.skipped[0].startswith("notes (no ")


def test_pairs_layout_with_other_names_and_a_folder_that_is_one_case(tmp_path):
    write_pair_case(tmp_path / "p7", names=("p7_ct", "p7_suv", "p7_seg"), suffix=".nrrd")
    case = pair_case(tmp_path / "p7")
    assert (case.ct.name, case.pet.name, case.mask.name) == ("p7_ct.nrrd", "p7_suv.nrrd", "p7_seg.nrrd")
    write_pair_case(tmp_path / "one", names=("ct", "pt", "label"), suffix=".mha")
    alone = find_masked_cases(tmp_path / "one")
    assert [c.case_id for c in alone.cases] == ["one"] and alone.cases[0].pet.name == "pt.mha"


def test_pairs_errors_name_the_folder_and_what_was_expected(tmp_path):
    write_pair_case(tmp_path / "no_mask", names=("CT_image", "PET_image", "dose"))
    with pytest.raises(DataError, match=r"no_mask: no truth mask found among .*dose.*'mask', 'label'"):
        pair_case(tmp_path / "no_mask")
    write_pair_case(tmp_path / "two_ct", names=("CT_image", "PET_image", "mask"))
    write(tmp_path / "two_ct" / "ct_contrast.nii.gz", np.zeros((2, 2, 2), np.float32))
    with pytest.raises(DataError, match=r"two_ct: several files could be the CT image: CT_image.nii.gz, ct_contrast"):
        pair_case(tmp_path / "two_ct")
    write_pair_case(tmp_path / "two_masks", names=("CT_image", "PET_image", "mask_a"))
    write(tmp_path / "two_masks" / "mask_b.nii.gz", np.zeros((2, 2, 2), np.uint8))
    with pytest.raises(DataError, match=r"several files could be the truth mask: mask_a\.nii\.gz, mask_b\.nii\.gz"):
        pair_case(tmp_path / "two_masks")
    with pytest.raises(DataError, match=r"3 of 3 case folders cannot be used: .*no_mask.*two_ct.*two_masks"):
        find_masked_cases(tmp_path)  # every bad folder named at once, before anything is read
    write_pair_case(tmp_path / "no_pet", names=("CT_image", "image2", "mask"))
    with pytest.raises(DataError, match=r"no_pet: no PET image found .*'pet', 'pt' or 'suv'"):
        pair_case(tmp_path / "no_pet")


def test_folders_without_cases_are_refused(tmp_path):
    with pytest.raises(DataError, match="no such folder"):
        find_masked_cases(tmp_path / "missing")
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(DataError, match="is a file"):
        find_masked_cases(tmp_path / "file.txt")
    (tmp_path / "dicom" / "CT").mkdir(parents=True)
    with pytest.raises(DataError, match=r"no case found \(it holds dicom, file.txt\); expected one subfolder per case"):
        find_masked_cases(tmp_path)
    write_pair_case(tmp_path / "case1")
    write(tmp_path / "stray_ct.nii.gz", np.zeros((2, 2, 2), np.float32))
    with pytest.raises(DataError, match="holds image files itself and case subfolders"):
        find_masked_cases(tmp_path)


def test_hecktor_layout_needs_labels(tmp_path):
    ct, pet, mask = ct_pet_mask()
    for case in ("CHUP-002", "CHUP-001"):
        write(tmp_path / f"{case}__CT.nii.gz", ct)
        write(tmp_path / f"{case}__PT.nii.gz", pet)
        write(tmp_path / f"{case}.nii.gz", mask * 2)  # GTVn
    found = find_masked_cases(tmp_path)
    assert found.layout == HECKTOR and [c.case_id for c in found.cases] == ["CHUP-001", "CHUP-002"]
    volumes = read_masked_case(found.cases[0])
    assert volumes.classes and set(np.unique(volumes.truth.array)) == {0, 2}
    (tmp_path / "CHUP-002.nii.gz").unlink()
    with pytest.raises(DataError, match=r"1 of 2 case.* have no label"):
        find_masked_cases(tmp_path)


def test_mask_values_lesion_or_hecktor_classes(tmp_path):
    _, _, mask = ct_pet_mask()
    binary = read_masked_case(pair_case(write_pair_case(tmp_path / "b", mask=mask * 255)))
    assert not binary.classes and set(np.unique(binary.truth.array)) == {0, 1}
    ones = read_masked_case(pair_case(write_pair_case(tmp_path / "o", mask=mask)))
    assert not ones.classes  # 0/1 alone: one lesion, no class claimed
    classes = mask.copy()
    classes[3, 6:9, 6:9] = 2
    hecktor = read_masked_case(pair_case(write_pair_case(tmp_path / "h", mask=classes)))
    assert hecktor.classes and set(np.unique(hecktor.truth.array)) == {0, 1, 2}
    assert hecktor.truth.same_grid(hecktor.ct)
    empty = read_masked_case(pair_case(write_pair_case(tmp_path / "e", mask=mask * 0)))
    assert not empty.truth.array.any() and "empty" in empty.notes[0]


def test_real_ibsi_mask_on_the_pet_grid_is_put_on_the_ct_grid(tmp_path):
    source = IBSI / "STS_042_nifti"
    for name in ("CT_image", "PET_image", "PET_mask"):  # no CT_mask: the PET's 5.5 mm mask must be used
        shutil.copy(source / f"{name}.nii.gz", tmp_path / f"{name}.nii.gz")
    case = pair_case(tmp_path)
    assert case.mask.name == "PET_mask.nii.gz"
    volumes = read_masked_case(case)
    assert volumes.truth.same_grid(volumes.ct) and volumes.pet.shape != volumes.ct.shape
    assert "resampled (nearest) onto the CT grid" in volumes.notes[0]
    ct_mask = sitk.GetArrayFromImage(sitk.ReadImage(str(source / "CT_mask.nii.gz"))) > 0
    on_ct = np.asarray(volumes.truth.array) > 0
    assert 0.7 < 2 * (ct_mask & on_ct).sum() / (ct_mask.sum() + on_ct.sum()) < 1.0  # one tumour, two resolutions
    far = tmp_path / "far"
    far.mkdir()
    for name in ("CT_image", "PET_image"):
        shutil.copy(source / f"{name}.nii.gz", far / f"{name}.nii.gz")
    write(far / "mask.nii.gz", np.ones((2, 2, 2), np.uint8), origin=(5000.0, 0.0, 0.0))
    with pytest.raises(DataError, match="do not overlap physically"):
        read_masked_case(pair_case(far))
