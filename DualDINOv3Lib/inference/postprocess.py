"""Clean-up of predicted label maps."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import numpy as np
import SimpleITK as sitk

from ..data.volume import Volume
from ..preprocessing.head_neck_region import head_neck_region

log = logging.getLogger(__name__)


def _components_per_label(array: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
    """``(label value, component ids)`` for every non-zero value of ``array``: its 26-connected regions."""
    for value in np.unique(array):
        if value != 0:
            mask = sitk.GetImageFromArray((array == value).astype(np.uint8))
            yield int(value), sitk.GetArrayFromImage(sitk.ConnectedComponent(mask, True))


def remove_small_components(label: Volume, min_volume_mm3: float) -> Volume:
    """``label`` with every connected region (per label value, 26-connected) smaller than ``min_volume_mm3``
    set to background (0). Returns ``label`` itself when ``min_volume_mm3 <= 0``."""
    if min_volume_mm3 <= 0:
        return label
    voxel_mm3 = float(np.prod(label.spacing))
    min_voxels = int(np.ceil(min_volume_mm3 / voxel_mm3))
    array = np.array(label.array, copy=True)
    for _, components in _components_per_label(array):
        small = np.flatnonzero(np.bincount(components.ravel()) < min_voxels)
        small = small[small > 0]
        if small.size:
            array[np.isin(components, small)] = 0
    return label.with_array(array)


def remove_outside_head_neck(label: Volume, ct: Volume) -> Volume:
    """``label`` without the connected regions (per label value, 26-connected) that lie where no head-and-neck
    GTV can be: entirely below the thorax level or mostly inside the skull, as found on ``ct``
    (:mod:`DualDINOv3Lib.preprocessing.head_neck_region`). Each removal is logged with its reason."""
    array = np.asarray(label.array)
    if not array.any():
        return label
    region = head_neck_region(ct)
    array = np.array(array, copy=True)
    voxel_cm3 = float(np.prod(label.spacing)) / 1000.0
    for value, components in _components_per_label(array):
        rejected = region.rejected_components(components)
        if rejected:
            sizes = np.bincount(components.ravel())
            array[np.isin(components, list(rejected))] = 0
            for i, why in rejected.items():
                log.info("removed a %.2f cm3 region of label %d: %s", sizes[i] * voxel_cm3, value, why)
    return label.with_array(array)


def clean_label(label: Volume, ct: Volume, *, min_component_mm3: float, head_neck_only: bool) -> Volume:
    """The clean-up every segmentation gets: regions outside the head and neck (``head_neck_only``), then regions
    smaller than ``min_component_mm3``."""
    if head_neck_only:
        label = remove_outside_head_neck(label, ct)
    return remove_small_components(label, min_component_mm3)
