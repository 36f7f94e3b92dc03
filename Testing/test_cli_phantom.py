"""``dualdinov3 phantom``: writes a HECKTOR-layout folder of synthetic PET/CT cases, refuses to overwrite,
checks the output location before any work."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from DualDINOv3Lib.cli import main
from DualDINOv3Lib.data.hecktor import list_hecktor_cases, read_hecktor_case
from DualDINOv3Lib.domain import STRATA

LINE = re.compile(r"^(PHANTOM-\d{3}): GTVp +([\d.]+) cm3 \((small|medium|large)\), GTVn +([\d.]+) cm3 \((\d) nodes?\)$")


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("dualdinov3: error: "), err
    return err[0]


def test_phantom_writes_cases_covering_all_strata(tmp_path, capsys):
    out = tmp_path / "new" / "phantoms"  # missing parents are created
    assert main(["phantom", "--out", str(out), "--cases", "3", "--seed", "4"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 4 and lines[-1].startswith(f"wrote 3 case(s) to {out}")
    printed = [LINE.match(line) for line in lines[:3]]
    assert all(printed), lines
    assert [m[1] for m in printed] == ["PHANTOM-001", "PHANTOM-002", "PHANTOM-003"]
    assert {m[3] for m in printed} == set(STRATA)
    facts = json.loads((out / "cases.json").read_text())["cases"]
    for match, record in zip(printed, facts, strict=True):
        assert record["case_id"] == match[1] and record["stratum"] == match[3]
        assert float(match[2]) == pytest.approx(record["gtvp_cm3"], abs=0.006)
        assert float(match[4]) == pytest.approx(record["gtvn_cm3"], abs=0.006)
    cases = list_hecktor_cases(out, require_labels=True)
    assert [c.case_id for c in cases] == ["PHANTOM-001", "PHANTOM-002", "PHANTOM-003"]
    ct, pet, label = read_hecktor_case(cases[0])
    assert label.same_grid(ct) and not pet.same_grid(ct)


def test_phantom_is_reproducible_and_refuses_to_overwrite(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["phantom", "--out", str(a), "--cases", "2", "--seed", "9"]) == 0
    assert main(["phantom", "--out", str(b), "--cases", "2", "--seed", "9"]) == 0
    capsys.readouterr()
    for name in ("PHANTOM-002.nii.gz", "PHANTOM-002__PT.nii.gz", "cases.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes()
    before = {p.name: p.read_bytes() for p in a.iterdir()}
    assert main(["phantom", "--out", str(a), "--cases", "3", "--seed", "1"]) == 2
    line = _error_line(capsys)
    assert "PHANTOM-001__CT.nii.gz" in line and "already exist" in line and "--overwrite" in line
    assert {p.name: p.read_bytes() for p in a.iterdir()} == before  # nothing written, not even case 3
    assert main(["phantom", "--out", str(a), "--cases", "1", "--seed", "1", "--overwrite"]) == 0
    assert (a / "PHANTOM-001__CT.nii.gz").read_bytes() != before["PHANTOM-001__CT.nii.gz"]
    assert (a / "PHANTOM-002__CT.nii.gz").read_bytes() == before["PHANTOM-002__CT.nii.gz"]


@pytest.mark.parametrize(
    "args,message",
    [
        (["--cases", "0"], "number of phantom cases must be an integer >= 1"),
        (["--cases", "2", "--seed", "-3"], "seed must be an integer >= 0"),
    ],
)
def test_phantom_bad_arguments(tmp_path, capsys, args, message):
    assert main(["phantom", "--out", str(tmp_path / "x"), *args]) == 2
    assert message in _error_line(capsys)
    assert not (tmp_path / "x").exists()


def test_phantom_output_must_be_a_folder(tmp_path, capsys):
    target = tmp_path / "notes.txt"
    target.write_text("keep me")
    assert main(["phantom", "--out", str(target), "--cases", "1"]) == 2
    assert "is a file" in _error_line(capsys)
    assert main(["phantom", "--out", str(target / "sub"), "--cases", "1"]) == 2
    assert "is a file" in _error_line(capsys)
    assert target.read_text() == "keep me"


def test_phantom_output_folder_must_be_writable(tmp_path, capsys, monkeypatch):
    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    # a folder this user may not write in (chmod alone does not stop root, who runs CI containers)
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: Path(path) != locked and real_access(path, mode, **kw))
    assert main(["phantom", "--out", str(locked / "out"), "--cases", "1"]) == 2
    assert "permission denied" in _error_line(capsys)
    assert list(locked.iterdir()) == []
