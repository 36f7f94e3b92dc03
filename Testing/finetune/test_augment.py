"""nnU-Net-style batch augmentation: each transform does what it says, images and labels stay aligned, the
seeded generator makes batches reproducible, probabilities match the config, bad input is refused."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from DualDINOv3Lib.errors import ConfigError, DataError
from DualDINOv3Lib.finetune import AugmentationConfig, apply_augmentation, augment_batch, sample_augmentation
from DualDINOv3Lib.finetune.augment_intensity import (
    add_gaussian_noise,
    adjust_contrast,
    gamma_transform,
    gaussian_blur,
    scale_brightness,
    simulate_low_resolution,
)
from DualDINOv3Lib.finetune.augment_spatial import mirror, rotate_scale

OFF = AugmentationConfig(
    p_rotation=0,
    p_scaling=0,
    p_noise=0,
    p_blur=0,
    p_brightness=0,
    p_contrast=0,
    p_low_resolution=0,
    p_gamma_inverted=0,
    p_gamma=0,
    p_mirror=0,
)
ALL_ON = AugmentationConfig(
    p_rotation=1,
    p_scaling=1,
    p_noise=1,
    p_blur=1,
    p_blur_per_channel=1,
    p_brightness=1,
    p_contrast=1,
    p_low_resolution=1,
    p_low_resolution_per_channel=1,
    p_gamma_inverted=1,
    p_gamma=1,
    p_mirror=1,
)
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU"))]


def only(**settings) -> AugmentationConfig:
    return dataclasses.replace(OFF, **settings)


def generator(seed: int, device: str = "cpu") -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


def block_labels(batch: int, size: tuple[int, int], block: int = 8, seed: int = 0) -> torch.Tensor:
    """Piecewise-constant label maps (values 0, 1, 2) made of ``block`` x ``block`` squares."""
    g = generator(seed)
    coarse = torch.randint(0, 3, (batch, size[0] // block, size[1] // block), generator=g)
    return coarse.repeat_interleave(block, 1).repeat_interleave(block, 2)


def pet_ct_batch(batch: int = 6, size: tuple[int, int] = (40, 56), seed: int = 0):
    g = generator(seed)
    labels = block_labels(batch, size, seed=seed)
    ct = torch.randn((batch, *size), generator=g) + labels
    pet = torch.rand((batch, *size), generator=g) * 0.3 + 0.3 * labels
    return torch.stack([ct, pet], dim=1), labels


# --- the whole pipeline -----------------------------------------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("config", [AugmentationConfig(), ALL_ON], ids=["defaults", "all_on"])
def test_shapes_dtypes_and_device_are_kept_and_inputs_untouched(device, config):
    images, labels = pet_ct_batch()
    images, labels = images.to(device), labels.to(device)
    before = images.clone(), labels.clone()
    out, out_labels = augment_batch(images, labels, generator(1, device), config)
    assert out.shape == images.shape and out.dtype == torch.float32 and out.device == images.device
    assert out_labels.shape == labels.shape and out_labels.dtype == torch.int64 and out_labels.device == labels.device
    assert torch.equal(images, before[0]) and torch.equal(labels, before[1])
    assert not torch.equal(out, images)
    assert torch.isfinite(out).all()
    assert set(out_labels.unique().tolist()) <= {0, 1, 2}


def test_images_without_labels():
    images, _ = pet_ct_batch()
    out, no_labels = augment_batch(images, None, generator(0), ALL_ON)
    assert no_labels is None and out.shape == images.shape and not torch.equal(out, images)


@pytest.mark.parametrize("device", DEVICES)
def test_same_seed_same_batch_other_seed_other_batch(device):
    images, labels = pet_ct_batch(batch=16, size=(32, 32))
    images, labels = images.to(device), labels.to(device)
    torch.manual_seed(123)
    first = augment_batch(images, labels, generator(7, device))
    torch.manual_seed(456)  # the global RNG must play no part
    second = augment_batch(images, labels, generator(7, device))
    other = augment_batch(images, labels, generator(8, device))
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    assert not torch.equal(first[0], other[0])
    state = torch.get_rng_state()
    augment_batch(images, labels, generator(9, device), ALL_ON)
    assert torch.equal(torch.get_rng_state(), state), "augmentation drew from the global RNG"


def test_sample_then_apply_equals_augment_batch():
    images, labels = pet_ct_batch(batch=8)
    g = generator(3)
    params = sample_augmentation(8, 2, g, ALL_ON)
    split = apply_augmentation(images, labels, params, g, ALL_ON)
    whole = augment_batch(images, labels, generator(3), ALL_ON)
    assert torch.equal(split[0], whole[0]) and torch.equal(split[1], whole[1])


def test_disabled_config_is_identity_and_uses_no_randomness():
    images, labels = pet_ct_batch()
    g = generator(5)
    state = g.get_state()
    out, out_labels = augment_batch(images, labels, g, AugmentationConfig.none())
    assert out is images and out_labels is labels
    assert torch.equal(g.get_state(), state)
    # enabled, but every probability 0: the same values in new tensors
    out, out_labels = augment_batch(images, labels, g, OFF)
    assert torch.equal(out, images) and torch.equal(out_labels, labels) and out is not images


def test_probabilities_and_ranges_match_the_config():
    n = 20000
    p = sample_augmentation(n, 2, generator(0))

    def rate(mask: torch.Tensor) -> float:
        return mask.float().mean().item()

    tol = 0.015
    assert rate(p.angle != 0) == pytest.approx(0.2, abs=tol)
    assert rate(p.scale != 1) == pytest.approx(0.2, abs=tol)
    assert rate(p.do_spatial) == pytest.approx(1 - 0.8 * 0.8, abs=tol)
    assert p.angle.abs().max() <= math.pi and p.angle.abs().max() > 0.95 * math.pi
    assert p.scale.min() >= 0.7 and p.scale.max() <= 1.4
    # noise: per sample for all channels, one std for both channels
    assert torch.equal(p.noise_channels[:, 0], p.noise_channels[:, 1])
    assert rate(p.noise_channels[:, 0]) == pytest.approx(0.1, abs=tol)
    assert torch.equal(p.noise_std[:, 0], p.noise_std[:, 1]) and 0 <= p.noise_std.min() and p.noise_std.max() <= 0.1
    # blur and low resolution: per sample, then per channel with p 0.5
    assert rate(p.blur_channels) == pytest.approx(0.2 * 0.5, abs=tol)
    assert rate(p.blur_channels.all(dim=1)) == pytest.approx(0.2 * 0.25, abs=tol)
    assert p.blur_sigma.min() >= 0.5 and p.blur_sigma.max() <= 1.0
    assert not torch.equal(p.blur_sigma[..., 0], p.blur_sigma[..., 1])  # one sigma per axis
    assert rate(p.low_resolution_channels) == pytest.approx(0.25 * 0.5, abs=tol)
    assert p.low_resolution_zoom.min() >= 0.5 and p.low_resolution_zoom.max() <= 1.0
    for chosen, probability in (
        (p.brightness_channels, 0.15),
        (p.contrast_channels, 0.15),
        (p.gamma_inverted_channels, 0.1),
        (p.gamma_channels, 0.3),
    ):
        assert torch.equal(chosen[:, 0], chosen[:, 1])  # every channel of a chosen sample
        assert rate(chosen[:, 0]) == pytest.approx(probability, abs=tol)
    # factors around 1: half below 1, half above, within the range; one per channel
    for factors, (low, high) in ((p.brightness, (0.75, 1.25)), (p.contrast, (0.75, 1.25)), (p.gamma, (0.7, 1.5))):
        assert factors.min() >= low and factors.max() <= high
        assert rate(factors < 1) == pytest.approx(0.5, abs=tol)
        assert not torch.equal(factors[:, 0], factors[:, 1])
    assert rate(p.flip[:, 0]) == pytest.approx(0.5, abs=tol) and rate(p.flip[:, 1]) == pytest.approx(0.5, abs=tol)
    assert not torch.equal(p.flip[:, 0], p.flip[:, 1])
    # axes left out of mirror_axes are never flipped
    width_only = sample_augmentation(1000, 2, generator(0), AugmentationConfig(mirror_axes=(1,)))
    assert not width_only.flip[:, 0].any() and width_only.flip[:, 1].any()


# --- spatial transforms -------------------------------------------------------------------------------------


def test_rotation_keeps_labels_in_the_label_set():
    labels = (block_labels(8, (64, 64)) == 1).long() * 2  # values 0 and 2 only: bilinear would create 1s
    assert set(labels.unique().tolist()) == {0, 2}
    images = labels[:, None].float().repeat(1, 2, 1, 1)
    out, out_labels = augment_batch(images, labels, generator(0), only(p_rotation=1, p_scaling=1))
    assert set(out_labels.unique().tolist()) <= {0, 2}
    assert (out_labels != labels).float().mean() > 0.2  # it really moved
    assert ((out > 0.1) & (out < 1.9)).any()  # while the images were interpolated


def test_rotation_by_90_degrees_is_rot90():
    g = generator(0)
    images = torch.randn((3, 2, 32, 32), generator=g)
    labels = torch.randint(0, 3, (3, 32, 32), generator=g)
    for angle, k in ((math.pi / 2, 1), (-math.pi / 2, -1), (math.pi, 2)):
        out, out_labels = rotate_scale(images, labels, torch.full((3,), angle), torch.ones(3))
        torch.testing.assert_close(out, torch.rot90(images, k, dims=(-2, -1)), atol=5e-5, rtol=0)
        assert torch.equal(out_labels, torch.rot90(labels, k, dims=(-2, -1)))


def test_rotation_is_rigid_on_non_square_slices():
    g = generator(1)
    images = torch.randn((2, 2, 24, 40), generator=g)
    labels = torch.randint(0, 3, (2, 24, 40), generator=g)
    out, out_labels = rotate_scale(images, labels, torch.full((2,), math.pi), torch.ones(2))
    torch.testing.assert_close(out, images.flip(-2, -1), atol=5e-5, rtol=0)
    assert torch.equal(out_labels, labels.flip(-2, -1))
    # a disc stays a disc of the same area when turned by 90 degrees on a 48 x 96 slice
    yy, xx = torch.meshgrid(torch.arange(48) - 23.5, torch.arange(96) - 47.5, indexing="ij")
    disc = ((yy**2 + xx**2) < 15**2).long()[None]
    _, turned = rotate_scale(disc[:, None].float(), disc, torch.tensor([math.pi / 2]), torch.ones(1))
    assert turned.sum().item() == pytest.approx(disc.sum().item(), rel=0.03)
    rows, cols = turned[0].nonzero().T.float()
    assert (rows.max() - rows.min()).item() == pytest.approx((cols.max() - cols.min()).item(), abs=1)


@pytest.mark.parametrize(("scale", "area_factor"), [(0.5, 4.0), (2.0, 0.25), (1.25, 0.64)])
def test_scaling_changes_the_area_by_one_over_scale_squared(scale, area_factor):
    labels = torch.zeros((1, 128, 128), dtype=torch.long)
    labels[:, 48:80, 48:80] = 1  # centred 32 x 32 square
    images = labels[:, None].float()
    out, out_labels = rotate_scale(images, labels, torch.zeros(1), torch.tensor([scale]))
    assert out_labels.sum().item() == pytest.approx(32**2 * area_factor, rel=0.06)
    assert out.sum().item() == pytest.approx(32**2 * area_factor, rel=0.06)
    # the same through the pipeline with the scaling range pinned
    pinned = only(p_scaling=1, scaling=(scale, scale))
    _, via_config = augment_batch(images, labels, generator(0), pinned)
    assert torch.equal(via_config, out_labels)


def _decode_pure_pixels(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Images with channel k = (label == k + 1): where a pixel is not a mix of classes, its label."""
    near = lambda v, t: (v - t).abs() < 1e-3  # noqa: E731
    one, two = images[:, 0], images[:, 1]
    pure = (near(one, 0) | near(one, 1)) & (near(two, 0) | near(two, 1)) & ~(near(one, 1) & near(two, 1))
    decoded = torch.where(near(one, 1), 1, torch.where(near(two, 1), 2, 0))
    return pure, decoded


def test_spatial_transforms_keep_images_and_labels_aligned():
    labels = block_labels(12, (64, 48), block=8, seed=3)
    images = torch.stack([(labels == 1).float(), (labels == 2).float()], dim=1)
    out, out_labels = augment_batch(images, labels, generator(11), only(p_rotation=1, p_scaling=1, p_mirror=0.5))
    pure, decoded = _decode_pure_pixels(out)
    assert pure.float().mean() > 0.5
    assert torch.equal(decoded[pure], out_labels[pure])
    assert (out_labels != labels).float().mean() > 0.2
    # the check can fail: labels transformed differently from their images do not match
    shuffled = out_labels.roll(1, dims=0)
    assert (decoded[pure] != shuffled[pure]).float().mean() > 0.2


def test_mirror_flips_images_and_labels_alike():
    images, labels = pet_ct_batch(batch=4)
    flips = torch.tensor([[False, False], [True, False], [False, True], [True, True]])
    out, out_labels = mirror(images, labels, flips)
    for i, dims in enumerate([(), (-2,), (-1,), (-2, -1)]):
        expected = images[i].flip(dims) if dims else images[i]
        expected_labels = labels[i].flip(dims) if dims else labels[i]
        assert torch.equal(out[i], expected) and torch.equal(out_labels[i], expected_labels)
    assert not torch.equal(out, images)  # flipped copies, inputs kept
    out, out_labels = augment_batch(images, labels, generator(0), only(p_mirror=1.0))
    assert torch.equal(out, images.flip(-2, -1)) and torch.equal(out_labels, labels.flip(-2, -1))
    out, out_labels = augment_batch(images, labels, generator(0), only(p_mirror=1.0, mirror_axes=(1,)))
    assert torch.equal(out, images.flip(-1)) and torch.equal(out_labels, labels.flip(-1))


# --- intensity transforms -----------------------------------------------------------------------------------


def test_gaussian_noise_has_the_requested_std():
    g = generator(0)
    x = torch.zeros((2, 256, 256))
    out = add_gaussian_noise(x, torch.tensor([0.03, 0.1]), g)
    assert out[0].std().item() == pytest.approx(0.03, rel=0.03)
    assert out[1].std().item() == pytest.approx(0.1, rel=0.03)
    assert out.mean().abs().item() < 2e-3
    # in the pipeline both channels of a sample share one std but get independent noise
    images = torch.zeros((4, 2, 128, 128))
    noisy, _ = augment_batch(images, None, generator(1), only(p_noise=1, noise_std=(0.02, 0.1)))
    stds = noisy.std(dim=(2, 3))
    torch.testing.assert_close(stds[:, 0], stds[:, 1], rtol=0.05, atol=0)
    assert len(set(stds[:, 0].round(decimals=3).tolist())) == 4
    correlation = torch.corrcoef(noisy[0].reshape(2, -1))[0, 1]
    assert correlation.abs() < 0.05


def test_blur_reduces_variance_like_a_gaussian_of_that_sigma():
    g = generator(0)
    noise = torch.randn((2, 192, 192), generator=g)
    sigma = torch.tensor([[1.0, 1.0], [2.0, 2.0]])
    out = gaussian_blur(noise, sigma)
    for i, s in enumerate((1.0, 2.0)):
        expected = 1 / (4 * math.pi * s**2)  # variance kept by a 2D Gaussian filter on white noise
        assert (out[i].var() / noise[i].var()).item() == pytest.approx(expected, rel=0.1)
    constant = torch.full((1, 20, 20), 3.0)
    torch.testing.assert_close(gaussian_blur(constant, torch.tensor([[1.0, 1.0]])), constant)
    # sigma (H, W) = (2, ~0): blurs across rows only
    rows = torch.arange(32.0) % 2
    horizontal_stripes = rows[None, :, None].expand(1, 32, 32).contiguous()
    vertical_stripes = rows[None, None, :].expand(1, 32, 32).contiguous()
    along_h = torch.tensor([[2.0, 1e-3]])
    assert gaussian_blur(horizontal_stripes, along_h).std() < 0.05
    torch.testing.assert_close(gaussian_blur(vertical_stripes, along_h), vertical_stripes)


def test_brightness_and_contrast():
    g = generator(0)
    x = torch.rand((2, 16, 16), generator=g) * 4 - 1
    factors = torch.tensor([0.8, 1.2])
    torch.testing.assert_close(scale_brightness(x, factors), x * factors[:, None, None])
    lower = adjust_contrast(x, torch.tensor([0.75, 0.5]))
    torch.testing.assert_close(lower.mean(dim=(1, 2)), x.mean(dim=(1, 2)), atol=1e-5, rtol=0)
    torch.testing.assert_close(lower.std(dim=(1, 2)), x.std(dim=(1, 2)) * torch.tensor([0.75, 0.5]), atol=1e-5, rtol=0)
    higher = adjust_contrast(x, torch.tensor([1.25, 2.0]))
    assert (higher.amin(dim=(1, 2)) >= x.amin(dim=(1, 2))).all()
    assert (higher.amax(dim=(1, 2)) <= x.amax(dim=(1, 2))).all()
    assert (higher.std(dim=(1, 2)) > x.std(dim=(1, 2))).all()
    unclipped = adjust_contrast(x, torch.tensor([2.0, 2.0]), preserve_range=False)
    assert (unclipped.amax(dim=(1, 2)) > x.amax(dim=(1, 2))).all()


def test_low_resolution_matches_interpolate_and_loses_high_frequencies():
    g = generator(0)
    x = torch.randn((5, 37, 50), generator=g)
    zooms = torch.tensor([0.5, 0.63, 0.8, 0.91, 1.0])
    out = simulate_low_resolution(x, zooms)
    for i, zoom in enumerate(zooms.tolist()):
        size = [max(1, round(n * zoom)) for n in x.shape[1:]]
        small = F.interpolate(x[i][None, None], size, mode="nearest-exact")
        reference = F.interpolate(small, x.shape[1:], mode="bilinear", align_corners=False)[0, 0]
        torch.testing.assert_close(out[i], reference, atol=5e-5, rtol=0)
    torch.testing.assert_close(out[4], x[4])  # zoom 1: unchanged
    # high frequencies go, a slow wave stays
    noise = torch.randn((1, 128, 128), generator=g)
    spectrum = lambda img: torch.fft.fftshift(torch.fft.fft2(img)).abs() ** 2  # noqa: E731
    yy, xx = torch.meshgrid(torch.arange(128) - 64, torch.arange(128) - 64, indexing="ij")
    high = (yy.abs() > 40) | (xx.abs() > 40)
    low_res = simulate_low_resolution(noise, torch.tensor([0.5]))
    assert (spectrum(low_res)[0][high].sum() / spectrum(noise)[0][high].sum()) < 0.15
    wave = torch.sin(torch.arange(128.0) * 2 * math.pi / 32)[None, None, :].expand(1, 128, 128)
    kept = simulate_low_resolution(wave.contiguous(), torch.tensor([0.5]))
    assert torch.corrcoef(torch.stack([kept.flatten(), wave.flatten()]))[0, 1] > 0.98


def test_gamma_keeps_range_or_statistics():
    g = generator(0)
    x = torch.rand((4, 24, 24), generator=g) * 3 - 1
    gamma = torch.tensor([2.0, 0.7, 1.5, 1.0])
    plain = gamma_transform(x, gamma, torch.zeros(4, dtype=torch.bool), retain_stats=False)
    inverted = gamma_transform(x, gamma, torch.ones(4, dtype=torch.bool), retain_stats=False)
    for out in (plain, inverted):
        torch.testing.assert_close(out.amin(dim=(1, 2)), x.amin(dim=(1, 2)), atol=1e-5, rtol=0)
        torch.testing.assert_close(out.amax(dim=(1, 2)), x.amax(dim=(1, 2)), atol=1e-5, rtol=0)
    torch.testing.assert_close(plain[3], x[3], atol=1e-5, rtol=0)  # gamma 1: unchanged
    assert (plain[0] <= x[0] + 1e-6).all() and (plain[0] < x[0] - 0.05).any()  # gamma > 1 darkens
    assert (inverted[0] >= x[0] - 1e-6).all() and (inverted[0] > x[0] + 0.05).any()  # inverted: brightens
    assert (plain[1] >= x[1] - 1e-6).all()  # gamma < 1 brightens
    kept = gamma_transform(x, gamma, torch.tensor([False, True, False, True]), retain_stats=True)
    torch.testing.assert_close(kept.mean(dim=(1, 2)), x.mean(dim=(1, 2)), atol=1e-5, rtol=0)
    torch.testing.assert_close(kept.std(dim=(1, 2)), x.std(dim=(1, 2)), atol=1e-5, rtol=0)
    assert not torch.allclose(kept[0], x[0], atol=1e-2)


def test_intensity_transforms_touch_only_the_chosen_channels():
    images, labels = pet_ct_batch(batch=64, size=(16, 16))
    out, out_labels = augment_batch(images, labels, generator(2), only(p_blur=1, p_blur_per_channel=0.5))
    changed = (out != images).flatten(2).any(dim=2)  # (B, C)
    expected = sample_augmentation(64, 2, generator(2), only(p_blur=1, p_blur_per_channel=0.5)).blur_channels
    assert torch.equal(changed, expected) and 0 < changed.float().mean() < 1
    assert torch.equal(out_labels, labels)  # intensity transforms leave labels alone


# --- configuration and bad input ----------------------------------------------------------------------------


def test_config_defaults_are_nnunets():
    c = AugmentationConfig()
    assert (c.p_rotation, c.rotation_deg, c.p_scaling, c.scaling) == (0.2, (-180.0, 180.0), 0.2, (0.7, 1.4))
    assert (c.p_noise, c.noise_std) == (0.1, (0.0, 0.1))
    assert (c.p_blur, c.p_blur_per_channel, c.blur_sigma) == (0.2, 0.5, (0.5, 1.0))
    assert (c.p_brightness, c.brightness, c.p_contrast, c.contrast) == (0.15, (0.75, 1.25), 0.15, (0.75, 1.25))
    assert (c.p_low_resolution, c.p_low_resolution_per_channel, c.low_resolution_zoom) == (0.25, 0.5, (0.5, 1.0))
    assert (c.p_gamma_inverted, c.p_gamma, c.gamma, c.gamma_retain_stats) == (0.1, 0.3, (0.7, 1.5), True)
    assert (c.p_mirror, c.mirror_axes) == (0.5, (0, 1))


def test_config_from_dict_round_trip_and_errors():
    config = AugmentationConfig.from_dict({"p_rotation": 0.5, "scaling": [0.8, 1.2], "mirror_axes": [1]})
    assert config.scaling == (0.8, 1.2) and config.mirror_axes == (1,) and config.p_rotation == 0.5
    assert AugmentationConfig.from_dict(config.to_dict()) == config
    assert AugmentationConfig.from_dict(None) == AugmentationConfig()
    with pytest.raises(ConfigError, match=r"unknown augmentation setting.*p_rotatoin"):
        AugmentationConfig.from_dict({"p_rotatoin": 0.2})
    bad = [
        ({"p_noise": 1.5}, "p_noise must be a probability"),
        ({"scaling": (1.4, 0.7)}, "low must not exceed high"),
        ({"scaling": (0.0, 1.4)}, r"scaling .* must lie in \(0, inf\]"),
        ({"low_resolution_zoom": (0.5, 1.5)}, "low_resolution_zoom"),
        ({"gamma": (0.7,)}, "pair"),
        ({"mirror_axes": (2,)}, "mirror_axes"),
        ({"enabled": "no"}, "enabled must be true or false"),
    ]
    for settings, message in bad:
        with pytest.raises(ConfigError, match=message):
            AugmentationConfig(**settings)


def test_bad_input_is_refused_with_a_clear_error():
    images, labels = pet_ct_batch(batch=2)
    g = generator(0)
    with pytest.raises(DataError, match=r"\(B, C, H, W\)"):
        augment_batch(images[0], labels, g)
    with pytest.raises(DataError, match="floating-point"):
        augment_batch(images.long(), labels, g)
    with pytest.raises(DataError, match="matching the images"):
        augment_batch(images, labels[:, :10], g)
    with pytest.raises(DataError, match="integer class indices"):
        augment_batch(images, labels.float(), g)
    with pytest.raises(ConfigError, match=r"torch.Generator\(\).manual_seed"):
        augment_batch(images, labels, None)
    with pytest.raises(DataError, match="call sample_augmentation with this batch's size"):
        apply_augmentation(images, labels, sample_augmentation(3, 2, g), g)
