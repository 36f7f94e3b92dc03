"""Synthetic head-and-neck PET/CT phantoms: determinism, anatomy in HU and SUV, labels that match the PET
and CT signal, GTVp strata, the PET's own grid, and HECKTOR-layout folders written and read back."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import SimpleITK as sitk

from DualDINOv3Lib.data import LABEL_MODALITY, Volume, check_overlap, resample_pet_to_ct, write_volume
from DualDINOv3Lib.data.hecktor import HecktorCase, list_hecktor_cases, read_hecktor_case
from DualDINOv3Lib.domain import STRATA, stratum_of
from DualDINOv3Lib.errors import ConfigError, DataError, OutputExistsError
from DualDINOv3Lib.phantoms import (
    make_phantom,
    plan_phantom_cases,
    read_cases_table,
    write_phantom_case,
    write_phantom_cases,
)


@pytest.fixture(scope="module")
def by_stratum():
    """One phantom per GTVp stratum, without nodes (so the GTVp is the only lesion)."""
    return {stratum: make_phantom(30 + i, stratum=stratum, n_nodes=0) for i, stratum in enumerate(STRATA)}


@pytest.fixture(scope="module")
def with_nodes():
    return make_phantom(5, stratum="medium", n_nodes=3, shape=(48, 168, 168))  # a fixed grid: a HECKTOR-like crop


def _physical_centroid(volume: Volume, mask: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    z, y, x = np.nonzero(mask)
    w = np.ones(z.size) if weights is None else weights[mask]
    index = np.array([np.average(x, weights=w), np.average(y, weights=w), np.average(z, weights=w)])
    return volume.index_to_physical(index)


# --- determinism ------------------------------------------------------------------------------------------


def test_same_seed_gives_identical_phantoms():
    a, b = make_phantom(7), make_phantom(7)
    for name in ("ct", "pet", "label"):
        va, vb = getattr(a, name), getattr(b, name)
        np.testing.assert_array_equal(va.array, vb.array)
        assert va.same_grid(vb, tol=0.0) and va.origin == vb.origin
    assert a.facts() == b.facts()


def test_different_seeds_give_different_anatomy():
    fixed = {"shape": (48, 168, 168)}
    a, b = make_phantom(7, stratum="medium", **fixed), make_phantom(8, stratum="medium", **fixed)
    assert a.ct.origin != b.ct.origin
    assert a.pet.origin != b.pet.origin
    assert not np.array_equal(a.label.array, b.label.array)
    # the tumour sits elsewhere (in mm, relative to each CT's first voxel) and has another size
    ca = _physical_centroid(a.ct, a.label.array == 1) - np.asarray(a.ct.origin)
    cb = _physical_centroid(b.ct, b.label.array == 1) - np.asarray(b.ct.origin)
    assert np.linalg.norm(ca - cb) > 2.0
    assert a.gtvp_cm3 != b.gtvp_cm3
    # and so does the body: its outline differs in the same slice
    assert np.count_nonzero((a.ct.array[5] > -500) != (b.ct.array[5] > -500)) > 500


def test_phantom_set_is_reproducible_and_prefix_stable():
    plan = plan_phantom_cases(7, seed=3)
    assert [c.case_id for c in plan] == [f"PHANTOM-{i:03d}" for i in range(1, 8)]
    assert plan[:4] == plan_phantom_cases(4, seed=3)
    assert {c.stratum for c in plan[:3]} == set(STRATA) and {c.stratum for c in plan[3:6]} == set(STRATA)
    assert len({c.seed for c in plan}) == 7
    assert plan_phantom_cases(3, seed=4) != plan_phantom_cases(3, seed=3)


# --- labels and strata ------------------------------------------------------------------------------------


@pytest.mark.parametrize("stratum", STRATA)
def test_stratum_is_honoured(stratum, by_stratum):
    phantom = by_stratum[stratum]
    label = phantom.label
    assert phantom.stratum == stratum
    assert label.array.dtype == np.uint8 and label.modality == LABEL_MODALITY
    assert set(np.unique(label.array).tolist()) == {0, 1}  # no nodes asked for
    voxel_cm3 = np.prod(label.spacing) / 1000.0
    gtvp = np.count_nonzero(label.array == 1) * voxel_cm3
    assert phantom.gtvp_cm3 == pytest.approx(gtvp)
    assert {"small": gtvp < 5.0, "medium": 5.0 <= gtvp <= 15.0, "large": gtvp > 15.0}[stratum]
    assert stratum_of(gtvp) == stratum


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_random_strata_and_nodes_are_consistent(seed):
    phantom = make_phantom(seed)
    values = set(np.unique(phantom.label.array).tolist())
    assert values <= {0, 1, 2} and 1 in values
    assert stratum_of(phantom.gtvp_cm3) == phantom.stratum
    assert (2 in values) == (phantom.n_nodes > 0) == (phantom.gtvn_cm3 > 0)


def test_lymph_nodes_are_separate_and_sized(with_nodes):
    label = with_nodes.label
    nodes = sitk.ConnectedComponent(sitk.GetImageFromArray((label.array == 2).astype(np.uint8)), True)  # 26-conn.
    sizes = np.bincount(sitk.GetArrayFromImage(nodes).ravel())[1:] * np.prod(label.spacing) / 1000.0
    assert with_nodes.n_nodes == 3 and len(sizes) == 3
    assert np.all((sizes >= 0.3) & (sizes <= 8.0)), sizes
    assert with_nodes.gtvn_cm3 == pytest.approx(sizes.sum())
    # nodes lie lateral to the midline (the spinal canal's x in the node's slices)
    components = sitk.GetArrayFromImage(nodes)
    for k in range(1, 4):
        node = components == k
        slices = np.unique(np.nonzero(node)[0])
        canal = np.zeros_like(node)
        canal[slices] = (with_nodes.ct.array[slices] > -50) & (with_nodes.ct.array[slices] < 30)  # cord, CSF-like
        spine_x = _physical_centroid(label, canal & (np.abs(np.arange(node.shape[2]) - node.shape[2] / 2) < 1e9))[0]
        assert abs(_physical_centroid(label, node)[0] - spine_x) > 15.0


def test_bad_arguments_are_config_errors():
    with pytest.raises(ConfigError, match="seed"):
        make_phantom(-1)
    with pytest.raises(ConfigError, match="stratum"):
        make_phantom(0, stratum="huge")
    with pytest.raises(ConfigError, match="n_nodes"):
        make_phantom(0, n_nodes=4)
    with pytest.raises(ConfigError, match="field of view"):
        make_phantom(0, shape=(48, 64, 64))
    with pytest.raises(ConfigError, match="number of phantom cases"):
        plan_phantom_cases(0)


# --- CT ------------------------------------------------------------------------------------------------


def test_ct_has_air_fat_muscle_bone_and_airway(by_stratum):
    ct = by_stratum["medium"].ct
    hu = ct.array
    assert ct.modality == "CT" and ct.units == "HU" and hu.dtype == np.float32
    assert np.array_equal(hu, np.round(hu)) and hu.min() >= -1024
    assert np.all(hu[:, :3, :3] < -900)  # air outside the body
    body = hu > -500
    fraction = lambda low, high: np.count_nonzero((hu >= low) & (hu <= high) & body) / np.count_nonzero(body)  # noqa: E731
    assert fraction(-150, -60) > 0.03  # subcutaneous fat
    assert fraction(10, 80) > 0.4  # muscle and soft tissue
    assert fraction(500, 2000) > 0.01  # cortical bone: spine, mandible, skull
    # the airway: air enclosed by the body in a lower neck slice, in front of the spine
    slice_ = hu[3]
    rows, cols = np.nonzero(slice_ > -500)
    inside = slice_[rows.min() + 5 : rows.max() - 5, cols.min() + 5 : cols.max() - 5]
    assert np.count_nonzero(inside < -900) > 40  # a trachea of >= 7 mm radius covers > 100 pixels of 1.25 mm


def test_tumours_are_low_contrast_in_ct(by_stratum):
    phantom = by_stratum["large"]
    hu, label = phantom.ct.array, phantom.label.array
    assert 0 < np.median(hu[label == 1]) < 100  # soft tissue, not air, fat or bone


# --- PET -----------------------------------------------------------------------------------------------


def test_pet_is_on_its_own_coarser_grid_overlapping_the_ct(by_stratum):
    phantom = by_stratum["small"]
    ct, pet = phantom.ct, phantom.pet
    assert pet.modality == "PT" and pet.units == "SUV" and pet.array.dtype == np.float32
    assert not pet.same_grid(ct)
    assert pet.spacing[0] > 2 * ct.spacing[0] and pet.spacing[1] > 2 * ct.spacing[1]
    assert np.prod(pet.spacing) > 5 * np.prod(ct.spacing)
    assert np.all(np.abs(np.subtract(pet.origin, ct.origin)) > 0.1)
    check_overlap(pet, ct)
    pet_box, ct_box = pet.physical_extent(), ct.physical_extent()
    assert np.all(pet_box[:, 0] <= ct_box[:, 0]) and np.all(pet_box[:, 1] >= ct_box[:, 1])  # covers the CT
    assert np.isfinite(pet.array).all() and pet.array.min() >= 0.0


def test_pet_shows_physiological_uptake(by_stratum):
    phantom = by_stratum["small"]
    pet = resample_pet_to_ct(phantom.pet, phantom.ct).array
    hu = phantom.ct.array
    neck = slice(0, phantom.ct.shape[0] // 4)
    muscle = (hu[neck] > 20) & (hu[neck] < 80)
    assert 0.4 < np.median(pet[neck][muscle]) < 1.3  # soft-tissue background
    assert np.median(pet[neck][hu[neck] < -900]) < 0.05  # air outside the body
    assert pet[-1].max() > 5.0  # brain at the top


@pytest.mark.parametrize("stratum", STRATA)
def test_tumour_uptake_is_clearly_above_background(stratum, by_stratum):
    phantom = by_stratum[stratum]
    pet = resample_pet_to_ct(phantom.pet, phantom.ct).array
    hu, label = phantom.ct.array, phantom.label.array
    neck = slice(0, phantom.ct.shape[0] // 4)
    background = np.median(pet[neck][(hu[neck] > 20) & (hu[neck] < 80)])
    assert np.mean(pet[label == 1]) > 3.0 * background
    assert pet[label == 1].max() > 4.0


@pytest.mark.parametrize("stratum", STRATA)
def test_pet_tumour_lies_where_the_label_is(stratum, by_stratum):
    """The PET hot spot that overlaps the GTVp (connected voxels above 70 % of the GTVp's SUVmax) has its
    centre within 3 mm of the label's centre (plus the phantom's drawn PET/CT misregistration) and lies mostly
    inside it: PET and label are in register up to the drawn patient motion."""
    phantom = by_stratum[stratum]
    pet = resample_pet_to_ct(phantom.pet, phantom.ct).array
    gtvp = phantom.label.array == 1
    hot = (pet > 0.7 * pet[gtvp].max()).astype(np.uint8)
    components = sitk.GetArrayFromImage(sitk.ConnectedComponent(sitk.GetImageFromArray(hot)))
    touching = np.unique(components[gtvp & (components > 0)])
    spot = np.isin(components, touching)
    distance = np.linalg.norm(_physical_centroid(phantom.ct, spot) - _physical_centroid(phantom.ct, gtvp))
    assert distance < 3.0 + np.linalg.norm(phantom.facts()["pet_ct_shift_mm"])
    assert np.count_nonzero(spot & gtvp) > 0.8 * np.count_nonzero(spot)


# --- HECKTOR folders -----------------------------------------------------------------------------------


def test_hecktor_case_written_and_read_back(tmp_path, with_nodes):
    case = write_phantom_case(with_nodes, tmp_path)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [
        "PHANTOM-005.nii.gz",
        "PHANTOM-005__CT.nii.gz",
        "PHANTOM-005__PT.nii.gz",
        "cases.csv",
        "cases.json",
    ]
    [listed] = list_hecktor_cases(tmp_path, require_labels=True)
    assert listed == case == HecktorCase("PHANTOM-005", case.ct, case.pet, case.label) and listed.centre == "PHANTOM"
    ct, pet, label = read_hecktor_case(listed)
    for read, made in ((ct, with_nodes.ct), (pet, with_nodes.pet), (label, with_nodes.label)):
        np.testing.assert_array_equal(read.array, made.array)
        assert read.same_grid(made, tol=1e-3) and read.modality == made.modality
    assert (ct.units, pet.units, label.array.dtype) == ("HU", "SUV", np.uint8)
    assert label.same_grid(ct, tol=0.0)
    assert sitk.ReadImage(str(case.ct)).GetPixelID() == sitk.sitkInt16  # integer HU as scanners store them
    table = read_cases_table(tmp_path)
    assert table == [with_nodes.facts()] and table[0]["stratum"] == "medium" and table[0]["n_nodes"] == 3
    assert json.loads((tmp_path / "cases.json").read_text())["cases"][0]["seed"] == 5
    assert (tmp_path / "cases.csv").read_text().splitlines()[0].startswith("case_id,seed,stratum,gtvp_cm3")


def test_writing_refuses_to_overwrite(tmp_path, with_nodes):
    case = write_phantom_case(with_nodes, tmp_path)
    before = {p: p.read_bytes() for p in (case.ct, case.pet, case.label)}
    other = make_phantom(9, case_id=with_nodes.case_id)
    with pytest.raises(OutputExistsError, match="already exist"):
        write_phantom_case(other, tmp_path)
    assert {p: p.read_bytes() for p in before} == before
    write_phantom_case(other, tmp_path, overwrite=True)
    assert case.label.read_bytes() != before[case.label]
    assert read_cases_table(tmp_path) == [other.facts()]  # one record per case, replaced


def test_writing_refuses_a_foreign_case_table(tmp_path, with_nodes):
    (tmp_path / "cases.json").write_text('{"mine": 1}')
    with pytest.raises(DataError, match="not written by dualdinov3"):
        write_phantom_case(with_nodes, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cases.json"]


def test_phantom_set_covers_all_strata(tmp_path):
    seen = []
    facts = write_phantom_cases(tmp_path / "set", 3, seed=2, on_case=seen.append)
    assert [f["case_id"] for f in facts] == ["PHANTOM-001", "PHANTOM-002", "PHANTOM-003"]
    assert [p.facts() for p in seen] == facts == read_cases_table(tmp_path / "set")
    assert {f["stratum"] for f in facts} == set(STRATA)
    assert all(stratum_of(f["gtvp_cm3"]) == f["stratum"] for f in facts)
    cases = list_hecktor_cases(tmp_path / "set", require_labels=True)
    assert [c.case_id for c in cases] == ["PHANTOM-001", "PHANTOM-002", "PHANTOM-003"]
    # each case is the one make_phantom gives for its recorded seed and stratum
    again = make_phantom(facts[1]["seed"], stratum=facts[1]["stratum"], case_id="PHANTOM-002")
    np.testing.assert_array_equal(read_hecktor_case(cases[1])[2].array, again.label.array)
    with pytest.raises(OutputExistsError):
        write_phantom_cases(tmp_path / "set", 4, seed=2)
    assert not (tmp_path / "set" / "PHANTOM-004__CT.nii.gz").exists()  # checked before anything was made


@pytest.fixture(scope="module")
def written_case(tmp_path_factory, with_nodes):
    folder = tmp_path_factory.mktemp("written")
    return write_phantom_case(with_nodes, folder)


def _copy_case(case: HecktorCase, folder, label=True):
    folder.mkdir(parents=True, exist_ok=True)
    for path in (case.ct, case.pet) + ((case.label,) if label else ()):
        shutil.copy(path, folder / path.name)


def test_challenge_layout_with_images_and_labels_folders(tmp_path, written_case):
    root = tmp_path / "hecktor2022_training" / "hecktor2022"
    _copy_case(written_case, root / "imagesTr", label=False)
    (root / "labelsTr").mkdir()
    shutil.copy(written_case.label, root / "labelsTr" / written_case.label.name)
    shutil.copy(written_case.label, root / "labelsTr" / "CHUM-999.nii.gz")  # a label without images: ignored
    [case] = list_hecktor_cases(root, require_labels=True)
    assert case.ct.parent.name == "imagesTr" and case.label.parent.name == "labelsTr"
    # the download's top folder is pointed at the folder that holds imagesTr/
    with pytest.raises(DataError, match=f"Did you mean {root}"):
        list_hecktor_cases(tmp_path)


def test_listing_errors(tmp_path, written_case):
    with pytest.raises(DataError, match="no such folder"):
        list_hecktor_cases(tmp_path / "missing")
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(DataError, match="is a file"):
        list_hecktor_cases(tmp_path / "file.txt")
    with pytest.raises(DataError, match=r"no HECKTOR cases found.*file\.txt"):
        list_hecktor_cases(tmp_path)
    # a CT without its PET
    shutil.copy(written_case.ct, tmp_path / "CHUM-001__CT.nii.gz")
    with pytest.raises(DataError, match="CHUM-001 has no PT"):
        list_hecktor_cases(tmp_path)
    # the same image twice
    shutil.copy(written_case.pet, tmp_path / "CHUM-001__PT.nii.gz")
    assert [c.case_id for c in list_hecktor_cases(tmp_path)] == ["CHUM-001"]
    shutil.copy(written_case.pet, tmp_path / "CHUM-001__PT.mha")
    with pytest.raises(DataError, match="two PT images"):
        list_hecktor_cases(tmp_path)
    (tmp_path / "CHUM-001__PT.mha").unlink()
    # labels required but missing
    with pytest.raises(DataError, match=r"1 of 1 case.*no label.*CHUM-001"):
        list_hecktor_cases(tmp_path, require_labels=True)


def test_reading_bad_labels_and_geometry(tmp_path, written_case, with_nodes):
    _copy_case(written_case, tmp_path)
    [case] = list_hecktor_cases(tmp_path)
    bad_values = with_nodes.label.array.copy()
    bad_values[0, 0, 0] = 3
    write_volume(with_nodes.label.with_array(bad_values), case.label, overwrite=True)
    with pytest.raises(DataError, match=r"label values must be 0.*found \[3\]"):
        read_hecktor_case(case)
    shifted = Volume(with_nodes.label.array, with_nodes.label.spacing, np.add(with_nodes.label.origin, (2.0, 0, 0)))
    write_volume(shifted.with_array(shifted.array, modality=LABEL_MODALITY), case.label, overwrite=True)
    with pytest.raises(DataError, match="not on the CT grid"):
        read_hecktor_case(case)
    case.label.unlink()
    far = Volume(with_nodes.pet.array, with_nodes.pet.spacing, np.add(with_nodes.pet.origin, (0, 0, 900.0)))
    write_volume(far, case.pet, overwrite=True)
    [case] = list_hecktor_cases(tmp_path)
    with pytest.raises(DataError, match="do not overlap"):
        read_hecktor_case(case)
