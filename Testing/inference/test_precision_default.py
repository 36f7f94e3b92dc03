"""Inference runs bf16 by default where the CPU computes it natively, float32 elsewhere, and bf16 is safe:
labels agree with float32 on >= 99.5% of voxels and the Dice change is <= 0.01 (issue 12's check)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from DualDINOv3Lib import load_segmenter, runtime, segment_volume
from DualDINOv3Lib.data import Volume
from DualDINOv3Lib.evaluation import dice_coefficient
from DualDINOv3Lib.models import build_segmenter
from DualDINOv3Lib.phantoms import make_phantom

CPU = torch.device("cpu")


@pytest.mark.parametrize("native", [True, False])
def test_the_inference_default_is_what_the_cpu_detection_says(monkeypatch, native):
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: native)
    assert runtime.mixed_precision_dtype(CPU, inference=True) == (torch.bfloat16 if native else None)
    assert runtime.mixed_precision_dtype(CPU) is None  # training: float32 on any CPU unless asked
    assert runtime.mixed_precision_dtype(CPU, False, inference=True) is None
    assert runtime.mixed_precision_dtype(CPU, True) == torch.bfloat16
    assert runtime.mixed_precision_dtype(torch.device("mps"), inference=True) is None


@pytest.mark.parametrize("native", [True, False])
def test_segment_volume_runs_the_detected_precision_by_default(monkeypatch, native):
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: native)
    model = load_segmenter()
    seen = []
    hook = model.fusions[0].register_forward_hook(lambda m, i, out: seen.append(out.dtype))
    rng = np.random.default_rng(0)
    ct = Volume(rng.normal(40, 30, (2, 40, 40)).astype(np.float32), (4.0, 4.0, 3.0), modality="CT", units="HU")
    pet = ct.with_array(rng.gamma(2.0, 0.5, (2, 40, 40)).astype(np.float32), modality="PT", units="SUV")
    options = {"device": "cpu", "skip_empty_slices": False, "check_inputs": False}
    try:
        segment_volume(ct, pet, model, **options)
        assert set(seen) == {torch.bfloat16 if native else torch.float32}
    finally:
        hook.remove()


def _agreement(fp32: np.ndarray, bf16: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """(fraction of voxels with the same label, largest change of a class's Dice against the truth)."""
    change = max(abs(dice_coefficient(truth == c, bf16 == c) - dice_coefficient(truth == c, fp32 == c)) for c in (1, 2))
    return float((fp32 == bf16).mean()), change


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1003, 1004])
def test_bf16_labels_agree_with_float32_on_held_out_phantoms_with_the_bundled_model(seed):
    phantom = make_phantom(seed)  # seeds >= 1000 were never seen in training (see resources/README.md)
    model = load_segmenter()
    labels = {
        p: np.asarray(segment_volume(phantom.ct, phantom.pet, model, device="cpu", mixed_precision=p).array)
        for p in (False, True)
    }
    same, change = _agreement(labels[False], labels[True], np.asarray(phantom.label.array))
    assert same >= 0.995 and change <= 0.01, (same, change)


@pytest.mark.slow
def test_bf16_labels_agree_with_float32_for_a_random_dual_vit_b_at_512():
    """The paper-size network (random weights: its logits are close together, the hard case for rounding)."""
    torch.manual_seed(0)
    model = build_segmenter({"architecture": "dual_stream", "backbone": "vitb16"}).eval()
    assert model.config.preprocessing.crop_size == 512
    phantom = make_phantom(1000, shape=(40, 512, 512), spacing=(0.5, 0.5, 3.0))
    ct, truth = _tumour_slices(phantom.ct, phantom.label, 3)  # three 512x512 slices through the GTVp
    labels = {
        p: np.asarray(segment_volume(ct, phantom.pet, model, device="cpu", mixed_precision=p, batch_size=3).array)
        for p in (False, True)
    }
    same, change = _agreement(labels[False], labels[True], truth)
    assert same >= 0.995 and change <= 0.01, (same, change)


def _tumour_slices(ct, label, n: int):
    """``n`` consecutive CT slices centred on the GTVp (a CT volume with its origin moved) and their labels."""
    assert ct.direction == (1, 0, 0, 0, 1, 0, 0, 0, 1)
    z = np.flatnonzero(np.asarray(label.array == 1).any(axis=(1, 2)))
    first = int(z[len(z) // 2]) - n // 2
    origin = (ct.origin[0], ct.origin[1], ct.origin[2] + first * ct.spacing[2])
    part = dataclasses.replace(ct, array=ct.array[first : first + n], origin=origin)
    return part, np.asarray(label.array[first : first + n])


def test_weights_cast_once_give_autocasts_numbers_and_are_put_back():
    from DualDINOv3Lib.inference.segment import matmul_weights_in

    torch.manual_seed(0)
    config = {"architecture": "dual_stream", "backbone": "vit_nano16", "preprocessing": {"crop_size": 64}}
    model = build_segmenter(config).eval()
    x = torch.randn(2, 2, 64, 64)
    before = {name: value.clone() for name, value in model.state_dict().items()}
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        expected = model(x)
        with matmul_weights_in(model, torch.bfloat16):
            assert (
                model.fusions[0].project.weight.dtype == model.ct_encoder.blocks[0].mlp.fc1.bias.dtype == torch.bfloat16
            )
            assert model.fusions[0].norm_ct.weight.dtype == model.ct_encoder.blocks[0].ls1.gamma.dtype == torch.float32
            cast_once = model(x)
    assert torch.equal(cast_once, expected)  # autocast rounds the weights the same way, call after call
    with pytest.raises(RuntimeError, match="stop"), matmul_weights_in(model, torch.bfloat16):
        raise RuntimeError("stop")
    after = model.state_dict()
    assert all(after[name].dtype == value.dtype and torch.equal(after[name], value) for name, value in before.items())
