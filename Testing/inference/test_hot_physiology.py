"""The clean-up of physiology recognised on the PET and on the CT under a predicted region's hot part
(``postprocess.remove_without_uptake``, ``postprocess.remove_excreted_tracer``, ``postprocess.remove_brown_fat``):

- a region without FDG uptake (highest SUV below ``MIN_TUMOUR_SUV``) is removed; a faint node is kept;
- a region whose hot part is water (urine in the bladder or renal pelvis) is removed; tumours, with or without a
  cold water-density core, and small regions are kept;
- a region whose hot part is fat (FDG in activated brown fat) is removed; nodes are kept, also when the prediction
  spills into the fat around them, and so is a hot region of soft tissue."""

import logging

import numpy as np
import pytest
import SimpleITK as sitk

from DualDINOv3Lib.data import LABEL_MODALITY, Volume
from DualDINOv3Lib.inference.postprocess import (
    BROWN_FAT_HU,
    EXCRETION_MIN_CM3,
    MIN_TUMOUR_SUV,
    URINE_HU,
    clean_label,
    remove_brown_fat,
    remove_excreted_tracer,
    remove_without_uptake,
)

SPACING = (1.0, 1.0, 2.0)  # mm (x, y, z)


def _ball(shape, centre, radius_mm):
    z, y, x = np.mgrid[: shape[0], : shape[1], : shape[2]]
    d2 = ((x - centre[2]) * SPACING[0]) ** 2 + ((y - centre[1]) * SPACING[1]) ** 2 + ((z - centre[0]) * SPACING[2]) ** 2
    return d2 <= radius_mm**2


def _volumes(ct, pet, label):
    """CT, the PET blurred like a scanner's (a ~7 mm FWHM PSF) and the label, as volumes."""
    image = sitk.GetImageFromArray(pet)
    image.SetSpacing(SPACING)
    pet = sitk.GetArrayFromImage(sitk.SmoothingRecursiveGaussian(image, 3.0))
    volumes = [Volume(a, SPACING, modality=m) for a, m in ((ct, "CT"), (pet, "PT"))]
    return *volumes, Volume(label, SPACING, modality=LABEL_MODALITY)


def _urine_scene():
    """CT (fat everywhere) and a label with: a bladder (urine, very hot), a necrotic tumour (hot soft-tissue rim,
    cold water core), a solid node, and a small hot region that reads as water (a small node's CT number averaged
    with the fat around it)."""
    shape = (40, 90, 150)
    ct = np.full(shape, -100.0, np.float32)
    pet = np.full(shape, 0.4, np.float32)
    label = np.zeros(shape, np.uint8)
    bladder = _ball(shape, (20, 45, 25), 16.0)
    ct[bladder], pet[bladder] = 4.0, 30.0
    label[bladder] = 1
    tumour, core = _ball(shape, (20, 45, 70), 15.0), _ball(shape, (20, 45, 70), 10.0)
    ct[tumour], pet[tumour] = 45.0, 12.0
    ct[core], pet[core] = 15.0, 1.0  # necrosis: water-density but cold
    label[tumour] = 1
    node = _ball(shape, (20, 45, 110), 10.0)
    ct[node], pet[node] = 40.0, 6.0
    label[node] = 2
    small = _ball(shape, (20, 45, 135), 7.0)  # 1.4 cm3, hot, and water on CT by partial volume
    ct[small], pet[small] = 5.0, 5.0
    label[small] = 2
    return *_volumes(ct, pet, label), {"physiology": bladder, "tumour": tumour, "node": node, "small": small}


def _brown_fat_scene():
    """Soft tissue (40 HU) with, side by side: a hot brown-fat depot (-70 HU, labelled GTVn as a 2D model does),
    a node in a 3 mm rim of fat, labelled 2 mm too wide (over its rim), and a primary tumour. CT noise of 15 HU."""
    shape = (30, 70, 130)
    rng = np.random.default_rng(0)
    ct = np.full(shape, 40.0, np.float32)
    pet = np.full(shape, 0.8, np.float32)
    label = np.zeros(shape, np.uint8)
    depot = _ball(shape, (15, 35, 25), 12.0)
    ct[depot], pet[depot] = -70.0, 7.0
    label[depot] = 2
    rim, node = _ball(shape, (15, 35, 65), 10.0), _ball(shape, (15, 35, 65), 7.0)
    ct[rim], pet[rim] = -100.0, 0.3
    ct[node], pet[node] = 45.0, 6.0
    label[_ball(shape, (15, 35, 65), 9.0)] = 2
    tumour = _ball(shape, (15, 35, 105), 12.0)
    ct[tumour], pet[tumour] = 50.0, 12.0
    label[tumour] = 1
    ct += rng.normal(0.0, 15.0, shape).astype(np.float32)
    return *_volumes(ct, pet, label), {"physiology": depot, "node": node, "tumour": tumour}


def _cold_scene():
    """Muscle (SUV 1.0, 50 HU) with, side by side: a 12 cm3 stretch of slightly warmer muscle (SUV 1.3) labelled GTVn,
    as a 2D model labelled a real thigh, a small faint node (SUV 3 before the PET blur) and a primary tumour."""
    shape = (30, 70, 150)
    ct = np.full(shape, 50.0, np.float32)
    pet = np.full(shape, 1.0, np.float32)
    label = np.zeros(shape, np.uint8)
    muscle = _ball(shape, (15, 35, 30), 14.0)
    pet[muscle] = 1.3
    label[muscle] = 2
    node = _ball(shape, (15, 35, 80), 6.0)
    pet[node] = 3.0
    label[node] = 2
    tumour = _ball(shape, (15, 35, 120), 12.0)
    pet[tumour] = 10.0
    label[tumour] = 1
    return *_volumes(ct, pet, label), {"physiology": muscle, "node": node, "tumour": tumour}


RULES = {
    "no uptake": (_cold_scene, remove_without_uptake),
    "urine": (_urine_scene, remove_excreted_tracer),
    "brown fat": (_brown_fat_scene, remove_brown_fat),
}


def test_regions_without_uptake_removed_faint_nodes_kept(caplog):
    ct, pet, label, parts = _cold_scene()
    assert pet.array[parts["node"]].max() < 2.5  # faint after the blur, yet above muscle and blood
    with caplog.at_level(logging.INFO, logger="DualDINOv3Lib.inference.postprocess"):
        cleaned = remove_without_uptake(label, ct, pet).array
    assert not cleaned[parts["physiology"]].any()
    assert (cleaned[parts["node"]] == 2).all()
    assert (cleaned[parts["tumour"]] == 1).all()
    assert "no FDG uptake" in caplog.text and caplog.text.count("removed") == 1
    warmer = pet.with_array(np.where(parts["physiology"], MIN_TUMOUR_SUV + 0.05, pet.array).astype(np.float32))
    assert (remove_without_uptake(label, ct, warmer).array[parts["physiology"]] == 2).all()


def test_urine_removed_tumours_and_small_regions_kept(caplog):
    ct, pet, label, parts = _urine_scene()
    assert parts["small"].sum() * np.prod(SPACING) / 1000 < EXCRETION_MIN_CM3
    with caplog.at_level(logging.INFO, logger="DualDINOv3Lib.inference.postprocess"):
        cleaned = remove_excreted_tracer(label, ct, pet).array
    assert not cleaned[parts["physiology"]].any()
    assert (cleaned[parts["tumour"]] == 1).all()  # its cold core is water, its hot rim is not
    assert (cleaned[parts["node"]] == 2).all()
    assert (cleaned[parts["small"]] == 2).all()  # too small to judge
    assert "tracer excreted into urine" in caplog.text and caplog.text.count("removed") == 1
    assert (label.array[parts["physiology"]] == 1).all()  # the input is left as it was


def test_the_urine_rule_is_per_label_and_reads_the_hot_part():
    ct, pet, label, parts = _urine_scene()
    array = label.array.copy()
    array[parts["physiology"]] = 2  # the same urine called a node
    cleaned = remove_excreted_tracer(label.with_array(array), ct, pet).array
    assert not cleaned[parts["physiology"]].any()
    hot_soft = np.where(parts["physiology"], URINE_HU[1] + 15.0, ct.array)  # a hot solid mass of the same size
    kept = remove_excreted_tracer(label, ct.with_array(hot_soft.astype(np.float32)), pet).array
    assert (kept[parts["physiology"]] == 1).all()


def test_brown_fat_removed_nodes_and_tumours_kept(caplog):
    ct, pet, label, parts = _brown_fat_scene()
    with caplog.at_level(logging.INFO, logger="DualDINOv3Lib.inference.postprocess"):
        cleaned = remove_brown_fat(label, ct, pet).array
    assert not cleaned[parts["physiology"]].any()
    assert (cleaned[parts["node"]] == 2).all()  # its hot part is the node's soft tissue, not its rim of fat
    assert (cleaned[label.array == 2] == 2).sum() == (label.array[~parts["physiology"]] == 2).sum()
    assert (cleaned[parts["tumour"]] == 1).all()
    assert "brown fat" in caplog.text and caplog.text.count("removed") == 1
    assert (label.array[parts["physiology"]] == 2).all()  # the input is left as it was


def test_the_brown_fat_rule_reads_the_ct():
    ct, pet, label, parts = _brown_fat_scene()
    array = label.array.copy()
    array[parts["physiology"]] = 1  # the same depot called a primary tumour
    assert not remove_brown_fat(label.with_array(array), ct, pet).array[parts["physiology"]].any()
    soft = np.where(parts["physiology"], BROWN_FAT_HU[1] + 60.0, ct.array).astype(np.float32)  # a hot soft mass
    assert (remove_brown_fat(label, ct.with_array(soft), pet).array[parts["physiology"]] == 2).all()


@pytest.mark.parametrize("rule", RULES)
def test_clean_label_applies_it_only_for_head_and_neck(rule):
    ct, pet, label, parts = RULES[rule][0]()
    cleaned = clean_label(label, ct, pet, min_component_mm3=0, head_neck_only=True)
    assert not cleaned.array[parts["physiology"]].any()
    kept = clean_label(label, ct, pet, min_component_mm3=0, head_neck_only=False)
    assert np.array_equal(kept.array, label.array)


@pytest.mark.parametrize("rule", RULES)
def test_pet_off_the_ct_grid_is_refused(rule):
    scene, remove = RULES[rule]
    ct, pet, label, _ = scene()
    coarse = Volume(pet.array[:, ::2, ::2].copy(), (2.0, 2.0, 2.0), modality="PT")
    with pytest.raises(ValueError, match="on the CT's grid"):
        remove(label, ct, coarse)
    empty = label.with_array(np.zeros_like(label.array))
    assert remove(empty, ct, coarse) is empty


def test_a_pet_without_any_uptake_is_flagged(caplog):
    ct, pet, label, _ = _cold_scene()
    normalised = pet.with_array((pet.array / pet.array.max()).astype(np.float32))  # a PET scaled to 0..1
    with caplog.at_level(logging.WARNING, logger="DualDINOv3Lib.inference.postprocess"):
        cleaned = clean_label(label, ct, normalised, min_component_mm3=0, head_neck_only=True)
    assert not cleaned.array.any()
    assert "Check that the PET is in SUV" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="DualDINOv3Lib.inference.postprocess"):
        clean_label(label, ct, pet, min_component_mm3=0, head_neck_only=True)
    assert "Check that the PET" not in caplog.text
