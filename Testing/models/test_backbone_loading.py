"""``load_backbone`` / ``save_backbone`` / ``export_official``: every supported DINOv3 weight layout, and
the errors for everything else.

All models are tiny (D=64, 3 blocks) and every parameter is randomised before saving, so a load that
silently leaves the freshly initialised weights in place cannot pass an output comparison.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import torch

from DualDINOv3Lib.errors import CheckpointError
from DualDINOv3Lib.models import (
    DINOv3ViT,
    ViTConfig,
    build_segmenter,
    export_official,
    load_backbone,
    save_backbone,
    save_segmenter,
)

SMALL = ViTConfig(embed_dim=64, depth=3, num_heads=2, ffn_ratio=3.0)
X = torch.randn(1, 3, 32, 48, generator=torch.Generator().manual_seed(0))
FEATURE_KEYS = ("x_norm_clstoken", "x_storage_tokens", "x_norm_patchtokens", "x_prenorm")


# ------------------------------------------------------------------------------------------ helpers
def random_vit(cfg: ViTConfig | str = SMALL, seed: int = 1) -> DINOv3ViT:
    """A ViT whose every parameter is random and whose RoPE periods are non-default bf16 values."""
    model = DINOv3ViT(cfg)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
        periods = model.rope_embed.periods
        factor = torch.empty(periods.shape).uniform_(0.5, 2.0, generator=g)
        periods.copy_((periods * factor).to(torch.bfloat16).float())
    return model.eval()


def official_state_dict(model: DINOv3ViT) -> dict[str, torch.Tensor]:
    """The state dict as the released hub ``.pth`` files hold it: ``rope_embed.periods`` in bfloat16."""
    sd = {k: v.detach().clone() for k, v in model.state_dict().items()}
    sd["rope_embed.periods"] = sd["rope_embed.periods"].to(torch.bfloat16)
    return sd


def features(model: DINOv3ViT, x: torch.Tensor = X) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        out = model.forward_features(x)
    return {k: out[k] for k in FEATURE_KEYS}


def assert_same_features(loaded: DINOv3ViT, reference: DINOv3ViT, x: torch.Tensor = X) -> None:
    """Bit-identical features (same ops, same weights, same CPU)."""
    got, want = features(loaded, x), features(reference, x)
    for k in FEATURE_KEYS:
        assert got[k].shape == want[k].shape, k
        assert torch.equal(got[k], want[k]), f"{k}: max abs diff {(got[k] - want[k]).abs().max().item()}"


def assert_config(loaded: DINOv3ViT, cfg: ViTConfig) -> None:
    c = loaded.config
    assert (c.embed_dim, c.depth, c.num_heads) == (cfg.embed_dim, cfg.depth, cfg.num_heads)
    assert (c.patch_size, c.in_chans, c.n_storage_tokens) == (cfg.patch_size, cfg.in_chans, cfg.n_storage_tokens)
    assert c.ffn_ratio == cfg.ffn_ratio
    assert c.layerscale_init is not None


def snapshot(path: Path) -> tuple:
    """Bytes and mtime of a file, or of every file of a folder (plus its listing)."""
    files = sorted(p for p in path.iterdir()) if path.is_dir() else [path]
    return tuple((p.name, p.read_bytes(), p.stat().st_mtime_ns) for p in files)


# ----------------------------------------------------------------------------- 1. official flat .pth
def check_official_roundtrip(tmp_path: Path, cfg: ViTConfig, x: torch.Tensor) -> None:
    model = random_vit(cfg)
    path = tmp_path / "dinov3_official.pth"
    sd = official_state_dict(model)
    assert sd["rope_embed.periods"].dtype == torch.bfloat16
    torch.save(sd, path)

    loaded = load_backbone(path)

    assert_config(loaded, cfg)
    assert loaded.rope_embed.periods.dtype == torch.float32
    assert torch.equal(loaded.rope_embed.periods, model.rope_embed.periods)
    assert_same_features(loaded, model, x)
    # the comparison is meaningful: a freshly initialised model of the same architecture differs
    fresh = features(DINOv3ViT(cfg).eval(), x)["x_norm_patchtokens"]
    assert not torch.allclose(fresh, features(loaded, x)["x_norm_patchtokens"])


def test_official_pth_infers_architecture_and_reproduces_outputs(tmp_path):
    check_official_roundtrip(tmp_path, SMALL, X)


def test_official_pth_of_nano_preset(tmp_path):
    from DualDINOv3Lib.models import VIT_PRESETS

    check_official_roundtrip(tmp_path, VIT_PRESETS["vit_nano16"], X)


def test_official_pth_without_storage_tokens(tmp_path):
    cfg = ViTConfig(embed_dim=64, depth=3, num_heads=2, n_storage_tokens=0)
    check_official_roundtrip(tmp_path, cfg, X)
    loaded = load_backbone(tmp_path / "dinov3_official.pth")
    assert not hasattr(loaded, "storage_tokens")
    assert loaded.n_prefix_tokens == 1


def test_official_pth_with_patch_size_8_and_non_square_input(tmp_path):
    cfg = ViTConfig(embed_dim=96, depth=2, num_heads=3, patch_size=8, n_storage_tokens=2)
    x = torch.randn(1, 3, 24, 40, generator=torch.Generator().manual_seed(3))
    check_official_roundtrip(tmp_path, cfg, x)
    loaded = load_backbone(tmp_path / "dinov3_official.pth")
    assert features(loaded, x)["x_norm_patchtokens"].shape == (1, 3 * 5, 96)


def test_official_pth_in_legacy_non_zip_format(tmp_path):
    # files written with _use_new_zipfile_serialization=False cannot be memory-mapped
    model = random_vit()
    path = tmp_path / "legacy.pth"
    torch.save(official_state_dict(model), path, _use_new_zipfile_serialization=False)
    assert_same_features(load_backbone(path), model)


def test_official_pth_ignores_an_unrelated_config_json_beside_it(tmp_path):
    # config.json only describes Hugging Face weights; a non-JSON one next to an official .pth
    # (e.g. some other tool's file in the same folder) must not stop it loading.
    model = random_vit()
    path = tmp_path / "dinov3_official.pth"
    torch.save(official_state_dict(model), path)
    (tmp_path / "config.json").write_text("# experiment settings\nlr: 0.1\n")

    assert_same_features(load_backbone(path), model)


# ------------------------------------------------------------------------ 2. training checkpoint
def test_training_checkpoint_uses_teacher_backbone_and_drops_heads(tmp_path):
    teacher = random_vit(seed=1)
    student = random_vit(seed=2)  # different weights: loading the student would be caught
    head = {
        "dino_head.mlp.0.weight": torch.randn(32, 64),
        "dino_head.mlp.0.bias": torch.randn(32),
        "dino_head.last_layer.weight": torch.randn(100, 32),
        "ibot_head.mlp.0.weight": torch.randn(32, 64),
    }
    ckpt = {
        "teacher": {**{f"backbone.{k}": v for k, v in official_state_dict(teacher).items()}, **head},
        "student": {**{f"backbone.{k}": v for k, v in official_state_dict(student).items()}, **head},
        "optimizer": {"state": {}, "param_groups": [{"lr": 1e-3, "params": [0, 1]}]},
        "iteration": 5,
    }
    path = tmp_path / "model_0000005.rank_0.pth"
    torch.save(ckpt, path)

    loaded = load_backbone(path)

    assert_config(loaded, SMALL)
    assert not any("head" in k for k in loaded.state_dict())
    assert_same_features(loaded, teacher)


# ------------------------------------------------------------------------------- 3. hugging face
HF_KW = dict(
    hidden_size=64,
    intermediate_size=256,
    num_hidden_layers=3,
    num_attention_heads=2,
    num_register_tokens=4,
    layerscale_value=1e-5,
)


def random_hf_model(**overrides):
    import transformers  # test extra: the reference implementation

    torch.manual_seed(7)
    model = transformers.DINOv3ViTModel(transformers.DINOv3ViTConfig(**{**HF_KW, **overrides}))
    with torch.no_grad():
        for p in model.parameters():
            torch.nn.init.normal_(p, std=0.1)
    return model.eval()


@pytest.fixture(scope="module")
def hf_model():
    return random_hf_model()


@pytest.fixture(scope="module")
def hf_folder(hf_model, tmp_path_factory):
    folder = tmp_path_factory.mktemp("hf") / "dinov3-vit-tiny"
    hf_model.save_pretrained(folder)
    assert (folder / "model.safetensors").exists() and (folder / "config.json").exists()
    return folder


def assert_matches_hf(loaded: DINOv3ViT, hf, x: torch.Tensor = X) -> None:
    with torch.no_grad():
        ref = hf(pixel_values=x).last_hidden_state
    out = features(loaded, x)
    p = 1 + hf.config.num_register_tokens
    assert ref.shape[1] == p + out["x_norm_patchtokens"].shape[1]
    assert (out["x_norm_clstoken"] - ref[:, 0]).abs().max() < 1e-4
    assert (out["x_storage_tokens"] - ref[:, 1:p]).abs().max() < 1e-4
    assert (out["x_norm_patchtokens"] - ref[:, p:]).abs().max() < 1e-4


def test_huggingface_folder(hf_model, hf_folder):
    loaded = load_backbone(hf_folder)
    assert loaded.config.num_heads == 2  # from config.json (shapes alone would suggest 64-dim heads)
    assert loaded.config.n_storage_tokens == 4
    assert_matches_hf(loaded, hf_model)


def test_huggingface_safetensors_file_with_config_beside_it(hf_model, hf_folder):
    loaded = load_backbone(hf_folder / "model.safetensors")
    assert loaded.config.num_heads == 2
    assert_matches_hf(loaded, hf_model)


def test_huggingface_pytorch_model_bin_folder(hf_model, tmp_path):
    # transformers 5 ignores save_pretrained(safe_serialization=False) and still writes model.safetensors,
    # so write the legacy pytorch_model.bin layout by hand: torch.save(state_dict) + config.json.
    folder = tmp_path / "hf_bin"
    folder.mkdir()
    torch.save(hf_model.state_dict(), folder / "pytorch_model.bin")
    hf_model.config.to_json_file(folder / "config.json")

    assert_matches_hf(load_backbone(folder), hf_model)
    assert_matches_hf(load_backbone(folder / "pytorch_model.bin"), hf_model)


def test_huggingface_in_memory_state_dict():
    # Without a config.json the head count comes from the DINOv3 convention of 64-dim heads,
    # so this model has 64-dim heads (D=128, 2 heads).
    hf = random_hf_model(hidden_size=128, num_attention_heads=2, num_hidden_layers=2)
    sd = hf.state_dict()
    assert any(k.startswith("model.layer.0.") for k in sd)  # the transformers >= 5 in-memory names

    loaded = load_backbone(sd)

    assert (loaded.config.embed_dim, loaded.config.num_heads, loaded.config.depth) == (128, 2, 2)
    assert_matches_hf(loaded, hf)


def test_huggingface_gated_mlp_is_refused(tmp_path):
    hf = random_hf_model(use_gated_mlp=True, intermediate_size=128, num_hidden_layers=1)
    hf.save_pretrained(tmp_path / "gated")
    with pytest.raises(CheckpointError, match="SwiGLU"):
        load_backbone(tmp_path / "gated")


# ---------------------------------------------------------------------------- 4. own format
def test_save_backbone_roundtrip(tmp_path):
    model = random_vit()
    path = save_backbone(model, tmp_path / "backbone.safetensors")
    assert path == tmp_path / "backbone.safetensors"

    loaded = load_backbone(path)

    assert loaded.config == model.config
    assert_same_features(loaded, model)


def test_save_backbone_rejects_other_suffixes(tmp_path):
    model = random_vit()
    for name in ("backbone.pth", "backbone.safetensor", "backbone"):
        with pytest.raises(ValueError, match=r"\.safetensors"):
            save_backbone(model, tmp_path / name)
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------- 5. export_official
def test_export_official_roundtrip_is_bit_identical(tmp_path):
    model = random_vit()
    path = export_official(model, tmp_path / "exported.pth")

    sd = torch.load(path, weights_only=True)
    assert set(sd) == set(model.state_dict())
    loaded = load_backbone(path)

    assert loaded.config == model.config
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k
    assert_same_features(loaded, model)


# ---------------------------------------------------------------------------------- 6. errors
def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="no such file"):
        load_backbone(tmp_path / "nope.pth")


def test_folder_without_weights(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(CheckpointError, match=r"holds none of .*model\.safetensors"):
        load_backbone(tmp_path)


def test_truncated_safetensors(tmp_path):
    good = save_backbone(random_vit(), tmp_path / "good.safetensors")
    data = good.read_bytes()
    bad = tmp_path / "truncated.safetensors"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"truncated\.safetensors: not a readable \.safetensors file"):
        load_backbone(bad)


def test_garbage_safetensors(tmp_path):
    bad = tmp_path / "garbage.safetensors"
    bad.write_bytes(b"<html><body>404 Not Found</body></html>")
    with pytest.raises(CheckpointError, match=r"not a readable \.safetensors file"):
        load_backbone(bad)


def test_truncated_pth(tmp_path):
    good = tmp_path / "good.pth"
    torch.save(official_state_dict(random_vit()), good)
    data = good.read_bytes()
    bad = tmp_path / "truncated.pth"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"truncated\.pth: not a readable PyTorch file"):
        load_backbone(bad)


def test_empty_pth(tmp_path):
    bad = tmp_path / "empty.pth"
    bad.write_bytes(b"")
    with pytest.raises(CheckpointError, match="not a readable PyTorch file"):
        load_backbone(bad)


def test_garbage_pth_is_reported_as_unreadable_not_as_unsafe(tmp_path):
    # A failed download (an HTML error page saved as .pth) is a corrupt file, not a malicious one.
    bad = tmp_path / "download.pth"
    bad.write_bytes(b"<html><body>404 Not Found</body></html>")
    with pytest.raises(CheckpointError, match="not a readable PyTorch file") as info:
        load_backbone(bad)
    assert "arbitrary code" not in str(info.value)


PAYLOAD_RAN = {"flag": False}


def _payload() -> str:
    PAYLOAD_RAN["flag"] = True
    return "pwned"


class Malicious:
    """Unpickling this calls ``_payload`` (a stand-in for os.system)."""

    def __reduce__(self):
        return (_payload, ())


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_pth_with_pickled_object_is_refused_without_running_it(tmp_path, zip_format):
    path = tmp_path / "evil.pth"
    obj = {"cls_token": torch.zeros(1, 1, 64), "x": Malicious()}
    torch.save(obj, path, _use_new_zipfile_serialization=zip_format)
    PAYLOAD_RAN["flag"] = False

    with pytest.raises(CheckpointError, match=r"(?s)Python objects.*arbitrary code"):
        load_backbone(path)
    assert PAYLOAD_RAN["flag"] is False

    # control: the payload is live, i.e. an unsafe torch.load would have run it
    torch.load(path, weights_only=False)
    assert PAYLOAD_RAN["flag"] is True
    PAYLOAD_RAN["flag"] = False


@pytest.mark.parametrize(
    "key",
    [
        "blocks.1.attn.proj.weight",
        "blocks.2.norm1.bias",
        "blocks.0.mlp.fc1.weight",
        "norm.weight",
        "mask_token",
        # optional features are inferred from block 0; a key missing there must still be named
        "blocks.0.ls1.gamma",
        "blocks.0.attn.qkv.bias",
    ],
)
def test_missing_key_is_named(tmp_path, key):
    sd = official_state_dict(random_vit())
    del sd[key]
    path = tmp_path / "incomplete.pth"
    torch.save(sd, path)
    with pytest.raises(CheckpointError, match=rf"incomplete\.pth: .*'{re.escape(key)}'") as info:
        load_backbone(path)
    message = str(info.value).split("incomplete.pth: ", 1)[1]  # tmp_path itself contains "missing"
    assert "missing" in message


def test_unexpected_key_is_named():
    sd = official_state_dict(random_vit())
    sd["blocks.1.attn.q_norm.weight"] = torch.ones(32)
    with pytest.raises(CheckpointError, match=r"unexpected keys \['blocks\.1\.attn\.q_norm\.weight'\]"):
        load_backbone(sd)


def test_wrong_shape_is_named_with_both_shapes():
    sd = official_state_dict(random_vit())  # ffn_ratio 3: fc2 is (64, 192)
    sd["blocks.1.mlp.fc2.weight"] = torch.zeros(64, 128)
    with pytest.raises(CheckpointError, match=re.escape("blocks.1.mlp.fc2.weight: (64, 128) (expected (64, 192))")):
        load_backbone(sd)


def test_segmenter_file_points_to_load_segmenter(tmp_path):
    seg = build_segmenter({"architecture": "dual_stream", "backbone": "vit_nano16"})
    path = save_segmenter(seg, tmp_path / "segmenter.safetensors")
    with pytest.raises(CheckpointError, match=r"segmenter, not a backbone.*load_segmenter\(\)"):
        load_backbone(path)


def test_segmenter_state_dict_points_to_load_segmenter():
    seg = build_segmenter({"architecture": "dual_stream", "backbone": "vit_nano16"})
    with pytest.raises(CheckpointError, match=r"not a DINOv3 backbone.*load_segmenter\(\)"):
        load_backbone(seg.state_dict())


def test_unrelated_state_dict_says_what_was_expected(tmp_path):
    sd = {"conv1.weight": torch.randn(8, 3, 3, 3), "fc.weight": torch.randn(10, 8), "fc.bias": torch.randn(10)}
    path = tmp_path / "resnet.pth"
    torch.save(sd, path)
    with pytest.raises(CheckpointError, match=r"not a DINOv3 backbone checkpoint: expected the official keys") as info:
        load_backbone(path)
    assert "conv1.weight" in str(info.value)  # shows what was found


def test_non_dict_file(tmp_path):
    path = tmp_path / "tensor.pth"
    torch.save(torch.zeros(3), path)
    with pytest.raises(CheckpointError, match="expected a dict of tensors, found a Tensor"):
        load_backbone(path)


def test_swiglu_checkpoint_is_refused():
    sd = official_state_dict(random_vit())
    for i in range(SMALL.depth):
        sd[f"blocks.{i}.mlp.w1.weight"] = sd.pop(f"blocks.{i}.mlp.fc1.weight")
        sd[f"blocks.{i}.mlp.w2.weight"] = sd.pop(f"blocks.{i}.mlp.fc2.weight")
        sd[f"blocks.{i}.mlp.w3.weight"] = torch.randn(64, 192)
    with pytest.raises(CheckpointError, match=r"SwiGLU.*supported"):
        load_backbone(sd)


def test_training_checkpoint_without_backbone_keys(tmp_path):
    ckpt = {
        "teacher": {"dino_head.mlp.0.weight": torch.randn(8, 8), "ibot_head.mlp.0.weight": torch.randn(8, 8)},
        "iteration": 5,
    }
    path = tmp_path / "heads_only.pth"
    torch.save(ckpt, path)
    with pytest.raises(CheckpointError, match=r"heads_only\.pth: the 'teacher' entry has no 'backbone\.\*' keys"):
        load_backbone(path)


# --------------------------------------------------------------------- 7. inputs never modified
def test_loading_never_modifies_the_input_files(tmp_path, hf_folder):
    model = random_vit()
    good_pth = tmp_path / "good.pth"
    torch.save(official_state_dict(model), good_pth)
    good_st = save_backbone(model, tmp_path / "good.safetensors")
    bad_sd = official_state_dict(model)
    del bad_sd["blocks.1.attn.proj.weight"]
    bad_pth = tmp_path / "bad.pth"
    torch.save(bad_sd, bad_pth)
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(good_st.read_bytes()[:1000])

    before = {p: snapshot(p) for p in (good_pth, good_st, bad_pth, corrupt, hf_folder)}
    listing = sorted(os.listdir(tmp_path))

    load_backbone(good_pth)
    load_backbone(good_st)
    load_backbone(hf_folder)
    for bad in (bad_pth, corrupt):
        with pytest.raises(CheckpointError):
            load_backbone(bad)

    assert {p: snapshot(p) for p in before} == before
    assert sorted(os.listdir(tmp_path)) == listing  # no temporary or converted files left behind


# ------------------------------------------------------------------------- 8. eval mode, device
@pytest.mark.parametrize("device", ["cpu", torch.device("cpu")])
def test_loaded_model_is_in_eval_mode_on_the_device(tmp_path, device):
    model = random_vit().train()
    path = tmp_path / "official.pth"
    torch.save(official_state_dict(model), path)

    loaded = load_backbone(path, device=device)

    assert not loaded.training
    assert not any(m.training for m in loaded.modules())
    assert all(t.device == torch.device("cpu") for t in [*loaded.parameters(), *loaded.buffers()])
    # eval mode: RoPE augmentation is off, so two passes agree exactly
    assert torch.equal(features(loaded)["x_norm_patchtokens"], features(loaded)["x_norm_patchtokens"])


def test_load_backbone_default_device_is_cpu(tmp_path):
    path = save_backbone(random_vit(), tmp_path / "b.safetensors")
    loaded = load_backbone(path)
    assert not loaded.training
    assert {p.device.type for p in loaded.parameters()} == {"cpu"}


def test_written_files_get_normal_permissions_not_private_ones(tmp_path):
    import os
    import stat

    from DualDINOv3Lib.models import build_segmenter, save_segmenter

    old = os.umask(0o022)
    try:
        path = save_segmenter(build_segmenter({"backbone": "vit_nano16"}), tmp_path / "m.safetensors")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
