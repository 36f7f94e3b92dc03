"""Clean-up of predicted label maps."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import numpy as np
import SimpleITK as sitk

from ..data.volume import Volume
from ..preprocessing.head_neck_region import head_neck_region

log = logging.getLogger(__name__)

URINE_HU = (-10.0, 10.0)
"""CT numbers of urine (water density). FDG is excreted into the urine: the bladder, renal pelvis and ureters are
among the hottest things on a PET, and on the CT their hot part is water. A tumour's hot part is viable soft
tissue (30-60 HU without contrast, more with it); its necrotic or cystic water-density core is cold. The upper
bound stays below 15 HU: on a real sarcoma PET/CT (IBSI STS_003) a hot, low-density part of the tumour read 15 HU,
and removing tumour is worse than leaving a bladder marked."""
EXCRETION_MIN_CM3 = 2.0
"""Smallest region checked for excreted tracer: in smaller ones the PET's blur over the fat around a small node
can bring its hot part's median CT number into the water range."""
HOT_FRACTION = 0.5
"""A region's hot part: its voxels at or above this fraction of its highest SUV."""


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


def remove_excreted_tracer(label: Volume, ct: Volume, pet: Volume) -> Volume:
    """``label`` without the connected regions (per label value, 26-connected) of at least
    :data:`EXCRETION_MIN_CM3` whose hot part (:data:`HOT_FRACTION` of their highest SUV) has a median CT number in
    :data:`URINE_HU`: tracer excreted into urine, not tumour. ``pet`` must be on ``ct``'s grid. Each removal is
    logged."""
    array = np.asarray(label.array)
    if not array.any():
        return label
    if not pet.same_grid(ct):
        raise ValueError("remove_excreted_tracer needs the PET on the CT's grid (resample_pet_to_ct)")
    array = np.array(array, copy=True)
    voxel_cm3 = float(np.prod(label.spacing)) / 1000.0
    min_voxels = int(np.ceil(EXCRETION_MIN_CM3 / voxel_cm3))
    hu, suv = np.asarray(ct.array), np.asarray(pet.array)
    for value, components in _components_per_label(array):
        sizes = np.bincount(components.ravel())
        for i in np.flatnonzero(sizes[1:] >= min_voxels) + 1:
            where = np.nonzero(components == i)
            uptake = suv[where]
            hot = uptake >= HOT_FRACTION * uptake.max()
            median_hu = float(np.median(hu[where][hot]))
            if URINE_HU[0] <= median_hu <= URINE_HU[1]:
                array[where] = 0
                log.info(
                    "removed a %.2f cm3 region of label %d: its hot part (SUV up to %.1f) is water on CT "
                    "(median %.0f HU), tracer excreted into urine",
                    sizes[i] * voxel_cm3,
                    value,
                    float(uptake.max()),
                    median_hu,
                )
    return label.with_array(array)


def clean_label(label: Volume, ct: Volume, pet: Volume, *, min_component_mm3: float, head_neck_only: bool) -> Volume:
    """The clean-up every segmentation gets: with ``head_neck_only``, regions outside the head and neck and
    regions of excreted tracer; then regions smaller than ``min_component_mm3``. ``pet`` on ``ct``'s grid."""
    if head_neck_only:
        label = remove_excreted_tracer(remove_outside_head_neck(label, ct), ct, pet)
    return remove_small_components(label, min_component_mm3)
