"""2.5D inputs (``preprocessing.context_mm``): each encoder sees its modality before, at and after the slice,
read at a physical distance; training ties a modality's augmentation across its slices and swaps the context
at random; a 2.5D model trains, saves, loads and segments a whole volume."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from DualDINOv3Lib.data import LABEL_MODALITY, Volume
from DualDINOv3Lib.data.hecktor import list_hecktor_cases, read_hecktor_case
from DualDINOv3Lib.errors import ConfigError
from DualDINOv3Lib.finetune.augment import AugmentationConfig, augment_batch, sample_augmentation
from DualDINOv3Lib.finetune.config import parse_finetune_config
from DualDINOv3Lib.finetune.dataset import CachedCase, SliceSampler, _class_slices, load_cached_case
from DualDINOv3Lib.finetune.splits import split_validation
from DualDINOv3Lib.finetune.trainer import finetune
from DualDINOv3Lib.inference import segment_volume, segment_with_feature_maps
from DualDINOv3Lib.models import PreprocessingSpec, build_segmenter, load_segmenter, save_segmenter
from DualDINOv3Lib.models.config import parse_config
from DualDINOv3Lib.phantoms import write_phantom_cases
from DualDINOv3Lib.preprocessing import CasePreprocessor

CONFIG_25D = {
    "name": "tiny25d",
    "architecture": "dual_stream",
    "backbone": "vit_nano16",
    "preprocessing": {"crop_size": 112, "context_mm": 8.0},
}


def _ramp_case(z=10, slice_mm=3.0):
    """A body whose PET is SUV ``k + 1`` on slice ``k`` (so a slice's input value tells where it was read); the
    PET's minimum is 0 (outside the body) and its maximum 10, so min-max scaling divides by 10."""
    yy, xx = np.mgrid[:64, :64]
    body = ((yy - 32) / 24) ** 2 + ((xx - 32) / 24) ** 2 < 1
    ct = np.where(body, 40.0, -1000.0).astype(np.float32)[None].repeat(z, axis=0)
    ct += np.random.default_rng(0).normal(0, 5, ct.shape).astype(np.float32)
    pet = (np.arange(z, dtype=np.float32)[:, None, None] + 1.0) * body
    ctv = Volume(ct, (2.0, 2.0, slice_mm), units="HU", modality="CT")
    return ctv, ctv.with_array(pet.astype(np.float32), units="SUV", modality="PT")


def test_context_is_read_at_a_physical_distance_and_clamped_at_the_ends():
    ct, pet = _ramp_case()
    spec = PreprocessingSpec(crop_size=64, context_mm=4.5)  # 1.5 slices of 3 mm; PET min-max: SUV / 10
    prep = CasePreprocessor(ct, pet, spec)
    x = prep.images([0, 4, 9])
    assert x.shape == (3, 6, 64, 64)
    centre = x[:, :, 32, 32] * 10.0  # SUV
    # channels: CT, PET at the slice; CT, PET 4.5 mm before; CT, PET 4.5 mm after
    np.testing.assert_allclose(centre[:, 1], [1.0, 5.0, 10.0], rtol=1e-5)
    np.testing.assert_allclose(centre[:, 3], [1.0, 3.5, 8.5], rtol=1e-5)  # slice 4 - 1.5 = 2.5 -> SUV 3.5
    np.testing.assert_allclose(centre[:, 5], [2.5, 6.5, 10.0], rtol=1e-5)
    plain = CasePreprocessor(ct, pet, PreprocessingSpec(crop_size=64)).images([0, 4, 9])
    torch.testing.assert_close(x[:, :2], plain)
    # the same anatomy 4.5 mm away whatever the slice thickness: 1.5 mm slices -> 3 slices back
    fine = CasePreprocessor(*_ramp_case(z=12, slice_mm=1.5), spec).images([6])
    assert fine[0, 3, 32, 32].item() * 12.0 == pytest.approx(4.0, rel=1e-5)  # 12 slices: the PET maximum is 12


def test_context_config_is_checked_and_kept_in_the_segmenter_file(tmp_path):
    cfg = parse_config(CONFIG_25D)
    assert cfg.preprocessing.context_mm == 8.0 and cfg.preprocessing.input_channels == 6
    with pytest.raises(ConfigError, match="needs a dual_stream model"):
        parse_config({**CONFIG_25D, "architecture": "single_stream"})
    with pytest.raises(ConfigError, match=r"context_mm must be a distance in mm in \[0, 100\]"):
        parse_config({**CONFIG_25D, "preprocessing": {"crop_size": 112, "context_mm": -2}})
    model = build_segmenter(cfg)
    with pytest.raises(ValueError, match=r"expected \(B, 6, H, W\) input"):
        model(torch.zeros(1, 2, 32, 32))
    inputs = model.encoder_inputs(torch.arange(6.0).view(1, 6, 1, 1).expand(1, 6, 2, 2))
    assert inputs["ct_encoder"][0, :, 0, 0].tolist() == [2.0, 0.0, 4.0]  # before, at, after (mean 0, std 1)
    assert inputs["pet_encoder"][0, :, 0, 0].tolist() == [3.0, 1.0, 5.0]
    save_segmenter(model, tmp_path / "m.safetensors")
    assert load_segmenter(tmp_path / "m.safetensors").config.preprocessing.context_mm == 8.0


def test_augmentation_ties_each_modality_across_its_slices():
    generator = torch.Generator().manual_seed(0)
    sources = PreprocessingSpec(context_mm=8.0).channel_modalities
    assert sources == (0, 1, 0, 1, 0, 1)
    params = sample_augmentation(16, 2, generator, AugmentationConfig(p_brightness=1.0, p_gamma=1.0))
    tied = params.for_channels(sources)
    for c in range(6):
        torch.testing.assert_close(tied.brightness[:, c], params.brightness[:, c % 2])
        torch.testing.assert_close(tied.gamma_channels[:, c], params.gamma_channels[:, c % 2])
        torch.testing.assert_close(tied.blur_sigma[:, c], params.blur_sigma[:, c % 2])
    assert torch.equal(tied.angle, params.angle) and torch.equal(tied.flip, params.flip)
    # a batch of identical slices stays identical within each modality after a tied augmentation
    ct, pet = torch.randn(1, 1, 32, 32), torch.rand(1, 1, 32, 32)
    images = torch.cat([ct, pet] * 3, dim=1).repeat(8, 1, 1, 1)
    config = AugmentationConfig(p_noise=0.0, p_low_resolution=0.0, p_brightness=1.0, p_contrast=1.0, p_blur=1.0)
    out, _ = augment_batch(images, None, torch.Generator().manual_seed(1), config, sources)
    torch.testing.assert_close(out[:, 2], out[:, 0])
    torch.testing.assert_close(out[:, 5], out[:, 1])
    untied, _ = augment_batch(images, None, torch.Generator().manual_seed(1), config)
    assert not torch.allclose(untied[:, 2], untied[:, 0])
    with pytest.raises(ValueError, match="channel_sources names 2 channels, the images have 6"):
        augment_batch(images, None, generator, config, (0, 1))


def test_sampler_swaps_the_context_in_about_half_the_samples():
    z = 6
    images = np.zeros((z, 2, 4, 4), np.float32)
    images[:, 0] = np.arange(z, dtype=np.float32)[:, None, None]  # CT = slice index
    labels = np.zeros((z, 4, 4), np.uint8)
    case = CachedCase("A", images, labels, _class_slices(labels), slice_mm=2.0, context_mm=2.0)  # one slice away
    sampler = SliceSampler([case], 64, 0.0, seed=0)
    picks = sampler.next_indices()
    sampler.generator.manual_seed(0)
    batch, _ = sampler.next_batch()
    centre = batch[:, 0, 0, 0]
    assert centre.tolist() == [float(z) for _, z in picks]
    before, after = batch[:, 2, 0, 0], batch[:, 4, 0, 0]
    swapped = before > after
    interior = (centre > 0) & (centre < z - 1)
    assert torch.equal(torch.where(swapped, after, before)[interior], centre[interior] - 1)
    assert 0.3 < swapped[interior].float().mean().item() < 0.7
    assert torch.all(batch[:, [1, 3, 5]] == 0.0)


@pytest.mark.slow
def test_a_25d_model_trains_and_segments_a_whole_volume(tmp_path):
    data = tmp_path / "phantoms"
    write_phantom_cases(data, 3, seed=5, shape=(34, 100, 100), spacing=(2.0, 2.0, 3.0), pet_spacing=(4.0, 4.0, 3.0))
    train, val = split_validation(list_hecktor_cases(data, require_labels=True), 0.34, seed=0)
    cfg = parse_finetune_config({"epochs": 4, "iterations_per_epoch": 6, "batch_size": 4, "warmup_epochs": 0,
                                 "learning_rate": 2e-3})  # fmt: skip
    result = finetune(CONFIG_25D, train, val, tmp_path / "run", cfg, device="cpu", cache_dir=tmp_path / "cache")
    losses = [row["train_loss"] for row in result.history]
    assert losses[-1] < losses[0], losses
    # the cache holds single slices (shared with 2D runs); training adds the same context inference reads
    cached = load_cached_case(val[0], parse_config(CONFIG_25D).preprocessing, tmp_path / "cache")
    assert cached.images.shape[1:] == (2, 112, 112) and cached.slice_mm == 3.0
    model = load_segmenter(tmp_path / "run" / "last.safetensors")
    ct, pet, _ = read_hecktor_case(val[0])
    at_inference = CasePreprocessor(ct, pet, model.config.preprocessing).images([0, 7, 33])
    torch.testing.assert_close(cached.inputs([0, 7, 33]), at_inference)
    label = segment_volume(ct, pet, model, device="cpu", head_neck_only=False)
    assert label.shape == ct.shape and label.modality == LABEL_MODALITY
    joint, maps = segment_with_feature_maps(ct, pet, model, device="cpu", head_neck_only=False)
    np.testing.assert_array_equal(joint.array, label.array)
    assert set(maps) == {"ct", "pet"} and all(m.shape[:3] == ct.shape for m in maps.values())
