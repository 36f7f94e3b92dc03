"""The whole Table-1 pipeline on phantoms: stratified splits, finetuning two configurations on two folds,
predicting the test cases with segment_volume, and the evaluation tables built from those predictions."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from DualDINOv3Lib.errors import DataError
from DualDINOv3Lib.evaluation import evaluate_case, read_label
from DualDINOv3Lib.evaluation.splits import make_crossval_splits
from DualDINOv3Lib.phantoms import write_phantom_cases

REPO = Path(__file__).resolve().parents[2]
SMALL = {"shape": (34, 100, 100), "spacing": (2.0, 2.0, 3.0), "pet_spacing": (4.0, 4.0, 3.0)}


def test_splits_are_stratified_reproducible_and_partition_the_cases():
    strata = {f"C{i:02d}": ("small", "medium", "large")[i % 3] for i in range(15)}
    splits = make_crossval_splits(strata, n_folds=5, seed=3)
    assert splits == make_crossval_splits(strata, n_folds=5, seed=3)
    assert splits != make_crossval_splits(strata, n_folds=5, seed=4)
    tested = []
    for fold in splits["folds"]:
        parts = [set(fold[p]) for p in ("train", "validation", "test")]
        assert [len(p) for p in parts] == [9, 3, 3]  # 60/20/20
        assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
        assert sorted(strata[c] for c in fold["test"]) == ["large", "medium", "small"]  # one per stratum
        tested += fold["test"]
    assert sorted(tested) == sorted(strata)  # every case tested exactly once
    with pytest.raises(DataError, match="at least 3 folds"):
        make_crossval_splits(strata, n_folds=2)


@pytest.mark.slow
def test_crossval_two_configurations_two_folds_end_to_end(tmp_path):
    data = tmp_path / "data"
    write_phantom_cases(data, 5, seed=11, **SMALL)
    configs = []
    for name, arch in (("dual_tiny", "dual_stream"), ("single_tiny", "single_stream")):
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps({"name": name, "architecture": arch, "backbone": "vit_nano16",
                                    "preprocessing": {"crop_size": 112}}))  # fmt: skip
        configs.append(str(path))
    out = tmp_path / "cv"
    cmd = [sys.executable, str(REPO / "Training" / "crossval.py"), "--data", str(data), "--configs", *configs,
           "--out", str(out), "--run-folds", "0", "1", "--epochs", "1", "--iterations-per-epoch", "2",
           "--batch-size", "2", "--device", "cpu"]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]

    splits = json.loads((out / "splits.json").read_text())
    tested = sorted(splits["folds"][0]["test"] + splits["folds"][1]["test"])
    for name in ("dual_tiny", "single_tiny"):
        predicted = sorted(p.name.removesuffix(".nii.gz") for p in (out / name / "predictions").glob("*.nii.gz"))
        assert predicted == tested
        assert (out / name / "fold_0" / "best.safetensors").is_file()
    evaluation = out / "evaluation"
    for name in ("table1.md", "table1.csv", "cases.csv", "pvalues.csv", "dice_boxplot.png"):
        assert (evaluation / name).is_file(), name
    table = list(csv.DictReader((evaluation / "table1.csv").open()))
    assert {row["configuration"] for row in table} == {"dual_tiny", "single_tiny"}
    # every number comes from a real prediction file: recompute one case's Dice from the files
    rows = list(csv.DictReader((evaluation / "cases.csv").open()))
    assert {r["case"] for r in rows} == set(tested)
    row = next(r for r in rows if r["configuration"] == "dual_tiny" and r["class"] == "GTVp")
    truth = read_label(data / f"{row['case']}.nii.gz")
    pred = read_label(out / "dual_tiny" / "predictions" / f"{row['case']}.nii.gz")
    (gtvp,) = [m for m in evaluate_case(truth, pred, row["case"]) if m.class_name == "GTVp"]
    assert float(row["dice"]) == pytest.approx(gtvp.dice, abs=1e-6)
    assert np.isfinite(float(row["truth_cm3"])) and float(row["truth_cm3"]) > 0
