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
BROWN_FAT_HU = (-200.0, -20.0)
"""CT numbers of fat, active brown fat included (about -100 to -40 HU; the upper bound leaves room for CT noise)."""
BROWN_FAT_SHARE = 0.7
"""A region is brown fat when at least this share of its hot part is fat on CT. Cold-exposed brown fat in the
supraclavicular and cervical depots takes up FDG as avidly as a node, and a 2D model calls it GTVn; on the CT its
hot part is fat. A node's or tumour's hot part is soft tissue: on held-out phantoms, even with the truth grown by
two voxels into the fat around it, at most 54 % of the hot part was fat; on the real IBSI sarcomas at most 15 %."""
MIN_TUMOUR_SUV = 1.5
"""Lowest highest-SUV of a region kept as tumour. A GTV on FDG PET/CT takes up FDG: its hottest voxel is above
resting muscle (SUV about 0.6-1.1) and the blood pool (about 1.5-2). A 2D model can still call a cold region a node
where its outline looks like one: on a real sarcoma scan (IBSI STS_019), 10 cm3 of thigh muscle cut by the field of
view, highest SUV 1.3-1.7. On held-out phantoms every predicted region that touched a tumour had an SUVmax of at
least 2; about 5 % of the phantoms' nodes have an SUVmax below 1.5 (small faint nodes after the PET blur)."""
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


def _regions(components: np.ndarray) -> Iterator[np.ndarray]:
    """The flat voxel indices of each non-zero component id of ``components``, grouped in one sort (not one pass
    over the volume per region)."""
    flat = components.ravel()
    voxels = np.flatnonzero(flat)
    ids = flat[voxels]
    order = np.argsort(ids, kind="stable")
    voxels, ids = voxels[order], ids[order]
    yield from np.split(voxels, np.flatnonzero(ids[1:] != ids[:-1]) + 1) if ids.size else ()


def _no_uptake(size_cm3: float, hot_hu: np.ndarray, suv_max: float) -> str | None:
    """Why a region takes up no FDG (see :data:`MIN_TUMOUR_SUV`), or None."""
    if suv_max >= MIN_TUMOUR_SUV:
        return None
    return f"its highest SUV is {suv_max:.2f}, below {MIN_TUMOUR_SUV}: no FDG uptake above muscle and blood"


def _excreted_tracer(size_cm3: float, hot_hu: np.ndarray, suv_max: float) -> str | None:
    """Why a region is tracer excreted into urine (see :func:`remove_excreted_tracer`), or None."""
    if size_cm3 < EXCRETION_MIN_CM3:
        return None
    median_hu = float(np.median(hot_hu))
    if not URINE_HU[0] <= median_hu <= URINE_HU[1]:
        return None
    return (
        f"its hot part (SUV up to {suv_max:.1f}) is water on CT (median {median_hu:.0f} HU), tracer excreted into urine"
    )


def _brown_fat(size_cm3: float, hot_hu: np.ndarray, suv_max: float) -> str | None:
    """Why a region is brown fat (see :func:`remove_brown_fat`), or None."""
    share = float(np.mean((hot_hu >= BROWN_FAT_HU[0]) & (hot_hu <= BROWN_FAT_HU[1])))
    if share < BROWN_FAT_SHARE:
        return None
    return f"{100 * share:.0f} % of its hot part (SUV up to {suv_max:.1f}) is fat on CT, brown fat uptake"


def _remove_physiology(label: Volume, ct: Volume, pet: Volume, rules, caller: str) -> Volume:
    """``label`` without the connected regions (per label value, 26-connected) that one of ``rules`` (functions of
    the region's cm3, its hot part's CT numbers and its highest SUV, returning why or None) calls physiology, cold
    or hot. The hot part: :data:`HOT_FRACTION` of the region's highest SUV. ``pet`` must be on ``ct``'s grid."""
    if not np.any(label.array):
        return label
    if not pet.same_grid(ct):
        raise ValueError(f"{caller} needs the PET on the CT's grid (resample_pet_to_ct)")
    array = np.array(label.array, copy=True)
    voxel_cm3 = float(np.prod(label.spacing)) / 1000.0
    flat, hu, suv = array.reshape(-1), np.asarray(ct.array).reshape(-1), np.asarray(pet.array).reshape(-1)
    for value, components in _components_per_label(array):
        for voxels in _regions(components):
            uptake = suv[voxels]
            suv_max = float(uptake.max())
            hot_hu = hu[voxels][uptake >= HOT_FRACTION * suv_max]
            why = next((w for rule in rules if (w := rule(voxels.size * voxel_cm3, hot_hu, suv_max))), None)
            if why:
                flat[voxels] = 0
                log.info("removed a %.2f cm3 region of label %d: %s", voxels.size * voxel_cm3, value, why)
    return label.with_array(array)


def remove_without_uptake(label: Volume, ct: Volume, pet: Volume) -> Volume:
    """``label`` without the connected regions (per label value, 26-connected) whose highest SUV is below
    :data:`MIN_TUMOUR_SUV`: no FDG uptake, not a tumour seen on PET. ``pet`` must be on ``ct``'s grid. Each removal
    is logged."""
    return _remove_physiology(label, ct, pet, (_no_uptake,), "remove_without_uptake")


def remove_excreted_tracer(label: Volume, ct: Volume, pet: Volume) -> Volume:
    """``label`` without the connected regions (per label value, 26-connected) of at least
    :data:`EXCRETION_MIN_CM3` whose hot part (:data:`HOT_FRACTION` of their highest SUV) has a median CT number in
    :data:`URINE_HU`: tracer excreted into urine, not tumour. ``pet`` must be on ``ct``'s grid. Each removal is
    logged."""
    return _remove_physiology(label, ct, pet, (_excreted_tracer,), "remove_excreted_tracer")


def remove_brown_fat(label: Volume, ct: Volume, pet: Volume) -> Volume:
    """``label`` without the connected regions (per label value, 26-connected) whose hot part (:data:`HOT_FRACTION`
    of their highest SUV) is at least :data:`BROWN_FAT_SHARE` fat on CT (:data:`BROWN_FAT_HU`): FDG uptake of
    activated brown fat, not tumour. ``pet`` must be on ``ct``'s grid. Each removal is logged."""
    return _remove_physiology(label, ct, pet, (_brown_fat,), "remove_brown_fat")


def _warn_if_no_uptake_anywhere(label: Volume, pet: Volume) -> None:
    """A warning when the whole PET stays below :data:`MIN_TUMOUR_SUV` while something was predicted: then every
    region is removed as without uptake, and the cause is almost always the PET's scaling, not the patient."""
    if not np.any(label.array):
        return
    highest = float(np.max(pet.array))
    if highest < MIN_TUMOUR_SUV:
        log.warning(
            "the PET's highest value is %.3g, below SUV %.1f everywhere: an FDG PET in SUV has far more uptake "
            "(brain, tumour, bladder), so every predicted region is removed as without uptake. Check that the PET is "
            "in SUV (not normalised to 0..1 or rescaled); to keep the regions anyway, turn off the head-and-neck "
            "clean-up (--keep-outside-head-neck, head_neck_only=False)",
            highest,
            MIN_TUMOUR_SUV,
        )


def clean_label(label: Volume, ct: Volume, pet: Volume, *, min_component_mm3: float, head_neck_only: bool) -> Volume:
    """The clean-up every segmentation gets: with ``head_neck_only``, regions outside the head and neck, regions
    without FDG uptake, of excreted tracer and of brown fat; then regions smaller than ``min_component_mm3``.
    ``pet`` on ``ct``'s grid."""
    if head_neck_only:
        label = remove_outside_head_neck(label, ct)
        _warn_if_no_uptake_anywhere(label, pet)
        rules = (_no_uptake, _excreted_tracer, _brown_fat)
        label = _remove_physiology(label, ct, pet, rules, "clean_label")
    return remove_small_components(label, min_component_mm3)
