"""DINOv3ViT behaviour: shapes, RoPE, taps, masks, drop path, presets."""

from __future__ import annotations

import math

import pytest
import torch

from DualDINOv3Lib.models import VIT_PRESETS, DINOv3ViT, ViTConfig, vit_config
from DualDINOv3Lib.models.rope import RopePositionEmbedding

SMALL = ViTConfig(embed_dim=64, depth=4, num_heads=2)


def test_presets_have_the_official_sizes():
    assert (VIT_PRESETS["vits16"].embed_dim, VIT_PRESETS["vits16"].num_heads) == (384, 6)
    assert (VIT_PRESETS["vitb16"].embed_dim, VIT_PRESETS["vitb16"].depth, VIT_PRESETS["vitb16"].num_heads) == (
        768,
        12,
        12,
    )
    assert (VIT_PRESETS["vitl16"].embed_dim, VIT_PRESETS["vitl16"].depth) == (1024, 24)
    assert VIT_PRESETS["vitb16"].default_taps == (2, 5, 8, 11)
    assert VIT_PRESETS["vitl16"].default_taps == (5, 11, 17, 23)


def test_state_dict_names_match_the_official_checkpoint():
    keys = set(DINOv3ViT(SMALL).state_dict())
    for k in ["cls_token", "storage_tokens", "mask_token", "patch_embed.proj.weight", "rope_embed.periods"]:
        assert k in keys
    for k in ["norm1.weight", "attn.qkv.weight", "attn.qkv.bias", "attn.qkv.bias_mask", "attn.proj.weight"]:
        assert f"blocks.0.{k}" in keys
    for k in ["ls1.gamma", "norm2.bias", "mlp.fc1.weight", "mlp.fc2.bias", "ls2.gamma"]:
        assert f"blocks.3.{k}" in keys
    assert {"norm.weight", "norm.bias"} <= keys


def test_layerscale_and_k_bias_mask_initialisation():
    model = DINOv3ViT(SMALL)
    assert torch.all(model.blocks[0].ls1.gamma == 1e-5)
    mask = model.blocks[0].attn.qkv.bias_mask
    d = SMALL.embed_dim
    assert torch.all(mask[:d] == 1) and torch.all(mask[d : 2 * d] == 0) and torch.all(mask[2 * d :] == 1)


def test_k_bias_has_no_effect_but_q_bias_does():
    model = DINOv3ViT(SMALL).eval()
    x = torch.randn(1, 3, 32, 32)
    ref = model(x)
    d = SMALL.embed_dim
    with torch.no_grad():
        model.blocks[0].attn.qkv.bias[d : 2 * d] += 5.0  # K third is masked
    assert torch.equal(model(x), ref)
    with torch.no_grad():
        model.blocks[0].attn.qkv.bias[:d] += 5.0
    assert not torch.allclose(model(x), ref)


@pytest.mark.parametrize("size", [(32, 32), (48, 80), (80, 48), (37, 53)])
def test_feature_shapes_for_square_non_square_and_odd_sizes(size):
    model = DINOv3ViT(SMALL).eval()
    h, w = size
    x = torch.randn(2, 3, h, w)
    out = model.forward_features(x)
    n = (h // 16) * (w // 16)
    assert out["x_norm_clstoken"].shape == (2, 64)
    assert out["x_storage_tokens"].shape == (2, 4, 64)
    assert out["x_norm_patchtokens"].shape == (2, n, 64)
    maps = model.get_intermediate_layers(x)
    assert len(maps) == 4
    assert all(m.shape == (2, 64, h // 16, w // 16) for m in maps)


def test_intermediate_layers_match_forward_features_and_norm_flag():
    model = DINOv3ViT(SMALL).eval()
    x = torch.randn(1, 3, 48, 64)
    with torch.no_grad():
        last = model.get_intermediate_layers(x, n=1, reshape=False)[0]
        feats = model.forward_features(x)
        raw = model.get_intermediate_layers(x, n=[3], reshape=False, norm=False)[0]
        pairs = model.get_intermediate_layers(x, n=[1, 3], return_class_token=True)
    torch.testing.assert_close(last, feats["x_norm_patchtokens"])
    torch.testing.assert_close(raw, feats["x_prenorm"][:, 5:])
    torch.testing.assert_close(pairs[1][1], feats["x_norm_clstoken"])
    with pytest.raises(ValueError, match="out of range"):
        model.get_intermediate_layers(x, n=[2, 5, 8, 11])


def test_patch_positions_matter_through_rope():
    """Without absolute position embeddings, only RoPE makes the model position-aware."""
    model = DINOv3ViT(vit_config({"preset": "vit_nano16", "layerscale_init": 1.0})).eval()
    x = torch.randn(1, 3, 32, 64)  # a 2 x 4 patch grid
    swapped = torch.cat([x[..., 32:], x[..., :32]], dim=-1)  # patch columns rolled by 2
    same_patch = [r * 4 + (c + 2) % 4 for r in range(2) for c in range(4)]
    with torch.no_grad():
        for blk in model.blocks:
            blk.attn.qkv.weight.mul_(20)  # sharp attention, so that where a token sits matters
        a = model.forward_features(x)["x_norm_patchtokens"][:, same_patch]
        b = model.forward_features(swapped)["x_norm_patchtokens"]
        model.rope_embed.periods.fill_(1e9)  # (almost) no rotation: position-blind
        a0 = model.forward_features(x)["x_norm_patchtokens"][:, same_patch]
        b0 = model.forward_features(swapped)["x_norm_patchtokens"]
    assert (a - b).abs().max() > 1e-2
    assert (a0 - b0).abs().max() < 1e-4


def test_rope_tables_follow_the_reference_formula():
    rope = RopePositionEmbedding(64, base=100.0).eval()
    sin, cos = rope(2, 3)
    assert sin.shape == (6, 64)
    periods = 100.0 ** (2 * torch.arange(16) / 32)
    torch.testing.assert_close(rope.periods, periods)
    # token (row 1, col 2): y = 2*(1.5/2)-1 = 0.5, x = 2*(2.5/3)-1 = 2/3
    y, x = 0.5, 2 / 3
    expected = torch.cat([2 * math.pi * y / periods, 2 * math.pi * x / periods]).repeat(2)
    torch.testing.assert_close(sin[5], torch.sin(expected))
    torch.testing.assert_close(cos[5], torch.cos(expected))


def test_rope_augmentation_only_in_train_mode_and_switchable():
    rope = RopePositionEmbedding(64, rescale=2.0)
    rope.eval()
    assert torch.equal(rope(4, 4)[0], rope(4, 4)[0])
    rope.train()
    assert not torch.equal(rope(4, 4)[0], rope(4, 4)[0])
    rope.augment = False
    assert torch.equal(rope(4, 4)[0], rope.eval()(4, 4)[0])


def test_mask_token_replaces_masked_patches():
    model = DINOv3ViT(SMALL).eval()
    with torch.no_grad():
        model.mask_token.normal_()
    x = torch.randn(2, 3, 32, 32)
    masks = torch.zeros(2, 4, dtype=torch.bool)
    masks[0, 1] = True
    tokens, _ = model.prepare_tokens(x, masks)
    torch.testing.assert_close(tokens[0, 5 + 1], model.mask_token[0])
    unmasked, _ = model.prepare_tokens(x)
    torch.testing.assert_close(tokens[1], unmasked[1])
    out = model.forward_features(x, masks=masks)
    assert out["masks"] is masks
    with pytest.raises(ValueError, match="masks must have shape"):
        model.prepare_tokens(x, torch.zeros(2, 5, dtype=torch.bool))


def test_drop_path_changes_training_outputs_only():
    model = DINOv3ViT(vit_config({"preset": "vit_nano16", "drop_path_rate": 0.5}))
    x = torch.randn(8, 3, 32, 32)
    model.eval()
    assert torch.equal(model(x), model(x))
    model.train()
    model.set_rope_augmentation(False)
    assert not torch.equal(model(x), model(x))
    loss = model(x).square().mean()
    loss.backward()
    assert model.blocks[0].mlp.fc1.weight.grad is not None


def test_bad_inputs_and_configs_raise_clear_errors():
    model = DINOv3ViT(SMALL)
    with pytest.raises(ValueError, match=r"expected input \(B, 3, H, W\)"):
        model(torch.randn(1, 1, 32, 32))
    with pytest.raises(ValueError, match="smaller than one 16px patch"):
        model(torch.randn(1, 3, 8, 32))
    with pytest.raises(ValueError, match="not divisible"):
        ViTConfig(embed_dim=65, num_heads=2)
    with pytest.raises(ValueError, match="unknown ViT preset"):
        vit_config("vitx16")
    with pytest.raises(ValueError, match="unknown ViT config keys"):
        vit_config({"embed_dims": 3})
