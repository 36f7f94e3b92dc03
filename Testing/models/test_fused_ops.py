"""The inference kernels of issue 12 give the plain PyTorch ops' numbers: the oneDNN linear + GELU, the RoPE
rotation written half by half, and the decoder run in tiles of pixels; with gradients the plain ops run."""

from __future__ import annotations

import pytest
import torch

from DualDINOv3Lib.inference.segment import matmul_weights_in
from DualDINOv3Lib.models import decoder as decoder_module
from DualDINOv3Lib.models.decoder import PrimusMultiscaleDecoder
from DualDINOv3Lib.models.fused_ops import linear_gelu, onednn_linear_available, plain_ops
from DualDINOv3Lib.models.layers import Mlp
from DualDINOv3Lib.models.rope import RopePositionEmbedding, apply_rope, apply_rope_reference, with_prefix


def _spy_fused(monkeypatch) -> list:
    calls = []
    real = torch.ops.mkldnn._linear_pointwise

    def spy(*args):
        calls.append(args[3])
        return real(*args)

    monkeypatch.setattr(torch.ops.mkldnn, "_linear_pointwise", spy)
    return calls


def test_linear_with_gelu_is_fused_on_cpu_and_equals_the_plain_ops(monkeypatch):
    if not onednn_linear_available():
        pytest.skip("this PyTorch has no oneDNN linear (the plain ops run, as the other tests check)")
    calls = _spy_fused(monkeypatch)
    torch.manual_seed(0)
    mlp = Mlp(64, 256).eval()
    x = torch.randn(2, 37, 64)
    with torch.inference_mode():
        fused = mlp(x)
        assert calls == ["gelu"]  # one fused fc1 + GELU; fc2 is a plain product
        with plain_ops():
            plain = mlp(x)
        assert calls == ["gelu"]
        torch.testing.assert_close(fused, plain, rtol=1e-5, atol=1e-6)
        # bf16 as segment_volume runs it: weights cast once, autocast on
        with matmul_weights_in(mlp, torch.bfloat16), torch.autocast("cpu", dtype=torch.bfloat16):
            fused16 = mlp(x)
            with plain_ops():
                plain16 = mlp(x)
        assert calls == ["gelu", "gelu"] and fused16.dtype == plain16.dtype == torch.bfloat16
        torch.testing.assert_close(fused16.float(), plain.float(), rtol=0.05, atol=0.02)
        assert (fused16.float() - plain).abs().mean() <= 1.5 * (plain16.float() - plain).abs().mean() + 1e-4
        # autocast with float32 weights (not cast once): the plain ops, autocast casting as usual
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert mlp(x).dtype == torch.bfloat16
        assert calls == ["gelu", "gelu"]


def test_with_gradients_the_plain_ops_run_and_train(monkeypatch):
    calls = _spy_fused(monkeypatch) if onednn_linear_available() else []
    torch.manual_seed(0)
    mlp = Mlp(16, 32)
    x = torch.randn(3, 16, requires_grad=True)
    mlp(x).square().sum().backward()
    assert calls == []
    assert x.grad is not None and all(p.grad is not None for p in mlp.parameters())
    out = linear_gelu(x.detach(), mlp.fc1.weight, mlp.fc1.bias)  # the weight still needs gradients
    assert calls == [] and out.requires_grad


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_rope_rotation_equals_dinov3s_formula_bit_for_bit(dtype):
    torch.manual_seed(0)
    rope = RopePositionEmbedding(32, base=100.0)
    sin, cos = with_prefix(*rope(5, 7), 5)
    qkv = torch.randn(2, 5 + 35, 3, 4, 32).to(dtype).permute(2, 0, 3, 1, 4)  # strided q, k as attention has them
    for x in qkv[:2]:
        fast, reference = apply_rope(x, sin, cos), apply_rope_reference(x, sin, cos)
        assert fast.dtype == dtype and fast.is_contiguous()
        assert torch.equal(fast, reference)
        assert torch.equal(fast[:, :, :5], x[:, :, :5])  # prefix tokens are not rotated
    q = qkv[0].float().requires_grad_(True)
    apply_rope(q, sin, cos).sum().backward()  # with gradients: the reference formula, differentiable
    assert q.grad is not None


@pytest.mark.parametrize("tile_elements", [2**20, 2**12])
def test_the_decoder_in_tiles_gives_the_convolutions_results(monkeypatch, tile_elements):
    monkeypatch.setattr(decoder_module, "TILE_ELEMENTS", tile_elements)
    monkeypatch.setattr(decoder_module, "MIN_TILE_ROWS", 8)
    torch.manual_seed(0)
    decoder = PrimusMultiscaleDecoder(128, 3, 8).eval()  # 128 -> 64 -> 32 -> 16 channels
    for p in decoder.parameters():
        torch.nn.init.normal_(p, std=0.1)
    whole, tile_rows = decoder._stage_plan(2 * 20 * 30)
    assert tile_rows is not None  # tiled: 1200 pixels of 1024 (or 3) last-map elements each
    if tile_elements == 2**12:
        assert whole == 1 and tile_rows == 16  # the first stage whole (its tiles would be too small), then tiles
    maps = [torch.randn(2, 64, 20, 30) for _ in range(2)]
    with torch.no_grad():
        fast, reference = decoder(maps), decoder.reference_forward(maps)
        assert fast.shape == reference.shape == (2, 3, 160, 240)
        torch.testing.assert_close(fast, reference, rtol=1e-4, atol=1e-5)
        with matmul_weights_in(decoder, torch.bfloat16), torch.autocast("cpu", dtype=torch.bfloat16):
            fast16 = decoder(maps)
    assert fast16.dtype == torch.bfloat16
    torch.testing.assert_close(fast16.float(), reference, rtol=0.05, atol=0.05)
    assert (fast16.argmax(1) == reference.argmax(1)).float().mean() > 0.99


def test_the_decoder_estimate_follows_its_tiles():
    vitb = PrimusMultiscaleDecoder(4 * 768, num_classes=3, patch_size=16)  # 3072 -> ... -> 192 channels
    assert vitb._stage_plan(2 * 32 * 32) == (1, 341)  # the 1536-channel stage whole, then tiles
    # the 1536-channel map of the first stage (product, LayerNorm, GELU) is the largest held at once
    assert vitb.working_memory_bytes(512, 512, 4) == 3 * 1536 * 64 * 64 * 4
    assert vitb._stage_plan(16)[1] is None  # a small map runs whole


def test_a_vit_block_gives_the_plain_ops_numbers_and_still_trains():
    from DualDINOv3Lib.models.block import Block
    from DualDINOv3Lib.models.rope import RopePositionEmbedding, with_prefix

    torch.manual_seed(0)
    block = Block(64, 4, layerscale_init=0.5).eval()
    rope = with_prefix(*RopePositionEmbedding(16, base=100.0)(4, 5), 1)
    x = torch.randn(2, 21, 64)
    with torch.inference_mode():
        fused = block(x, rope)
        with plain_ops():
            plain = block(x, rope)
        torch.testing.assert_close(fused, plain, rtol=1e-5, atol=1e-6)
        with matmul_weights_in(block, torch.bfloat16), torch.autocast("cpu", dtype=torch.bfloat16):
            fused16 = block(x, rope)
            with plain_ops():
                plain16 = block(x, rope)
    assert fused16.dtype == plain16.dtype == torch.float32  # the residual stream stays float32 under autocast
    torch.testing.assert_close(fused16, plain16, rtol=0.02, atol=0.02)
    x.requires_grad_(True)
    block.train()(x, rope).square().sum().backward()
    assert x.grad is not None and all(p.grad is not None for p in block.parameters())
