"""Pretraining slices (paper sec. 2.1.1): the PET 20% foreground rule, re-centring, volume-level min-max;
CT 0.45 mm in-plane resampling, body-centred 256 x 256 window, per-slice z-score.

Synthetic volumes are built here, written as NIfTI with SimpleITK and read back with ``read_volume``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from DualDINOv3Lib.data import Volume, read_volume
from DualDINOv3Lib.errors import ConfigError, DataError
from DualDINOv3Lib.pretraining.slices import (
    CtSliceParams,
    PetSliceParams,
    ct_pretraining_slices,
    pet_pretraining_slices,
    pretraining_slices,
    slice_params,
)

S = 256


def write_nifti(array: np.ndarray, spacing_xyz, path: Path) -> Path:
    image = sitk.GetImageFromArray(array.astype(np.float32))
    image.SetSpacing(tuple(float(s) for s in spacing_xyz))
    image.SetOrigin((-40.0, 12.5, 300.0))
    sitk.WriteImage(image, str(path))
    return path


def rectangle(shape_yx, top_left, size_yx, value) -> np.ndarray:
    out = np.zeros(shape_yx, dtype=np.float32)
    (y, x), (h, w) = top_left, size_yx
    out[y : y + h, x : x + w] = value
    return out


# --- PET ------------------------------------------------------------------------------------------------

PET_SPACING = (2.0, 2.0, 3.0)  # mm (x, y, z)
AIR_SUV = 0.02


@pytest.fixture(scope="module")
def pet_volume(tmp_path_factory) -> Volume:
    """8 slices of 100 x 100 px (2 mm): which of them the 20% rule keeps is known from their areas."""
    z, shape = 8, (100, 100)
    array = np.full((z, *shape), AIR_SUV, dtype=np.float32)
    array[1] += rectangle(shape, (10, 20), (50, 50), 1.0)  # 25% of the slice: kept
    array[2] += rectangle(shape, (30, 30), (40, 45), 1.0)  # 18%, > 20% only once dilated: kept
    array[3] += rectangle(shape, (40, 40), (20, 25), 1.0)  # 5%, 8.6% dilated: dropped (a limb)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    array[4] += np.where(((yy - 30) / 22.0) ** 2 + ((xx - 65) / 30.0) ** 2 <= 1, 1.5, 0.0)  # off-centre, 21%
    array[5] += rectangle(shape, (20, 15), (60, 60), 1.0)  # 36%: kept, holds the volume maximum
    array[5, 50, 45] = 10.0
    array[6, 5, 5] = 3.0  # a hot speck on an empty slice: dropped
    # slices 0 and 7: air only, dropped
    return read_volume(write_nifti(array, PET_SPACING, tmp_path_factory.mktemp("pet") / "pet.nii.gz"), modality="PT")


def foreground_of(out: np.ndarray, stats: dict) -> np.ndarray:
    """The PET foreground in normalised output units (same threshold as the extraction)."""
    return out > (stats["threshold"] - stats["min"]) / (stats["max"] - stats["min"])


def test_pet_keeps_exactly_the_slices_whose_dilated_foreground_covers_over_20_percent(pet_volume):
    result = pet_pretraining_slices(pet_volume, PetSliceParams(dilation_mm=6.0), source="pet.nii.gz")
    assert result.slices.shape == (4, S, S) and result.slices.dtype == np.float32
    assert result.z_indices.tolist() == [1, 2, 4, 5]
    assert result.provenance == [("pet.nii.gz", 1), ("pet.nii.gz", 2), ("pet.nii.gz", 4), ("pet.nii.gz", 5)]


def test_pet_dilation_decides_borderline_slices(pet_volume):
    # slice 2 covers 18%: without dilation it is dropped
    result = pet_pretraining_slices(pet_volume, PetSliceParams(dilation_mm=0.0))
    assert result.z_indices.tolist() == [1, 4, 5]
    # a stricter threshold drops slice 4 (21%) too
    result = pet_pretraining_slices(pet_volume, PetSliceParams(dilation_mm=0.0, min_coverage=0.22))
    assert result.z_indices.tolist() == [1, 5]


def test_pet_slices_are_recentred_on_the_foreground_centre_of_mass(pet_volume):
    result = pet_pretraining_slices(pet_volume, PetSliceParams(dilation_mm=6.0))
    centre = (S - 1) / 2
    for out in result.slices:
        ys, xs = np.nonzero(foreground_of(out, result.stats))
        assert abs(ys.mean() - centre) <= 0.5 and abs(xs.mean() - centre) <= 0.5
    # the off-centre ellipse (centre y=30, x=65 in the source) moved, its shape intact
    ellipse = foreground_of(result.slices[result.z_indices.tolist().index(4)], result.stats)
    source = pet_volume.array[4] > result.stats["threshold"]
    assert ellipse.sum() == source.sum()


def test_pet_crops_large_slices_around_the_foreground(tmp_path):
    shape = (300, 280)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    array = np.zeros((3, *shape), dtype=np.float32)
    array[1] = np.where((yy - 120) ** 2 + (xx - 170) ** 2 <= 85**2, 2.0, 0.0) + 0.05
    array[1, 120, 170] = 4.0
    volume = read_volume(write_nifti(array, (1.5, 1.5, 2.0), tmp_path / "big.nii.gz"))
    result = pet_pretraining_slices(volume)
    assert result.z_indices.tolist() == [1]
    out = result.slices[0]
    ys, xs = np.nonzero(foreground_of(out, result.stats))
    assert abs(ys.mean() - 127.5) <= 0.5 and abs(xs.mean() - 127.5) <= 0.5
    assert len(ys) == int((array[1] > result.stats["threshold"]).sum())  # cropped, not cut into the disk
    assert out.max() == 1.0


def test_pet_min_max_is_over_the_whole_volume_not_per_slice(pet_volume):
    result = pet_pretraining_slices(pet_volume, PetSliceParams(dilation_mm=6.0))
    maxima = {int(z): float(out.max()) for z, out in zip(result.z_indices, result.slices, strict=True)}
    assert maxima[5] == 1.0  # the slice holding the volume maximum (10 SUV)
    low, high = AIR_SUV, 10.0
    assert result.stats["min"] == pytest.approx(low) and result.stats["max"] == pytest.approx(high)
    for z in (1, 2):  # 1.02 SUV plateaus, not stretched to 1
        assert maxima[z] == pytest.approx((1.0 + AIR_SUV - low) / (high - low), rel=1e-5)
    assert maxima[4] == pytest.approx((1.5 + AIR_SUV - low) / (high - low), rel=1e-5)
    assert result.slices.min() == 0.0
    assert np.all(result.slices[:, 0, 0] == 0.0)  # padding (the volume minimum) maps to 0


def test_pet_volume_maximum_in_a_dropped_slice_still_sets_the_scale(pet_volume):
    array = pet_volume.array.copy()
    array[6, 5, 5] = 20.0  # the speck on a dropped slice becomes the volume maximum
    result = pet_pretraining_slices(pet_volume.with_array(array), PetSliceParams(dilation_mm=6.0))
    assert result.z_indices.tolist() == [1, 2, 4, 5]
    assert result.slices.max() == pytest.approx((10.0 - AIR_SUV) / (20.0 - AIR_SUV), rel=1e-5)


def test_pet_rule_is_scale_free(pet_volume):
    # Bq/ml instead of SUV: the same slices
    params = PetSliceParams(dilation_mm=6.0)
    suv = pet_pretraining_slices(pet_volume, params)
    bqml = pet_pretraining_slices(pet_volume.with_array(pet_volume.array * 5300.0, units="Bq/ml"), params)
    assert bqml.z_indices.tolist() == suv.z_indices.tolist()
    np.testing.assert_allclose(bqml.slices, suv.slices, atol=1e-6)


def test_pet_refuses_ct_and_label_maps(pet_volume, tmp_path):
    ct_like = pet_volume.with_array(np.where(pet_volume.array > 0.5, 40.0, -1000.0).astype(np.float32))
    with pytest.raises(DataError, match="strongly negative"):
        pet_pretraining_slices(ct_like, source="ct.nii.gz")
    mask = pet_volume.with_array((pet_volume.array > 0.5).astype(np.float32))
    with pytest.raises(DataError, match="label map"):
        pet_pretraining_slices(mask)
    ct = read_volume(write_nifti(ct_like.array, PET_SPACING, tmp_path / "c.nii.gz"), modality="CT")
    with pytest.raises(DataError, match="is a CT image but PT slices"):
        pet_pretraining_slices(ct)


# --- CT -------------------------------------------------------------------------------------------------

CT_SPACING = (0.9, 1.2, 2.5)  # mm (x, y, z): anisotropic in-plane, so swapped axes would show


def ct_array(metal_hu: float = 1000.0) -> np.ndarray:
    """6 slices of 120 (y) x 100 (x) px, air around a 45 mm x 36 mm soft-tissue block in slices 1-4."""
    array = np.full((6, 120, 100), -1000.0, dtype=np.float32)
    block = (slice(40, 70), slice(20, 70))  # 30 px x 1.2 mm = 36 mm (y), 50 px x 0.9 mm = 45 mm (x)
    array[1:5][(slice(None), *block)] = 40.0
    array[2, 50:60, 30:40] = 400.0  # bone-like insert
    array[3, 55, 45] = metal_hu
    return array


@pytest.fixture(scope="module")
def ct_volume(tmp_path_factory) -> Volume:
    return read_volume(write_nifti(ct_array(), CT_SPACING, tmp_path_factory.mktemp("ct") / "ct.nii.gz"), modality="CT")


def test_ct_skips_slices_without_body(ct_volume):
    result = ct_pretraining_slices(ct_volume, source="ct")
    assert result.slices.shape == (4, S, S) and result.slices.dtype == np.float32
    assert result.z_indices.tolist() == [1, 2, 3, 4]


def test_ct_is_resampled_to_045_mm_in_plane_and_centred_on_the_body(ct_volume):
    result = ct_pretraining_slices(ct_volume)
    out = result.slices[0]  # slice 1: the block alone
    air, tissue = out[0, 0], np.median(out[120:135, 120:135])
    inside = out > (air + tissue) / 2
    rows, cols = np.nonzero(inside.any(axis=1))[0], np.nonzero(inside.any(axis=0))[0]
    width, height = cols.max() - cols.min() + 1, rows.max() - rows.min() + 1
    assert abs(width - 45.0 / 0.45) <= 1  # 100 px
    assert abs(height - 36.0 / 0.45) <= 1  # 80 px
    for low, high in ((rows.min(), rows.max()), (cols.min(), cols.max())):
        assert abs((low + high) / 2 - 127.5) <= 1.0


def test_ct_slices_are_z_scored_per_slice(ct_volume):
    result = ct_pretraining_slices(ct_volume)
    means = result.slices.mean(axis=(1, 2), dtype=np.float64)
    stds = result.slices.std(axis=(1, 2), dtype=np.float64)
    np.testing.assert_allclose(means, 0.0, atol=1e-5)
    np.testing.assert_allclose(stds, 1.0, atol=1e-4)
    # per slice, not per volume: slice 2 (with the bone insert) differs from slice 1 in its air value
    assert abs(result.slices[0, 0, 0] - result.slices[1, 0, 0]) > 1e-3
    # outside the scanned field of view (100 x 0.9 mm = 90 mm < 115 mm) is air, the slice minimum
    assert result.slices[0, 127, 0] == pytest.approx(result.slices[0].min(), abs=1e-4)


def test_ct_hu_window_clips_before_min_max(tmp_path):
    one = read_volume(write_nifti(ct_array(metal_hu=1000.0), CT_SPACING, tmp_path / "a.nii.gz"), modality="CT")
    metal = read_volume(write_nifti(ct_array(metal_hu=3000.0), CT_SPACING, tmp_path / "b.nii.gz"), modality="CT")
    np.testing.assert_allclose(ct_pretraining_slices(one).slices, ct_pretraining_slices(metal).slices, atol=1e-5)
    unclipped = CtSliceParams(hu_window=None)
    a, b = ct_pretraining_slices(one, unclipped).slices, ct_pretraining_slices(metal, unclipped).slices
    assert not np.allclose(a[2], b[2], atol=1e-3)  # slice 3 holds the metal
    np.testing.assert_allclose(a[0], b[0], atol=1e-5)


def test_ct_refuses_volumes_that_are_not_hu(ct_volume):
    with pytest.raises(DataError, match="not a CT in Hounsfield units"):
        ct_pretraining_slices(ct_volume.with_array(ct_volume.array + 1024.0))
    with pytest.raises(DataError, match="is a PT image but CT slices"):
        ct_pretraining_slices(ct_volume.with_array(ct_volume.array, modality="PT"))


# --- parameters -----------------------------------------------------------------------------------------


def test_parameters_are_validated_and_dispatched(ct_volume):
    assert slice_params("PT", {"dilation_mm": 8}) == PetSliceParams(dilation_mm=8.0)
    ct = slice_params("CT", {"hu_window": [-1000, 2000]})
    assert ct.hu_window == (-1000.0, 2000.0) and ct.to_dict()["hu_window"] == [-1000.0, 2000.0]
    with pytest.raises(ConfigError, match="unknown CT slice parameter"):
        slice_params("CT", {"dilation_mm": 3})
    with pytest.raises(ConfigError, match="min_coverage"):
        PetSliceParams(min_coverage=1.5)
    with pytest.raises(ConfigError, match="unknown pretraining modality"):
        slice_params("MR")
    with pytest.raises(ConfigError, match="need CtSliceParams"):
        pretraining_slices(ct_volume, "CT", PetSliceParams())
    assert pretraining_slices(ct_volume, "CT").z_indices.tolist() == [1, 2, 3, 4]
