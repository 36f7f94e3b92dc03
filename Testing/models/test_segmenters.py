"""The five paper configurations, frozen encoders, the segmenter file, fusion and decoder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from conftest import randomize_

from DualDINOv3Lib import CheckpointError, ConfigError, build_segmenter, load_segmenter, save_segmenter
from DualDINOv3Lib.models import (
    CrossModalFusion,
    DINOv3ViT,
    PrimusMultiscaleDecoder,
    export_official,
    load_config,
    parse_config,
    read_segmenter_metadata,
    save_backbone,
)

CONFIGS = Path(__file__).resolve().parents[2] / "Training" / "configs"
SMALL = "vit_nano16"


def _pretrained(tmp_path: Path, name: str, layout: str) -> tuple[Path, DINOv3ViT]:
    """A random small backbone saved in one of the published layouts."""
    vit = randomize_(DINOv3ViT(SMALL))
    if layout == "official":
        path = export_official(vit, tmp_path / f"{name}.pth")
    elif layout == "training":
        teacher = {f"backbone.{k}": v for k, v in vit.state_dict().items()}
        teacher["dino_head.last_layer.weight"] = torch.zeros(8, 4)
        path = tmp_path / f"{name}_training.pth"
        torch.save({"teacher": teacher, "iteration": 3}, path)
    else:
        path = save_backbone(vit, tmp_path / f"{name}.safetensors")
    return path, vit


def _paper_config(tmp_path: Path, filename: str, **checkpoints: Path) -> dict:
    data = yaml.safe_load((CONFIGS / filename).read_text())
    data["backbone"] = SMALL
    data["taps"] = [0, 1, 2, 3]
    for name, path in checkpoints.items():
        data[name]["checkpoint"] = str(path)
    return data


@pytest.fixture
def paper_models(tmp_path):
    natural, natural_vit = _pretrained(tmp_path, "natural", "official")
    ct, ct_vit = _pretrained(tmp_path, "ct", "training")
    pet, pet_vit = _pretrained(tmp_path, "pet", "dualdinov3")
    return {
        "1_scratch.yaml": (_paper_config(tmp_path, "1_scratch.yaml"), {}),
        "2_natural.yaml": (_paper_config(tmp_path, "2_natural.yaml", encoder=natural), {"encoder": natural_vit}),
        "3_ct.yaml": (_paper_config(tmp_path, "3_ct.yaml", encoder=ct), {"encoder": ct_vit}),
        "4_pet.yaml": (_paper_config(tmp_path, "4_pet.yaml", encoder=pet), {"encoder": pet_vit}),
        "5_dual_ct_pet.yaml": (
            _paper_config(tmp_path, "5_dual_ct_pet.yaml", ct_encoder=ct, pet_encoder=pet),
            {"ct_encoder": ct_vit, "pet_encoder": pet_vit},
        ),
    }


def test_the_shipped_paper_configs_parse():
    names = sorted(p.name for p in CONFIGS.glob("[0-9]_*.yaml"))
    assert names == ["1_scratch.yaml", "2_natural.yaml", "3_ct.yaml", "4_pet.yaml", "5_dual_ct_pet.yaml"]
    archs = [load_config(CONFIGS / n).architecture for n in names]
    assert archs == ["single_stream"] * 4 + ["dual_stream"]
    cfg = load_config(CONFIGS / "5_dual_ct_pet.yaml")
    assert cfg.backbone.embed_dim == 768 and cfg.taps == (2, 5, 8, 11) and cfg.freeze_encoders
    assert cfg.labels == ("background", "GTVp", "GTVn")
    assert load_config(CONFIGS / "2_natural.yaml").encoder.mean == (0.485, 0.456, 0.406)


@pytest.mark.parametrize("name", ["1_scratch.yaml", "2_natural.yaml", "3_ct.yaml", "4_pet.yaml", "5_dual_ct_pet.yaml"])
def test_each_paper_configuration_builds_loads_its_weights_and_runs(paper_models, name):
    data, sources = paper_models[name]
    model = build_segmenter(data).eval()
    for enc_name, vit in sources.items():
        loaded = model.encoders[enc_name].state_dict()
        assert all(torch.equal(loaded[k], v) for k, v in vit.state_dict().items()), enc_name
    for h, w in [(64, 64), (48, 80), (50, 70)]:
        with torch.no_grad():
            logits = model(torch.randn(2, 2, h, w))
        assert logits.shape == (2, 3, h, w)
        assert torch.isfinite(logits).all()


def test_configs_2_to_5_refuse_to_freeze_random_encoders():
    for name in ["2_natural.yaml", "3_ct.yaml", "4_pet.yaml", "5_dual_ct_pet.yaml"]:
        with pytest.raises(ConfigError, match="no checkpoint"):
            build_segmenter(CONFIGS / name)


def test_frozen_encoders_get_no_gradient_and_run_without_autograd(paper_models):
    data, _ = paper_models["5_dual_ct_pet.yaml"]
    model = build_segmenter(data).train()
    assert not model.ct_encoder.training and not model.pet_encoder.training
    seen = []
    model.ct_encoder.blocks[0].register_forward_hook(lambda m, i, o: seen.append(o.requires_grad))
    loss = model(torch.randn(2, 2, 32, 32)).logsumexp(1).mean()
    loss.backward()
    assert seen == [False]  # no autograd graph is built inside a frozen encoder
    for enc in model.encoders.values():
        assert all(not p.requires_grad and p.grad is None for p in enc.parameters())
    assert all(p.grad is not None for p in model.fusions.parameters())
    assert all(p.grad is not None for p in model.decoder.parameters())


def test_unfrozen_encoder_is_trained(paper_models):
    data, _ = paper_models["1_scratch.yaml"]
    model = build_segmenter(data).train()
    model(torch.randn(2, 2, 32, 32)).mean().backward()
    assert model.encoder.training
    assert model.encoder.patch_embed.proj.weight.grad is not None


def test_training_steps_reduce_the_loss():
    """A real optimisation: the dual model learns to segment a bright square in the PET channel."""
    torch.manual_seed(0)
    model = build_segmenter({"architecture": "dual_stream", "backbone": SMALL}).train()
    x = torch.randn(4, 2, 32, 32) * 0.1
    target = torch.zeros(4, 32, 32, dtype=torch.long)
    x[:, 1, 8:20, 8:20] += 1.0
    target[:, 8:20, 8:20] = 1
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    losses = []
    for _ in range(25):
        loss = torch.nn.functional.cross_entropy(model(x), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


@pytest.mark.parametrize("name", ["2_natural.yaml", "5_dual_ct_pet.yaml"])
def test_segmenter_file_round_trip_needs_nothing_else(paper_models, tmp_path, name):
    data, _ = paper_models[name]
    data["preprocessing"] = {"spacing_mm": [0.98, 0.98], "crop_size": 256}
    model = randomize_(build_segmenter(data)).eval()
    path = save_segmenter(model, tmp_path / "model.safetensors", extra={"trained_on": "phantoms"})
    for ckpt in tmp_path.glob("*.pth"):
        ckpt.unlink()  # the encoder checkpoints named in the config are gone
    again = load_segmenter(path)
    x = torch.randn(2, 2, 48, 64)
    with torch.no_grad():
        assert torch.equal(model(x), again(x))
    assert not again.training
    assert again.config == model.config
    meta = read_segmenter_metadata(path)
    assert meta["format"] == "dualdinov3.segmenter" and meta["format_version"] == "1"
    assert json.loads(meta["labels"]) == ["background", "GTVp", "GTVn"]
    assert json.loads(meta["preprocessing"])["spacing_mm"] == [0.98, 0.98]
    assert meta["trained_on"] == "phantoms"


def test_segmenter_file_errors(tmp_path):
    model = build_segmenter({"architecture": "dual_stream", "backbone": SMALL})
    backbone = save_backbone(DINOv3ViT(SMALL), tmp_path / "vit.safetensors")
    with pytest.raises(CheckpointError, match="backbone, not a segmenter"):
        load_segmenter(backbone)
    with pytest.raises(CheckpointError, match="no such file"):
        load_segmenter(tmp_path / "missing.safetensors")
    pth = export_official(DINOv3ViT(SMALL), tmp_path / "vit.pth")
    with pytest.raises(CheckpointError, match=r"\.safetensors file"):
        load_segmenter(pth)
    with pytest.raises(ValueError, match=r"must end in \.safetensors"):
        save_segmenter(model, tmp_path / "model.pth")
    # a file written by a future version is refused with a fix
    from safetensors.torch import load_file, save_file

    path = save_segmenter(model, tmp_path / "model.safetensors")
    meta = read_segmenter_metadata(path)
    save_file(load_file(path), tmp_path / "future.safetensors", metadata={**meta, "format_version": "99"})
    with pytest.raises(CheckpointError, match="newer than this DualDINOv3"):
        load_segmenter(tmp_path / "future.safetensors")
    # weights that do not fit the stored config
    tensors = load_file(path)
    tensors.pop("decoder.head.weight")
    save_file(tensors, tmp_path / "damaged.safetensors", metadata=meta)
    with pytest.raises(CheckpointError, match=r"missing keys \['decoder.head.weight'\]"):
        load_segmenter(tmp_path / "damaged.safetensors")


def test_config_errors_name_the_problem(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['frozen'\]"):
        parse_config({"frozen": True})
    with pytest.raises(ConfigError, match="architecture must be one of"):
        parse_config({"architecture": "triple"})
    with pytest.raises(ConfigError, match="pseudo_rgb: unknown source"):
        parse_config({"architecture": "single_stream", "encoder": {"pseudo_rgb": ["ct", "mri", "pet"]}})
    with pytest.raises(ConfigError, match="'encoder' is for single_stream"):
        parse_config({"architecture": "dual_stream", "encoder": {}})
    with pytest.raises(ConfigError, match="std: standard deviations must be > 0"):
        parse_config({"architecture": "single_stream", "encoder": {"std": [1, 0, 1]}})
    with pytest.raises(ConfigError, match=r"crop_size must be a positive multiple of the patch size \(16\), got 120"):
        parse_config({"preprocessing": {"crop_size": 120}})
    # the rule follows the patch size: 8x8 patches (the bundled model's) take 120 = 15 x 8
    small_patch = {"preset": SMALL, "patch_size": 8}
    assert parse_config({"backbone": small_patch, "preprocessing": {"crop_size": 120}}).preprocessing.crop_size == 120
    with pytest.raises(ConfigError, match="labels must be"):
        parse_config({"labels": ["background"]})
    with pytest.raises(ConfigError, match=r"pet_normalization must be one of \['minmax'\], got 'zscore'"):
        parse_config({"preprocessing": {"pet_normalization": "zscore"}})
    with pytest.raises(ConfigError, match="ct_normalization must be 'zscore'"):
        parse_config({"preprocessing": {"ct_normalization": "minmax"}})
    bad = tmp_path / "bad.yaml"
    bad.write_text("architecture: [unclosed\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    # a checkpoint that does not exist is named with the encoder it belongs to
    with pytest.raises(ConfigError, match=r"ct_encoder\.checkpoint: .*no such file"):
        build_segmenter({"backbone": SMALL, "ct_encoder": {"checkpoint": str(tmp_path / "x.pth")}})
    # a declared architecture that contradicts the checkpoint
    path, _ = _pretrained(tmp_path, "ct", "official")
    with pytest.raises(ConfigError, match="differs from the one declared"):
        build_segmenter({"ct_encoder": {"checkpoint": str(path), "vit": "vits16"}})


def test_relative_checkpoint_paths_are_relative_to_the_config_file(tmp_path):
    path, vit = _pretrained(tmp_path, "ct", "official")
    cfg = tmp_path / "configs" / "dual.json"
    cfg.parent.mkdir()
    cfg.write_text(json.dumps({"backbone": SMALL, "ct_encoder": {"checkpoint": f"../{path.name}"}}))
    model = build_segmenter(cfg)
    assert torch.equal(model.ct_encoder.cls_token, vit.cls_token)


def test_pseudo_rgb_layout_and_normalisation():
    model = build_segmenter(
        {
            "architecture": "single_stream",
            "backbone": SMALL,
            "encoder": {"pseudo_rgb": ["ct", "pet", "mean"], "mean": [1, 2, 3], "std": [2, 4, 8]},
        }
    )
    x = torch.randn(1, 2, 16, 16)
    rgb = model.compose(x)
    torch.testing.assert_close(rgb[:, 0], (x[:, 0] - 1) / 2)
    torch.testing.assert_close(rgb[:, 1], (x[:, 1] - 2) / 4)
    torch.testing.assert_close(rgb[:, 2], (x.mean(1) - 3) / 8)
    with pytest.raises(ValueError, match=r"expected \(B, 2, H, W\)"):
        model(torch.randn(1, 3, 16, 16))


def test_primus_decoder_channels_for_vit_b_and_output_resolution():
    decoder = PrimusMultiscaleDecoder(4 * 768, num_classes=3)
    convs = [m for m in decoder.stages if isinstance(m, torch.nn.ConvTranspose2d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == [(3072, 1536), (1536, 768), (768, 384), (384, 192)]
    assert decoder.head.in_channels == 192 and decoder.head.out_channels == 3
    small = PrimusMultiscaleDecoder(4 * 64, num_classes=5)
    maps = [torch.randn(2, 64, 3, 5) for _ in range(4)]
    assert small(maps).shape == (2, 5, 48, 80)


def test_fusion_is_bidirectional_and_global():
    fusion = CrossModalFusion(64, num_heads=4).eval()
    ct, pet = torch.randn(1, 64, 4, 4), torch.randn(1, 64, 4, 4)
    out = fusion(ct, pet)
    assert out.shape == (1, 64, 4, 4)
    pet2 = pet.clone()
    pet2[..., 0, 0] += 3.0  # change PET at one location only
    delta = (fusion(ct, pet2) - out).abs().sum(1)[0]
    assert delta[3, 3] > 0  # ...and the fused map changes everywhere: attention is global
    # the CT stream attends to PET: CT tokens change with PET even where PET did not change
    ct_only = fusion.ct_from_pet(fusion.norm_ct(ct.flatten(2).mT), fusion.norm_pet(pet.flatten(2).mT))
    ct_only2 = fusion.ct_from_pet(fusion.norm_ct(ct.flatten(2).mT), fusion.norm_pet(pet2.flatten(2).mT))
    assert (ct_only - ct_only2)[0, -1].abs().max() > 0
    with pytest.raises(ValueError, match="differ in shape"):
        fusion(ct, torch.randn(1, 64, 4, 5))


def test_the_decoder_runs_as_matrix_products_with_the_convolutions_results():
    from DualDINOv3Lib.models.decoder import PrimusMultiscaleDecoder

    torch.manual_seed(0)
    for patch, taps in ((16, 4), (8, 2)):
        decoder = PrimusMultiscaleDecoder(taps * 64, 3, patch).eval()
        for p in decoder.parameters():  # not the initial values (LayerNorm weight 1, bias 0)
            torch.nn.init.normal_(p, std=0.1)
        maps = [torch.randn(2, 64, 5, 7) for _ in range(taps)]
        with torch.no_grad():
            fast, reference = decoder(maps), decoder.reference_forward(maps)
        assert fast.shape == reference.shape == (2, 3, 5 * patch, 7 * patch)
        torch.testing.assert_close(fast, reference, rtol=1e-4, atol=1e-5)
        assert set(decoder.state_dict()) == {k for k in decoder.state_dict() if k.startswith(("stages.", "head."))}


@pytest.mark.parametrize("layout", ["channels_first", "token_view"])
def test_the_fusion_runs_on_token_rows_with_the_reference_modules_results(layout):
    torch.manual_seed(0)
    fusion = CrossModalFusion(64, num_heads=4, out_dim=48).eval()
    for p in fusion.parameters():  # not the initial values (LayerNorm weight 1, bias 0)
        torch.nn.init.normal_(p, std=0.1)
    projections = [f"{a}.{x}.{p}" for a in ("ct_from_pet", "pet_from_ct") for x in ("q", "k", "v", "out")
                   for p in ("weight", "bias")]  # fmt: skip
    norms = [f"{m}.{p}" for m in ("norm_ct", "norm_pet", "project") for p in ("weight", "bias")]
    assert sorted(fusion.state_dict()) == sorted(projections + norms)  # the names segmenter files hold
    tokens = torch.randn(2, 3 + 5 * 7, 64), torch.randn(2, 3 + 5 * 7, 64)
    if layout == "token_view":  # as an encoder returns its maps: views of its token rows after the prefix tokens
        ct, pet = (t[:, 3:].transpose(1, 2).reshape(2, 64, 5, 7) for t in tokens)
    else:
        ct, pet = (t[:, 3:].transpose(1, 2).reshape(2, 64, 5, 7).contiguous() for t in tokens)
    with torch.no_grad():
        fast, reference = fusion(ct, pet), fusion.reference_forward(ct, pet)
        assert fast.shape == reference.shape == (2, 48, 5, 7)
        torch.testing.assert_close(fast, reference, rtol=1e-4, atol=1e-5)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            fast16, reference16 = fusion(ct, pet), fusion.reference_forward(ct, pet)
        torch.testing.assert_close(fast16.float(), reference.float(), rtol=0.05, atol=0.05)
        assert (fast16.float() - reference).abs().mean() <= 2 * (reference16.float() - reference).abs().mean()
    ct.requires_grad_(True)
    fusion(ct, pet).square().sum().backward()  # trainable: gradients reach the inputs and every parameter
    assert ct.grad is not None and all(p.grad is not None for p in fusion.parameters())
