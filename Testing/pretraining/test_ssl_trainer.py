"""The pretraining meta-architecture and loop: EMA, Gram-teacher refresh, configs, exact resume, stage
chaining, head warm-up and last-layer freeze, the NaN guard, exports that load_backbone reads."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from DualDINOv3Lib.errors import ConfigError, DualDINOv3Error
from DualDINOv3Lib.models import load_backbone
from DualDINOv3Lib.pretraining.checkpoint import load_checkpoint
from DualDINOv3Lib.pretraining.config import load_pretrain_config, parse_overrides, parse_pretrain_config
from DualDINOv3Lib.pretraining.meta_arch import SSLMetaArch
from DualDINOv3Lib.pretraining.trainer import NonFiniteLossError, _Loop, build_backbone, initialise, pretrain
from DualDINOv3Lib.runtime import Cancelled

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def store(pet_store):
    return pet_store


def states_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# --- meta-architecture ----------------------------------------------------------------------------------


def test_ema_with_momentum_0_copies_the_student_and_with_1_keeps_the_teacher(tiny_config):
    config = tiny_config()
    arch = SSLMetaArch(build_backbone(config), config)
    with torch.no_grad():
        for p in arch.student.parameters():
            p.add_(torch.randn_like(p))
    before = {k: v.clone() for k, v in arch.teacher.state_dict().items()}
    arch.update_teacher(1.0)
    assert states_equal(arch.teacher.state_dict(), before)
    arch.update_teacher(0.0)
    assert states_equal(arch.teacher.state_dict(), arch.student.state_dict())
    assert not any(p.requires_grad for p in arch.teacher.parameters())
    arch.train()
    assert arch.student.training and not arch.teacher.training


def test_gram_teacher_is_refreshed_at_the_set_steps(tiny_config):
    config = tiny_config(gram__first_step=3, gram__refresh_every=4)
    arch = SSLMetaArch(build_backbone(config), config)
    loop = _Loop(config, arch, arch.student, None, None, "cpu", None, {})
    due = []
    for step in range(16):
        if loop._gram_refresh_due(step):
            due.append(step)
            arch.refresh_gram_teacher()
    assert due == [3, 7, 11, 15]
    with torch.no_grad():
        arch.teacher.backbone.cls_token.add_(1.0)
    assert not torch.equal(arch.gram_teacher.cls_token, arch.teacher.backbone.cls_token)
    arch.refresh_gram_teacher()
    assert torch.equal(arch.gram_teacher.cls_token, arch.teacher.backbone.cls_token)
    assert not arch.gram_teacher.training and not any(p.requires_grad for p in arch.gram_teacher.parameters())


# --- configs --------------------------------------------------------------------------------------------


def test_config_rejects_unknown_keys_and_bad_values_and_applies_overrides():
    with pytest.raises(ConfigError, match="unknown key"):
        parse_pretrain_config({"optim": {"learnig_rate": 1e-3}})
    with pytest.raises(ConfigError, match="section"):
        parse_pretrain_config({"optimizer": {}})
    with pytest.raises(ConfigError, match="integer"):
        parse_pretrain_config({"optim": {"steps": 1.5}})
    with pytest.raises(ConfigError, match=r"section\.key"):
        parse_pretrain_config({}, {"steps": 3})
    config = parse_pretrain_config({"optim": {"steps": 10}}, parse_overrides(["optim.steps=7", "loss.gram_weight=2"]))
    assert config.optim.steps == 7 and config.loss.gram_weight == 2.0 and config.uses_gram


@pytest.mark.parametrize("modality", ["pet", "ct"])
def test_stage_configs_carry_the_papers_numbers(modality):
    folder = ROOT / "Training" / "configs" / "pretrain"
    s1, s2, s3 = (load_pretrain_config(folder / f"{modality}_stage{i}.yaml") for i in (1, 2, 3))
    assert (s1.optim.steps, s1.optim.learning_rate, s1.optim.warmup_steps) == (100000, 2e-4, 10000)
    assert (s1.loss.dino_weight, s1.loss.ibot_weight, s1.loss.koleo_weight, s1.loss.gram_weight) == (1, 1, 0.1, 0)
    assert s1.optim.betas == (0.9, 0.98) and s1.optim.weight_decay == 0.04 and s1.optim.batch_size == 1024
    assert (s1.optim.momentum_start, s1.optim.momentum_end) == (0.996, 1.0) and 20000 in s1.run.save_teacher_at
    assert (s2.optim.steps, s2.optim.learning_rate, s2.loss.gram_weight, s2.loss.koleo_weight) == (10000, 5e-5, 2, 1)
    assert s2.model.init.endswith("stage1/checkpoint.pt") and s2.gram.teacher.endswith("teacher_step020000.safetensors")
    assert (s3.optim.steps, s3.optim.learning_rate, s3.loss.gram_weight) == (10000, 2.5e-5, 2)
    assert s3.model.init.endswith("stage2/checkpoint.pt") and len(s3.crops.sizes) >= 2
    assert max(g for g, _ in s3.crops.sizes) > min(g for g, _ in s3.crops.sizes)


# --- the loop -------------------------------------------------------------------------------------------


def test_resume_continues_exactly(store, tmp_path, tiny_config):
    config = tiny_config()
    straight = pretrain(config, [store], tmp_path / "straight", device="cpu")
    assert straight.steps == 4
    steps_done = []

    def progress(fraction, message):
        steps_done.append(fraction)

    with pytest.raises(Cancelled):  # killed after the step-2 checkpoint
        pretrain(config, [store], tmp_path / "resumed", device="cpu", progress=progress,
                 cancel=lambda: len(steps_done) >= 3)  # fmt: skip
    assert load_checkpoint(tmp_path / "resumed" / "checkpoint.pt")["step"] == 2
    with pytest.raises(DualDINOv3Error, match="--resume"):
        pretrain(config, [store], tmp_path / "resumed", device="cpu")
    resumed = pretrain(config, [store], tmp_path / "resumed", device="cpu", resume=True)
    a = load_checkpoint(straight.checkpoint)
    b = load_checkpoint(resumed.checkpoint)
    for key in ("student", "teacher", "gram_teacher"):
        assert states_equal(a[key], b[key]), key
    timeless = [[{k: v for k, v in row.items() if k != "seconds"} for row in json.loads(c["history"])] for c in (a, b)]
    assert timeless[0] == timeless[1] and len(timeless[0]) == 4
    with pytest.raises(DualDINOv3Error, match="another config"):
        pretrain(tiny_config(optim__learning_rate=0.5), [store], tmp_path / "resumed", device="cpu", resume=True)


def test_exports_and_checkpoint_load_as_backbones(store, tmp_path, tiny_config):
    result = pretrain(tiny_config(optim__steps=2), [store], tmp_path / "run", device="cpu")
    x = torch.rand(2, 3, 32, 32)
    outputs = []
    for path in [*result.exports, result.checkpoint]:
        model = load_backbone(path)
        with torch.no_grad():
            outputs.append(model(x))
    assert all(torch.equal(outputs[0], o) for o in outputs[1:])
    assert (tmp_path / "run" / "metrics.csv").exists() and (tmp_path / "run" / "metrics.jsonl").exists()
    assert (tmp_path / "run" / "loss_curve.png").exists()
    row = result.history[-1]
    assert {"dino", "ibot", "koleo", "gram", "total", "lr", "teacher_entropy"} <= set(row)


def test_stage_chaining_and_backbone_init(store, tmp_path, tiny_config):
    first = pretrain(tiny_config(optim__steps=2), [store], tmp_path / "stage1", device="cpu")
    state = load_checkpoint(first.checkpoint)
    config = tiny_config()
    arch = SSLMetaArch(build_backbone(config), config)
    assert initialise(arch, first.checkpoint) == "pretraining checkpoint"
    assert states_equal(arch.student.state_dict(), state["student"])
    assert states_equal(arch.teacher.state_dict(), state["teacher"])
    fresh = SSLMetaArch(build_backbone(config), config)
    heads = {k: v.clone() for k, v in fresh.student.dino_head.state_dict().items()}
    assert initialise(fresh, first.exports[0]) == "backbone"
    teacher_backbone = {k[len("backbone.") :]: v for k, v in state["teacher"].items() if k.startswith("backbone.")}
    assert states_equal(fresh.student.backbone.state_dict(), teacher_backbone)
    assert states_equal(fresh.teacher.backbone.state_dict(), teacher_backbone)
    assert states_equal(fresh.student.dino_head.state_dict(), heads)
    wrong = tiny_config(model__backbone={"preset": "vit_nano16", "patch_size": 8, "embed_dim": 32})
    with pytest.raises(ConfigError, match=r"model\.backbone"):
        initialise(SSLMetaArch(build_backbone(wrong), wrong), first.exports[0])


def test_head_warmup_freezes_the_backbone_and_the_last_layers_start_frozen(store, tmp_path, tiny_config):
    config = tiny_config(optim__steps=2, optim__head_warmup_steps=2, optim__freeze_last_layer_steps=2)
    torch.manual_seed(config.run.seed)
    start = SSLMetaArch(build_backbone(config), config)
    result = pretrain(config, [store], tmp_path / "warm", device="cpu")
    state = load_checkpoint(result.checkpoint)["student"]
    before = start.student.state_dict()
    for key, value in state.items():
        frozen = key.startswith("backbone.") or ".last_layer." in key
        assert torch.equal(value, before[key]) == frozen, key


def test_a_non_finite_loss_stops_with_a_clear_error_and_no_new_checkpoint(store, tmp_path, monkeypatch, tiny_config):
    config = tiny_config()
    original = SSLMetaArch.losses
    calls = []

    def losses(self, batch, temperature, student=None):
        out = original(self, batch, temperature, student)
        calls.append(1)
        if len(calls) == 3:
            return out._replace(total=out.total * math.nan)
        return out

    monkeypatch.setattr(SSLMetaArch, "losses", losses)
    with pytest.raises(NonFiniteLossError, match=r"step 3.*learning_rate"):
        pretrain(config, [store], tmp_path / "nan", device="cpu")
    assert load_checkpoint(tmp_path / "nan" / "checkpoint.pt")["step"] == 2


def test_mixed_resolution_stage_with_gram_and_accumulation_runs(store, tmp_path, tiny_config):
    config = tiny_config(
        crops__sizes=[[32, 16], [48, 24]], crops__size_weights=[0.5, 0.5], optim__accumulation_steps=2,
        optim__batch_size=8, optim__steps=6, run__num_workers=1,
    )  # fmt: skip
    result = pretrain(config, [store], tmp_path / "mixed", device="cpu")
    assert result.steps == 6 and all(math.isfinite(row["total"]) and "gram" in row for row in result.history[1:])


def test_stage_two_takes_stage_ones_checkpoint_and_saved_teacher_as_gram_teacher(store, tmp_path, tiny_config):
    stage1 = pretrain(tiny_config(loss__gram_weight=0.0, run__save_teacher_at=[2]), [store], tmp_path / "s1",
                      device="cpu")  # fmt: skip
    saved = tmp_path / "s1" / "teacher_step000002.safetensors"
    assert saved.exists() and (tmp_path / "s1" / "teacher_step000002.pth").exists()
    assert "gram_teacher" not in load_checkpoint(stage1.checkpoint)
    config = tiny_config(model__init=str(stage1.checkpoint), gram__teacher=str(saved), loss__gram_weight=2.0,
                         optim__steps=2)  # fmt: skip
    stage2 = pretrain(config, [store], tmp_path / "s2", device="cpu")
    gram = load_checkpoint(stage2.checkpoint)["gram_teacher"]
    assert states_equal(gram, load_backbone(saved).state_dict())  # frozen: unchanged by training
    assert all("gram" in row for row in stage2.history)
