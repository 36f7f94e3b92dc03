"""``segment_volume``: geometry, slice skipping, batching, progress, cancel, devices, post-processing."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from DualDINOv3Lib import DualDINOv3Error, segment_volume
from DualDINOv3Lib.data import LABEL_MODALITY, Volume
from DualDINOv3Lib.inference import Cancelled, remove_small_components, resolve_device
from DualDINOv3Lib.models import build_segmenter, save_segmenter


def _ct_pet(z=8):
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[:70, :80]
    body = ((yy - 35) / 25) ** 2 + ((xx - 40) / 30) ** 2 < 1
    ct = np.full((z, 70, 80), -1000.0, np.float32)
    ct[2:, body] = 40.0  # slices 0 and 1 hold no body
    ct += rng.normal(0, 5, ct.shape).astype(np.float32)
    ct_volume = Volume(ct, (1.1, 1.2, 3.0), origin=(-44.0, -42.0, 7.5), modality="CT")
    pet = rng.random((z // 2, 24, 26)).astype(np.float32)
    pet_volume = Volume(pet, (3.5, 3.6, 6.0), origin=(-45.0, -41.0, 8.0), modality="PT")
    return ct_volume, pet_volume


@pytest.fixture(scope="module")
def segmenter():
    torch.manual_seed(0)
    config = {
        "architecture": "dual_stream",
        "backbone": "vit_nano16",
        "preprocessing": {"crop_size": 64, "spacing_mm": [1.5, 1.5]},
    }
    return build_segmenter(config).eval()


def test_output_is_a_label_volume_on_exactly_the_ct_grid(segmenter):
    ct, pet = _ct_pet()
    label = segment_volume(ct, pet, segmenter)
    assert label.array.shape == ct.array.shape and label.array.dtype == np.uint8
    assert (label.spacing, label.origin, label.direction) == (ct.spacing, ct.origin, ct.direction)
    assert label.modality == LABEL_MODALITY
    assert set(np.unique(label.array)) <= {0, 1, 2}


def test_slices_without_body_are_skipped_unless_asked(segmenter):
    ct, pet = _ct_pet()
    seen = []
    hook = segmenter.register_forward_hook(lambda m, inp, out: seen.append(inp[0].shape[0]))
    try:
        label = segment_volume(ct, pet, segmenter, batch_size=4)
        assert sum(seen) == 6 and not label.array[:2].any()
        seen.clear()
        segment_volume(ct, pet, segmenter, batch_size=4, skip_empty_slices=False)
        assert sum(seen) == 8
    finally:
        hook.remove()


def test_batch_size_does_not_change_the_result_and_runs_are_deterministic(segmenter):
    ct, pet = _ct_pet()
    fp32 = {"mixed_precision": False}  # the arithmetic under test; bf16 (the default on some CPUs) rounds more
    one = segment_volume(ct, pet, segmenter, batch_size=1, **fp32)
    three = segment_volume(ct, pet, segmenter, batch_size=3, **fp32)
    again = segment_volume(ct, pet, segmenter, batch_size=3, **fp32)
    np.testing.assert_array_equal(three.array, again.array)
    assert (one.array != three.array).mean() < 1e-3  # float summation order only


def test_progress_reaches_one_and_cancel_stops_cleanly(segmenter):
    ct, pet = _ct_pet()
    fractions = []
    segment_volume(ct, pet, segmenter, batch_size=2, progress=lambda f, m: fractions.append(f))
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and len(fractions) >= 4

    segmenter.train()
    calls = []

    def cancel_after_first_batch():
        calls.append(1)
        return len(calls) > 1

    with pytest.raises(Cancelled, match="cancelled"):
        segment_volume(ct, pet, segmenter, batch_size=2, cancel=cancel_after_first_batch)
    assert segmenter.training  # mode restored
    segmenter.eval()
    event = threading.Event()
    event.set()
    with pytest.raises(Cancelled):
        segment_volume(ct, pet, segmenter, cancel=event)


def test_model_can_be_given_as_a_file(segmenter, tmp_path):
    ct, pet = _ct_pet()
    path = save_segmenter(segmenter, tmp_path / "model.safetensors")
    np.testing.assert_array_equal(segment_volume(ct, pet, path).array, segment_volume(ct, pet, segmenter).array)


def test_device_resolution():
    assert resolve_device("cpu").type == "cpu"
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    if not torch.cuda.is_available() and torch.backends.mps.is_available():
        expected = "mps"
    assert resolve_device("auto").type == expected
    if not torch.cuda.is_available():
        with pytest.raises(DualDINOv3Error, match="no CUDA"):
            resolve_device("cuda")
    with pytest.raises(DualDINOv3Error, match="unknown device"):
        resolve_device("tpu9")


def test_small_components_are_removed_per_label():
    array = np.zeros((5, 20, 20), np.uint8)
    array[1:4, 2:8, 2:8] = 1  # 108 voxels x 2 mm3 = 216 mm3
    array[2, 15, 15] = 1  # 2 mm3
    array[2, 12:14, 2:4] = 2  # 4 voxels = 8 mm3
    label = Volume(array, (1.0, 1.0, 2.0), modality=LABEL_MODALITY)
    cleaned = remove_small_components(label, 10.0).array
    assert cleaned[1:4, 2:8, 2:8].all() and cleaned[2, 15, 15] == 0 and not (cleaned == 2).any()
    assert remove_small_components(label, 0) is label
