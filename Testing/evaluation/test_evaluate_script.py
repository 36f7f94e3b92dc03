"""``Training/evaluate.py`` (``dualdinov3 evaluate``) end to end on a tiny HECKTOR-layout folder (run as a
subprocess), its errors (run in-process), and the box plot of ``workflows/figures.py``."""

from __future__ import annotations

import csv
import math
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
import SimpleITK as sitk

from DualDINOv3Lib.cli import main
from DualDINOv3Lib.evaluation import (
    evaluate_folders,
    summarize_configuration,
    table1_markdown,
)
from DualDINOv3Lib.workflows.figures import dice_boxplot

ROOT = Path(__file__).resolve().parents[2]
TRAINING = ROOT / "Training"
SPACING = (2.0, 2.0, 2.0)  # 8 mm3 voxels: 125 voxels = 1 cm3, 1000 = 8 cm3, 2197 = 17.6 cm3
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def evaluate(args: list[str]) -> int:
    """``dualdinov3 evaluate ...`` in this process (what ``Training/evaluate.py`` runs)."""
    return main(["evaluate", *args])


def _write(path: Path, array: np.ndarray, spacing=SPACING) -> None:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetOrigin((-20.0, 10.0, 5.0))
    sitk.WriteImage(image, str(path))


def _cube(label: np.ndarray, value: int, corner: tuple[int, int, int], side: int) -> None:
    z, y, x = corner
    label[z : z + side, y : y + side, x : x + side] = value


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    """4 cases (GTVp small, medium, large, small; GTVn in two of them), predictions 'exact' and 'shifted'."""
    root = tmp_path_factory.mktemp("hecktor")
    truth, exact, shifted = root / "truth", root / "pred_exact", root / "pred_shifted"
    for folder in (truth, exact, shifted):
        folder.mkdir()
    rng = np.random.default_rng(0)
    layout = {
        "CHUM-001": [(1, (2, 2, 2), 5), (2, (12, 12, 12), 10)],  # GTVp 1 cm3, GTVn 8 cm3
        "CHUM-002": [(1, (3, 3, 3), 10)],  # GTVp 8 cm3, no GTVn
        "MDA-003": [(1, (1, 1, 1), 13), (2, (16, 16, 16), 5)],  # GTVp 17.6 cm3, GTVn 1 cm3
        "MDA-004": [(1, (5, 5, 5), 5)],  # GTVp 1 cm3
    }
    for case, objects in layout.items():
        label = np.zeros((24, 24, 24), np.uint8)
        for value, corner, side in objects:
            _cube(label, value, corner, side)
        _write(truth / f"{case}.nii.gz", label)
        _write(truth / f"{case}__CT.nii.gz", rng.normal(0, 100, label.shape).astype(np.float32))
        _write(truth / f"{case}__PT.nii.gz", rng.gamma(2, 1, label.shape).astype(np.float32))
        _write(exact / f"{case}.nii.gz", label)
        moved = np.zeros_like(label)
        moved[1:] = label[:-1]  # one voxel (2 mm) along z
        if case == "MDA-004":
            moved[moved == 1] = 0  # a missed tumour
            moved[20, 20, 20] = 2  # and a false-positive node
        _write(shifted / f"{case}.nii.gz", moved)
    return {"truth": truth, "exact": exact, "shifted": shifted, "root": root}


def test_evaluate_script_end_to_end(folders):
    out = folders["root"] / "results"
    command = [
        sys.executable,
        str(TRAINING / "evaluate.py"),
        "--truth",
        str(folders["truth"]),
        "--pred",
        f"exact={folders['exact']}",
        "--pred",
        f"shifted={folders['shifted']}",
        "--out",
        str(out),
    ]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    for name in ("cases.csv", "table1.md", "table1.csv", "hecktor.csv", "pvalues.csv", "dice_boxplot.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name

    # the library on the same folders gives exactly the numbers in the files
    results = evaluate_folders(folders["truth"], {"exact": folders["exact"], "shifted": folders["shifted"]})
    summaries = [summarize_configuration(name, cases) for name, cases in results.items()]
    with open(out / "cases.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 * 4 * 2  # configurations x cases x classes
    for row, metric in zip(rows, [m for cases in results.values() for m in cases], strict=True):
        assert (row["case"], row["class"], row["stratum"]) == (metric.case, metric.class_name, metric.stratum or "")
        for field in ("dice", "hd95_mm", "truth_cm3", "pred_cm3"):
            value, expected = float(row[field]), getattr(metric, field)
            assert value == expected or (math.isnan(value) and math.isnan(expected)), (row, field)
    exact = {(m.case, m.class_name): m for m in results["exact"]}
    assert exact[("CHUM-001", "GTVp")].dice == 1.0 and exact[("CHUM-001", "GTVp")].truth_cm3 == pytest.approx(1.0)
    assert exact[("MDA-003", "GTVp")].stratum == "large" and exact[("CHUM-002", "GTVp")].stratum == "medium"
    shifted = {(m.case, m.class_name): m for m in results["shifted"]}
    assert shifted[("CHUM-002", "GTVp")].dice == pytest.approx(0.9)  # 9 of 10 layers overlap
    assert shifted[("CHUM-002", "GTVp")].hd95_mm == pytest.approx(2.0, abs=1e-5)
    assert shifted[("MDA-004", "GTVp")].dice == 0.0 and shifted[("MDA-004", "GTVn")].false_positive

    with open(out / "table1.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert len(table) == 2 * 4
    shifted_small = next(r for r in table if (r["configuration"], r["stratum"]) == ("shifted", "small"))
    small = summaries[1].stratum("GTVp", "small")
    assert int(shifted_small["GTVp_n"]) == small.n == 2
    assert float(shifted_small["GTVp_micro_dice"]) == small.micro_dice == pytest.approx((0.8 + 0.0) / 2)
    report = (out / "table1.md").read_text(encoding="utf-8")
    assert table1_markdown(summaries) in report and "HECKTOR 2022" in report and "Conventions" in report
    assert table1_markdown(summaries) in done.stdout
    with open(out / "pvalues.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == 1 * 2 * 4  # one pair x classes x strata
    png = (out / "dice_boxplot.png").read_bytes()
    assert png.startswith(PNG_SIGNATURE)

    # lesion detection: the shifted predictions miss MDA-004's 1 cm3 primary and draw a one-voxel node there
    lesions = summaries[1].lesions
    assert (lesions["GTVp"].truth_lesions, lesions["GTVp"].detected_lesions) == (4, 3)
    assert lesions["GTVp"].missed_cm3 == pytest.approx(1.0) and lesions["GTVp"].false_positive_regions == 0
    assert (lesions["GTVn"].truth_lesions, lesions["GTVn"].detected_lesions) == (2, 2)
    assert lesions["GTVn"].false_positive_regions == 1 and lesions["GTVn"].false_positive_cm3 == pytest.approx(0.008)
    assert "## Lesion detection" in report and "| shifted | 3 / 4 | 1.0 | 0 (0.0) | 2 / 2 | 0.0 | 1 (0.0) |" in report
    assert "shifted: lesions found GTVp 3/4 (missed 1.0 cm³), GTVn 2/2 (missed 0.0 cm³)" in done.stdout
    missed = next(r for r in rows if (r["configuration"], r["case"], r["class"]) == ("shifted", "MDA-004", "GTVp"))
    assert (missed["truth_lesions"], missed["detected_lesions"], float(missed["missed_cm3"])) == ("1", "0", 1.0)
    with open(out / "hecktor.csv", newline="") as f:
        scores = {r["configuration"]: r for r in csv.DictReader(f)}
    assert scores["shifted"]["GTVp_lesions_detected"] == "3" and scores["exact"]["GTVn_false_positive_regions"] == "0"


def test_evaluate_refuses_to_overwrite_and_reports_bad_input(folders, capsys):
    out = folders["root"] / "refuse"
    out.mkdir()
    (out / "table1.md").write_text("keep me")
    base = ["--truth", str(folders["truth"]), "--pred", f"exact={folders['exact']}", "--out", str(out)]
    assert evaluate([*base, "--no-plot", "-q"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dualdinov3: error:") and "--overwrite" in err and "table1.md" in err
    assert (out / "table1.md").read_text() == "keep me" and not (out / "cases.csv").exists()

    partial = folders["root"] / "pred_partial"
    partial.mkdir()
    (partial / "CHUM-001.nii.gz").write_bytes((folders["exact"] / "CHUM-001.nii.gz").read_bytes())
    fresh = folders["root"] / "fresh"
    args = ["--truth", str(folders["truth"]), "--pred", f"part={partial}", "--out", str(fresh), "--no-plot", "-q"]
    assert evaluate(args) == 2
    err = capsys.readouterr().err
    assert "no prediction for 3 of 4 truth cases" in err and "CHUM-002" in err
    assert evaluate([*args, "--allow-missing"]) == 0
    with open(fresh / "cases.csv", newline="") as f:
        assert {r["case"] for r in csv.DictReader(f)} == {"CHUM-001"}

    assert evaluate([*base[:4], "--pred", f"exact={folders['shifted']}", "--out", str(fresh)]) == 2
    assert "given twice" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        evaluate(["--truth", str(folders["truth"]), "--pred", "no-equals-sign", "--out", str(fresh)])


def test_dice_boxplot_writes_a_png(folders, tmp_path):
    results = evaluate_folders(folders["truth"], {"exact": folders["exact"], "shifted": folders["shifted"]})
    path = dice_boxplot(results, tmp_path / "box.png", title="test")
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 400
    assert image[..., :3].std() > 0.05  # something is drawn
    with pytest.raises(FileExistsError, match="already exists"):
        dice_boxplot(results, path)
