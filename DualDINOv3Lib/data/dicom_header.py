"""A small reader of the DICOM attributes that SUV conversion needs, including sequence items.

SimpleITK/GDCM's metadata dictionary holds only top-level elements: the Radiopharmaceutical Information
Sequence (0054,0016), which holds the injected dose, half-life and injection time, is not in it. This
module reads a DICOM file's header itself: Part 10 files (with or without the 128-byte preamble) and
bare data sets, in implicit or explicit VR little endian (also deflated), with defined or undefined
lengths, nested sequences, and private elements found through their private creator. It stops before
the pixel data and never decodes pixels.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path
from typing import BinaryIO

from ..errors import DataError

_ELEMENTS: dict[tuple[int, int], str] = {
    (0x0008, 0x0021): "SeriesDate",
    (0x0008, 0x0022): "AcquisitionDate",
    (0x0008, 0x002A): "AcquisitionDateTime",
    (0x0008, 0x0031): "SeriesTime",
    (0x0008, 0x0032): "AcquisitionTime",
    (0x0008, 0x0060): "Modality",
    (0x0008, 0x0070): "Manufacturer",
    (0x0010, 0x1030): "PatientWeight",
    (0x0018, 0x1242): "ActualFrameDuration",
    (0x0020, 0x0013): "InstanceNumber",
    (0x0020, 0x0032): "ImagePositionPatient",
    (0x0028, 0x0051): "CorrectedImage",
    (0x0028, 0x1052): "RescaleIntercept",
    (0x0028, 0x1053): "RescaleSlope",
    (0x0054, 0x1001): "Units",
    (0x0054, 0x1006): "SUVType",
    (0x0054, 0x1102): "DecayCorrection",
    (0x0054, 0x1300): "FrameReferenceTime",
}
"""Top-level elements read, by (group, element)."""

_SEQUENCE = (0x0054, 0x0016)
_SEQUENCE_KEYWORD = "RadiopharmaceuticalInformationSequence"
_ITEM_ELEMENTS: dict[tuple[int, int], str] = {
    (0x0018, 0x1072): "RadiopharmaceuticalStartTime",
    (0x0018, 0x1074): "RadionuclideTotalDose",
    (0x0018, 0x1075): "RadionuclideHalfLife",
    (0x0018, 0x1078): "RadiopharmaceuticalStartDateTime",
}
"""Elements read from the first item of the Radiopharmaceutical Information Sequence (0054,0016)."""

_PRIVATE: dict[tuple[int, str, int], str] = {
    (0x0009, "GEMS_PETD_01", 0x0D): "GEPrivateScanDateTime",
    (0x7053, "Philips PET Private Group", 0x00): "PhilipsSUVScaleFactor",
    (0x7053, "Philips PET Private Group", 0x09): "PhilipsActivityConcentrationScaleFactor",
}
"""Private elements: (group, private creator, element offset in the creator's block) -> keyword."""

PET_HEADER_TAGS: dict[str, str] = {
    **{name: f"({g:04X},{e:04X})" for (g, e), name in _ELEMENTS.items()},
    **{name: f"({g:04X},{e:04X}) in {_SEQUENCE_KEYWORD} (0054,0016)" for (g, e), name in _ITEM_ELEMENTS.items()},
    **{name: f"({g:04X},xx{o:02X}) of private creator '{c}'" for (g, c, o), name in _PRIVATE.items()},
}
"""Keyword -> where the attribute lives in a DICOM file, for messages."""

_PRIVATE_GROUPS = {g for g, _, _ in _PRIVATE}
_LAST_TAG = (0x7053, 0xFFFF)  # every wanted element sorts before this; the pixel data (7FE0,0010) after it
_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
_BINARY = {b"FD": "d", b"FL": "f", b"US": "H", b"UL": "I", b"SS": "h", b"SL": "l"}
_UNDEFINED = 0xFFFFFFFF
_ITEM, _ITEM_END, _SEQUENCE_END = (0xFFFE, 0xE000), (0xFFFE, 0xE00D), (0xFFFE, 0xE0DD)
_IMPLICIT_LE, _EXPLICIT_BE, _DEFLATED = "1.2.840.10008.1.2", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99"

HeaderValue = str | float | int | tuple


class _Truncated(Exception):
    pass


def read_pet_header(path: str | os.PathLike) -> dict[str, HeaderValue]:
    """The SUV-related attributes of one DICOM file, keyed by DICOM keyword (see :data:`PET_HEADER_TAGS`).

    Text values are returned stripped (``"BQML"``, ``"104829.000000"``); multi-valued ones as tuples of
    strings (``CorrectedImage``, ``ImagePositionPatient``); binary numbers as numbers. Attributes absent
    from the file are absent from the result. Raises :class:`DataError` for a file that is not DICOM,
    is truncated inside its header, or uses the retired big-endian transfer syntax.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            return _read(f, path)
    except OSError as exc:
        raise DataError(f"{path}: cannot be opened ({exc.strerror}); check the path and permissions") from exc
    except (_Truncated, struct.error) as exc:
        raise DataError(
            f"{path}: the DICOM header ends unexpectedly (truncated or damaged file); copy or export it again"
        ) from exc


def _read(f: BinaryIO, path: Path) -> dict[str, HeaderValue]:
    start = f.read(132)
    if start[128:132] == b"DICM":
        transfer_syntax = _read_file_meta(f)
    elif start[:2] == b"\x02\x00":  # file meta information without the preamble
        f.seek(0)
        transfer_syntax = _read_file_meta(f)
    else:  # a bare data set (old ACR-NEMA style files): guess the VR encoding from the first element
        f.seek(0)
        first = start[:8]
        if len(first) < 8 or first[:2] not in (b"\x08\x00", b"\x10\x00", b"\x18\x00", b"\x20\x00", b"\x28\x00"):
            raise DataError(
                f"{path}: is not a DICOM file (no 'DICM' marker and no DICOM element at its start); "
                "pass a folder holding only the DICOM slices of one series"
            )
        transfer_syntax = "1.2.840.10008.1.2.1" if first[4:6].isalpha() and first[4:6].isupper() else _IMPLICIT_LE
    if transfer_syntax == _EXPLICIT_BE:
        raise DataError(
            f"{path}: uses the retired big-endian transfer syntax, which is not supported; convert the series "
            "to little endian (e.g. dcmconv +te from DCMTK) or to NIfTI"
        )
    if transfer_syntax == _DEFLATED:
        f = io.BytesIO(zlib.decompressobj(-zlib.MAX_WBITS).decompress(f.read()))
    parser = _Parser(f, explicit=transfer_syntax != _IMPLICIT_LE)
    out: dict[str, HeaderValue] = {}
    creators: dict[tuple[int, int], str] = {}
    private: dict[tuple[int, int], HeaderValue] = {}
    parser.dataset(end=None, top=True, out=out, creators=creators, private=private)
    for (group, element), value in private.items():
        creator = creators.get((group, element >> 8))
        name = _PRIVATE.get((group, creator or "", element & 0xFF))
        if name is not None:
            out[name] = value
    return out


def _read_file_meta(f: BinaryIO) -> str:
    """Reads the group-0002 elements (always explicit VR little endian) and returns the transfer syntax UID."""
    transfer_syntax = _IMPLICIT_LE
    meta = _Parser(f, explicit=True)
    while True:
        position = f.tell()
        head = f.read(2)
        f.seek(position)
        if len(head) < 2 or struct.unpack("<H", head)[0] != 0x0002:
            return transfer_syntax
        group, element, _, length = meta.element_header()
        value = meta.read(length)
        if (group, element) == (0x0002, 0x0010):
            transfer_syntax = value.decode("ascii", "replace").strip("\x00 ")


class _Parser:
    """Walks data elements of one VR encoding in a binary stream positioned at an element."""

    def __init__(self, f: BinaryIO, explicit: bool) -> None:
        self.f = f
        self.explicit = explicit

    def read(self, n: int) -> bytes:
        data = self.f.read(n)
        if len(data) < n:
            raise _Truncated
        return data

    def element_header(self) -> tuple[int, int, bytes | None, int]:
        group, element = struct.unpack("<HH", self.read(4))
        if group == 0xFFFE or not self.explicit:  # item tags never carry a VR
            return group, element, None, struct.unpack("<I", self.read(4))[0]
        vr = self.read(2)
        if vr in _LONG_VRS:
            self.read(2)
            return group, element, vr, struct.unpack("<I", self.read(4))[0]
        return group, element, vr, struct.unpack("<H", self.read(2))[0]

    def dataset(self, end: int | None, top: bool, out: dict, creators: dict, private: dict) -> None:
        """Parses elements up to byte ``end`` (``None``: up to an item delimiter or the end of the stream)."""
        names = _ELEMENTS if top else _ITEM_ELEMENTS
        while end is None or self.f.tell() < end:
            position = self.f.tell()
            if end is None and top:
                peek = self.f.read(4)
                self.f.seek(position)
                if len(peek) < 4:
                    return
                if struct.unpack("<HH", peek) > _LAST_TAG:
                    return  # everything wanted lies before; the pixel data is never read
            group, element, vr, length = self.element_header()
            tag = (group, element)
            if tag == _ITEM_END:
                return
            is_sequence = vr == b"SQ" or tag == _SEQUENCE or length == _UNDEFINED
            if is_sequence:
                # An explicit-VR 'UN' element of undefined length is a sequence encoded in implicit VR.
                inner = _Parser(self.f, explicit=self.explicit and vr != b"UN")
                inner.sequence(length, wanted=top and tag == _SEQUENCE, out=out)
            elif tag in names:
                out[names[tag]] = _decode(vr, self.read(length))
            elif top and group in _PRIVATE_GROUPS and 0x0010 <= element <= 0x00FF:
                creators[(group, element)] = _decode(b"LO", self.read(length))
            elif top and group in _PRIVATE_GROUPS and element >= 0x1000:
                private[tag] = _decode(vr, self.read(length))
            else:
                self.f.seek(length, os.SEEK_CUR)

    def sequence(self, length: int, wanted: bool, out: dict) -> None:
        """Parses a sequence's items; the first item of the wanted sequence fills ``out``."""
        end = None if length == _UNDEFINED else self.f.tell() + length
        index = 0
        while end is None or self.f.tell() < end:
            group, element, _, item_length = self.element_header()
            if (group, element) == _SEQUENCE_END:
                return
            if (group, element) != _ITEM:
                raise _Truncated  # not a well-formed sequence
            item_end = None if item_length == _UNDEFINED else self.f.tell() + item_length
            target = out if wanted and index == 0 else {}
            self.dataset(end=item_end, top=False, out=target, creators={}, private={})
            index += 1


def _decode(vr: bytes | None, raw: bytes) -> HeaderValue:
    if vr in _BINARY:
        code = _BINARY[vr]
        count = len(raw) // struct.calcsize(code)
        values = struct.unpack(f"<{count}{code}", raw[: count * struct.calcsize(code)])
        return values[0] if count == 1 else tuple(values)
    text = raw.decode("latin-1").strip("\x00 ")
    if "\\" in text:
        return tuple(part.strip() for part in text.split("\\"))
    return text
