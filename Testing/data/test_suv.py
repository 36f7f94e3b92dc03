"""SUVbw conversion: the eight real vendor cases, the decay-correction and vendor rules, bad headers, and
``read_volume`` on PET DICOM series (converted) and PET files without units (taken as SUV)."""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import math
import struct
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from DualDINOv3Lib.data import read_volume, suvbw_factor, suvbw_factors, write_volume
from DualDINOv3Lib.errors import DataError

HEADERS = Path(__file__).parent / "suv-headers"
EXPECTED = {k: v for k, v in json.loads((HEADERS / "expected_factors.json").read_text()).items() if k[0] != "_"}
IBSI = Path(__file__).parent / "ibsi-sts-petct"
PET_DICOM = IBSI / "STS_042_dicom" / "PET" / "image"


def _case(name: str) -> list[dict]:
    """The instances of one vendor case, the Philips private group flattened to the reader's keywords."""
    instances = json.loads((HEADERS / f"{name}-instances.json").read_text())
    for instance in instances:
        private = instance.pop("PhilipsPETPrivateGroup", {})
        if "SUVScaleFactor" in private:
            instance["PhilipsSUVScaleFactor"] = private["SUVScaleFactor"]
        if "ActivityConcentrationScaleFactor" in private:
            instance["PhilipsActivityConcentrationScaleFactor"] = private["ActivityConcentrationScaleFactor"]
    return instances


def test_all_eight_vendor_cases_are_present():
    assert len(EXPECTED) == 8
    assert all((HEADERS / f"{name}-instances.json").is_file() for name in EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_vendor_case_matches_upstream_factor(name):
    instances = _case(name)
    result = suvbw_factors(instances, source=name)
    assert len(result.factors) == len(instances) == 3
    for factor in result.factors:  # per instance
        assert factor == pytest.approx(EXPECTED[name], rel=1e-6)
    assert result.units in ("BQML", "CNTS") and result.decay_correction == "START"


def test_scan_start_rules():
    """Series time unless later than the earliest acquisition; then GE's private scan time, else acquisition."""
    series_first = suvbw_factors(_case("SIEMENS"))
    assert "series time" in series_first.description
    acquisition_first = suvbw_factors(_case("CPS_AND_BQML_AC_DT_-_S_DT"))
    assert "earliest acquisition time 2020-12-17 13:03:48" in acquisition_first.description
    ge = _case("GE_MEDICAL_AND_BQML")  # series = acquisition = 09:56:21
    reference = suvbw_factor(ge[0])
    for instance in ge:
        instance["SeriesTime"] = "120000"  # a series made later, e.g. re-reconstructed
        instance["GEPrivateScanDateTime"] = "20201217094621"  # 10 min before the acquisition time
    by_ge = suvbw_factors(ge)
    assert "GE private" in by_ge.description
    assert by_ge.factors[0] == pytest.approx(reference * 2.0 ** (-600 / 6586.2001953125), rel=1e-9)
    for instance in ge:
        del instance["GEPrivateScanDateTime"]
    assert suvbw_factors(ge).factors[0] == pytest.approx(reference, rel=1e-12)


def test_philips_activity_concentration_route_agrees_with_the_private_suv_factor():
    """Two independent Philips routes on one real header: (7053,1009) x BQML factor ~ (7053,1000)."""
    instances = _case("PHILIPS_CNTS_AND_BQML_SUV")
    for instance in instances:
        del instance["PhilipsSUVScaleFactor"]
    result = suvbw_factors(instances)
    assert "(7053,1009)" in result.description
    assert result.factors[0] == pytest.approx(EXPECTED["PHILIPS_CNTS_AND_BQML_SUV"], rel=1e-3)
    assert result.factors[0] != pytest.approx(EXPECTED["PHILIPS_CNTS_AND_BQML_SUV"], rel=1e-6)


def test_per_instance_philips_factors_stay_per_instance():
    instances = _case("PHILIPS_CNTS_AND_SUV")
    for i, instance in enumerate(instances):
        instance["PhilipsSUVScaleFactor"] = f"{0.0007 + i * 1e-5:.6f}"
    result = suvbw_factors(instances)
    assert result.factors == pytest.approx((0.0007, 0.00071, 0.00072)) and not result.uniform


def _injected_suv_one_concentration(header: dict, seconds_after_injection: np.ndarray) -> np.ndarray:
    """Activity (Bq/ml) of tissue whose SUV is 1: dose/weight at injection, decayed."""
    dose, weight_g, half_life = 374e6, 67e3, 6586.2
    assert float(header["RadionuclideTotalDose"]) == dose and float(header["PatientWeight"]) * 1e3 == weight_g
    return dose / weight_g * 2.0 ** (-seconds_after_injection / half_life)


def test_decay_correction_admin_and_none_give_suv_one_for_unit_uptake():
    """Physics check: simulate the voxel value each convention stores for tissue of SUV 1, convert it back."""
    base = _case("SIEMENS")  # injection 08:30:45, weight 67 kg, dose 374 MBq
    admin = copy.deepcopy(base)
    for instance in admin:
        instance["DecayCorrection"] = "ADMIN"
    value = _injected_suv_one_concentration(admin[0], np.array([0.0]))[0]  # corrected back to the injection
    assert value * suvbw_factors(admin).factors[0] == pytest.approx(1.0, rel=1e-12)

    none = copy.deepcopy(base)
    starts = ["104830", "105030", "105400"]  # frames start 2h17m45s, ... after the injection
    for instance, start in zip(none, starts, strict=True):
        instance.update(DecayCorrection="NONE", AcquisitionTime=start, CorrectedImage=["NORM", "ATTN", "SCAT"])
    factors = suvbw_factors(none).factors
    for instance, start, factor in zip(none, starts, factors, strict=True):
        t0 = (int(start[:2]) - 8) * 3600 + (int(start[2:4]) - 30) * 60 + int(start[4:]) - 45
        frame = t0 + np.linspace(0.0, instance["ActualFrameDuration"] / 1000.0, 20001)
        stored = np.trapezoid(_injected_suv_one_concentration(instance, frame), frame) / (frame[-1] - frame[0])
        assert stored * factor == pytest.approx(1.0, rel=1e-7)
    assert len(set(factors)) == 3


def test_gml_is_kept_and_other_suv_types_are_flagged(caplog):
    header = {"Units": "GML", "SUVType": "BW"}
    assert suvbw_factors([header, header]).factors == (1.0, 1.0)
    with caplog.at_level(logging.WARNING, logger="dualdinov3"):
        result = suvbw_factors([{"Units": "GML", "SUVType": "LBM"}])
    assert result.factors == (1.0,) and "SUVlbm" in result.description and "SUVlbm" in caplog.text


def test_injection_before_midnight_scan_after(caplog):
    header = {**_case("RADIOPHARM_DATETIME_UNDEFINED")[0]}  # no start date: taken from the series date
    same_day = suvbw_factor(header)  # 12:50:00 -> 13:54:31.843
    header.update(RadiopharmaceuticalStartTime="235000", SeriesTime="005431.843", AcquisitionTime="010000")
    with caplog.at_level(logging.WARNING, logger="dualdinov3"):
        assert suvbw_factor(header) == pytest.approx(same_day, rel=1e-12)
    assert "day before" in caplog.text


def _bad(name: str = "SIEMENS", **changes) -> list[dict]:
    instances = _case(name)
    for instance in instances:
        for key, value in changes.items():
            if value is None:
                instance.pop(key, None)
            else:
                instance[key] = value
    return instances


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"PatientWeight": None}, r"PatientWeight \(0010,1030\) is missing or empty.*vendor workstation"),
        ({"PatientWeight": 0}, r"PatientWeight \(0010,1030\) is 0 kg, which is not positive"),
        ({"PatientWeight": "heavy"}, r"PatientWeight \(0010,1030\) is 'heavy', not a number"),
        ({"RadionuclideTotalDose": None}, r"RadionuclideTotalDose \(0018,1074\) in RadiopharmaceuticalInformation"),
        ({"RadionuclideTotalDose": 374}, r"374 Bq, implausibly small .* MBq"),
        ({"RadionuclideHalfLife": None}, r"RadionuclideHalfLife \(0018,1075\)"),
        ({"Units": "PROPCPS"}, r"Units \(0054,1001\) is 'PROPCPS'.*known: BQML, CNTS, GML"),
        ({"Units": None}, r"Units \(0054,1001\) is missing"),
        ({"DecayCorrection": "LATER"}, r"DecayCorrection \(0054,1102\) is 'LATER', expected one of START, ADMIN, NONE"),
        ({"DecayCorrection": None}, r"DecayCorrection \(0054,1102\) is missing"),
        (
            {"RadiopharmaceuticalStartDateTime": None, "RadiopharmaceuticalStartTime": None},
            r"RadiopharmaceuticalStartTime \(0018,1072\)",
        ),
        ({"RadiopharmaceuticalStartDateTime": "20201217113000"}, r"injection time .* is after the scan time"),
        ({"SeriesTime": "25:61"}, r"SeriesTime \(0008,0031\) is '25:61', not a valid value"),
        ({"CorrectedImage": ["NORM", "DECY"]}, r"without ATTN.*not attenuation-corrected"),
        ({"CorrectedImage": ["ATTN"]}, r"contradict each other"),
    ],
)
def test_bad_headers_give_clear_errors(changes, expected):
    with pytest.raises(DataError, match=expected):
        suvbw_factors(_bad(**changes), source="/scans/PET")


def test_series_level_disagreement_and_missing_philips_factors():
    instances = _case("SIEMENS")
    instances[2]["PatientWeight"] = 76
    with pytest.raises(DataError, match=r"slices disagree on PatientWeight \(0010,1030\) \(67, 76\).*own folder"):
        suvbw_factors(instances)
    with pytest.raises(DataError, match=r"CNTS .* \(7053,xx00\).*\(7053,xx09\).*private tags"):
        suvbw_factors(_bad("PHILIPS_CNTS_AND_SUV", PhilipsSUVScaleFactor=None))
    with pytest.raises(DataError, match="no PET instances"):
        suvbw_factors([])


# --- read_volume -----------------------------------------------------------------------------------------


def _edited_pet_series(folder: Path, replacements: dict[bytes, bytes], private_factor=None) -> Path:
    """A copy of the real IBSI PET series with same-length header edits and, optionally, a Philips private
    SUV scale factor per file (``private_factor(file index)``), inserted before the pixel data (implicit VR)."""
    folder.mkdir()
    for index, source in enumerate(sorted(PET_DICOM.glob("*.dcm"))):
        data = source.read_bytes()
        for old, new in replacements.items():
            assert len(old) == len(new) and data.count(old) == 1, old
            data = data.replace(old, new)
        if private_factor is not None:
            pixels = data.index(struct.pack("<HH", 0x7FE0, 0x0010))
            creator, value = b"Philips PET Private Group ", f"{private_factor(index):.8f}".encode()
            private = struct.pack("<HHI", 0x7053, 0x0010, len(creator)) + creator
            private += struct.pack("<HHI", 0x7053, 0x1000, len(value)) + value
            data = data[:pixels] + private + data[pixels:]
        (folder / source.name).write_bytes(data)
    return folder


def test_bqml_series_is_converted_to_suv(tmp_path, caplog):
    original = read_volume(PET_DICOM)  # Units GML: already SUV
    assert original.units == "SUV" and original.notes == ()
    folder = _edited_pet_series(tmp_path / "bqml", {b"GML ": b"BQML", b"ADMIN ": b"START "})
    with caplog.at_level(logging.INFO, logger="dualdinov3"):
        volume = read_volume(folder)
    # 71 kg, 367.008 MBq F-18 (6588 s), injected 08:50:00, series 10:17:57 (before the acquisition 10:30:09).
    factor = 71000.0 / (367008000.0 * 2.0 ** (-(1 * 3600 + 27 * 60 + 57) / 6588.0))
    np.testing.assert_allclose(volume.array, original.array * factor, rtol=1e-6)
    assert volume.units == "SUV" and volume.modality == "PT" and volume.same_grid(original, 0.0)
    assert len(volume.notes) == 1 and "SUVbw" in volume.notes[0] and "START" in volume.notes[0]
    assert f"{factor:.6g}" in caplog.text and "START" in caplog.text


def test_philips_counts_series_gets_per_slice_factors_in_slice_order(tmp_path):
    files = sorted(PET_DICOM.glob("*.dcm"))
    z_of_file = [float(sitk.ReadImage(str(f)).GetOrigin()[2]) for f in files]
    folder = _edited_pet_series(tmp_path / "cnts", {b"GML ": b"CNTS"}, private_factor=lambda i: 1.0 + 0.01 * i)
    volume = read_volume(folder)
    original = read_volume(PET_DICOM)
    for k in range(volume.shape[0]):
        z = volume.index_to_physical((0, 0, k))[2]
        index = int(np.argmin(np.abs(np.asarray(z_of_file) - z)))  # the file holding this slice
        np.testing.assert_allclose(volume.array[k], original.array[k] * (1.0 + 0.01 * index), rtol=1e-6)
    assert "per-slice factors 1 to 1.48" in volume.notes[0]


def test_per_slice_rescale_survives_a_first_slice_with_slope_one(tmp_path):
    """SimpleITK takes the pixel type of the first slice; slope 1 there must not truncate the others."""
    folder = _edited_pet_series(tmp_path / "slope", {})
    first = sorted(folder.glob("*.dcm"))[0]
    first.write_bytes(first.read_bytes().replace(b"0.00002921725387", b"1.00000000000000"))
    original = read_volume(PET_DICOM)
    volume = read_volume(folder)
    origin_z = np.asarray(original.origin)[2]
    assert np.asarray(volume.origin)[2] == origin_z  # file 000000 is the first slice
    np.testing.assert_array_equal(volume.array[1:], original.array[1:])
    assert volume.array[0].max() > 1000.0  # stored integers, no longer scaled


def test_dicom_series_without_weight_names_the_attribute(tmp_path):
    folder = _edited_pet_series(tmp_path / "noweight", {b"GML ": b"BQML", b"71.0": b"0.0 "})
    with pytest.raises(DataError, match=r"noweight: PatientWeight \(0010,1030\) is 0 kg.*NIfTI"):
        read_volume(folder)


def test_pet_file_without_units_is_taken_as_suv(tmp_path, caplog):
    path = IBSI / "STS_042_nifti" / "PET_image.nii.gz"
    with caplog.at_level(logging.WARNING, logger="dualdinov3"):
        pet = read_volume(path, modality="PT")
    assert pet.units == "SUV" and pet.modality == "PT"
    assert pet.notes == (f"{path}: the PET file carries no units; its values are taken as SUV (g/ml)",)
    assert "taken as SUV" in caplog.text
    assert pet.with_array(pet.array * 2).notes == pet.notes
    assert dataclasses.replace(pet, units="SUV").notes == pet.notes
    assert read_volume(path, modality="CT").notes == () and read_volume(path).units is None

    bq = write_volume(pet.with_array(pet.array * 5000.0, units=None), tmp_path / "bq.mha")  # looks like Bq/ml
    assert "probably in Bq/ml" in read_volume(bq, modality="PET").notes[0]


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd", ".mha"])
def test_pet_written_in_suv_reads_back_in_suv_without_a_guess(tmp_path, caplog, suffix):
    """A PET volume in SUV written by write_volume (phantoms, resampled PETs) declares its units in the header,
    so reading it back needs no guess and logs no warning; implausible values are still flagged."""
    pet = read_volume(IBSI / "STS_042_nifti" / "PET_image.nii.gz", modality="PT")
    path = write_volume(pet, tmp_path / f"pet{suffix}")
    caplog.clear()  # the source file's own warning
    with caplog.at_level(logging.WARNING, logger="dualdinov3"):
        back = read_volume(path, modality="PT")
    assert back.units == "SUV" and back.notes == () and "taken as SUV" not in caplog.text
    np.testing.assert_array_equal(back.array, pet.array)
    assert read_volume(path).units is None  # no modality given: the file is not taken for a PET
    hot = write_volume(pet.with_array(pet.array * 5000.0), tmp_path / f"hot{suffix}")
    assert read_volume(hot, modality="PT").notes[0].startswith(f"{hot}: the PET file declares SUV (g/ml). Its max")


def test_half_life_sanity_of_the_expected_ge_factor():
    """The GE case by hand: 52 kg, 152.02272 MBq, 08:45:00 -> 09:56:21 (4281 s), half-life 6586.2 s."""
    by_hand = 52000.0 / (152022720.0 * math.pow(2.0, -4281.0 / 6586.2001953125))
    assert by_hand == pytest.approx(EXPECTED["GE_MEDICAL_AND_BQML"], rel=1e-12)


def test_unreadable_header_falls_back_only_for_gml(tmp_path, monkeypatch, caplog):
    """If our header reader fails where GDCM does not, a GML series is still SUV; any other must not pass."""
    import DualDINOv3Lib.data.io as io_module

    def refuse(path):
        raise DataError(f"{path}: uses the retired big-endian transfer syntax")

    monkeypatch.setattr(io_module, "read_pet_header", refuse)
    with caplog.at_level(logging.WARNING, logger="dualdinov3"):
        volume = read_volume(PET_DICOM)
    assert volume.units == "SUV" and "values kept as SUV" in caplog.text
    nifti = read_volume(IBSI / "STS_042_nifti" / "PET_image.nii.gz")
    np.testing.assert_allclose(volume.array, nifti.array, rtol=1e-6, atol=1e-6)
    bqml = _edited_pet_series(tmp_path / "bqml", {b"GML ": b"BQML"})
    with pytest.raises(DataError, match="big-endian"):
        read_volume(bqml)
