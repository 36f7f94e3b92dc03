"""Is an image file whole? The image library reads a NIfTI or NRRD file whose voxel data is cut short (a
copy that stopped, a full disk) without complaint, filling the missing slices with zeros, and reads NaN/inf
NIfTI voxels as 0. :func:`check_image_file` reads the header itself, counts the voxel bytes that follow
(decompressing gzip streams to the end, which also checks their CRC) and, for NIfTI floats, looks for
NaN/inf, so that such a file is refused before it is used, and a file just written can be verified.

Formats: NIfTI-1/2 (.nii, .nii.gz), NRRD (.nrrd, attached data; raw or gzip), MetaImage (.mha, local data;
raw or zlib). Other files (detached headers, DICOM) are left to the image library.
"""

from __future__ import annotations

import gzip
import itertools
import os
import re
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ..errors import DataError

CHUNK = 1 << 22
_NIFTI_FLOATS = {16: np.float32, 64: np.float64}
_NRRD_TYPES = {
    **dict.fromkeys(("signed char", "int8", "int8_t", "uchar", "unsigned char", "uint8", "uint8_t"), 1),
    **dict.fromkeys(("short", "short int", "signed short", "int16", "int16_t", "ushort", "unsigned short"), 2),
    **dict.fromkeys(("uint16", "uint16_t", "unsigned short int", "signed short int"), 2),
    **dict.fromkeys(("int", "signed int", "int32", "int32_t", "uint", "unsigned int", "uint32", "uint32_t"), 4),
    **dict.fromkeys(("longlong", "long long", "int64", "int64_t", "ulonglong", "uint64", "uint64_t"), 8),
    "float": 4,
    "double": 8,
}
_MET_TYPES = {"MET_CHAR": 1, "MET_UCHAR": 1, "MET_SHORT": 2, "MET_USHORT": 2, "MET_INT": 4, "MET_UINT": 4,
              "MET_LONG": 4, "MET_ULONG": 4, "MET_LONG_LONG": 8, "MET_ULONG_LONG": 8, "MET_FLOAT": 4,
              "MET_DOUBLE": 8}  # fmt: skip


def _damaged(path: Path, what: str) -> DataError:
    return DataError(f"{path}: {what}; the file is truncated or damaged (an interrupted copy or download, or a full "
                     "disk when it was written): copy or export it again")  # fmt: skip


def check_image_file(path: str | os.PathLike, *, written: bool = False) -> None:
    """Raises :class:`DataError` when ``path`` is empty, holds less voxel data than its header describes, a
    broken compressed stream, or (NIfTI) NaN/inf voxels. Files of other formats pass unchecked.

    ``written``: the file was just written by the image library, so a header it does not recognise means a
    short write too (when reading, such a file is left to the image library, which says what it is not).
    """
    path = Path(path)
    name = path.name.lower()
    if path.stat().st_size == 0:
        raise _damaged(path, "the file is empty")
    if name.endswith((".nii", ".nii.gz")):
        known = _check_nifti(path, compressed=name.endswith(".gz"))
    elif name.endswith(".nrrd"):
        known = _check_nrrd(path)
    elif name.endswith(".mha"):
        known = _check_meta(path)
    else:
        return
    if written and not known:
        raise _damaged(path, "the header is incomplete")


def check_written_image(path: str | os.PathLike) -> None:
    """:func:`check_image_file` for a file the image library has just written."""
    check_image_file(path, written=True)


def _stream(path: Path, compressed: bool) -> Iterator[bytes]:
    """The file's bytes (decompressed), chunk by chunk; a broken stream is a :class:`DataError`."""
    opener = gzip.open if compressed else open
    try:
        with opener(path, "rb") as f:
            while chunk := f.read(CHUNK):
                yield chunk
    except EOFError as exc:
        raise _damaged(path, "the compressed data ends before its end marker") from exc
    except (gzip.BadGzipFile, zlib.error) as exc:
        raise _damaged(path, f"the compressed data is corrupt ({exc})") from exc


# --- NIfTI ----------------------------------------------------------------------------------------------


def _nifti_header(path: Path, head: bytes) -> tuple[int, int, int, int, str] | None:
    """``(voxel count, bytes per voxel, data offset, NIfTI datatype code, byte order)`` from the first 540 bytes."""
    for endian in "<>":
        if len(head) >= 348 and struct.unpack(endian + "i", head[:4])[0] == 348:
            dims = struct.unpack(endian + "8h", head[40:56])
            datatype, bitpix = struct.unpack(endian + "2h", head[70:74])
            offset = int(struct.unpack(endian + "f", head[108:112])[0])
            break
        if len(head) >= 540 and struct.unpack(endian + "i", head[:4])[0] == 540:
            datatype, bitpix = struct.unpack(endian + "2h", head[12:16])
            dims = struct.unpack(endian + "8q", head[16:80])
            offset = struct.unpack(endian + "q", head[168:176])[0]
            break
    else:
        return None  # not a NIfTI header: the image library says what the file is not
    n_dims = dims[0]
    if not 1 <= n_dims <= 7 or any(d < 0 for d in dims[1 : n_dims + 1]) or bitpix <= 0 or bitpix % 8:
        raise _damaged(path, f"the NIfTI header is inconsistent (dim {dims[: n_dims + 1]}, bitpix {bitpix})")
    count = int(np.prod([max(int(d), 1) for d in dims[1 : n_dims + 1]], dtype=np.int64))
    return count, bitpix // 8, max(offset, 348), datatype, endian


def _check_nifti(path: Path, compressed: bool) -> bool:
    with open(path, "rb") as f:
        if compressed and f.read(2) != b"\x1f\x8b":
            return False  # not gzip at all (a text file named .nii.gz): the image library says what it is not
    chunks = _stream(path, compressed)
    buffer = b""
    for chunk in chunks:
        buffer += chunk
        if len(buffer) >= 540:
            break
    header = _nifti_header(path, buffer)
    if header is None:
        return False
    count, size, offset, datatype, endian = header
    needed = count * size
    float_type = _NIFTI_FLOATS.get(datatype)
    data = buffer[offset:] if len(buffer) > offset else b""
    skip = max(offset - len(buffer), 0)
    seen, bad, carry = 0, 0, b""
    for chunk in itertools.chain((data,), chunks):  # streamed: never the whole file in memory
        if skip:
            cut = min(skip, len(chunk))
            chunk, skip = chunk[cut:], skip - cut
        chunk = chunk[: max(needed - seen, 0)]
        seen += len(chunk)
        if float_type is not None and chunk:
            carry += chunk
            whole = len(carry) - len(carry) % size
            values = np.frombuffer(carry[:whole], dtype=np.dtype(float_type).newbyteorder(endian))
            bad += int(values.size - np.count_nonzero(np.isfinite(values)))
            carry = carry[whole:]
    if seen < needed:
        raise _damaged(path, f"it holds {seen} of the {needed} bytes of voxel data its header describes")
    if bad:
        raise DataError(
            f"{path}: {bad} of {count} voxels are NaN or infinite (the image library would read them as 0); the "
            "image is corrupt or was saved after a failed computation: re-export the original image"
        )
    return True


# --- NRRD and MetaImage ----------------------------------------------------------------------------------


def _text_header(path: Path, end: re.Pattern) -> tuple[str, int]:
    """The header text and the offset of the data after it (the header ends where ``end`` matches)."""
    with open(path, "rb") as f:
        head = f.read(1 << 16)
    match = end.search(head)
    if match is None:
        raise _damaged(path, "the header has no end (no data section)")
    return head[: match.start()].decode("latin-1"), match.end()


def _fields(text: str, separator: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition(separator)
        if sep and not line.startswith("#"):
            out[key.strip().lower()] = value.strip()
    return out


def _data_bytes(path: Path, offset: int, compression: str | None) -> int:
    """How many (decompressed) bytes follow ``offset``, decompressing chunk by chunk."""
    if compression is None:
        return path.stat().st_size - offset
    stream = zlib.decompressobj(wbits=31 if compression == "gzip" else 15)
    total = 0
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            while chunk := f.read(CHUNK):
                total += len(stream.decompress(chunk))
                if stream.eof:
                    break
            total += len(stream.flush())
    except zlib.error as exc:
        raise _damaged(path, f"the compressed data is corrupt ({exc})") from exc
    if not stream.eof:
        raise _damaged(path, "the compressed data ends before its end marker")
    return total


def _check_nrrd(path: Path) -> bool:
    text, offset = _text_header(path, re.compile(rb"\r?\n\r?\n"))
    fields = _fields(text, ":")
    if "data file" in fields or "datafile" in fields:
        return False  # detached data: the image library checks it
    try:
        count = int(np.prod([int(s) for s in fields["sizes"].split()], dtype=np.int64))
        size = _NRRD_TYPES[fields["type"].lower()]
    except (KeyError, ValueError):
        return False  # a header we do not know: leave it to the image library
    encoding = fields.get("encoding", "raw").lower()
    if encoding not in ("raw", "gzip", "gz"):
        return False
    found = _data_bytes(path, offset, None if encoding == "raw" else "gzip")
    if found < count * size:
        raise _damaged(path, f"it holds {found} of the {count * size} bytes of voxel data its header describes")
    return True


def _check_meta(path: Path) -> bool:
    text, offset = _text_header(path, re.compile(rb"ElementDataFile\s*=\s*LOCAL[^\n]*\n"))
    fields = _fields(text, "=")
    try:
        count = int(np.prod([int(s) for s in fields["dimsize"].split()], dtype=np.int64))
        count *= int(fields.get("elementnumberofchannels", "1"))
        size = _MET_TYPES[fields["elementtype"].upper()]
    except (KeyError, ValueError):
        return False
    compressed = fields.get("compresseddata", "false").lower() == "true"
    found = _data_bytes(path, offset, "zlib" if compressed else None)
    if found < count * size:
        raise _damaged(path, f"it holds {found} of the {count * size} bytes of voxel data its header describes")
    return True
