"""Finetuning on phantoms: the loss falls, files are written, ``resume`` continues exactly, and two
torchrun processes stay in sync (gloo on CPU)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from DualDINOv3Lib.cli import main as cli_main
from DualDINOv3Lib.data.hecktor import list_hecktor_cases
from DualDINOv3Lib.errors import ConfigError, DualDINOv3Error
from DualDINOv3Lib.finetune.config import parse_finetune_config, same_record
from DualDINOv3Lib.finetune.splits import split_validation
from DualDINOv3Lib.finetune.trainer import finetune
from DualDINOv3Lib.inference import Cancelled
from DualDINOv3Lib.models import load_segmenter
from DualDINOv3Lib.phantoms import write_phantom_cases
from DualDINOv3Lib.workflows.finetune_run import run_finetune

REPO = Path(__file__).resolve().parents[2]
SMALL = {"shape": (34, 100, 100), "spacing": (2.0, 2.0, 3.0), "pet_spacing": (4.0, 4.0, 3.0)}
CONFIG = {
    "name": "tiny",
    "architecture": "dual_stream",
    "backbone": "vit_nano16",
    "preprocessing": {"crop_size": 112},
}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("phantoms")
    write_phantom_cases(folder, 3, seed=5, **SMALL)
    return folder


def _cfg(**changes):
    values = {"epochs": 2, "iterations_per_epoch": 3, "batch_size": 4, "warmup_epochs": 0, "augmentation": False}
    values.update(changes)
    return parse_finetune_config(values)


@pytest.mark.slow
def test_loss_falls_and_run_files_are_written(data, tmp_path):
    train, val = split_validation(list_hecktor_cases(data, require_labels=True), 0.34, seed=0)
    cfg = _cfg(epochs=6, iterations_per_epoch=8, learning_rate=2e-3, foreground_oversampling=0.5)
    result = finetune(CONFIG, train, val, tmp_path / "run", cfg, device="cpu", cache_dir=tmp_path / "cache")
    losses = [row["train_loss"] for row in result.history]
    assert losses[-1] < 0.8 * losses[0], losses
    assert {"dice_1", "dice_2", "dice_mean"} <= set(result.history[-1])
    run = tmp_path / "run"
    for name in ("config.json", "metrics.jsonl", "metrics.csv", "best.safetensors", "last.safetensors"):
        assert (run / name).is_file(), name
    assert json.loads((run / "config.json").read_text())["training"]["epochs"] == 6
    assert load_segmenter(run / "last.safetensors").config.name == "tiny"
    with pytest.raises(DualDINOv3Error, match="--resume"):
        finetune(CONFIG, train, val, run, cfg, device="cpu", cache_dir=tmp_path / "cache")


@pytest.mark.parametrize("context_mm", [0.0, 8.0])
def test_resume_after_a_stop_reaches_the_same_weights(data, tmp_path, context_mm):
    """Also for 2.5D inputs, whose random swap of the context draws from the sampler's generator."""
    train, val = split_validation(list_hecktor_cases(data, require_labels=True), 0.34, seed=0)
    cfg = _cfg(augmentation=True)
    cache = tmp_path / "cache"
    config = {**CONFIG, "preprocessing": {**CONFIG["preprocessing"], "context_mm": context_mm}}
    straight = finetune(config, train, val, tmp_path / "straight", cfg, device="cpu", cache_dir=cache)

    calls = []

    def stop_in_second_epoch():
        calls.append(1)
        return len(calls) > cfg.iterations_per_epoch + 1

    with pytest.raises(Cancelled):
        finetune(
            config, train, val, tmp_path / "resumed", cfg, device="cpu", cache_dir=cache, cancel=stop_in_second_epoch
        )
    assert json.loads((tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()[-1])["epoch"] == 1
    resumed = finetune(config, train, val, tmp_path / "resumed", cfg, device="cpu", cache_dir=cache, resume=True)
    a, b = load_file(straight.last_path), load_file(resumed.last_path)
    assert a.keys() == b.keys()
    changed = [k for k in a if not torch.equal(a[k], b[k])]
    assert not changed, changed[:5]
    assert [r["train_loss"] for r in straight.history] == [r["train_loss"] for r in resumed.history]


@pytest.mark.slow
def test_two_torchrun_processes_stay_in_sync(data, tmp_path):
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps({**CONFIG, "training": {"epochs": 1, "iterations_per_epoch": 3, "batch_size": 4}}))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(REPO / "Training" / "finetune.py"), "--config", str(config), "--data", str(data),
           "--out", str(tmp_path / "ddp"), "--device", "cpu", "--val-fraction", "0.34"]  # fmt: skip
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = json.loads((tmp_path / "ddp" / "ranks.json").read_text())
    assert len(ranks["rank_checksums"]) == 2 and ranks["in_sync"]
    assert ranks["rank_checksums"][0] == ranks["rank_checksums"][1]
    last = json.loads((tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()[-1])
    assert "dice_1" in last and "dice_mean" in last  # validation shared out over both processes


def test_augmentation_settings_come_from_the_config_file_and_are_recorded(data, tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text(
        "name: tiny\narchitecture: dual_stream\nbackbone: vit_nano16\npreprocessing: {crop_size: 112}\n"
        "training:\n  epochs: 1\n  iterations_per_epoch: 1\n  batch_size: 2\n  warmup_epochs: 0\n"
        "  augmentation: {p_rotation: 0.5, scaling: [0.8, 1.2], p_mirror: 0.0}\n"
    )
    result = run_finetune(config, data, tmp_path / "run", device="cpu", val_fraction=0.34)
    recorded = json.loads((result.out_dir / "config.json").read_text())["training"]["augmentation"]
    assert recorded["p_rotation"] == 0.5 and recorded["scaling"] == [0.8, 1.2] and recorded["p_mirror"] == 0.0
    assert recorded["p_gamma"] == 0.3  # the other settings keep nnU-Net's defaults, and are recorded too
    assert parse_finetune_config({"augmentation": False}).augmentation.enabled is False
    with pytest.raises(ConfigError, match=r"training\.augmentation: unknown augmentation setting\(s\) \['p_spin'\]"):
        parse_finetune_config({"augmentation": {"p_spin": 0.1}})
    with pytest.raises(ConfigError, match="p_rotation must be a probability"):
        parse_finetune_config({"augmentation": {"p_rotation": 2}})
    with pytest.raises(ConfigError, match="learning_rate must be a finite number"):
        parse_finetune_config({"learning_rate": float("nan")})
    # a run saved before augmentation settings were recorded in full ("augmentation": true) still resumes
    saved = json.loads((result.out_dir / "config.json").read_text())
    current = json.loads(json.dumps(saved))
    saved["training"]["augmentation"] = True
    current["training"]["augmentation"] = parse_finetune_config({}).augmentation.to_dict()
    assert same_record(saved, current) and not same_record(saved, {**current, "train_cases": []})


def test_resume_with_nothing_to_resume_is_an_error_not_a_fresh_start(data, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    args = ["finetune", "--config", str(tmp_path / "x.json"), "--data", str(data), "--out", str(empty), "--resume"]
    (tmp_path / "x.json").write_text(json.dumps({**CONFIG, "training": {"epochs": 1, "iterations_per_epoch": 1}}))
    assert cli_main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("dualdinov3: error: --resume:") and "without --resume" in err
    assert list(empty.iterdir()) == []  # nothing was written
    with pytest.raises(SystemExit):
        cli_main([*args[:-1], "--learning-rate", "nan"])
    assert "--learning-rate: expected a finite number, got 'nan'" in capsys.readouterr().err
