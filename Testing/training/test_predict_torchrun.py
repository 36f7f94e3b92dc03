"""``predict`` over many cases: two torchrun processes (gloo on CPU) share the cases out and write exactly the
files one process writes; a refusal or a failure on one process ends every process, none waits forever."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from DualDINOv3Lib.cli import main as cli_main
from DualDINOv3Lib.models import build_segmenter, save_segmenter
from DualDINOv3Lib.phantoms import write_phantom_cases
from DualDINOv3Lib.workflows.predict import predict_folder

REPO = Path(__file__).resolve().parents[2]
SMALL = {"shape": (26, 52, 52), "spacing": (4.0, 4.0, 4.0), "pet_spacing": (6.0, 6.0, 4.0)}
CASES = ("PHANTOM-001", "PHANTOM-002", "PHANTOM-003")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    folder = tmp_path_factory.mktemp("predict")
    write_phantom_cases(folder / "data", len(CASES), seed=7, **SMALL)
    config = {"name": "tiny", "architecture": "dual_stream", "backbone": "vit_nano16",
              "preprocessing": {"crop_size": 64, "spacing_mm": [3.0, 3.0]}}  # fmt: skip
    torch.manual_seed(0)
    model = build_segmenter(config).eval()
    with torch.no_grad():  # larger weights than at initialisation, so the labels are not all background
        for p in model.decoder.parameters():
            p.add_(torch.randn_like(p) * 0.5)
    model = save_segmenter(model, folder / "tiny.safetensors")
    return folder, folder / "data", model


def _torchrun(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(REPO / "Training" / "predict.py"), *args, "--device", "cpu"]  # fmt: skip
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_two_processes_write_the_files_one_process_writes(setup):
    folder, data, model = setup
    single = predict_folder(data, folder / "one", model, device="cpu", threads=1)
    assert [p.name for p in single] == [f"{c}.nii.gz" for c in CASES]
    done = _torchrun("--model", str(model), "--data", str(data), "--out", str(folder / "two"))
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert sorted(p.name for p in (folder / "two").iterdir()) == [p.name for p in single]  # no temporary left
    labels = []
    for path in single:
        one, two = sitk.ReadImage(str(path)), sitk.ReadImage(str(folder / "two" / path.name))
        np.testing.assert_array_equal(sitk.GetArrayFromImage(one), sitk.GetArrayFromImage(two))
        assert (one.GetOrigin(), one.GetSpacing(), one.GetDirection()) == (
            two.GetOrigin(),
            two.GetSpacing(),
            two.GetDirection(),
        )
        assert path.read_bytes() == (folder / "two" / path.name).read_bytes()  # byte-identical files
        labels.append(sitk.GetArrayFromImage(one))
    assert len(np.unique(np.concatenate([a.ravel() for a in labels]))) > 1  # not all background: a real test
    assert all(done.stdout.count(f"[{i}/3]") == 1 for i in (1, 2, 3)), done.stdout  # each case segmented once


@pytest.mark.slow
def test_a_refusal_or_a_failure_on_one_process_ends_both(setup, tmp_path):
    _, data, model = setup
    out = tmp_path / "out"
    out.mkdir()
    (out / f"{CASES[2]}.nii.gz").write_bytes(b"an earlier result")
    done = _torchrun("--model", str(model), "--data", str(data), "--out", str(out))
    assert done.returncode != 0
    assert done.stderr.count("dualdinov3: error:") == 2 and "exists" in done.stderr, done.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir()) == [f"{CASES[2]}.nii.gz"]  # refused before any work

    broken = tmp_path / "broken"  # the second case (process 1's) cannot be read; process 0's cases are fine
    broken.mkdir()
    for path in data.glob("*.nii.gz"):
        (broken / path.name).write_bytes(path.read_bytes())
    ct = broken / f"{CASES[1]}__CT.nii.gz"
    ct.write_bytes(ct.read_bytes()[:2000])
    done = _torchrun("--model", str(model), "--data", str(broken), "--out", str(tmp_path / "out2"))
    assert done.returncode != 0
    # one error line per process (two processes may write to the shared stderr at the same moment)
    assert done.stderr.count("dualdinov3: error:") == 2 and "process 1 failed" in done.stderr, done.stderr[-3000:]
    written = sorted(p.name for p in (tmp_path / "out2").iterdir())
    assert written == [f"{CASES[0]}.nii.gz", f"{CASES[2]}.nii.gz"]  # whole files from process 0, nothing partial


def test_one_process_refuses_existing_outputs_before_any_work(setup, tmp_path, capsys):
    _, data, model = setup
    out = tmp_path / "out"
    out.mkdir()
    (out / f"{CASES[1]}.nii.gz").write_bytes(b"an earlier result")
    code = cli_main(["predict", "--model", str(model), "--data", str(data), "--out", str(out), "--threads", "1"])
    assert code == 2 and "exists" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == [f"{CASES[1]}.nii.gz"]
