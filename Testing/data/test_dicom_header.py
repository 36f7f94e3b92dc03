"""The DICOM header reader (sequence items, private tags, VR encodings), on the real IBSI PET and built files."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import pytest
import SimpleITK as sitk

from DualDINOv3Lib.data import read_pet_header
from DualDINOv3Lib.errors import DataError

PET_DIR = Path(__file__).parent / "ibsi-sts-petct" / "STS_042_dicom" / "PET" / "image"
PET_FILES = sorted(PET_DIR.glob("*.dcm"))

# Radiopharmaceutical Information Sequence (0054,0016) item values of the IBSI PET, read with pydicom 3.0.2
# (dcmread(...).RadiopharmaceuticalInformationSequence[0]); SimpleITK/GDCM does not expose them (see below).
IBSI_SEQUENCE_VALUES = {
    "RadiopharmaceuticalStartTime": "085000",
    "RadionuclideTotalDose": "367008000",
    "RadionuclideHalfLife": "6588.0",
    "RadiopharmaceuticalStartDateTime": "20040519085000.00",
}
# Top-level attributes compared with SimpleITK/GDCM's own reading of every file.
SITK_KEYS = {
    "SeriesDate": "0008|0021",
    "SeriesTime": "0008|0031",
    "AcquisitionDate": "0008|0022",
    "AcquisitionTime": "0008|0032",
    "Modality": "0008|0060",
    "Manufacturer": "0008|0070",
    "PatientWeight": "0010|1030",
    "ActualFrameDuration": "0018|1242",
    "ImagePositionPatient": "0020|0032",
    "CorrectedImage": "0028|0051",
    "RescaleIntercept": "0028|1052",
    "RescaleSlope": "0028|1053",
    "Units": "0054|1001",
    "SUVType": "0054|1006",
    "DecayCorrection": "0054|1102",
    "FrameReferenceTime": "0054|1300",
}


def _sitk_header(path: Path) -> sitk.ImageFileReader:
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.LoadPrivateTagsOn()
    reader.ReadImageInformation()
    return reader


def test_simpleitk_does_not_expose_the_radiopharmaceutical_sequence():
    """Why the reader exists: GDCM's metadata has no (0054,0016) nor its items' dose/half-life/start time."""
    keys = set(_sitk_header(PET_FILES[0]).GetMetaDataKeys())
    assert "0054|1001" in keys  # top-level PET attributes are there
    assert not keys & {"0054|0016", "0018|1072", "0018|1074", "0018|1075", "0018|1078"}


def test_ibsi_pet_headers_match_simpleitk_and_pydicom_values():
    assert len(PET_FILES) == 49
    for path in PET_FILES:
        header = read_pet_header(path)
        reference = _sitk_header(path)
        for keyword, key in SITK_KEYS.items():
            value = header[keyword]
            text = "\\".join(value) if isinstance(value, tuple) else value
            assert text == reference.GetMetaData(key).strip(), (path.name, keyword)
        for keyword, value in IBSI_SEQUENCE_VALUES.items():
            assert header[keyword] == value, (path.name, keyword)
    assert read_pet_header(PET_FILES[0])["CorrectedImage"] == (
        "DECY",
        "ATTN",
        "SCAT",
        "DTIM",
        "RAN",
        "DCAL",
        "SLSENS",
        "NORM",
    )


def test_ibsi_pet_headers_match_pydicom_when_installed():
    import pydicom  # test extra: the reference DICOM reader

    for path in PET_FILES[::8]:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        item = ds.RadiopharmaceuticalInformationSequence[0]
        header = read_pet_header(path)
        assert float(header["RadionuclideTotalDose"]) == float(item.RadionuclideTotalDose)
        assert float(header["RadionuclideHalfLife"]) == float(item.RadionuclideHalfLife)
        assert header["RadiopharmaceuticalStartTime"] == str(item.RadiopharmaceuticalStartTime)
        assert float(header["PatientWeight"]) == float(ds.PatientWeight)
        assert float(header["RescaleSlope"]) == float(ds.RescaleSlope)


# --- hand-built files: each encoding the reader claims to handle --------------------------------------

EXPLICIT, IMPLICIT, DEFLATED = "1.2.840.10008.1.2.1", "1.2.840.10008.1.2", "1.2.840.10008.1.2.1.99"
_LONG = {"OB", "OW", "SQ", "UN", "UT"}


def _pad(text: str, fill: bytes = b" ") -> bytes:
    raw = text.encode("ascii")
    return raw + fill * (len(raw) % 2)


def _element(group: int, element: int, vr: str, value: bytes, explicit: bool, length: int | None = None) -> bytes:
    length = len(value) if length is None else length
    tag = struct.pack("<HH", group, element)
    if not explicit:
        return tag + struct.pack("<I", length) + value
    if vr in _LONG:
        return tag + vr.encode() + b"\0\0" + struct.pack("<I", length) + value
    return tag + vr.encode() + struct.pack("<H", length) + value


def _sequence(group: int, element: int, items: list[bytes], explicit: bool, undefined: bool, vr: str = "SQ") -> bytes:
    body = b""
    for content in items:
        if undefined:
            body += struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF) + content + struct.pack("<HHI", 0xFFFE, 0xE00D, 0)
        else:
            body += struct.pack("<HHI", 0xFFFE, 0xE000, len(content)) + content
    if undefined:
        body += struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
        return _element(group, element, vr, body, explicit, length=0xFFFFFFFF)
    return _element(group, element, vr, body, explicit)


def _dataset(explicit: bool, undefined: bool) -> bytes:
    e = explicit
    code_item = _element(0x0008, 0x0100, "SH", _pad("C-111A1"), e) + _element(0x0008, 0x0104, "LO", _pad("18F"), e)
    item = (
        _element(0x0018, 0x0031, "LO", _pad("FDG"), e)
        + _element(0x0018, 0x1072, "TM", _pad("083045.000000"), e)
        + _element(0x0018, 0x1074, "DS", _pad("374000000"), e)
        + _element(0x0018, 0x1075, "DS", _pad("6586.2"), e)
        + _sequence(0x0054, 0x0300, [code_item], e, undefined)  # nested sequence inside the item
    )
    # An unrelated sequence (two items, one nested) before the wanted one; it holds a decoy dose.
    decoy = _element(0x0018, 0x1074, "DS", _pad("1"), e) + _sequence(0x0008, 0x1111, [code_item], e, undefined)
    return (
        _element(0x0008, 0x0021, "DA", _pad("20201217"), e)
        + _element(0x0008, 0x0031, "TM", _pad("104829.000000"), e)
        + _element(0x0008, 0x0060, "CS", _pad("PT"), e)
        + _sequence(0x0008, 0x1140, [decoy, code_item], e, undefined)
        + _element(0x0009, 0x0010, "LO", _pad("GEMS_PETD_01"), e)
        + _element(0x0009, 0x100D, "DT", _pad("20201217104900"), e)
        + _element(0x0010, 0x1030, "DS", _pad("67"), e)
        + _element(0x0018, 0x1242, "IS", _pad("74324"), e)
        + _element(0x0028, 0x0051, "CS", _pad("NORM\\ATTN\\DECY"), e)
        + _sequence(0x0054, 0x0016, [item, decoy], e, undefined)
        + _element(0x0054, 0x1001, "CS", _pad("CNTS"), e)
        + _element(0x0054, 0x1102, "CS", _pad("START"), e)
        + _element(0x0054, 0x1300, "FD" if e else "DS", struct.pack("<d", 38513.36) if e else _pad("38513.36"), e)
        + _element(0x7053, 0x0010, "LO", _pad("SOME OTHER CREATOR"), e)
        + _element(0x7053, 0x0011, "LO", _pad("Philips PET Private Group"), e)
        + _element(0x7053, 0x1000, "DS", _pad("999"), e)  # belongs to the other creator: ignored
        + _element(0x7053, 0x1100, "DS", _pad("0.000551"), e)
        + _element(0x7053, 0x1109, "UN" if e else "DS", _pad("1.602563"), e)
        # Pixel data announced far longer than the file: the reader must stop before it.
        + _element(0x7FE0, 0x0010, "OW", b"\1\2\3\4", e, length=10_000_000)
    )


def _write(path: Path, transfer_syntax: str, undefined: bool, preamble: bool = True) -> Path:
    meta = _element(0x0002, 0x0010, "UI", _pad(transfer_syntax, b"\0"), True)
    data = _dataset(explicit=transfer_syntax != IMPLICIT, undefined=undefined)
    if transfer_syntax == DEFLATED:
        packer = zlib.compressobj(wbits=-zlib.MAX_WBITS)
        data = packer.compress(data) + packer.flush()
    path.write_bytes((b"\0" * 128 + b"DICM" if preamble else b"") + meta + data)
    return path


@pytest.mark.parametrize(
    ("transfer_syntax", "undefined", "preamble"),
    [
        (EXPLICIT, True, True),
        (EXPLICIT, False, True),
        (IMPLICIT, True, True),
        (IMPLICIT, False, False),
        (DEFLATED, True, True),
    ],
)
def test_built_files_in_every_encoding(tmp_path, transfer_syntax, undefined, preamble):
    header = read_pet_header(_write(tmp_path / "x.dcm", transfer_syntax, undefined, preamble))
    assert header["RadionuclideTotalDose"] == "374000000"  # from the first item of (0054,0016), not the decoys
    assert header["RadionuclideHalfLife"] == "6586.2"
    assert header["RadiopharmaceuticalStartTime"] == "083045.000000"
    assert header["SeriesTime"] == "104829.000000" and header["Units"] == "CNTS" and header["PatientWeight"] == "67"
    assert header["CorrectedImage"] == ("NORM", "ATTN", "DECY")
    assert header["GEPrivateScanDateTime"] == "20201217104900"
    assert header["PhilipsSUVScaleFactor"] == "0.000551"  # (7053,1100): block 11 is the Philips creator's
    assert header["PhilipsActivityConcentrationScaleFactor"] == "1.602563"
    frame_reference = header["FrameReferenceTime"]
    assert float(frame_reference) == 38513.36  # binary FD in explicit VR, text DS in implicit VR
    assert "RadiopharmaceuticalStartDateTime" not in header and "AcquisitionTime" not in header


def test_un_sequence_of_undefined_length_is_read_as_implicit_vr(tmp_path):
    """Explicit VR files may carry a sequence as 'UN' of undefined length, its contents in implicit VR."""
    item = _element(0x0018, 0x1074, "DS", _pad("225000000"), False) + _element(
        0x0018, 0x1075, "DS", _pad("6586.2"), False
    )
    implicit = _sequence(0x0054, 0x0016, [item], explicit=False, undefined=True)
    unknown = struct.pack("<HH", 0x0054, 0x0016) + b"UN\0\0" + struct.pack("<I", 0xFFFFFFFF) + implicit[8:]
    data = (
        _element(0x0008, 0x0060, "CS", _pad("PT"), True) + unknown + _element(0x0054, 0x1001, "CS", _pad("BQML"), True)
    )
    meta = _element(0x0002, 0x0010, "UI", _pad(EXPLICIT, b"\0"), True)
    path = tmp_path / "un.dcm"
    path.write_bytes(b"\0" * 128 + b"DICM" + meta + data)
    header = read_pet_header(path)
    assert header["RadionuclideTotalDose"] == "225000000" and header["RadionuclideHalfLife"] == "6586.2"
    assert header["Units"] == "BQML"  # explicit VR again after the sequence


def test_bad_files_give_clear_errors(tmp_path):
    whole = _write(tmp_path / "whole.dcm", EXPLICIT, undefined=True).read_bytes()
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(whole[: whole.index(b"6586.2")])  # ends inside the sequence item
    with pytest.raises(DataError, match="truncated"):
        read_pet_header(cut)
    text = tmp_path / "notes.dcm"
    text.write_text("not an image\n" * 20)
    with pytest.raises(DataError, match="not a DICOM file"):
        read_pet_header(text)
    with pytest.raises(DataError, match="big-endian"):
        read_pet_header(_write(tmp_path / "be.dcm", "1.2.840.10008.1.2.2", undefined=False))
    with pytest.raises(DataError, match="cannot be opened"):
        read_pet_header(tmp_path / "missing.dcm")
