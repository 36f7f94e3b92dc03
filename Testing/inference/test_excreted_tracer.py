"""The clean-up of excreted tracer (``postprocess.remove_excreted_tracer``): a predicted region whose hot part is
water on CT (urine in the bladder or renal pelvis) is removed; tumours, with or without a cold water-density core,
and small regions are kept."""

import logging

import numpy as np
import pytest
import SimpleITK as sitk

from DualDINOv3Lib.data import LABEL_MODALITY, Volume
from DualDINOv3Lib.inference.postprocess import (
    EXCRETION_MIN_CM3,
    URINE_HU,
    clean_label,
    remove_excreted_tracer,
)

SPACING = (1.0, 1.0, 2.0)  # mm (x, y, z)


def _ball(shape, centre, radius_mm):
    z, y, x = np.mgrid[: shape[0], : shape[1], : shape[2]]
    d2 = ((x - centre[2]) * SPACING[0]) ** 2 + ((y - centre[1]) * SPACING[1]) ** 2 + ((z - centre[0]) * SPACING[2]) ** 2
    return d2 <= radius_mm**2


def _scene():
    """CT (fat everywhere), PET blurred like a scanner's, and a label with: a bladder (urine, very hot), a
    necrotic tumour (hot soft-tissue rim, cold water core), a solid node, and a small hot region that reads as
    water (a small node's CT number averaged with the fat around it)."""
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
    image = sitk.GetImageFromArray(pet)
    image.SetSpacing(SPACING)
    pet = sitk.GetArrayFromImage(sitk.SmoothingRecursiveGaussian(image, 3.0))  # a ~7 mm FWHM PSF
    volumes = [Volume(a, SPACING, modality=m) for a, m in ((ct, "CT"), (pet, "PT"))]
    return (
        *volumes,
        Volume(label, SPACING, modality=LABEL_MODALITY),
        {"bladder": bladder, "tumour": tumour, "node": node, "small": small},
    )


def test_urine_removed_tumours_and_small_regions_kept(caplog):
    ct, pet, label, parts = _scene()
    assert parts["small"].sum() * np.prod(SPACING) / 1000 < EXCRETION_MIN_CM3
    with caplog.at_level(logging.INFO, logger="DualDINOv3Lib.inference.postprocess"):
        cleaned = remove_excreted_tracer(label, ct, pet).array
    assert not cleaned[parts["bladder"]].any()
    assert (cleaned[parts["tumour"]] == 1).all()  # its cold core is water, its hot rim is not
    assert (cleaned[parts["node"]] == 2).all()
    assert (cleaned[parts["small"]] == 2).all()  # too small to judge
    assert "tracer excreted into urine" in caplog.text and caplog.text.count("removed") == 1
    assert (label.array[parts["bladder"]] == 1).all()  # the input is left as it was


def test_the_rule_is_per_label_and_reads_the_hot_part():
    ct, pet, label, parts = _scene()
    array = label.array.copy()
    array[parts["bladder"]] = 2  # the same urine called a node
    cleaned = remove_excreted_tracer(label.with_array(array), ct, pet).array
    assert not cleaned[parts["bladder"]].any()
    hot_soft = np.where(parts["bladder"], URINE_HU[1] + 15.0, ct.array)  # a hot solid mass of the same size
    kept = remove_excreted_tracer(label, ct.with_array(hot_soft.astype(np.float32)), pet).array
    assert (kept[parts["bladder"]] == 1).all()


def test_clean_label_applies_it_only_for_head_and_neck():
    ct, pet, label, parts = _scene()
    assert not clean_label(label, ct, pet, min_component_mm3=0, head_neck_only=True).array[parts["bladder"]].any()
    kept = clean_label(label, ct, pet, min_component_mm3=0, head_neck_only=False)
    assert np.array_equal(kept.array, label.array)


def test_pet_off_the_ct_grid_is_refused():
    ct, pet, label, _ = _scene()
    coarse = Volume(pet.array[:, ::2, ::2].copy(), (2.0, 2.0, 2.0), modality="PT")
    with pytest.raises(ValueError, match="on the CT's grid"):
        remove_excreted_tracer(label, ct, coarse)
    empty = label.with_array(np.zeros_like(label.array))
    assert remove_excreted_tracer(empty, ct, coarse) is empty
