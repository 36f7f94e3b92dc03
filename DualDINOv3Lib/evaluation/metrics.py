"""Per-case, per-class segmentation metrics: Dice, HD95 (mm), volumes (cm3) and the tumour-volume stratum.

Classes are HECKTOR 2022's: 1 GTVp (primary tumour), 2 GTVn (lymph nodes); 0 is background.

Definitions
    Dice: ``2 |T n P| / (|T| + |P|)`` from SimpleITK's ``LabelOverlapMeasuresImageFilter`` on the class masks
    T (truth) and P (prediction) on the truth's voxel grid.
    HD95 (mm): the 95th percentile (numpy's linear interpolation) of the pooled, symmetric set of surface
    distances: for every surface voxel of T the distance from its centre to the nearest surface-voxel centre
    of P, together with the same from every surface voxel of P to T. A surface voxel is an object voxel with
    at least one of its 6 face neighbours outside the object (beyond the image edge counts as outside).
    Distances are Euclidean in mm with the (anisotropic) voxel spacing, from SimpleITK's signed Maurer
    distance map of the other mask's surface.
    Volumes: voxel count x voxel volume (product of the spacing, mm3) / 1000, in cm3.
    Stratum (of the truth volume V of the class, as the paper): small V < 5 cm3, medium 5 <= V <= 15 cm3,
    large V > 15 cm3; none when the class is absent from the truth (V = 0).
    The prediction is compared on the truth's grid: if the grids differ it is resampled onto it with
    nearest-neighbour interpolation (as the HECKTOR 2022 evaluation does).

Empty masks (see :data:`CONVENTIONS`)
    truth and prediction both empty: Dice 1, HD95 NaN, no stratum (left out of every stratified mean);
    truth empty, prediction not: Dice 0, HD95 NaN, no stratum (a false positive: counted, and its volume
    enters the aggregated DSC);
    truth present, prediction empty: Dice 0, HD95 NaN, the truth's stratum (it lowers micro and macro Dice).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from ..data.resample import check_overlap, resample_to_grid
from ..data.volume import Volume
from ..domain import TUMOUR_CLASSES, stratum_of
from ..errors import DataError
from .lesions import NO_LESIONS, LesionCounts, lesion_counts

HD95_PERCENTILE = 95.0

CONVENTIONS = (
    "Dice per subject and class from SimpleITK's LabelOverlapMeasuresImageFilter on the truth grid (predictions "
    "on another grid are nearest-neighbour resampled onto it). "
    "HD95 (mm) = 95th percentile (linear interpolation) of the pooled distances from each surface voxel of the "
    "truth to the nearest surface voxel of the prediction and from each surface voxel of the prediction to the "
    "truth (surface voxel: object voxel with a face neighbour outside the object; Euclidean distances with the "
    "voxel spacing). "
    "Strata by the truth volume of the class: small < 5 cm3, medium 5-15 cm3 (inclusive), large > 15 cm3. "
    "Empty masks: truth and prediction both empty -> Dice 1, HD95 undefined, no stratum (excluded from all "
    "stratified statistics); truth empty and prediction not -> Dice 0, HD95 undefined, no stratum (counted as a "
    "false positive; its volume enters the aggregated DSC); truth present and prediction empty -> Dice 0, HD95 "
    "undefined, kept in its stratum. HD95 statistics use the subjects where both masks are non-empty. "
    "Micro Dice = unweighted mean over subjects (SD with n-1 degrees of freedom); macro Dice = mean of the "
    "subjects' Dice weighted by their truth tumour volume; 'all' = every subject with the class in the truth. "
    "Aggregated DSC (HECKTOR 2022) = 2 sum|T n P| / sum(|T| + |P|) in mm3 over every subject evaluated; its "
    "mean is over GTVp and GTVn. p-values: two-sided paired Student t-test on the subject Dice of two "
    "configurations over the subjects both evaluated in that class and stratum."
)
"""The conventions of this package in one paragraph, printed under the tables."""


@dataclass(frozen=True)
class CaseMetrics:
    """Metrics of one case (subject) and one class.

    ``dice`` in [0, 1]; ``hd95_mm`` in mm (NaN when either mask is empty); volumes in cm3 (``intersection_cm3``
    is the overlap of truth and prediction); ``stratum`` one of :data:`STRATA`, or None when the class is
    absent from the truth; ``lesions``: lesion-wise detection of the class (:mod:`.lesions`).
    """

    case: str
    label: int
    class_name: str
    dice: float
    hd95_mm: float
    truth_cm3: float
    pred_cm3: float
    intersection_cm3: float
    stratum: str | None
    lesions: LesionCounts = NO_LESIONS

    @property
    def truth_present(self) -> bool:
        return self.truth_cm3 > 0

    @property
    def false_positive(self) -> bool:
        """The class is absent from the truth but the prediction has it."""
        return self.truth_cm3 == 0 and self.pred_cm3 > 0


def dice_coefficient(truth: np.ndarray, prediction: np.ndarray) -> float:
    """Dice of two boolean masks of the same shape (z, y, x), with the empty-mask conventions above.

    Both empty -> 1.0; one empty -> 0.0; otherwise SimpleITK's ``LabelOverlapMeasuresImageFilter``.
    """
    truth, prediction = _check_masks(truth, prediction)
    n_truth, n_pred = int(np.count_nonzero(truth)), int(np.count_nonzero(prediction))
    if n_truth == 0 and n_pred == 0:
        return 1.0
    if n_truth == 0 or n_pred == 0:
        return 0.0
    window = _window(truth, prediction)
    overlap = sitk.LabelOverlapMeasuresImageFilter()
    overlap.Execute(_mask_image(truth[window]), _mask_image(prediction[window]))
    return float(overlap.GetDiceCoefficient(1))


def hd95_mm(truth: np.ndarray, prediction: np.ndarray, spacing: Iterable[float]) -> float:
    """HD95 in mm of two boolean masks (z, y, x) with voxel ``spacing`` (x, y, z) mm; NaN if either is empty."""
    truth, prediction = _check_masks(truth, prediction)
    distances = surface_distances_mm(truth, prediction, spacing)
    if distances.size == 0:
        return math.nan
    return float(np.percentile(distances, HD95_PERCENTILE))


def surface_distances_mm(truth: np.ndarray, prediction: np.ndarray, spacing: Iterable[float]) -> np.ndarray:
    """The pooled symmetric surface distances (mm), shape (n_truth_surface + n_pred_surface,).

    Empty when either mask is empty. Only the bounding box of both masks (plus a one-voxel background
    border) is processed, so the cost follows the tumour, not the image size.
    """
    truth, prediction = _check_masks(truth, prediction)
    if not truth.any() or not prediction.any():
        return np.zeros(0)
    window = _window(truth, prediction)
    truth = np.pad(truth[window], 1)
    prediction = np.pad(prediction[window], 1)
    spacing = tuple(float(s) for s in spacing)
    truth_surface, pred_surface = _surface(truth), _surface(prediction)
    to_pred = _distance_to(pred_surface, spacing)[truth_surface]
    to_truth = _distance_to(truth_surface, spacing)[pred_surface]
    return np.concatenate([to_pred, to_truth])


def evaluate_case(
    truth: Volume,
    prediction: Volume,
    case: str = "",
    classes: Mapping[int, str] = TUMOUR_CLASSES,
) -> list[CaseMetrics]:
    """One :class:`CaseMetrics` per class (default GTVp, GTVn) for a truth and a predicted label volume.

    ``truth`` and ``prediction``: label volumes (integers; see :func:`~DualDINOv3Lib.evaluation.read_label`).
    The prediction is nearest-neighbour resampled onto the truth grid when the grids differ; volumes that do
    not overlap in space, and label values that are not background or one of ``classes``, raise DataError.
    """
    what = f"case {case}: " if case else ""
    for name, volume in (("truth", truth), ("prediction", prediction)):
        if volume.is_vector or volume.array.dtype.kind not in "uib":
            raise DataError(
                f"{what}the {name} must be an integer label volume (z, y, x), got {volume.array.dtype} "
                f"of shape {volume.array.shape}; read labels with DualDINOv3Lib.evaluation.read_label"
            )
        unknown = _unknown_values(volume.array, {0, *classes})
        if unknown:
            raise DataError(
                f"{what}the {name} holds label values {unknown} besides background 0 and the classes "
                f"{dict(classes)}; relabel it (HECKTOR: 1 GTVp, 2 GTVn)"
            )
    if not prediction.same_grid(truth):
        check_overlap(prediction, truth, ("prediction", "truth"))
        prediction = resample_to_grid(prediction, truth, interpolation="nearest", default_value=0)
    voxel_cm3 = float(np.prod(truth.spacing)) / 1000.0
    # everything below happens in the bounding box of both label maps (a tumour is a tiny part of a CT grid)
    occupied = np.maximum(truth.array, prediction.array)  # label values are >= 0, checked above
    window = _bounding_box(occupied) if occupied.any() else (slice(0, 0),) * 3
    truth_labels, pred_labels = truth.array[window], prediction.array[window]
    results = []
    for label, class_name in classes.items():
        t, p = truth_labels == label, pred_labels == label
        truth_cm3 = int(np.count_nonzero(t)) * voxel_cm3
        results.append(
            CaseMetrics(
                case=case,
                label=int(label),
                class_name=class_name,
                dice=dice_coefficient(t, p),
                hd95_mm=hd95_mm(t, p, truth.spacing),
                truth_cm3=truth_cm3,
                pred_cm3=int(np.count_nonzero(p)) * voxel_cm3,
                intersection_cm3=int(np.count_nonzero(t & p)) * voxel_cm3,
                stratum=stratum_of(truth_cm3),
                lesions=lesion_counts(t, p, voxel_cm3),
            )
        )
    return results


# --- helpers ---------------------------------------------------------------------------------------------


def _check_masks(truth: np.ndarray, prediction: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    truth, prediction = np.asarray(truth, dtype=bool), np.asarray(prediction, dtype=bool)
    if truth.ndim != 3 or truth.shape != prediction.shape:
        raise DataError(
            f"masks must be 3D (z, y, x) arrays of the same shape, got {truth.shape} and {prediction.shape}; "
            "resample the prediction onto the truth grid first"
        )
    return truth, prediction


def _unknown_values(array: np.ndarray, allowed: set[int]) -> list[int]:
    """The values of ``array`` not in ``allowed`` (min/max first: a full np.unique of a CT-sized grid is slow)."""
    low, high = int(array.min()), int(array.max())
    if low < min(allowed) or high > max(allowed):
        return sorted(set(np.unique(array).tolist()) - allowed)
    # inside the allowed range only gaps (e.g. classes {0, 2}) can hold unknown values
    return [v for v in range(low, high + 1) if v not in allowed and np.any(array == v)]


def _window(a: np.ndarray, b: np.ndarray) -> tuple[slice, ...]:
    """The bounding box (z, y, x slices) of the voxels set in either mask (at least one must be set)."""
    return _bounding_box(a | b)


def _bounding_box(array: np.ndarray) -> tuple[slice, ...]:
    """The bounding box (z, y, x slices) of the non-zero voxels of ``array`` (at least one must be non-zero)."""
    window = []
    for axis in range(3):
        hits = np.flatnonzero(array.any(axis=tuple(i for i in range(3) if i != axis)))
        window.append(slice(int(hits[0]), int(hits[-1]) + 1))
    return tuple(window)


def _mask_image(mask: np.ndarray) -> sitk.Image:
    return sitk.GetImageFromArray(mask.astype(np.uint8))


def _surface(mask: np.ndarray) -> np.ndarray:
    """Voxels of ``mask`` (padded with background on every side) with a face neighbour outside it."""
    interior = np.zeros_like(mask)
    centre = (slice(1, -1),) * 3
    inner = mask[centre].copy()
    for axis in range(3):
        for start, stop in ((0, -2), (2, None)):
            shifted = [slice(1, -1)] * 3
            shifted[axis] = slice(start, stop)
            inner &= mask[tuple(shifted)]
    interior[centre] = inner
    return mask & ~interior


def _distance_to(surface: np.ndarray, spacing: tuple[float, ...]) -> np.ndarray:
    """Distance (mm) of every voxel centre to the nearest voxel of ``surface``, array (z, y, x) float64."""
    image = _mask_image(surface)
    image.SetSpacing(spacing)
    signed = sitk.SignedMaurerDistanceMap(image, insideIsPositive=False, squaredDistance=False, useImageSpacing=True)
    # off the surface set: distance to its nearest voxel; on it 0 (every surface voxel has a face neighbour off
    # the set, so it lies on the rim Maurer measures to); the clamp only removes the sign convention
    return np.maximum(sitk.GetArrayFromImage(signed).astype(np.float64), 0.0)
