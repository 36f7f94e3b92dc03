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

from DualDINOv3Lib.data.hecktor import list_hecktor_cases
from DualDINOv3Lib.errors import DualDINOv3Error
from DualDINOv3Lib.finetune.config import parse_finetune_config
from DualDINOv3Lib.finetune.splits import split_validation
from DualDINOv3Lib.finetune.trainer import finetune
from DualDINOv3Lib.inference import Cancelled
from DualDINOv3Lib.models import load_segmenter
from DualDINOv3Lib.phantoms import write_phantom_cases

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


def test_resume_after_a_stop_reaches_the_same_weights(data, tmp_path):
    train, val = split_validation(list_hecktor_cases(data, require_labels=True), 0.34, seed=0)
    cfg = _cfg(augmentation=True)
    cache = tmp_path / "cache"
    straight = finetune(CONFIG, train, val, tmp_path / "straight", cfg, device="cpu", cache_dir=cache)

    calls = []

    def stop_in_second_epoch():
        calls.append(1)
        return len(calls) > cfg.iterations_per_epoch + 1

    with pytest.raises(Cancelled):
        finetune(
            CONFIG, train, val, tmp_path / "resumed", cfg, device="cpu", cache_dir=cache, cancel=stop_in_second_epoch
        )
    assert json.loads((tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()[-1])["epoch"] == 1
    resumed = finetune(CONFIG, train, val, tmp_path / "resumed", cfg, device="cpu", cache_dir=cache, resume=True)
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
