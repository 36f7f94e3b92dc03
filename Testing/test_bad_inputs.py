"""Nothing lost, nothing silently wrong: every bad or awkward input a user may hand the commands or the Python
API gets one clear message (or a documented handling), no expected failure ends in a traceback, and no
existing file is changed by a failed run, also on a full disk and on Ctrl-C.

The cases are listed in README.md ("When things go wrong"). Each case is one test (parametrized), so the
count shows in the test report."""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from DualDINOv3Lib import Volume, segment_volume
from DualDINOv3Lib.cli import main
from DualDINOv3Lib.data.io import read_volume, write_volume
from DualDINOv3Lib.errors import CheckpointError, DataError, WriteError
from DualDINOv3Lib.models import build_segmenter, load_backbone, save_segmenter
from DualDINOv3Lib.phantoms import make_phantom

SMALL = {"shape": (34, 100, 100), "spacing": (2.0, 2.0, 3.0), "pet_spacing": (4.0, 4.0, 3.0)}


@pytest.fixture(scope="module")
def case(tmp_path_factory) -> dict[str, Path]:
    """A small phantom PET/CT as files, a tiny segmenter file, and the volumes."""
    folder = tmp_path_factory.mktemp("case")
    phantom = make_phantom(3, **SMALL)
    torch.manual_seed(0)
    model = build_segmenter(
        {"architecture": "dual_stream", "backbone": "vit_nano16", "preprocessing": {"crop_size": 96}}
    )
    paths = {
        "ct": write_volume(phantom.ct, folder / "ct.nii.gz"),
        "pet": write_volume(phantom.pet, folder / "pet.nii.gz"),
        "model": save_segmenter(model, folder / "tiny.safetensors"),
    }
    return {**paths, "folder": folder, "phantom": phantom}


def run(args: list, capsys) -> tuple[int, str]:
    """``dualdinov3 ARGS`` in this process: exit status and stderr (which must be one line on failure)."""
    code = main([str(a) for a in args])
    err = capsys.readouterr().err
    if code != 0:
        lines = [line for line in err.splitlines() if line.strip()]
        assert lines and lines[-1].startswith("dualdinov3") and "Traceback" not in err, err
    return code, err


def segment_args(case, ct=None, pet=None, out=None) -> list:
    return ["segment", "--ct", ct or case["ct"], "--pet", pet or case["pet"], "--model", case["model"],
            "-o", out or case["folder"] / "out" / "label.nii.gz", "--device", "cpu"]  # fmt: skip


# --- damaged image files ----------------------------------------------------------------------------------


def _image(folder: Path, name: str, array: np.ndarray, spacing=(2.0, 2.0, 3.0)) -> Path:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    path = folder / name
    sitk.WriteImage(image, str(path), useCompression=not name.endswith(".nii"))
    return path


def _cut(path: Path, fraction: float) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    return path


DAMAGED = {
    "nii.gz cut to half": ("ct.nii.gz", 0.5, "ends before its end marker"),
    "nii.gz cut to 98%": ("ct.nii.gz", 0.98, "ends before its end marker"),
    "nii.gz cut to 2%": ("ct.nii.gz", 0.02, "ends before its end marker"),
    "nii cut to half": ("ct.nii", 0.5, "bytes of voxel data its header describes"),
    "nii cut after the header": ("ct.nii", 0.1, "bytes of voxel data its header describes"),
    "nrrd cut": ("ct.nrrd", 0.6, "truncated or damaged"),
    "mha cut": ("ct.mha", 0.6, "truncated or damaged"),
}


@pytest.mark.parametrize("name", DAMAGED)
def test_truncated_image_files_are_refused(case, tmp_path, name):
    file_name, fraction, phrase = DAMAGED[name]
    ct = np.asarray(case["phantom"].ct.array, dtype=np.float32)
    path = _cut(_image(tmp_path, file_name, ct), fraction)
    with pytest.raises(DataError, match=phrase) as info:
        read_volume(path)
    assert "truncated or damaged" in str(info.value) or "bytes of voxel data" in str(info.value)


def test_a_broken_gzip_stream_is_refused(case, tmp_path):
    path = _image(tmp_path, "ct.nii.gz", np.asarray(case["phantom"].ct.array, dtype=np.float32))
    data = bytearray(path.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 64] = bytes(64)  # damage the middle of the deflate stream
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"compressed data is corrupt|truncated or damaged"):
        read_volume(path)


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_nifti_nan_and_inf_voxels_are_refused_not_read_as_zero(tmp_path, value, suffix):
    array = np.random.default_rng(0).normal(size=(6, 16, 16)).astype(np.float32)
    array[3, 5, 5] = value
    path = _image(tmp_path, f"pet{suffix}", array)
    assert sitk.GetArrayFromImage(sitk.ReadImage(str(path)))[3, 5, 5] == 0  # what the image library does
    with pytest.raises(DataError, match="1 of 1536 voxels are NaN or infinite"):
        read_volume(path, modality="PT")


# --- implausible inputs -----------------------------------------------------------------------------------


def _variant(case, tmp_path, which: str, change) -> Path:
    volume = case["phantom"].ct if which == "ct" else case["phantom"].pet
    return write_volume(change(volume), tmp_path / f"{which}-variant.nii.gz")


IMPLAUSIBLE = {
    "CT stored as 0..4095 (HU + 1024)": ("ct", lambda v: v.with_array(np.asarray(v.array) + 1024), "stored values"),
    "CT without air": ("ct", lambda v: v.with_array(np.clip(v.array, -200, None)), "has no air"),
    "PET with HU-like values": ("pet", lambda v: v.with_array(np.asarray(v.array) * 300 - 900), "like a CT in HU"),
    "negative PET": ("pet", lambda v: v.with_array(np.asarray(v.array) - 3.0), "below -1 SUV"),
    "CT spacing 1e-4 mm": ("ct", lambda v: Volume(v.array, (1e-4, 1e-4, 1e-4)), "outside the physical range"),
    "CT spacing in µm (1250 mm)": ("ct", lambda v: Volume(v.array, (1250.0, 1250.0, 3000.0)), "probably in µm"),
    "PET spacing 0 in z is impossible": ("pet", lambda v: Volume(v.array, (4.0, 4.0, 40.0)), "physical range"),
}


@pytest.mark.parametrize("name", IMPLAUSIBLE)
def test_implausible_inputs_are_refused_with_the_fix(case, tmp_path, capsys, name):
    which, change, phrase = IMPLAUSIBLE[name]
    path = _variant(case, tmp_path, which, change)
    out = tmp_path / "new-folder" / "label.nii.gz"
    code, err = run(segment_args(case, **{which: path}, out=out), capsys)
    assert code == 2 and phrase in err
    assert not out.parent.exists()  # no empty output folder left behind


def test_the_same_file_as_ct_and_pet_is_refused(case, tmp_path, capsys):
    code, err = run(segment_args(case, pet=case["ct"], out=tmp_path / "x.nii.gz"), capsys)
    assert code == 2 and "the same image was given as CT and as PET" in err


def test_swapped_ct_and_pet_are_named_as_swapped(case, tmp_path, capsys):
    code, err = run(segment_args(case, ct=case["pet"], pet=case["ct"], out=tmp_path / "x.nii.gz"), capsys)
    assert code == 2 and "CT and PET seem swapped" in err and "Exchange the two inputs" in err


def test_the_input_checks_can_be_skipped_when_the_user_knows_better(case, tmp_path, capsys):
    path = _variant(case, tmp_path, "ct", lambda v: v.with_array(np.clip(v.array, -850, None)))
    out = tmp_path / "label.nii.gz"
    code, _ = run([*segment_args(case, ct=path, out=out), "--no-input-checks"], capsys)
    assert code == 0 and out.is_file()


def _one_nan(volume: Volume) -> Volume:
    array = np.array(volume.array, dtype=np.float32)
    array.flat[7] = np.nan
    return volume.with_array(array)


API_CASES = {
    "a numpy array as CT": (lambda c: np.asarray(c["phantom"].ct.array), "bare numpy array"),
    "a list as CT": (lambda c: [[1.0]], "must be a Volume"),
    "a CT Volume with one NaN": (lambda c: _one_nan(c["phantom"].ct), "1 NaN or infinite voxels"),
}


@pytest.mark.parametrize("name", API_CASES)
def test_the_python_api_checks_what_it_is_given(case, name):
    make, phrase = API_CASES[name]
    with pytest.raises(DataError, match=phrase):
        segment_volume(make(case), case["phantom"].pet, case["model"], device="cpu")


# --- weight files -----------------------------------------------------------------------------------------


def _hf_folder(tmp_path: Path, **config) -> Path:
    from transformers import DINOv3ViTConfig, DINOv3ViTModel

    base = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128, patch_size=16)
    torch.manual_seed(0)
    model = DINOv3ViTModel(DINOv3ViTConfig(**base))
    folder = tmp_path / "hf"
    model.save_pretrained(folder)
    stored = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**stored, **config}))
    return folder


@pytest.mark.parametrize(
    "config,phrase",
    [
        ({"hidden_size": 96}, "hidden_size 96 (the weights have 64)"),
        ({"num_hidden_layers": 3}, "num_hidden_layers 3 (the weights have 2)"),
        ({"intermediate_size": 256}, "intermediate_size 256"),
        ({"num_attention_heads": 0}, "num_attention_heads 0"),
        ({"num_attention_heads": 5}, "num_attention_heads 5"),
        ({"num_attention_heads": 8}, "(64 / 8 = 8: a valid head size)"),
    ],
)
def test_a_hugging_face_config_that_contradicts_the_weights_is_an_error(tmp_path, config, phrase):
    folder = _hf_folder(tmp_path, **config)
    if config == {"num_attention_heads": 8}:  # 64 / 8 = 8: a valid head size, so it loads with 8 heads
        assert load_backbone(folder).config.num_heads == 8
        return
    with pytest.raises(CheckpointError, match="config.json contradicts the weights: .*" + re.escape(phrase)):
        load_backbone(folder)


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("echo this must never run",))


def test_a_pickle_that_would_run_code_is_refused_as_such(tmp_path, capfd):
    path = tmp_path / "evil.pth"
    torch.save({"x": _RunsCode()}, path)
    with pytest.raises(CheckpointError, match=r"refused to load.*could run arbitrary code"):
        load_backbone(path)
    assert "must never run" not in capfd.readouterr().out


@pytest.mark.parametrize("content", [b"not a checkpoint at all", b"\x80\x02garbage", b""])
def test_garbage_pytorch_files_are_unreadable_not_a_traceback(tmp_path, content):
    path = tmp_path / "weights.pth"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match="not a readable PyTorch file"):
        load_backbone(path)


def test_a_truncated_segmenter_file_is_refused(case, tmp_path, capsys):
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(case["model"].read_bytes()[:5000])
    args = segment_args(case, out=tmp_path / "x.nii.gz")
    args[args.index("--model") + 1] = cut
    code, err = run(args, capsys)
    assert code == 2 and "not a readable .safetensors file" in err


# --- commands: options, outputs, interruption -------------------------------------------------------------


@pytest.mark.parametrize(
    "extra,phrase",
    [
        (["--batch-size", "0"], "--batch-size: expected a whole number >= 1"),
        (["--min-component-mm3", "-5"], "--min-component-mm3: expected a number >= 0"),
        (["--min-component-mm3", "nan"], "expected a finite number"),
    ],
)
def test_option_values_are_validated(case, tmp_path, capsys, extra, phrase):
    with pytest.raises(SystemExit) as info:
        main([str(a) for a in [*segment_args(case, out=tmp_path / "x.nii.gz"), *extra]])
    assert info.value.code == 2 and phrase in capsys.readouterr().err


def test_pca_layer_outside_the_encoder_is_an_error(case, tmp_path, capsys):
    args = ["pca", "--ct", case["ct"], "--pet", case["pet"], "--model", case["model"], "--out", tmp_path / "pca"]
    code, err = run([*args, "--layer", "99"], capsys)
    assert code == 2 and "layer 99 is outside the ct encoder's 4 blocks" in err
    assert not (tmp_path / "pca").exists()


@pytest.mark.parametrize("which", ["ct", "pet"])
def test_an_output_that_would_replace_an_input_is_refused(case, tmp_path, capsys, which):
    copy = {k: shutil.copy(case[k], tmp_path / case[k].name) for k in ("ct", "pet")}
    before = Path(copy[which]).read_bytes()
    code, err = run([*segment_args(case, ct=copy["ct"], pet=copy["pet"], out=copy[which]), "--overwrite"], capsys)
    assert code == 2 and "is one of this job's inputs" in err
    assert Path(copy[which]).read_bytes() == before


def test_missing_inputs_and_wrong_output_suffix(case, tmp_path, capsys):
    code, err = run(segment_args(case, ct=tmp_path / "absent.nii.gz", out=tmp_path / "x.nii.gz"), capsys)
    assert code == 2 and "no such file" in err
    code, err = run(segment_args(case, out=tmp_path / "label.png"), capsys)
    assert code == 2 and "must end in one of" in err


def test_ctrl_c_prints_one_line_exits_130_and_leaves_nothing_half_made(case, tmp_path, capsys, monkeypatch):
    import DualDINOv3Lib.inference as inference

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(inference, "segment_volume", interrupted)  # where the command looks it up
    out = tmp_path / "new" / "label.nii.gz"
    code = main([str(a) for a in segment_args(case, out=out)])
    err = capsys.readouterr().err
    assert code == 130 and err.strip().startswith("dualdinov3: interrupted") and "Traceback" not in err
    assert not (tmp_path / "new").exists()


def test_debug_shows_the_traceback(case, tmp_path):
    with pytest.raises(DataError, match="no such file"):
        main(["--debug", *map(str, segment_args(case, ct=tmp_path / "absent.nii.gz", out=tmp_path / "x.nii.gz"))])


# --- a full disk ------------------------------------------------------------------------------------------


def test_a_short_write_keeps_the_old_file_and_says_so(case, tmp_path, monkeypatch):
    """The image library only warns when the disk fills up mid-write: simulate that for every format."""
    volume = case["phantom"].ct
    real_write = sitk.WriteImage

    def short_write(image, path, *args, **kwargs):
        real_write(image, path, *args, **kwargs)
        data = Path(path).read_bytes()
        Path(path).write_bytes(data[: len(data) * 2 // 3])  # what a full disk leaves

    for suffix in (".nii.gz", ".nii", ".nrrd", ".mha"):
        target = write_volume(volume, tmp_path / f"old{suffix}")
        before = target.read_bytes()
        monkeypatch.setattr(sitk, "WriteImage", short_write)
        with pytest.raises(WriteError, match=f"cannot write {target}: .*the existing file was kept"):
            write_volume(volume.with_array(np.asarray(volume.array) + 1), target, overwrite=True)
        monkeypatch.setattr(sitk, "WriteImage", real_write)
        assert target.read_bytes() == before, suffix
        assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp-")) == []


def _mount_tmpfs(folder: Path, size_kb: int) -> bool:
    folder.mkdir()
    if shutil.which("mount") is None or os.geteuid() != 0:
        return False
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(folder)], capture_output=True)
    return done.returncode == 0


def _fill(folder: Path) -> Path:
    """Fills the file system of ``folder`` to the last block."""
    filler = folder / "filler"
    with open(filler, "wb", buffering=0) as f:  # unbuffered: nothing left to flush when the disk is full
        for block in (65536, 4096, 256, 1):
            try:
                while True:
                    f.write(b"\0" * block)
            except OSError:
                pass
    return filler


@pytest.fixture
def full_disk(tmp_path):
    folder = tmp_path / "disk"
    if not _mount_tmpfs(folder, 512):
        pytest.skip("cannot mount a tmpfs here (needs root); the simulated short write covers this path")
    yield folder
    subprocess.run(["umount", str(folder)], check=False)


def test_a_real_full_disk_keeps_the_old_output_and_exits_2(case, full_disk, capsys):
    old = full_disk / "label.nii.gz"
    write_volume(case["phantom"].label, old)
    before = old.read_bytes()
    filler = _fill(full_disk)
    code, err = run([*segment_args(case, out=old), "--overwrite"], capsys)
    assert code == 2 and f"cannot write {old}" in err and "the existing file was kept" in err
    assert old.read_bytes() == before
    assert sorted(p.name for p in full_disk.iterdir()) == ["filler", "label.nii.gz"]  # no temporary file left
    filler.unlink()
    _fill(full_disk)
    new = full_disk / "model.safetensors"
    config = full_disk.parent / "tiny.json"
    config.write_text(json.dumps({"architecture": "dual_stream", "backbone": "vit_nano16"}))
    code, err = run(["build-segmenter", config, "-o", new], capsys)
    assert code == 2 and "cannot write" in err and not new.exists()


def test_a_truncated_label_file_is_refused(case, tmp_path):
    from DualDINOv3Lib.data.labels import read_label

    path = write_volume(case["phantom"].label, tmp_path / "CASE.nii.gz")
    with gzip.open(path) as f:
        raw = f.read()
    with gzip.open(path, "wb") as f:
        f.write(raw[: len(raw) // 2])  # a whole gzip stream of half the voxels
    with pytest.raises(DataError, match="bytes of voxel data its header describes"):
        read_label(path)


def test_predicting_into_the_data_folder_would_replace_the_truth_and_is_refused(case, tmp_path, capsys):
    from DualDINOv3Lib.phantoms import write_phantom_cases

    data = tmp_path / "data"
    write_phantom_cases(data, 1, seed=4, **SMALL)
    truth = data / "PHANTOM-001.nii.gz"
    before = truth.read_bytes()
    code, err = run(["predict", "--data", data, "--out", data, "--model", case["model"], "--overwrite"], capsys)
    assert code == 2 and "is one of this job's inputs" in err and truth.read_bytes() == before


def test_a_segmenter_may_not_be_written_over_one_of_its_encoder_checkpoints(tmp_path, capsys):
    from DualDINOv3Lib.models import DINOv3ViT, ViTConfig, save_backbone

    checkpoint = save_backbone(DINOv3ViT(ViTConfig(embed_dim=64, depth=2, num_heads=4)), tmp_path / "ct.safetensors")
    before = checkpoint.read_bytes()
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"architecture": "single_stream", "encoder": {"checkpoint": "ct.safetensors"}}))
    code, err = run(["build-segmenter", config, "-o", checkpoint, "--overwrite"], capsys)
    assert code == 2 and "is one of this job's inputs" in err and checkpoint.read_bytes() == before
