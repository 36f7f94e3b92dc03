"""``dualdinov3 segment`` and ``dualdinov3 pca`` on real files: outputs, refusals, one-line errors."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from DualDINOv3Lib.cli import main
from DualDINOv3Lib.data import Volume, read_label, write_volume
from DualDINOv3Lib.models import build_segmenter, save_segmenter


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("case")
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[:60, :64]
    body = ((yy - 30) / 22) ** 2 + ((xx - 32) / 26) ** 2 < 1
    ct = np.full((6, 60, 64), -1000.0, np.float32)
    ct[:, body] = 30.0
    ct = Volume(ct + rng.normal(0, 5, ct.shape).astype(np.float32), (1.2, 1.2, 3.0), origin=(5.0, -3.0, 40.0))
    pet = Volume(rng.random((3, 20, 22)).astype(np.float32), (3.6, 3.6, 6.0), origin=(4.0, -2.0, 41.0))
    torch.manual_seed(0)
    model = build_segmenter(
        {"architecture": "dual_stream", "backbone": "vit_nano16", "preprocessing": {"crop_size": 64}}
    )
    return {
        "ct": write_volume(ct, folder / "CASE__CT.nii.gz"),
        "pet": write_volume(pet, folder / "CASE__PT.nrrd"),
        "model": save_segmenter(model, folder / "model.safetensors"),
        "ct_volume": ct,
    }


def _args(files, *extra):
    return ["--ct", str(files["ct"]), "--pet", str(files["pet"]), "--model", str(files["model"]), *extra]


def test_segment_writes_labels_on_the_ct_grid_and_pca_maps(files, tmp_path, capsys):
    out = tmp_path / "pred" / "CASE.nii.gz"
    assert main(["segment", *_args(files, "-o", str(out), "--pca-out", str(tmp_path / "pca"))]) == 0
    label = read_label(out)  # may be empty: the fixture's PET (SUV < 1) has no uptake a tumour could have
    assert label.same_grid(files["ct_volume"], tol=1e-6)
    assert sitk.ReadImage(str(out)).GetPixelID() == sitk.sitkUInt8
    printed = capsys.readouterr()
    assert "GTVp" in printed.out and "cm3" in printed.out and "segment [" in printed.err
    for name in ("ct", "pet"):
        rgb = sitk.ReadImage(str(tmp_path / "pca" / f"{name}_pca.nii.gz"))
        assert rgb.GetNumberOfComponentsPerPixel() == 3 and rgb.GetSize() == (64, 60, 6)
        pngs = sorted((tmp_path / "pca").glob(f"{name}_pca_z*.png"))
        assert pngs and sitk.ReadImage(str(pngs[0])).GetSize() == (64, 60)


def test_segment_refuses_to_overwrite_before_computing(files, tmp_path, capsys, monkeypatch):
    out = tmp_path / "CASE.nii.gz"
    out.write_bytes(b"precious")
    import DualDINOv3Lib.inference as inference

    monkeypatch.setattr(inference, "segment_volume", lambda *a, **k: pytest.fail("computed before checking"))
    assert main(["segment", *_args(files, "-o", str(out))]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("dualdinov3: error:") and "--overwrite" in err[0]
    assert out.read_bytes() == b"precious"
    monkeypatch.undo()
    assert main(["segment", *_args(files, "-o", str(out), "--overwrite")]) == 0
    assert read_label(out).array.shape == (6, 60, 64)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"--ct": "missing.nii.gz"}, "no such file"),
        ({"--model": "missing.safetensors"}, "missing.safetensors"),
        ({"-o": "out.png"}, "must end in one of"),
        ({"--device": "tpu9"}, "unknown device"),
    ],
)
def test_bad_input_gives_one_line_and_exit_2(files, tmp_path, capsys, change, message):
    args = {"--ct": str(files["ct"]), "--pet": str(files["pet"]), "--model": str(files["model"])}
    args["-o"] = str(tmp_path / "out.nii.gz")
    args.update({k: (str(tmp_path / v) if k != "--device" else v) for k, v in change.items()})
    assert main(["segment", *[x for kv in args.items() for x in kv]]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("dualdinov3: error:") and message in err[0]


def test_pca_command_writes_chosen_slices_and_refuses_overwrite(files, tmp_path, capsys):
    out = tmp_path / "maps"
    assert main(["pca", *_args(files, "--out", str(out), "--encoders", "pet", "--slices", "1", "4")]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["pet_pca.nii.gz", "pet_pca_z001.png", "pet_pca_z004.png"]
    assert main(["pca", *_args(files, "--out", str(out), "--encoders", "pet")]) == 2
    assert "exists" in capsys.readouterr().err
    assert main(["pca", *_args(files, "--out", str(out), "--slices", "99", "--overwrite")]) == 2
    assert "outside" in capsys.readouterr().err
