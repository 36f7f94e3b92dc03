"""Where a head-and-neck tumour can be, found from the CT alone: above the thorax and outside the skull.

A model trained for GTVp/GTVn sees only 2D slices. On scans that reach beyond the neck it can take hot
physiology elsewhere for tumour: the myocardium, kidneys and bladder below, the brain cortex and cerebellum
above. Two landmarks that are robust on any CT bound the region where head-and-neck GTVs lie:

- the **thorax**: the highest axial slice in which the air inside the body (the lungs, with the trachea) covers
  more than :data:`LUNG_AREA_CM2`. That is a little below the lung apices, about the level of the clavicles;
  cervical nodes (levels I-V, including the supraclavicular level IV/Vb) lie above it. A predicted region
  entirely more than :data:`THORAX_MARGIN_MM` below that slice is not a head-and-neck GTV;
- the **skull**: soft tissue enclosed by bone in an axial slice (a closed ring of bone above 250 HU around more
  than :data:`INTRACRANIAL_MIN_CM2` of tissue) is intracranial, the brain and the posterior fossa, and so are the
  smaller enclosed pockets that continue it into the skull base and the vertex (:data:`INTRACRANIAL_REACH_MM`). A
  predicted region mostly inside it is not a GTV either: nasopharyngeal tumours lie below the skull base, outside
  the ring.

Scans without lungs or skull in the field of view (a HECKTOR crop, a limb) give no bound on that side, and
non-axial scans give no thorax bound, so nothing is removed there. numpy and SimpleITK only.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import SimpleITK as sitk

from ..data.volume import Volume
from .body import body_mask

LUNG_AREA_CM2 = 30.0
"""Air inside the body in one axial slice above which the slice is in the thorax (both lungs well formed)."""
THORAX_MARGIN_MM = 10.0
"""Regions are kept unless they lie entirely this far below the first thorax slice."""
INTRACRANIAL_MIN_CM2 = 15.0
"""Smallest area of soft tissue enclosed by bone in one axial slice that counts as intracranial."""
INTRACRANIAL_LOW_CM2 = 2.0
"""Smallest enclosed area that continues the intracranial region downwards (see :data:`INTRACRANIAL_REACH_MM`)."""
INTRACRANIAL_REACH_MM = 20.0
"""Below the lowest slice with :data:`INTRACRANIAL_MIN_CM2` of brain, the skull base holds smaller pockets of brain
(the temporal poles in the middle cranial fossa, the cerebellar tonsils) that are as hot as any tumour; so does the
vertex above the highest such slice. Within this distance of those slices, soft tissue enclosed by bone (at least
:data:`INTRACRANIAL_LOW_CM2`) that touches the intracranial region of the neighbouring slice is intracranial too."""
INTRACRANIAL_FRACTION = 0.5
"""A region with more than this fraction of its voxels intracranial is removed."""
BONE_HU = 250.0
LUNG_AIR_HU = -400.0


@dataclass(frozen=True)
class HeadNeckRegion:
    """The bounds found on one CT (see the module docstring)."""

    slice_height_mm: np.ndarray | None
    """Physical height (mm, superior positive) of each axial slice, or None for non-axial scans."""
    thorax_top_mm: float | None
    """Height of the highest thorax slice, or None where no slice has lungs or the scan is not axial."""
    intracranial: np.ndarray
    """Boolean ``(Z, Y, X)``: soft tissue enclosed by the skull."""

    def rejected_components(self, components: np.ndarray) -> dict[int, str]:
        """``{component id: why}`` for the connected components (``(Z, Y, X)`` ids, 0 = background) that cannot be
        a head-and-neck GTV."""
        where = np.nonzero(components)
        ids = components[where]
        count = int(components.max()) + 1 if ids.size else 0
        if not count:
            return {}
        sizes = np.bincount(ids, minlength=count)
        inside_skull = np.bincount(components[self.intracranial], minlength=count)
        top = np.full(count, -np.inf)
        if self.slice_height_mm is not None:
            np.maximum.at(top, ids, self.slice_height_mm[where[0]])
        rejected = {}
        for i in np.unique(ids):
            below = -np.inf if self.thorax_top_mm is None else self.thorax_top_mm - float(top[i])
            if below > THORAX_MARGIN_MM:
                rejected[int(i)] = f"below the thorax ({below:.0f} mm below the top of the lungs' full width)"
            elif inside_skull[i] > INTRACRANIAL_FRACTION * sizes[i]:
                rejected[int(i)] = "inside the skull"
        return rejected


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.BinaryFillhole(sitk.GetImageFromArray(mask.astype(np.uint8)))).astype(bool)


def _slice_heights(ct: Volume) -> np.ndarray | None:
    """Superior height (mm) of each slice of ``ct`` (LPS: +z is superior), None unless the slices are axial."""
    direction = np.reshape(ct.direction, (3, 3))
    superior = direction[2, 2]  # z (world) component of the slice axis
    if abs(superior) < 0.9:
        return None
    return ct.origin[2] + np.arange(ct.shape[0]) * ct.spacing[2] * superior


def _enclosed(ct_slice: np.ndarray, pixel_cm2: float) -> tuple[np.ndarray, np.ndarray]:
    """Soft tissue enclosed by bone in one axial slice: its region ids (0 = none) and each id's area (cm2)."""
    bone = ct_slice > BONE_HU
    if bone.sum() * pixel_cm2 < 2.0:  # no skull in this slice
        return np.zeros(ct_slice.shape, dtype=np.int64), np.zeros(1)
    ring = sitk.BinaryMorphologicalClosing(sitk.GetImageFromArray(bone.astype(np.uint8)), [2, 2])
    enclosed = _fill_holes(sitk.GetArrayFromImage(ring).astype(bool)) & ~bone & (ct_slice > -100.0)
    ids = sitk.GetArrayFromImage(sitk.ConnectedComponent(sitk.GetImageFromArray(enclosed.astype(np.uint8))))
    return ids.astype(np.int64), np.bincount(ids.ravel()) * pixel_cm2


def _pocket_ids(areas: np.ndarray) -> np.ndarray:
    """The ids of enclosed regions too small for the cranial cavity but large enough to continue it."""
    small = np.flatnonzero((areas >= INTRACRANIAL_LOW_CM2) & (areas < INTRACRANIAL_MIN_CM2))
    return small[small > 0]


def _intracranial(ct: np.ndarray, pixel_cm2: float, heights: np.ndarray | None) -> np.ndarray:
    out = np.zeros(ct.shape, dtype=bool)
    pockets = np.zeros(ct.shape[0], dtype=bool)  # slices with small enclosed regions (found again when needed)
    for z in range(ct.shape[0]):
        ids, areas = _enclosed(ct[z], pixel_cm2)
        large = np.flatnonzero(areas >= INTRACRANIAL_MIN_CM2)
        out[z] = np.isin(ids, large[large > 0])
        pockets[z] = _pocket_ids(areas).size > 0
    if heights is None or not out.any():
        return out
    brain = out.any(axis=(1, 2))  # slices with a large enclosed region
    for order in (np.argsort(-heights), np.argsort(heights)):  # downwards from the brain, then upwards
        _continue_brain(out, ct, pixel_cm2, brain, pockets, heights, order)
    return out


def _continue_brain(out, ct, pixel_cm2, brain, pockets, heights, order) -> None:
    """Marks in ``out`` the small enclosed pockets of slices ``pockets`` that touch the intracranial region of the
    previous slice in ``order``, within :data:`INTRACRANIAL_REACH_MM` of the last slice with a large cranial cavity
    (``brain``)."""
    last_brain = None
    for previous, z in pairwise(order):
        if brain[previous]:
            last_brain = heights[previous]
        if brain[z] or not pockets[z] or last_brain is None or not out[previous].any():
            continue
        if abs(last_brain - heights[z]) > INTRACRANIAL_REACH_MM:
            continue
        ids, areas = _enclosed(ct[z], pixel_cm2)
        touching = np.intersect1d(np.unique(ids[out[previous]]), _pocket_ids(areas))
        out[z] |= np.isin(ids, touching)


def head_neck_region(ct: Volume) -> HeadNeckRegion:
    """The thorax level and the intracranial voxels of ``ct`` (HU)."""
    array = np.asarray(ct.array, dtype=np.float32)
    pixel_cm2 = ct.spacing[0] * ct.spacing[1] / 100.0
    heights = _slice_heights(ct)
    thorax_top = None
    if heights is not None:
        body = body_mask(array)
        lung_cm2 = np.array(
            [(_fill_holes(body[z]) & (array[z] < LUNG_AIR_HU)).sum() * pixel_cm2 for z in range(array.shape[0])]
        )
        thorax = np.flatnonzero(lung_cm2 > LUNG_AREA_CM2)
        thorax_top = float(heights[thorax].max()) if thorax.size else None
    return HeadNeckRegion(heights, thorax_top, _intracranial(array, pixel_cm2, heights))
