"""The paper's preprocessing (sec. 2.2) and its inverse, on a synthetic PET/CT with known geometry."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from DualDINOv3Lib.data import LABEL_MODALITY, Volume
from DualDINOv3Lib.errors import DataError
from DualDINOv3Lib.models import PreprocessingSpec
from DualDINOv3Lib.preprocessing import CasePreprocessor, body_mask, preprocess_case


def _case(z=6, y=90, x=110, spacing=(0.8, 0.9, 3.0), seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:y, :x]
    body = ((yy - 50) / 30) ** 2 + ((xx - 60) / 40) ** 2 < 1
    ct = np.full((z, y, x), -1000.0, np.float32)
    ct[:, body] = 40.0
    ct += rng.normal(0, 5, ct.shape).astype(np.float32)
    ct[:, 5:9, 5:100] = 300.0  # a "table" apart from the body: not the largest region
    label = np.zeros((z, y, x), np.uint8)
    label[2:4, 45:55, 50:70] = 1
    label[3, 30:35, 40:45] = 2
    ctv = Volume(ct, spacing, origin=(-40.0, -30.0, 100.0), units="HU", modality="CT")
    pet = ctv.with_array(rng.random((z, y, x)).astype(np.float32) + 5.0 * (label > 0), units="SUV", modality="PT")
    return ctv, pet, ctv.with_array(label, modality=LABEL_MODALITY)


@pytest.mark.parametrize(
    ("spacing", "crop"),
    [(None, 64), (None, 128), ((0.5, 0.45), 128), ((0.4, 0.3), 320), ((0.8, 0.9), 100)],
)
def test_labels_survive_preprocessing_and_inverse_exactly(spacing, crop):
    ct, pet, label = _case()
    prep = CasePreprocessor(ct, pet, PreprocessingSpec(spacing_mm=spacing, crop_size=crop))
    model_grid = prep.labels(label, np.arange(ct.shape[0]))
    assert model_grid.shape == (ct.shape[0], crop, crop)
    assert sorted(torch.unique(model_grid).tolist()) == [0, 1, 2]
    back = prep.labels_to_ct_grid(model_grid).numpy()
    np.testing.assert_array_equal(back, label.array)


def test_resampling_changes_pixel_size_as_asked():
    ct, pet, label = _case()
    prep = CasePreprocessor(ct, pet, PreprocessingSpec(spacing_mm=(0.4, 0.45), crop_size=256))
    assert prep.geometry.resampled_shape == (180, 220)  # 90 * 0.9 / 0.45, 110 * 0.8 / 0.4
    lesion = prep.labels(label, [2])[0] == 1  # 10 x 20 source pixels -> 20 x 40
    assert lesion.sum().item() == 20 * 40


def test_window_is_centred_on_the_body_not_the_table():
    ct, pet, _ = _case()
    prep = CasePreprocessor(ct, pet, PreprocessingSpec(crop_size=64))
    # body rows 21..79 (centre 50.5), cols 21..99 (centre 60.5) -> window starts near (18.5, 28.5)
    assert prep.geometry.crop_start in {(18, 28), (19, 29), (18, 29), (19, 28)}
    assert not body_mask(ct)[:, 5:9, 5:100].any()


def test_intensity_normalisation_ct_zscore_on_body_pet_minmax_on_volume():
    ct, pet, _ = _case()
    images, labels, prep = preprocess_case(ct, pet, PreprocessingSpec(crop_size=128))
    assert images.shape == (6, 2, 128, 128) and images.dtype == np.float32 and labels is None
    norm = prep.normalization
    assert norm.pet_max == pytest.approx(float(pet.array.max()))
    assert images[:, 1].min() >= 0.0 and images[:, 1].max() == pytest.approx(1.0)
    body = body_mask(ct)
    assert norm.ct_mean == pytest.approx(float(ct.array[body].mean()), rel=1e-6)
    source_body_ct = (ct.array[body] - norm.ct_mean) / norm.ct_std
    assert abs(source_body_ct.mean()) < 1e-4 and source_body_ct.std() == pytest.approx(1.0, rel=1e-4)
    # padding is air for CT and the PET minimum (-> 0)
    assert images[0, 0, 0, 0] == pytest.approx((-1000.0 - norm.ct_mean) / norm.ct_std)
    assert images[0, 1, 0, 0] == 0.0


def test_pet_on_another_grid_is_resampled_onto_the_ct():
    ct, pet, _ = _case()
    coarse = Volume(pet.array[:, ::3, ::3].copy(), (2.4, 2.7, 3.0), origin=(-39.2, -29.1, 100.0), modality="PT")
    prep = CasePreprocessor(ct, coarse, PreprocessingSpec(crop_size=64))
    assert prep.pet.same_grid(ct)


def test_bad_inputs_give_clear_errors():
    ct, pet, _ = _case()
    with pytest.raises(DataError, match="no body"):
        CasePreprocessor(ct.with_array(np.full(ct.shape, -1000.0, np.float32)), pet, PreprocessingSpec())
    with pytest.raises(DataError, match="PET is constant"):
        CasePreprocessor(ct, pet.with_array(np.ones(ct.shape, np.float32)), PreprocessingSpec())
    far = Volume(pet.array, pet.spacing, origin=(900.0, 900.0, 900.0))
    with pytest.raises(DataError, match="do not overlap"):
        CasePreprocessor(ct, far, PreprocessingSpec())
    with pytest.raises(DataError, match="normalisation"):
        CasePreprocessor(ct, pet, PreprocessingSpec(ct_normalization="minmax"))
