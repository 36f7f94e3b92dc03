"""The ``dualdinov3 pretrain`` command and ``Training/pretrain.py``: a run, --max-steps then --resume, ``info``
on its outputs, one-line errors for bad input, and two torchrun (gloo) processes that end in sync."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from DualDINOv3Lib.cli import main
from DualDINOv3Lib.pretraining.checkpoint import load_checkpoint

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "Training" / "configs" / "pretrain" / "tiny_cpu.yaml"
FAST = ["optim.steps=4", "optim.batch_size=4", "crops.n_local=2", "model.prototypes=32", "model.head_hidden_dim=32",
        "model.head_bottleneck_dim=16", "gram.first_step=1", "run.checkpoint_every=2"]  # fmt: skip

pytestmark = pytest.mark.usefixtures("one_thread")


def sets(items=FAST) -> list[str]:
    return [arg for item in items for arg in ("--set", item)]


@pytest.mark.slow
def test_pretrain_command_max_steps_resume_and_info(pet_store, tmp_path, capsys):
    out = tmp_path / "run"
    # --threads 1: the command would otherwise take the physical cores
    args = ["pretrain", "--config", str(TINY), "--data", str(pet_store), "--out", str(out), "--device", "cpu",
            "--threads", "1"]  # fmt: skip
    assert main([*args, "--max-steps", "2", *sets()]) == 0
    printed = capsys.readouterr().out
    assert "pretrained 2 of 4 steps" in printed and "teacher_backbone.pth" in printed
    assert load_checkpoint(out / "checkpoint.pt")["step"] == 2
    assert main([*args, "--resume", *sets()]) == 0
    assert load_checkpoint(out / "checkpoint.pt")["step"] == 4
    assert "pretrained 4 of 4 steps" in capsys.readouterr().out
    for name in ("checkpoint.pt", "teacher_backbone.pth", "teacher_backbone.safetensors"):
        assert main(["info", str(out / name)]) == 0
        assert "DINOv3 backbone, ViT D=64 depth=4" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--set", "optim.learnig_rate=1"], "unknown key"),
        (["--set", "optim.accumulation_steps=3"], "not divisible"),
        (["--init", "/no/such/file.pth"], "no such file"),
    ],
)
def test_bad_input_ends_with_one_error_line(pet_store, tmp_path, capsys, extra, message):
    args = [
        "pretrain",
        "--config",
        str(TINY),
        "--data",
        str(pet_store),
        "--out",
        str(tmp_path / "r"),
        "--device",
        "cpu",
    ]
    assert main([*args, *sets(), *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("dualdinov3: error:") and message in err[0]


def test_max_steps_below_one_is_refused_by_the_option_parser(pet_store, tmp_path, capsys):
    args = ["pretrain", "--config", str(TINY), "--data", str(pet_store), "--out", str(tmp_path / "r")]
    with pytest.raises(SystemExit) as info:
        main([*args, "--max-steps", "0"])
    assert info.value.code == 2 and "--max-steps: expected a whole number >= 1" in capsys.readouterr().err


def test_missing_store_is_a_clear_error(tmp_path, capsys):
    args = ["pretrain", "--config", str(TINY), "--data", str(tmp_path / "nothing"), "--out", str(tmp_path / "r")]
    assert main(args) == 2
    assert "not a slice store" in capsys.readouterr().err


@pytest.mark.slow
def test_training_script_takes_the_same_options(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    script = [sys.executable, str(REPO / "Training" / "pretrain.py")]
    done = subprocess.run([*script, "--help"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "--max-steps" in done.stdout and "--resume" in done.stdout
    bad = [*script, "--config", str(tmp_path / "none.yaml"), "--data", str(tmp_path), "--out", str(tmp_path / "r")]
    done = subprocess.run(bad, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.startswith("dualdinov3: error:") and "none.yaml" in done.stderr


@pytest.mark.slow
def test_two_torchrun_processes_end_with_identical_networks(pet_store, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(REPO / "Training" / "pretrain.py"), "--config", str(TINY), "--data", str(pet_store),
           "--out", str(tmp_path / "ddp"), "--device", "cpu", *sets([*FAST, "run.num_workers=1"])]  # fmt: skip
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = json.loads((tmp_path / "ddp" / "ranks.json").read_text())
    assert len(ranks["rank_checksums"]) == 2 and ranks["in_sync"]
    assert ranks["rank_checksums"][0] == ranks["rank_checksums"][1]
    state = load_checkpoint(tmp_path / "ddp" / "checkpoint.pt")
    assert state["step"] == 4 and len(state["rng"]) == 2
