"""Numerical parity of our DINOv3 ViT with transformers' DINOv3ViTModel (the reference implementation).

A random transformers model (every parameter perturbed, so biases and LayerScale matter) is loaded into
ours through ``load_backbone``; final normed cls and patch tokens and the four intermediate maps must agree
to < 1e-4 in eval mode. The model is then exported in the official flat .pth layout and loaded back.
"""

from __future__ import annotations

import pytest
import torch
import transformers
from conftest import randomize_

from DualDINOv3Lib.models import export_official, load_backbone

SIZES = {"vits16": (384, 6), "vitb16": (768, 12)}
TAPS = (2, 5, 8, 11)
TOL = 1e-4


@pytest.fixture(scope="module", params=sorted(SIZES))
def reference(request):
    dim, heads = SIZES[request.param]
    torch.manual_seed(1)
    cfg = transformers.DINOv3ViTConfig(
        hidden_size=dim,
        intermediate_size=4 * dim,
        num_hidden_layers=12,
        num_attention_heads=heads,
        num_register_tokens=4,
        layerscale_value=1.0,
        attn_implementation="sdpa",
    )
    hf = randomize_(transformers.DINOv3ViTModel(cfg)).eval()
    ours = load_backbone(hf.state_dict())
    return request.param, hf, ours


@pytest.mark.parametrize("height,width", [(224, 224), pytest.param(512, 384, marks=pytest.mark.slow)])
def test_outputs_match_transformers(reference, height, width):
    _, hf, ours = reference
    x = torch.randn(2, 3, height, width)
    with torch.no_grad():
        ref = hf(pixel_values=x, output_hidden_states=True)
        feats = ours.forward_features(x)
        maps = ours.get_intermediate_layers(x, n=TAPS, reshape=True, norm=True)
    n_prefix = 5
    assert (ref.last_hidden_state[:, 0] - feats["x_norm_clstoken"]).abs().max() < TOL
    assert (ref.last_hidden_state[:, n_prefix:] - feats["x_norm_patchtokens"]).abs().max() < TOL
    h, w = height // 16, width // 16
    for block, ours_map in zip(TAPS, maps, strict=True):
        # hidden_states[0] is the embedding output, [i + 1] the output of block i; transformers leaves it un-normed
        tokens = hf.norm(ref.hidden_states[block + 1])[:, n_prefix:]
        ref_map = tokens.transpose(1, 2).reshape(2, -1, h, w)
        assert ours_map.shape == ref_map.shape
        assert (ref_map - ours_map).abs().max() < TOL, f"block {block}"


def test_official_pth_round_trip_is_identical(reference, tmp_path):
    name, _, ours = reference
    path = export_official(ours, tmp_path / f"dinov3_{name}_pretrain.pth")
    again = load_backbone(path)
    x = torch.randn(1, 3, 224, 160)
    with torch.no_grad():
        a, b = ours.forward_features(x), again.forward_features(x)
        ma, mb = ours.get_intermediate_layers(x), again.get_intermediate_layers(x)
    assert torch.equal(a["x_norm_clstoken"], b["x_norm_clstoken"])
    assert torch.equal(a["x_norm_patchtokens"], b["x_norm_patchtokens"])
    assert all(torch.equal(p, q) for p, q in zip(ma, mb, strict=True))
    assert again.config == ours.config
