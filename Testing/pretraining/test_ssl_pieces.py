"""Crops, iBOT block masking, heads, schedules and parameter groups against what they promise."""

from __future__ import annotations

import math

import pytest
import torch

from DualDINOv3Lib.models.vit import DINOv3ViT, ViTConfig
from DualDINOv3Lib.pretraining.crops import CropSizes, IntensityAugmentation, MultiCrop, gaussian_blur, random_box
from DualDINOv3Lib.pretraining.heads import DINOHead
from DualDINOv3Lib.pretraining.masking import block_mask, ibot_masks
from DualDINOv3Lib.pretraining.param_groups import parameter_groups
from DualDINOv3Lib.pretraining.schedules import cosine, ema_momentum, learning_rate, teacher_temperature

# --- crops ----------------------------------------------------------------------------------------------


def test_multicrop_shapes_and_reproducibility():
    image = torch.rand(64, 64)
    crop = MultiCrop(n_local=3)
    sizes = CropSizes(32, 16, 64)
    a = crop(image, sizes, torch.Generator().manual_seed(5))
    b = crop(image, sizes, torch.Generator().manual_seed(5))
    assert a["global"].shape == (2, 32, 32) and a["local"].shape == (3, 16, 16) and a["gram"].shape == (2, 64, 64)
    for key in a:
        assert torch.equal(a[key], b[key])
    c = crop(image, sizes, torch.Generator().manual_seed(6))
    assert not torch.equal(a["global"], c["global"])
    no_gram = crop(image, CropSizes(32, 16, 0), torch.Generator().manual_seed(5))
    assert "gram" not in no_gram


def test_gram_crops_show_the_same_region_undistorted():
    # an image that is a linear ramp: a crop of it resized is again a ramp; with no intensity augmentation
    # the global crop must equal the Gram crop downsampled 2x
    yy, xx = torch.meshgrid(torch.arange(96.0), torch.arange(96.0), indexing="ij")
    image = (xx + 2 * yy) / 300
    plain = IntensityAugmentation(contrast=0.0, gamma_probability=0.0, blur_probability=0.0, noise_probability=0.0)
    crop = MultiCrop(n_local=0, intensity=plain)
    out = crop(image, CropSizes(24, 8, 48), torch.Generator().manual_seed(0))
    down = torch.nn.functional.avg_pool2d(out["gram"][:, None], 2)[:, 0]
    torch.testing.assert_close(down[:, 1:-1, 1:-1], out["global"][:, 1:-1, 1:-1], atol=2e-3, rtol=0)  # edges clamp
    # and with augmentation the Gram crop is unchanged while the global crop changes
    noisy = MultiCrop(n_local=0)(image, CropSizes(24, 8, 48), torch.Generator().manual_seed(0))
    assert torch.equal(noisy["gram"], out["gram"])


def test_random_boxes_respect_the_scale_range():
    gen = torch.Generator().manual_seed(0)
    for _ in range(200):
        top, left, h, w = random_box(100, 100, (0.05, 0.32), gen)
        assert 0 <= top and top + h <= 100 and 0 <= left and left + w <= 100
        assert 0.04 <= h * w / 1e4 <= 0.34


def test_gaussian_blur_keeps_the_mean_of_a_constant_and_smooths_a_spike():
    assert torch.allclose(gaussian_blur(torch.full((20, 20), 3.0), 1.2), torch.full((20, 20), 3.0))
    spike = torch.zeros(21, 21)
    spike[10, 10] = 1.0
    blurred = gaussian_blur(spike, 1.0)
    assert blurred.sum().item() == pytest.approx(1.0, abs=1e-5) and blurred.max() < 0.2


# --- masking --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("count", [0, 1, 3, 4, 17, 50, 98, 100])
def test_block_mask_has_exactly_the_requested_count(count):
    for seed in range(5):
        mask = block_mask(10, 10, count, torch.Generator().manual_seed(seed))
        assert mask.shape == (100,) and int(mask.sum()) == count


def test_block_masks_are_mostly_blocks():
    mask = block_mask(14, 14, 60, torch.Generator().manual_seed(3)).view(14, 14)
    # a masked patch in a block has masked 4-neighbours; random scattering at 30% would give ~1.2 on average
    padded = torch.nn.functional.pad(mask.float()[None, None], (1, 1, 1, 1))[0, 0]
    neighbours = padded[:-2, 1:-1] + padded[2:, 1:-1] + padded[1:-1, :-2] + padded[1:-1, 2:]
    assert neighbours[mask].mean() > 2.5


def test_ibot_masks_half_the_images_at_stratified_ratios():
    masks, ratios = ibot_masks(8, 6, 7, torch.Generator().manual_seed(0), min_ratio=0.1, max_ratio=0.5)
    assert masks.shape == (8, 42)
    masked = ratios > 0
    assert int(masked.sum()) == 4
    assert torch.equal(masks.sum(dim=1), (42 * ratios).long())  # int(N * r): exact per-image counts
    bounds = torch.linspace(0.1, 0.5, 5)
    # one ratio in each stratum
    assert sorted(int(torch.bucketize(r, bounds)) for r in ratios[masked]) == [1, 2, 3, 4]
    assert not masks[~masked].any()


# --- heads ----------------------------------------------------------------------------------------------


def test_dino_head_shape_normalised_bottleneck_and_no_last_bias():
    head = DINOHead(24, 100, hidden_dim=48, bottleneck_dim=12)
    assert head(torch.randn(5, 7, 24)).shape == (5, 7, 100) and head.last_layer.bias is None
    assert [m.out_features for m in head.mlp if isinstance(m, torch.nn.Linear)] == [48, 48, 12]
    # logits are last_layer(unit vector): bounded by the prototype norms
    x = torch.randn(50, 24) * 100
    bound = head.last_layer.weight.norm(dim=1)
    assert (head(x).abs() <= bound + 1e-5).all()


# --- schedules ------------------------------------------------------------------------------------------


def test_schedules_hit_their_end_points():
    assert learning_rate(0, 2e-4, 100, 10) == 0.0
    assert learning_rate(10, 2e-4, 100, 10) == pytest.approx(2e-4)
    assert learning_rate(5, 2e-4, 100, 10) == pytest.approx(1e-4)
    assert learning_rate(55, 2e-4, 100, 10) == pytest.approx(1e-4)
    assert learning_rate(100, 2e-4, 100, 10) == pytest.approx(0.0, abs=1e-12)
    assert cosine(50, 0.04, 0.4, 100) == pytest.approx(0.22)
    assert teacher_temperature(0, 0.04, 0.07, 30) == 0.04 and teacher_temperature(45, 0.04, 0.07, 30) == 0.07
    assert ema_momentum(0, 0.996, 1000) == 0.996 and ema_momentum(1000, 0.996, 1000) == 1.0
    assert ema_momentum(500, 0.996, 1000) == pytest.approx(0.998)


# --- parameter groups -----------------------------------------------------------------------------------


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = DINOv3ViT(ViTConfig(embed_dim=32, depth=3, num_heads=2, patch_size=8))
        self.dino_head = DINOHead(32, 16, hidden_dim=8, bottleneck_dim=4)
        self.ibot_head = DINOHead(32, 16, hidden_dim=8, bottleneck_dim=4)


def test_parameter_groups_multipliers_and_no_decay_sets():
    net = Net()
    groups = parameter_groups(net, depth=3, layer_decay=0.5, patch_embed_lr_multiplier=0.2)
    by_name = {n: g for g in groups for n in g["names"]}
    assert set(by_name) == {n for n, _ in net.named_parameters()}
    assert by_name["backbone.patch_embed.proj.weight"]["lr_multiplier"] == pytest.approx(0.5**4 * 0.2)
    assert by_name["backbone.cls_token"]["lr_multiplier"] == pytest.approx(0.5**4)
    assert by_name["backbone.blocks.0.attn.qkv.weight"]["lr_multiplier"] == pytest.approx(0.5**3)
    assert by_name["backbone.blocks.2.mlp.fc1.weight"]["lr_multiplier"] == pytest.approx(0.5**1)
    assert by_name["backbone.norm.weight"]["lr_multiplier"] == 1.0
    assert by_name["dino_head.mlp.0.weight"]["lr_multiplier"] == 1.0
    no_decay = {n for n, g in by_name.items() if g["wd_multiplier"] == 0.0}
    expected = {n for n, _ in net.named_parameters() if n.endswith("bias") or "norm" in n or "gamma" in n}
    assert no_decay == expected and "backbone.blocks.1.ls1.gamma" in no_decay
    assert "backbone.blocks.1.attn.qkv.weight" not in no_decay
    last = {n for n, g in by_name.items() if g["is_last_layer"]}
    assert last == {"dino_head.last_layer.weight", "ibot_head.last_layer.weight"}
    assert all(g["is_backbone"] == n.startswith("backbone.") for n, g in by_name.items())
    assert math.isclose(sum(len(g["params"]) for g in groups), len(list(net.parameters())))
