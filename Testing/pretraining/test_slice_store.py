"""The pretraining slice store: round trip, memory-mapped reading, DataLoader workers, resuming after an
interruption (exception, crash between shard and manifest, killed process), damaged shards, refusing to
mix modalities or preprocessing, and the ``Training/prepare_pretraining.py`` command on real files.
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from DualDINOv3Lib.cli import main as cli_main
from DualDINOv3Lib.errors import ConfigError, DataError
from DualDINOv3Lib.pretraining.slices import PetSliceParams, build_pretraining_store
from DualDINOv3Lib.pretraining.store import MANIFEST, SliceStore
from DualDINOv3Lib.pretraining.store_writer import SliceStoreWriter

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "Training" / "prepare_pretraining.py"
IBSI_PET_DICOM = ROOT / "Testing" / "data" / "ibsi-sts-petct" / "STS_042_dicom" / "PET" / "image"
SMALL = 32
PARAMS = {"method": "test", "size": SMALL}


def random_volumes(counts, seed=0) -> list[tuple[str, np.ndarray, list[int]]]:
    rng = np.random.default_rng(seed)
    out = []
    for i, n in enumerate(counts):
        z = sorted(rng.choice(40, size=n, replace=False).tolist())
        out.append((f"/data/volume-{i}.nii.gz", rng.normal(size=(n, SMALL, SMALL)).astype(np.float32), z))
    return out


def write_store(path, volumes, *, shard_size=5, dtype="float32", modality="PT", params=PARAMS) -> Path:
    with SliceStoreWriter(
        path, modality=modality, preprocessing=params, slice_size=SMALL, shard_size=shard_size, dtype=dtype
    ) as writer:
        for source, slices, z in volumes:
            writer.add_volume(source, slices, z, {"note": source[-9:]})
    return Path(path)


def store_contents(path) -> tuple[np.ndarray, list]:
    store = SliceStore(path)
    slices = np.stack([store[i] for i in range(len(store))]) if len(store) else np.empty((0,))
    return slices, [store.provenance(i) for i in range(len(store))]


def manifest(path) -> dict:
    return json.loads((Path(path) / MANIFEST).read_text())


def shard_bytes(path) -> dict[str, bytes]:
    return {s["file"]: (Path(path) / s["file"]).read_bytes() for s in manifest(path)["shards"]}


# --- writing and reading --------------------------------------------------------------------------------


def test_round_trip_equals_the_slices_written(tmp_path):
    volumes = random_volumes([3, 7, 0, 4, 2])
    path = write_store(tmp_path / "store", volumes)
    store = SliceStore(path)
    expected = np.concatenate([v[1] for v in volumes])
    assert len(store) == len(expected) == 16
    for i in range(len(store)):
        item = store[i]
        assert item.dtype == np.float32 and item.shape == (SMALL, SMALL)
        np.testing.assert_array_equal(item, expected[i])
    np.testing.assert_array_equal(store[-1], expected[-1])
    with pytest.raises(IndexError):
        store[16]
    provenance = [(p.source, p.z) for p in (store.provenance(i) for i in range(16))]
    assert provenance == [(source, z) for source, _, zs in volumes for z in zs]
    assert store.provenance(3).volume == 1 and store.provenance(10).volume == 3  # volume 2 has no slices
    # full shards of 5, the partial tail merged into one shard on close
    assert [s["count"] for s in manifest(path)["shards"]] == [5, 5, 5, 1]
    assert sorted(p.name for p in path.glob("*.npy")) == sorted(s["file"] for s in manifest(path)["shards"])
    assert store.modality == "PT" and store.preprocessing == PARAMS and store.slice_size == SMALL
    assert [v["source"] for v in store.volumes] == [v[0] for v in volumes]
    assert store.volumes[1]["note"] == volumes[1][0][-9:]


def test_float16_store_rounds_to_half_precision(tmp_path):
    volumes = random_volumes([6, 3])
    store = SliceStore(write_store(tmp_path / "half", volumes, dtype="float16"))
    expected = np.concatenate([v[1] for v in volumes]).astype(np.float16).astype(np.float32)
    np.testing.assert_array_equal(np.stack([store[i] for i in range(len(store))]), expected)
    assert store[0].dtype == np.float32
    assert (tmp_path / "half" / "shard-00000.npy").stat().st_size < 6 * SMALL * SMALL * 2 + 256


def test_reader_memory_maps_shards_lazily(tmp_path):
    store = SliceStore(write_store(tmp_path / "s", random_volumes([12, 9])), max_open_shards=2)
    assert store.open_shards == 0
    item = store[7]
    assert store.open_shards == 1
    assert isinstance(store._shard(1), np.memmap)  # the shard is a map of the file, not a loaded array
    assert not isinstance(item, np.memmap) and item.flags.writeable  # items are copies
    store[0], store[12], store[20]
    assert store.open_shards == 2  # least recently used shard unmapped


def test_store_is_a_picklable_dataset_for_dataloader_workers(tmp_path):
    volumes = random_volumes([4, 5, 3])
    store = SliceStore(write_store(tmp_path / "s", volumes))
    store[0]
    copy = pickle.loads(pickle.dumps(store))
    assert copy.open_shards == 0 and len(pickle.dumps(store)) < 20_000  # no slice data travels
    np.testing.assert_array_equal(copy[11], store[11])
    loader = torch.utils.data.DataLoader(store, batch_size=4, num_workers=2, shuffle=False)
    batches = torch.cat(list(loader))
    assert batches.shape == (12, SMALL, SMALL) and batches.dtype == torch.float32
    np.testing.assert_array_equal(batches.numpy(), np.concatenate([v[1] for v in volumes]))


def test_writer_refuses_bad_slices_and_duplicates(tmp_path):
    with SliceStoreWriter(tmp_path / "s", modality="CT", preprocessing=PARAMS, slice_size=SMALL) as writer:
        with pytest.raises(DataError, match=r"\(N, 32, 32\)"):
            writer.add_volume("a", np.zeros((2, 16, 16)), [0, 1])
        with pytest.raises(DataError, match="NaN"):
            writer.add_volume("a", np.full((1, SMALL, SMALL), np.nan), [0])
        with pytest.raises(DataError, match="float32"):
            writer.add_volume("a", np.full((1, SMALL, SMALL), 1e6), [0])
        writer.add_volume("a", np.ones((1, SMALL, SMALL)), [4])
        assert "a" in writer and len(writer) == 1
        with pytest.raises(DataError, match="already in the store"):
            writer.add_volume("a", np.ones((1, SMALL, SMALL)), [4])
        with pytest.raises(DataError, match="another process is writing"):
            SliceStoreWriter(tmp_path / "s", modality="CT", preprocessing=PARAMS, slice_size=SMALL)


def test_one_store_holds_one_modality_and_one_preprocessing(tmp_path):
    path = write_store(tmp_path / "pet", random_volumes([2]), modality="PT")
    with pytest.raises(ConfigError, match=r'modality = "PT".*"CT" was asked for.*new --out'):
        SliceStoreWriter(path, modality="CT", preprocessing=PARAMS, slice_size=SMALL, shard_size=5, dtype="float32")
    with pytest.raises(ConfigError, match="preprocessing"):
        write_store(path, [], params={**PARAMS, "dilation_mm": 9.0})
    with pytest.raises(ConfigError, match="dtype"):
        write_store(path, [], dtype="float16")
    write_store(path, [])  # the same settings reopen it
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match="not a slice store"):
        write_store(tmp_path / "other", [])
    assert (tmp_path / "other" / "notes.txt").read_text() == "mine"
    with pytest.raises(DataError, match="not a slice store"):
        SliceStore(tmp_path / "other")


# --- interruptions ----------------------------------------------------------------------------------------


def test_crash_between_shards_and_manifest_leaves_a_resumable_store(tmp_path, monkeypatch):
    volumes = random_volumes([3, 4, 6, 2, 5])
    reference = write_store(tmp_path / "reference", volumes)

    calls = {"n": 0}
    original = SliceStoreWriter._write_manifest

    def dies_on_the_fourth_manifest(self, manifest):
        calls["n"] += 1
        if calls["n"] == 4:  # 1: new store, 2-3: volumes 0-1; volume 2's shards are written, its manifest is not
            raise KeyboardInterrupt("killed")
        original(self, manifest)

    monkeypatch.setattr(SliceStoreWriter, "_write_manifest", dies_on_the_fourth_manifest)
    path = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        write_store(path, volumes)
    monkeypatch.setattr(SliceStoreWriter, "_write_manifest", original)
    assert [v["source"] for v in manifest(path)["volumes"]] == [volumes[0][0], volumes[1][0]]
    listed = {s["file"] for s in manifest(path)["shards"]}
    orphans = {p.name for p in path.glob("shard-*.npy")} - listed
    assert orphans  # the shards of volume 2 were on disk without being in the manifest
    # a killed run can also leave a half-written temporary file and a truncated shard
    (path / ".tmp-0123-shard-00007.npy").write_bytes(b"\x93NUMPY partial")
    (path / "shard-00042.npy").write_bytes((path / sorted(listed)[0]).read_bytes()[:1000])
    assert len(SliceStore(path)) == 7  # readers see the last committed state meanwhile

    with SliceStoreWriter(
        path, modality="PT", preprocessing=PARAMS, slice_size=SMALL, shard_size=5, dtype="float32"
    ) as w:
        assert w.completed_sources == {volumes[0][0], volumes[1][0]}
        for source, slices, z in volumes:
            if source not in w:
                w.add_volume(source, slices, z, {"note": source[-9:]})
    assert manifest(path) == manifest(reference)
    assert shard_bytes(path) == shard_bytes(reference)
    assert sorted(p.name for p in path.iterdir() if p.name != ".lock") == sorted(
        p.name for p in reference.iterdir() if p.name != ".lock"
    )


def test_damaged_listed_shard_is_reported(tmp_path):
    path = write_store(tmp_path / "s", random_volumes([6, 2]))
    shard = path / manifest(path)["shards"][0]["file"]
    shard.write_bytes(shard.read_bytes()[:3000])
    store = SliceStore(path)
    with pytest.raises(DataError, match=f"{shard.name}: slice-store shard is missing or damaged.*rebuild"):
        store[0]
    np.testing.assert_array_equal(store[7], random_volumes([6, 2])[1][1][1])  # other shards still read
    with pytest.raises(DataError, match="damaged"):
        write_store(path, [])
    (path / MANIFEST).write_text("{not json")
    with pytest.raises(DataError, match="manifest"):
        SliceStore(path)


def write_pet_nifti(path: Path, seed: int, z: int = 6) -> Path:
    """A small PET-like volume: noisy uptake in an ellipse on slices 1..z-2, air elsewhere."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:48, :40]
    body = ((yy - 24 - seed) / 18.0) ** 2 + ((xx - 20) / 15.0) ** 2 <= 1
    array = rng.uniform(0.0, 0.05, size=(z, 48, 40)).astype(np.float32)
    array[1:-1] += np.where(body, rng.uniform(0.8, 1.2, size=(z - 2, 48, 40)), 0.0).astype(np.float32)
    array[2, 24, 20] = 6.0 + seed
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((2.0, 2.0, 3.0))
    sitk.WriteImage(image, str(path))
    return path


def test_resume_after_an_exception_equals_an_uninterrupted_run(tmp_path):
    sources = [write_pet_nifti(tmp_path / f"case{i}__PT.nii.gz", seed=i) for i in range(3)]
    params = PetSliceParams(size=64)
    full = build_pretraining_store(sources, tmp_path / "full", "PT", params, shard_size=4, dtype="float32")
    assert [r.status for r in full] == ["added"] * 3 and all(r.kept == 4 for r in full)

    def stop_after_the_first(report):
        if report.index == 1:
            raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError, match="interrupted"):
        build_pretraining_store(
            sources, tmp_path / "part", "PT", params, shard_size=4, dtype="float32", on_volume=stop_after_the_first
        )
    assert len(manifest(tmp_path / "part")["volumes"]) == 1
    again = build_pretraining_store(sources, tmp_path / "part", "PT", params, shard_size=4, dtype="float32")
    assert [r.status for r in again] == ["skipped", "added", "added"]
    assert manifest(tmp_path / "part") == manifest(tmp_path / "full")
    a, b = store_contents(tmp_path / "part"), store_contents(tmp_path / "full")
    np.testing.assert_array_equal(a[0], b[0])
    assert a[1] == b[1] and a[1][0] == (str(sources[0].resolve()), 1, 0)
    with pytest.raises(ConfigError, match="preprocessing"):
        build_pretraining_store(
            sources, tmp_path / "full", "PT", PetSliceParams(size=64, dilation_mm=2.0), shard_size=4, dtype="float32"
        )


# --- the command ------------------------------------------------------------------------------------------


def run_script(*args: str | os.PathLike) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True, timeout=120, cwd=ROOT
    )


def main(args: list[str]) -> int:
    """``dualdinov3 prepare-pretraining ...`` in this process (what the script runs)."""
    return cli_main(["prepare-pretraining", *args])


@pytest.fixture(scope="module")
def hecktor_folder(tmp_path_factory) -> Path:
    """HECKTOR layout: CASE__CT.nii.gz, CASE__PT.nii.gz and the label CASE.nii.gz per case."""
    folder = tmp_path_factory.mktemp("hecktor")
    for i, case in enumerate(["CHUM-001", "CHUP-002"]):
        write_pet_nifti(folder / f"{case}__PT.nii.gz", seed=i)
        ct = np.full((6, 48, 40), -1000.0, dtype=np.float32)
        ct[1:5, 10:40, 8:32] = 30.0
        sitk.WriteImage(sitk.GetImageFromArray(ct), str(folder / f"{case}__CT.nii.gz"))
        label = np.zeros((6, 48, 40), np.uint8)
        label[2:4, 20:26, 15:21] = 1
        sitk.WriteImage(sitk.GetImageFromArray(label), str(folder / f"{case}.nii.gz"))
    return folder


def test_script_builds_a_pet_store_from_hecktor_and_dicom_folders(hecktor_folder, tmp_path, capsys):
    out = tmp_path / "pet-store"
    done = run_script("--modality", "PT", "--out", out, "--shard-size", "16", hecktor_folder, IBSI_PET_DICOM)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == f"3 PT volume(s) -> {out}"
    assert lines[1].startswith("[1/3] ") and "CHUM-001__PT.nii.gz: kept 4 of 6 slices" in lines[1]
    assert lines[2].startswith("[2/3] ") and "CHUP-002__PT.nii.gz: kept 4 of 6 slices" in lines[2]
    assert lines[3].startswith(f"[3/3] {IBSI_PET_DICOM}: kept 49 of 49 slices")
    store = SliceStore(out)
    assert len(store) == 57 and store.modality == "PT" and store[56].shape == (256, 256)
    assert [Path(v["source"]).name for v in store.volumes] == ["CHUM-001__PT.nii.gz", "CHUP-002__PT.nii.gz", "image"]
    assert store.volumes[2]["stats"]["units"] == "SUV"  # real DICOM PET (Units GML)
    assert all(0.0 <= store[i].min() and store[i].max() <= 1.0 for i in range(0, 57, 7))
    before = shard_bytes(out)

    # re-running (in this process, to save an interpreter start) skips everything and changes nothing
    args = ["--modality", "PT", "--out", str(out), "--shard-size", "16", str(hecktor_folder), str(IBSI_PET_DICOM)]
    assert main(args) == 0
    assert capsys.readouterr().out.count("already in the store, skipped") == 3
    assert shard_bytes(out) == before
    assert main(["--modality", "CT", "--out", str(out), str(hecktor_folder)]) == 2
    wrong = capsys.readouterr()
    assert wrong.out.count("\n") <= 1 and wrong.err.count("\n") == 1
    assert wrong.err.startswith("dualdinov3: error: ") and "new --out" in wrong.err


def test_script_takes_ct_files_only_and_reports_bad_inputs(hecktor_folder, tmp_path, capsys):
    out = tmp_path / "ct-store"
    done = run_script("--modality", "CT", "--out", out, "--set", "size=64", hecktor_folder)
    assert done.returncode == 0, done.stderr
    store = SliceStore(out)
    assert [Path(v["source"]).name for v in store.volumes] == ["CHUM-001__CT.nii.gz", "CHUP-002__CT.nii.gz"]
    assert len(store) == 8 and store[0].shape == (64, 64) and store.preprocessing["size"] == 64
    # bad inputs, in this process (the subprocess above already checked the command as users run it)
    assert (
        main(["--modality", "CT", "--out", str(tmp_path / "mixed"), str(hecktor_folder / "CHUM-001__PT.nii.gz")]) == 1
    )
    output = capsys.readouterr()
    assert "[1/1] FAILED" in output.out and "not a CT in Hounsfield units" in output.err
    assert main(["--modality", "CT", "--out", str(tmp_path / "x"), "--set", "dilation_mm=3", str(hecktor_folder)]) == 2
    assert capsys.readouterr().err.startswith("dualdinov3: error: unknown CT slice parameter")
    assert main(["--modality", "PT", "--out", str(tmp_path / "y"), str(tmp_path / "nowhere")]) == 2
    assert "no such file or folder" in capsys.readouterr().err
    assert main(["--modality", "PT", "--out", str(tmp_path / "z"), str(hecktor_folder / "CHUM-001.nii.gz")]) == 1
    assert "like a label map" in capsys.readouterr().err


@pytest.mark.slow
def test_killed_script_resumes_to_the_same_store(tmp_path):
    folder = tmp_path / "cases"
    folder.mkdir()
    for i in range(6):
        write_pet_nifti(folder / f"case{i}__PT.nii.gz", seed=i, z=40)
    args = ["--modality", "PT", "--out", None, "--shard-size", "8", "--dtype", "float32", folder]
    reference = tmp_path / "reference"
    assert run_script(*[a if a is not None else reference for a in args]).returncode == 0

    killed = tmp_path / "killed"
    command = [sys.executable, str(SCRIPT), *(str(a) if a is not None else str(killed) for a in args)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert process.stdout.readline().startswith("6 PT volume(s)")
    assert process.stdout.readline().startswith("[1/6] ")
    process.send_signal(signal.SIGKILL)  # wherever it is now: reading, extracting, writing shards or manifest
    process.wait(timeout=60)
    process.stdout.close()
    assert 1 <= len(manifest(killed)["volumes"]) <= 6

    resumed = run_script(*[a if a is not None else killed for a in args])
    assert resumed.returncode == 0, resumed.stderr
    assert "already in the store, skipped" in resumed.stdout
    assert manifest(killed) == manifest(reference)
    a, b = store_contents(killed), store_contents(reference)
    np.testing.assert_array_equal(a[0], b[0])
    assert a[1] == b[1]
    assert not list(killed.glob(".tmp-*"))
