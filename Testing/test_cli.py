"""The dualdinov3 command: each sub-command, and one clear error line with exit status 2 on bad input."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from DualDINOv3Lib.cli import main
from DualDINOv3Lib.models import DINOv3ViT, export_official


def test_selfcheck_passes(capsys):
    assert main(["selfcheck"]) == 0
    assert "self-check passed" in capsys.readouterr().out


def test_console_script_is_installed():
    exe = shutil.which("dualdinov3", path=str(Path(sys.executable).parent))
    assert exe, "no dualdinov3 console script beside this Python: is the package installed (pip install -e .)?"
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("dualdinov3 ")


def test_build_segmenter_then_info(tmp_path, capsys):
    ckpt = export_official(DINOv3ViT("vit_nano16"), tmp_path / "ct.pth")
    config = tmp_path / "cfg.json"
    config.write_text(
        json.dumps(
            {
                "name": "tiny",
                "backbone": "vit_nano16",
                "freeze_encoders": True,
                "ct_encoder": {"checkpoint": "ct.pth"},
                "pet_encoder": {"checkpoint": "ct.pth"},
            }
        )
    )
    out = tmp_path / "tiny.safetensors"
    assert main(["build-segmenter", str(config), "-o", str(out)]) == 0
    assert out.exists()
    assert main(["info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "segmenter 'tiny'" in text and "dual_stream" in text and "GTVp" in text
    assert main(["info", str(ckpt)]) == 0
    assert "DINOv3 backbone, ViT D=64 depth=4 heads=2" in capsys.readouterr().out
    # an existing output is kept unless --overwrite
    before = out.read_bytes()
    assert main(["build-segmenter", str(config), "-o", str(out)]) == 2
    assert "exists" in capsys.readouterr().err
    assert out.read_bytes() == before
    assert main(["build-segmenter", str(config), "-o", str(out), "--overwrite"]) == 0


@pytest.mark.parametrize(
    "argv,message",
    [
        (["info", "/nonexistent/model.safetensors"], "no such file"),
        (["build-segmenter", "/nonexistent.yaml", "-o", "x.safetensors"], "config file not found"),
    ],
)
def test_bad_input_gives_one_error_line(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("dualdinov3: error:") and message in err[0]


def test_info_on_a_non_checkpoint_file(tmp_path, capsys):
    junk = tmp_path / "notes.pth"
    junk.write_text("not a checkpoint")
    assert main(["info", str(junk)]) == 2
    assert "not a readable PyTorch file" in capsys.readouterr().err
