"""Pretraining slices (paper sec. 2.1.1): which axial slices of a PET or CT volume the SSL encoders see,
and how they are normalised. Every slice comes out ``(S, S)`` float32 (``S = 256``).

PET (:func:`pet_pretraining_slices`), per volume, no resampling (slices keep the scanner's pixel size):

1. Background baseline ``b`` = the ``background_percentile`` (default 1st) of all voxels; reference
   ``r`` = the ``reference_percentile`` (default 99.5th; the volume maximum if that equals ``b``).
2. Foreground = voxels above ``b + foreground_fraction * (r - b)`` (default 5% of the way from background
   to bright uptake). The rule is scale-free, so SUV, Bq/ml or counts give the same slices.
3. Foreground dilated in-plane, slice by slice, by a disk of ``dilation_mm`` (a per-axis radius in pixels).
4. A slice is kept if its dilated foreground covers more than ``min_coverage`` (20%) of the slice's area.
5. Kept slices are shifted by whole pixels so that the centre of mass of their (undilated) foreground lies
   at the image centre (index ``(S - 1) / 2``, within half a pixel), then symmetric pad/crop to ``S x S``;
   padding is the volume minimum.
6. Volume-level min-max: ``(x - min) / (max - min)`` with min and max over the whole 3D volume (all
   slices, kept or not), so only slices holding the volume maximum reach 1.

CT (:func:`ct_pretraining_slices`), per axial slice (z is never resampled):

1. Body = the largest 3D connected region above ``body_threshold_hu`` (-500 HU); a slice whose body covers
   less than ``min_body_area_mm2`` is skipped (no body).
2. The slice is resampled in-plane to ``spacing_mm`` (0.45 mm) with cubic B-splines onto an ``S x S`` grid
   centred on the centroid of the slice's body pixels; outside the scan it is air (``pad_hu``, -1000 HU).
3. Min-max to [0, 1] with one range for the whole volume: values clipped to ``hu_window`` (default
   [-1000, 1000] HU; ``None``: no clipping; applied before step 2 as well, so metal does not ring), min and
   max of the clipped volume (and of the padding value).
4. Per-slice z-score (mean 0, standard deviation 1 over the ``S x S`` slice). Since a z-score undoes any
   affine scaling, step 3 changes the result only through the clipping window.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..data.io import read_volume
from ..data.volume import Volume
from ..errors import ConfigError, DataError
from ..preprocessing.body import BODY_THRESHOLD_HU, largest_region
from .store_writer import SliceStoreWriter

log = logging.getLogger("dualdinov3.pretraining")

PET_METHOD = "pet-pretraining-slices-v1"
CT_METHOD = "ct-pretraining-slices-v1"
MODALITIES = ("PT", "CT")


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


@dataclass(frozen=True)
class PetSliceParams:
    """Parameters of the PET pretraining slice selection (see the module docstring for the rule)."""

    size: int = 256
    background_percentile: float = 1.0
    reference_percentile: float = 99.5
    foreground_fraction: float = 0.05
    dilation_mm: float = 5.0
    min_coverage: float = 0.20

    def __post_init__(self) -> None:
        _check(int(self.size) == self.size and self.size >= 16, f"PET size must be an integer >= 16, got {self.size}")
        _check(
            0.0 <= self.background_percentile < self.reference_percentile <= 100.0,
            "PET percentiles must satisfy 0 <= background_percentile < reference_percentile <= 100, got "
            f"{self.background_percentile} and {self.reference_percentile}",
        )
        _check(
            0.0 < self.foreground_fraction < 1.0,
            f"foreground_fraction must be in (0, 1), got {self.foreground_fraction}",
        )
        _check(self.dilation_mm >= 0.0, f"dilation_mm must be >= 0 mm, got {self.dilation_mm}")
        _check(0.0 <= self.min_coverage < 1.0, f"min_coverage must be in [0, 1), got {self.min_coverage}")

    def to_dict(self) -> dict:
        return {"method": PET_METHOD, **dataclasses.asdict(self)}


@dataclass(frozen=True)
class CtSliceParams:
    """Parameters of the CT pretraining slices (see the module docstring for the rule)."""

    size: int = 256
    spacing_mm: float = 0.45
    hu_window: tuple[float, float] | None = (-1000.0, 1000.0)
    body_threshold_hu: float = BODY_THRESHOLD_HU
    min_body_area_mm2: float = 100.0
    pad_hu: float = -1000.0

    def __post_init__(self) -> None:
        _check(int(self.size) == self.size and self.size >= 16, f"CT size must be an integer >= 16, got {self.size}")
        _check(self.spacing_mm > 0.0, f"spacing_mm must be > 0 mm, got {self.spacing_mm}")
        if self.hu_window is not None:
            window = tuple(float(v) for v in self.hu_window)
            _check(
                len(window) == 2 and window[0] < window[1], f"hu_window must be (low, high) HU, got {self.hu_window}"
            )
            object.__setattr__(self, "hu_window", window)
        _check(self.min_body_area_mm2 >= 0.0, f"min_body_area_mm2 must be >= 0, got {self.min_body_area_mm2}")

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["hu_window"] = list(self.hu_window) if self.hu_window is not None else None
        return {"method": CT_METHOD, **out}


def slice_params(modality: str, overrides: dict | None = None) -> PetSliceParams | CtSliceParams:
    """The parameters for ``modality`` (``"PT"`` or ``"CT"``) with ``overrides`` (field name -> value)."""
    kind = {"PT": PetSliceParams, "CT": CtSliceParams}.get(modality)
    if kind is None:
        raise ConfigError(f"unknown pretraining modality {modality!r}; use one of {MODALITIES}")
    overrides = dict(overrides or {})
    overrides.pop("method", None)
    names = {f.name for f in dataclasses.fields(kind)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ConfigError(f"unknown {modality} slice parameter(s) {unknown}; known: {sorted(names)}")
    return kind(**overrides)


@dataclass(frozen=True)
class PretrainingSlices:
    """The slices one volume gives: ``slices`` ``(N, S, S)`` float32, ``z_indices`` ``(N,)`` (the slice's
    index along the source array's z axis), the ``source`` name, and per-volume ``stats`` (JSON-able)."""

    slices: np.ndarray
    z_indices: np.ndarray
    source: str
    stats: dict

    @property
    def provenance(self) -> list[tuple[str, int]]:
        """``(source, z)`` of each slice."""
        return [(self.source, int(z)) for z in self.z_indices]


def _check_modality(volume: Volume, expected: str, source: str) -> None:
    if volume.is_vector:
        raise DataError(f"{source}: a scalar volume is needed, got shape {volume.array.shape}")
    if volume.modality is not None and volume.modality.upper() != expected:
        raise DataError(
            f"{source}: is a {volume.modality} image but {expected} slices were asked for; "
            f"pass {expected} images only (or build a separate store for {volume.modality})"
        )


def pet_pretraining_slices(volume: Volume, params: PetSliceParams | None = None, source: str = "") -> PretrainingSlices:
    """The PET pretraining slices of ``volume`` (any units: the rule is scale-free). See the module docstring."""
    params = params or PetSliceParams()
    _check_modality(volume, "PT", source)
    array = volume.array
    low, high = float(array.min()), float(array.max())
    if high <= low:
        raise DataError(f"{source}: the PET volume is constant ({low}); it holds no uptake to learn from")
    baseline, reference = (
        float(v) for v in np.percentile(array, [params.background_percentile, params.reference_percentile])
    )
    if reference <= baseline:
        reference = high
    if baseline < -0.1 * abs(reference):
        raise DataError(
            f"{source}: the background is strongly negative ({baseline:.4g}, uptake {reference:.4g}), as in a CT, "
            "not a PET (SUV, Bq/ml or counts are >= 0); pass PET images only"
        )
    _check_not_labels(array, source)
    threshold = baseline + params.foreground_fraction * (reference - baseline)
    foreground = array > threshold
    dilated = _dilate_in_plane(foreground, volume.spacing, params.dilation_mm)
    coverage = dilated.mean(axis=(1, 2))
    kept = np.flatnonzero(coverage > params.min_coverage)
    size = params.size
    out = np.empty((len(kept), size, size), dtype=np.float32)
    low32 = np.float32(low)
    span32 = np.float32(high) - low32  # in float32, so the volume maximum maps to exactly 1
    for i, z in enumerate(kept):
        ys, xs = np.nonzero(foreground[z])
        shifted = _centred_window(array[z], (ys.mean(), xs.mean()), size, low)
        out[i] = (shifted - low32) / span32
    np.clip(out, 0.0, 1.0, out=out)
    stats = {
        "units": volume.units,
        "baseline": baseline,
        "reference": reference,
        "threshold": threshold,
        "min": low,
        "max": high,
        "slices_in_volume": volume.shape[0],
    }
    log.debug("%s: kept %d of %d PET slices (threshold %.4g)", source, len(kept), volume.shape[0], threshold)
    return PretrainingSlices(out, kept.astype(np.int64), source, stats)


def _check_not_labels(array: np.ndarray, source: str) -> None:
    """Raises DataError if ``array`` looks like a label map (a few integers in 0..255, checked on a sample)."""
    sample = array.reshape(-1)[::97]
    small = sample.min() >= 0 and sample.max() <= 255
    if small and np.array_equal(sample, np.round(sample)) and len(np.unique(sample)) <= 16:
        raise DataError(
            f"{source}: holds only a few integer values ({np.unique(sample)[:8].tolist()}...), like a label map "
            "(segmentation), not an image; pass the PET images, not their masks"
        )


def _dilate_in_plane(mask: np.ndarray, spacing_xyz: tuple[float, float, float], radius_mm: float) -> np.ndarray:
    """``mask`` (Z, Y, X) bool dilated within each axial slice by an ellipse of ``radius_mm`` (pixels per axis)."""
    radius = [round(radius_mm / spacing_xyz[0]), round(radius_mm / spacing_xyz[1]), 0]
    if radius[0] == 0 and radius[1] == 0:
        return mask
    image = sitk.GetImageFromArray(mask.astype(np.uint8))
    dilated = sitk.BinaryDilate(image, radius, sitk.sitkBall, 0.0, 1.0)
    return sitk.GetArrayViewFromImage(dilated).astype(bool)


def _centred_window(image: np.ndarray, centre_yx: tuple[float, float], size: int, fill: float) -> np.ndarray:
    """The ``size x size`` window of ``image`` (Y, X) whose centre, index ``(size - 1) / 2``, lies within half a
    pixel of ``centre_yx`` (whole-pixel shift, no interpolation); outside ``image`` it is ``fill``."""
    out = np.full((size, size), fill, dtype=np.float32)
    starts = [int(np.round(c - (size - 1) / 2.0)) for c in centre_yx]
    src, dst = [], []
    for start, length in zip(starts, image.shape, strict=True):
        lo, hi = max(start, 0), min(start + size, length)
        if hi <= lo:
            return out
        src.append(slice(lo, hi))
        dst.append(slice(lo - start, hi - start))
    out[tuple(dst)] = image[tuple(src)]
    return out


def ct_pretraining_slices(volume: Volume, params: CtSliceParams | None = None, source: str = "") -> PretrainingSlices:
    """The CT pretraining slices of ``volume`` (HU). See the module docstring."""
    params = params or CtSliceParams()
    _check_modality(volume, "CT", source)
    array = volume.array
    sx, sy = volume.spacing[0], volume.spacing[1]
    if float(array.min()) > params.body_threshold_hu:
        raise DataError(
            f"{source}: no voxel below {params.body_threshold_hu:g} HU (no air; values {array.min():.4g} to "
            f"{array.max():.4g}), so this is not a CT in Hounsfield units (a mask, a PET, or shifted values?); "
            "pass CT images in HU only"
        )
    body = largest_region(array > params.body_threshold_hu)
    area_mm2 = body.sum(axis=(1, 2)) * (sx * sy)
    with_body = np.flatnonzero((area_mm2 >= params.min_body_area_mm2) & (area_mm2 > 0))

    low_hu, high_hu = params.hu_window if params.hu_window is not None else (-np.inf, np.inf)
    pad = float(np.clip(params.pad_hu, low_hu, high_hu))
    vmin = min(float(np.clip(array.min(), low_hu, high_hu)), pad)
    vmax = max(float(np.clip(array.max(), low_hu, high_hu)), pad)
    if vmax <= vmin:
        raise DataError(f"{source}: the CT is constant ({vmin} HU) within the window {params.hu_window}; no anatomy")

    size, step = params.size, params.spacing_mm
    resampler = sitk.ResampleImageFilter()
    resampler.SetSize((size, size))
    resampler.SetOutputSpacing((step, step))
    resampler.SetInterpolator(sitk.sitkBSpline)
    resampler.SetDefaultPixelValue(params.pad_hu)
    resampler.SetOutputPixelType(sitk.sitkFloat32)
    out, z_kept = [], []
    for z in with_body:
        ys, xs = np.nonzero(body[z])
        centre_mm = (xs.mean() * sx, ys.mean() * sy)  # in-plane, origin at pixel (0, 0)
        resampler.SetOutputOrigin(tuple(c - (size - 1) / 2.0 * step for c in centre_mm))
        image = sitk.GetImageFromArray(np.clip(array[z], low_hu, high_hu))  # clipped first: no metal ringing
        image.SetSpacing((sx, sy))
        resampled = sitk.GetArrayFromImage(resampler.Execute(image))
        scaled = (np.clip(resampled, vmin, vmax) - vmin) / (vmax - vmin)
        std = float(scaled.std())
        if std < 1e-6:
            log.debug("%s: slice %d is uniform after resampling; skipped", source, z)
            continue
        out.append(((scaled - scaled.mean()) / std).astype(np.float32))
        z_kept.append(int(z))
    slices = np.stack(out) if out else np.empty((0, size, size), dtype=np.float32)
    stats = {
        "units": volume.units,
        "min": vmin,
        "max": vmax,
        "slices_in_volume": volume.shape[0],
    }
    log.debug("%s: kept %d of %d CT slices", source, len(z_kept), volume.shape[0])
    return PretrainingSlices(slices, np.asarray(z_kept, dtype=np.int64), source, stats)


def pretraining_slices(
    volume: Volume, modality: str, params: PetSliceParams | CtSliceParams | None = None, source: str = ""
) -> PretrainingSlices:
    """:func:`pet_pretraining_slices` for ``modality="PT"``, :func:`ct_pretraining_slices` for ``"CT"``."""
    params = _params_for(modality, params)
    if modality == "PT":
        return pet_pretraining_slices(volume, params, source)
    return ct_pretraining_slices(volume, params, source)


def _params_for(modality: str, params: PetSliceParams | CtSliceParams | None) -> PetSliceParams | CtSliceParams:
    """``params``, or the defaults for ``modality``, checked to be of the modality's kind."""
    if params is None:
        return slice_params(modality)
    kind = {"PT": PetSliceParams, "CT": CtSliceParams}.get(modality)
    if kind is None:
        raise ConfigError(f"unknown pretraining modality {modality!r}; use one of {MODALITIES}")
    if not isinstance(params, kind):
        raise ConfigError(f"{modality} slices need {kind.__name__}, got {type(params).__name__}")
    return params


@dataclass(frozen=True)
class VolumeReport:
    """What :func:`build_pretraining_store` did with one source (``index`` counts from 1 to ``total``).

    ``status``: ``"added"``, ``"skipped"`` (already in the store) or ``"failed"`` (``error`` says why).
    """

    index: int
    total: int
    source: str
    status: str
    kept: int = 0
    slices_in_volume: int = 0
    store_slices: int = 0
    seconds: float = 0.0
    error: str | None = None


def build_pretraining_store(
    sources: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    modality: str,
    params: PetSliceParams | CtSliceParams | None = None,
    *,
    shard_size: int = 1024,
    dtype: str = "float16",
    on_volume: Callable[[VolumeReport], None] | None = None,
) -> list[VolumeReport]:
    """Adds the pretraining slices of each source (image file or DICOM series folder) to the store ``out``.

    Volumes already in the store are skipped, so re-running an interrupted job resumes it. A source that
    cannot be read or used (:class:`~DualDINOv3Lib.errors.DataError`) is reported as failed and not
    recorded (a re-run tries it again); other errors stop the job with the store at its last commit.
    ``on_volume`` is called after each source (an exception raised there stops the job the same way).
    """
    params = _params_for(modality, params)
    reports = []
    with SliceStoreWriter(
        out,
        modality=modality,
        preprocessing=params.to_dict(),
        slice_size=params.size,
        shard_size=shard_size,
        dtype=dtype,
    ) as store:
        for index, path in enumerate(sources, start=1):
            path = Path(path)
            source = str(path.resolve())
            started = time.perf_counter()
            common = {"index": index, "total": len(sources), "source": source}
            if source in store:
                report = VolumeReport(**common, status="skipped", store_slices=len(store))
            else:
                try:
                    volume = read_volume(path, modality=None if path.is_dir() else modality)
                    result = pretraining_slices(volume, modality, params, source)
                except DataError as exc:
                    report = VolumeReport(**common, status="failed", store_slices=len(store), error=str(exc))
                else:
                    info = {"shape_zyx": list(volume.shape), "spacing_xyz": list(volume.spacing), "stats": result.stats}
                    store.add_volume(source, result.slices, result.z_indices, info)
                    report = VolumeReport(
                        **common,
                        status="added",
                        kept=len(result.z_indices),
                        slices_in_volume=volume.shape[0],
                        store_slices=len(store),
                        seconds=time.perf_counter() - started,
                    )
            reports.append(report)
            if on_volume is not None:
                on_volume(report)
    return reports
