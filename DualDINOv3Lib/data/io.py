"""Reading images (NIfTI, NRRD, MetaImage, DICOM series) into :class:`Volume` and writing them back.

Every problem with an input raises :class:`~DualDINOv3Lib.errors.DataError` naming the file, what is
wrong with it and how to fix it, before any model sees the data.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..errors import DataError, OutputExistsError
from ..files import atomic_write
from .dicom_header import read_pet_header
from .integrity import check_image_file, check_written_image
from .suv import suvbw_factors
from .volume import Volume

log = logging.getLogger(__name__)
pet_log = logging.getLogger("dualdinov3.suv")
"""PET unit handling (SUV conversion, values taken as SUV) is logged here, a child of the CLI's logger."""

READ_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")
WRITE_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".mha")
"""Single-file formats only: a header + data pair (.mhd/.nhdr) cannot be replaced atomically."""

NON_IMAGE_MODALITIES = frozenset({"RTSTRUCT", "RTPLAN", "RTDOSE", "RTRECORD", "SEG", "SR", "PR", "KO", "REG", "DOC"})
"""DICOM modalities (0008,0060) whose objects are not image slices; series of these are ignored."""

_MODALITY_TAG = "0008|0060"
_PET_UNITS_TAG = "0054|1001"
PET_MODALITIES = frozenset({"PT", "PET"})
"""``modality`` values (any case) that mark a PET volume."""
SUSPICIOUS_SUV = 1000.0
"""SUV values above this are implausible (tumours reach tens); such a file is probably in Bq/ml or counts."""
UNITS_KEY = "ITK_FileNotes"
"""Header field where :func:`write_volume` declares a volume's units (NIfTI ``descrip``; a key of NRRD and
MetaImage headers), as ``units=SUV`` or ``units=HU``."""


def read_volume(path: str | os.PathLike, modality: str | None = None) -> Volume:
    """Reads one 3D scalar image as a float32 :class:`Volume`.

    ``path``: a NIfTI (.nii, .nii.gz), NRRD (.nrrd, .nhdr) or MetaImage (.mha, .mhd) file, or a folder
    holding a DICOM series (if it holds several image series, the one with the most files is read).
    ``modality``: stored in the volume (e.g. ``"CT"``, ``"PT"``); for DICOM it defaults to the series'
    Modality tag. Units: ``"HU"`` for a CT DICOM series. A PET DICOM series is returned in SUVbw
    (``units="SUV"``): Units GML is kept as it is, BQML and CNTS are converted from the header
    (:func:`~DualDINOv3Lib.data.suv.suvbw_factors`, per slice where the factors differ), and a header that
    does not allow it raises :class:`DataError`. A PET file (``modality`` ``"PT"``/``"PET"``) is in SUV:
    files written by :func:`write_volume` from a volume in SUV declare it in their header; other files carry no
    units, so their values are taken as SUV, which :attr:`Volume.notes` says (and a warning is logged).
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder; check the path (absolute paths avoid working-folder mix-ups)")
    notes: tuple[str, ...] = ()
    if path.is_dir():
        image, header_modality, files = _read_dicom_series(path)
    else:
        image = _read_file(path)
        header_modality, files = None, None
    _check_image(image, path)
    array = sitk.GetArrayFromImage(image).astype(np.float32, copy=False)
    _check_values(array, path)
    modality = modality if modality is not None else header_modality
    units = None
    if header_modality == "CT":
        units = "HU"
    elif header_modality == "PT":
        array, notes = _pet_series_to_suv(array, files, path)
        units = "SUV"
    elif files is None and modality is not None and modality.upper() in PET_MODALITIES:
        declared = _declared_units(image) == "SUV"
        units = "SUV"
        if not declared or float(array.max(initial=0.0)) > SUSPICIOUS_SUV:
            notes = _pet_file_note(array, path, declared)
    return Volume(
        array=array,
        spacing=image.GetSpacing(),
        origin=image.GetOrigin(),
        direction=image.GetDirection(),
        units=units,
        modality=modality,
        notes=notes,
    )


def _pet_series_to_suv(array: np.ndarray, files: list[str], folder: Path) -> tuple[np.ndarray, tuple[str, ...]]:
    """Converts a PET DICOM series (array (Z, Y, X), slice k read from ``files[k]``) to SUVbw."""
    try:
        headers = [read_pet_header(f) for f in files]
    except DataError as exc:  # an encoding GDCM reads but our small reader does not (e.g. big endian)
        info = sitk.ImageFileReader()
        info.SetFileName(files[0])
        info.ReadImageInformation()
        if (_tag(info, _PET_UNITS_TAG) or "").upper() != "GML":
            raise
        pet_log.warning("%s: PET header not fully readable (%s); Units is GML, values kept as SUV", folder, exc)
        return array, ()
    result = suvbw_factors(headers, source=str(folder))
    if result.units == "GML":
        pet_log.info("%s: %s", folder, result.description)
        return array, ()
    factors = np.asarray(result.factors, dtype=np.float64)
    if len(factors) != array.shape[0]:  # e.g. a multi-frame file: one header for all slices
        if not result.uniform:
            raise DataError(
                f"{folder}: {len(files)} DICOM file(s) hold {array.shape[0]} slices with different SUV factors; "
                "convert the series to SUV with your vendor workstation, or export it as one file per slice"
            )
        factors = np.full(array.shape[0], factors[0])
    array = (array * factors[:, None, None]).astype(np.float32)
    if result.uniform:
        factor_text = f"factor {factors[0]:.6g}"
    else:
        factor_text = f"per-slice factors {factors.min():.6g} to {factors.max():.6g}"
    note = f"{folder}: PET converted to SUVbw ({factor_text}; {result.description})"
    pet_log.info("%s", note)
    return array, (note,)


def _declared_units(image: sitk.Image) -> str | None:
    """The units a file written by :func:`write_volume` declares in its header notes (``units=SUV``), if any."""
    notes = image.GetMetaData(UNITS_KEY).split() if image.HasMetaDataKey(UNITS_KEY) else []  # NIfTI: descrip
    return next((word[len("units=") :] or None for word in notes if word.startswith("units=")), None)


def _pet_file_note(array: np.ndarray, path: Path, declared: bool = False) -> tuple[str, ...]:
    """The provenance note of a PET file without units, whose values are taken as SUV (or of one that declares
    SUV but holds values no SUV reaches)."""
    if declared:
        note = f"{path}: the PET file declares SUV (g/ml)"
    else:
        note = f"{path}: the PET file carries no units; its values are taken as SUV (g/ml)"
    high = float(array.max())
    if high > SUSPICIOUS_SUV:
        note += (
            f". Its maximum, {high:.6g}, is implausible for SUV (tumours reach tens): it is probably in Bq/ml or "
            "counts; convert it to SUV first, or read the original DICOM series, which is converted from its header"
        )
    pet_log.warning("%s", note)
    return (note,)


def _read_file(path: Path) -> sitk.Image:
    check_image_file(path)
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
        dimension, components, size = (
            reader.GetDimension(),
            reader.GetNumberOfComponents(),
            reader.GetSize(),
        )
    except RuntimeError as exc:
        raise DataError(
            f"{path}: cannot be read as an image ({_first_line(exc)}); it is damaged or not an image. "
            f"Supported: {', '.join(READ_SUFFIXES)} files and DICOM series folders; re-export the image "
            "in one of these formats"
        ) from exc
    _check_header(path, dimension, components, size)
    try:
        return reader.Execute()
    except RuntimeError as exc:
        raise DataError(
            f"{path}: the header is readable but the voxel data is not ({_first_line(exc)}); "
            "the file is probably truncated; copy or export it again"
        ) from exc


def _read_dicom_series(folder: Path) -> tuple[sitk.Image, str | None, list[str]]:
    """The image, the Modality tag and the file of each slice (slice k of the array from ``files[k]``)."""
    files, info = _pick_series(folder)
    header_modality = _tag(info, _MODALITY_TAG)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    if header_modality == "PT":
        # Each slice is rescaled with its own slope/intercept; without a float output type the pixel type of
        # the first slice is used for all, and a first slice with slope 1 would truncate the others to integers.
        reader.SetOutputPixelType(sitk.sitkFloat32)
    try:
        image = reader.Execute()
    except RuntimeError as exc:
        raise DataError(
            f"{folder}: the DICOM series ({len(files)} files) cannot be read ({_first_line(exc)}); "
            "check that every slice is present and not damaged, or convert the series to NIfTI"
        ) from exc
    return image, header_modality, files


def _pick_series(folder: Path) -> tuple[list[str], sitk.ImageFileReader]:
    """The file names of the image series with the most files in ``folder``, and its first file's header."""
    series_ids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
    if not series_ids:
        subfolders = sorted(p.name for p in folder.iterdir() if p.is_dir())
        dicom_files = [p.name for p in folder.iterdir() if p.is_file() and is_dicom_file(p)]
        found = (
            f"its {len(dicom_files)} DICOM file(s) (e.g. {dicom_files[0]}) are not image slices (RTSTRUCT or similar)"
            if dicom_files
            else "no DICOM files found in this folder"
        )
        hint = f" It has subfolders {subfolders}: pass the one holding the slices." if subfolders else ""
        raise DataError(
            f"{folder}: no DICOM image series: {found} (subfolders are not searched).{hint} "
            "Pass a folder holding the .dcm slices of one CT or PET series, or an image file (.nii.gz, .nrrd, .mha)"
        )
    candidates = []  # (number of files, series UID, files, header reader)
    skipped = []
    for uid in series_ids:
        files = list(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), uid))
        info = sitk.ImageFileReader()
        info.SetFileName(files[0])
        try:
            info.ReadImageInformation()
        except RuntimeError:
            skipped.append(f"{uid} (not an image)")
            continue
        modality = _tag(info, _MODALITY_TAG)
        if modality is not None and modality.upper() in NON_IMAGE_MODALITIES:
            skipped.append(f"{uid} ({modality})")
            continue
        candidates.append((len(files), uid, files, info))
    if not candidates:
        raise DataError(
            f"{folder}: holds DICOM but no image series, only {skipped}; "
            "pass the folder holding the CT or PET slices instead"
        )
    candidates.sort(key=lambda c: c[0], reverse=True)
    if len(candidates) > 1:
        listing = ", ".join(f"{uid} ({n} files)" for n, uid, _, _ in candidates)
        if candidates[0][0] == candidates[1][0]:
            raise DataError(
                f"{folder}: holds several DICOM image series of equal length and it is ambiguous which to read: "
                f"{listing}. Move each series into its own folder and pass that folder"
            )
        log.warning(
            "%s holds %d DICOM image series (%s); reading the largest, %s",
            folder,
            len(candidates),
            listing,
            candidates[0][1],
        )
    if skipped:
        log.info("%s: ignored non-image DICOM series %s", folder, skipped)
    _, uid, files, info = candidates[0]
    return files, info


def is_dicom_file(path: Path) -> bool:
    """True for a DICOM Part 10 file (the 4 bytes 'DICM' after the 128-byte preamble)."""
    try:
        with open(path, "rb") as f:
            return f.read(132)[128:] == b"DICM"
    except OSError:
        return False


def _tag(reader: sitk.ImageFileReader, key: str) -> str | None:
    return reader.GetMetaData(key).strip() if reader.HasMetaDataKey(key) else None


def _first_line(exc: Exception) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__


def _check_header(path: Path, dimension: int, components: int, size) -> None:
    if dimension == 2:
        raise DataError(
            f"{path}: is a 2D image (size {tuple(size)}), a 3D volume is needed; "
            "pass the whole CT/PET volume (all slices), not a single slice or screenshot"
        )
    if dimension != 3:
        raise DataError(
            f"{path}: is a {dimension}D image (size {tuple(size)}), a single 3D volume is needed; "
            "a 4D file is a time series or several frames: extract one 3D frame first"
        )
    if components != 1:
        raise DataError(
            f"{path}: is a multi-component image ({components} values per voxel, e.g. RGB or a vector field); "
            "a scalar (grey-value) CT or PET volume is needed: pass the original image, not a rendered/colour one"
        )
    if min(size) == 0:
        raise DataError(f"{path}: is an empty image (size {tuple(size)}); the file holds no voxels: export it again")


def _check_image(image: sitk.Image, path: Path) -> None:
    _check_header(path, image.GetDimension(), image.GetNumberOfComponentsPerPixel(), image.GetSize())


def _check_values(array: np.ndarray, path: Path) -> None:
    finite = np.isfinite(array)
    if not finite.all():
        bad = int(array.size - np.count_nonzero(finite))
        raise DataError(
            f"{path}: {bad} of {array.size} voxels are NaN or infinite; the image is corrupt or was saved "
            "after a failed computation: re-export the original image"
        )
    low, high = float(array.min()), float(array.max())
    if low == high:
        raise DataError(
            f"{path}: is a constant image (every voxel = {low}), so it holds no anatomy; "
            "check that the right file was exported (not a blank mask or an empty placeholder)"
        )


# --- writing -------------------------------------------------------------------------------------------


def _suffix(path: Path) -> str:
    name = path.name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else path.suffix.lower()


def write_volume(volume: Volume, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Writes ``volume`` with its geometry to ``path`` (.nii, .nii.gz, .nrrd or .mha) and returns the path.

    A label volume (:attr:`Volume.is_label`) is written as uint8 (values must be integers 0..255); a
    ``(Z, Y, X, C)`` volume (e.g. RGB uint8) as a vector image; float voxels as float32; other integer
    voxels as they are. An existing file is only replaced with ``overwrite=True``
    (:class:`~DualDINOv3Lib.errors.OutputExistsError` otherwise). The file is written to a temporary
    name in the same folder and renamed, so a reader never sees a half-written file.
    """
    path = Path(path)
    suffix = _suffix(path)
    if suffix not in WRITE_SUFFIXES:
        raise DataError(f"{path}: cannot write '{suffix}' files; use one of {', '.join(WRITE_SUFFIXES)}")
    if not path.parent.is_dir():
        raise DataError(f"{path}: the folder {path.parent} does not exist; create it first")
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path}: already exists; pass overwrite=True to replace it, or choose another name")
    image = _image_to_write(volume, path)
    # the image library only warns on a short write (full disk): the file is verified before it is renamed
    atomic_write(
        path, lambda tmp: sitk.WriteImage(image, tmp, useCompression=suffix != ".nii"), verify=check_written_image
    )
    return path


def _image_to_write(volume: Volume, path: Path) -> sitk.Image:
    array = volume.array
    if volume.is_label:
        if volume.is_vector:
            raise DataError(f"{path}: a label volume must be (z, y, x), got shape {array.shape}")
        if array.dtype == np.bool_:
            array = array.astype(np.uint8)
        if array.size and (array.min() < 0 or array.max() > 255 or not np.array_equal(array, np.round(array))):
            raise DataError(
                f"{path}: a label volume must hold integers 0..255 to be written as uint8, "
                f"got values in [{array.min()}, {array.max()}]; relabel it, or clear modality='label' to write it as is"
            )
        array = array.astype(np.uint8)
    elif array.dtype.kind == "f" and array.dtype != np.float32:
        array = array.astype(np.float32)
    elif array.dtype.kind not in "fiub":
        raise DataError(f"{path}: cannot write voxels of type {array.dtype}; convert them to a number type")
    image = volume.with_array(array).to_sitk()
    if volume.units and not volume.is_label:  # read back by read_volume: no "carries no units" guess
        image.SetMetaData(UNITS_KEY, f"units={volume.units}")
    return image
