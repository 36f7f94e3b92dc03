"""The clean-up of brown fat (``postprocess.remove_brown_fat``): a predicted region whose hot part is fat on CT
(FDG in activated brown fat) is removed; nodes are kept, also when the prediction spills into the fat around
them, and so is a hot region of soft tissue."""

import logging

import numpy as np
import pytest
import SimpleITK as sitk

from DualDINOv3Lib.data import LABEL_MODALITY, Volume
from DualDINOv3Lib.inference.postprocess import BROWN_FAT_HU, clean_label, remove_brown_fat

SPACING = (1.0, 1.0, 2.0)  # mm (x, y, z)


def _ball(shape, centre, radius_mm):
    z, y, x = np.mgrid[: shape[0], : shape[1], : shape[2]]
    d2 = ((x - centre[2]) * SPACING[0]) ** 2 + ((y - centre[1]) * SPACING[1]) ** 2 + ((z - centre[0]) * SPACING[2]) ** 2
    return d2 <= radius_mm**2


def _scene():
    """Soft tissue (40 HU) with, side by side: a hot brown-fat depot (-70 HU, labelled GTVn as a 2D model does),
    a node in a 3 mm rim of fat, labelled 2 mm too wide (over its rim), and a primary tumour. CT noise of 15 HU,
    PET blurred like a scanner's (~7 mm FWHM)."""
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
    image = sitk.GetImageFromArray(pet)
    image.SetSpacing(SPACING)
    pet = sitk.GetArrayFromImage(sitk.SmoothingRecursiveGaussian(image, 3.0))
    volumes = [Volume(a, SPACING, modality=m) for a, m in ((ct, "CT"), (pet, "PT"))]
    return *volumes, Volume(label, SPACING, modality=LABEL_MODALITY), {"depot": depot, "node": node, "tumour": tumour}


def test_brown_fat_removed_nodes_and_tumours_kept(caplog):
    ct, pet, label, parts = _scene()
    with caplog.at_level(logging.INFO, logger="DualDINOv3Lib.inference.postprocess"):
        cleaned = remove_brown_fat(label, ct, pet).array
    assert not cleaned[parts["depot"]].any()
    assert (cleaned[parts["node"]] == 2).all()  # its hot part is the node's soft tissue, not its rim of fat
    assert (cleaned[label.array == 2] == 2).sum() == (label.array[~parts["depot"]] == 2).sum()
    assert (cleaned[parts["tumour"]] == 1).all()
    assert "brown fat" in caplog.text and caplog.text.count("removed") == 1
    assert (label.array[parts["depot"]] == 2).all()  # the input is left as it was


def test_the_rule_reads_the_ct():
    ct, pet, label, parts = _scene()
    array = label.array.copy()
    array[parts["depot"]] = 1  # the same depot called a primary tumour
    assert not remove_brown_fat(label.with_array(array), ct, pet).array[parts["depot"]].any()
    soft = np.where(parts["depot"], BROWN_FAT_HU[1] + 60.0, ct.array).astype(np.float32)  # a hot soft-tissue mass
    assert (remove_brown_fat(label, ct.with_array(soft), pet).array[parts["depot"]] == 2).all()


def test_clean_label_applies_it_only_for_head_and_neck():
    ct, pet, label, parts = _scene()
    assert not clean_label(label, ct, pet, min_component_mm3=0, head_neck_only=True).array[parts["depot"]].any()
    kept = clean_label(label, ct, pet, min_component_mm3=0, head_neck_only=False)
    assert np.array_equal(kept.array, label.array)


def test_pet_off_the_ct_grid_is_refused():
    ct, pet, label, _ = _scene()
    coarse = Volume(pet.array[:, ::2, ::2].copy(), (2.0, 2.0, 2.0), modality="PT")
    with pytest.raises(ValueError, match="on the CT's grid"):
        remove_brown_fat(label, ct, coarse)
