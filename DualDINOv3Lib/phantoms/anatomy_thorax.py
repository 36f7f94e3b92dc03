"""The upper thorax at the bottom of a head-and-neck field of view: lungs with their apices, ribs, clavicles,
sternum, humeral heads, the heart (myocardium around the blood pool) and the aortic arch."""

from __future__ import annotations

import numpy as np

from .anatomy import Anatomy
from .canvas import SOFT_OR_FAT, Canvas, Tissue, blob, ellipse, ellipsoid, tube


def paint_thorax(canvas: Canvas, an: Anatomy) -> None:
    """Lungs, ribs, clavicles, sternum and humeral heads, below the lung apices."""
    block = canvas.block(w_range=(-np.inf, an.w_lung_apex + 2.0))
    if block.empty:
        return
    width = an.neck_half_width(block.w) - an.fat - 6.0
    front, back = an.half_depths(block.w)
    chest = np.minimum(width, an.neck_a + 0.45 * an.shoulders)
    for side in (-1, 1):
        dome = np.clip((an.w_lung_apex - block.w) / 45.0, 0.0, 1.0) ** 0.5  # the apex narrows to a dome
        a, b = 0.32 * chest * dome + 1e-3, 0.72 * (front + back) / 2 * dome + 1e-3
        lung = ellipse(block, side * (0.42 * chest), 0.15 * (back - front) + 6.0, a, b)
        canvas.paint(block, lung, Tissue.LUNG, only=SOFT_OR_FAT)
    rib_level = np.mod(block.w, 24.0) < 8.0  # ribs cross each axial slice as arcs every ~2.4 cm
    ring = ellipse(block, 0.0, 0.1 * (back - front), 0.85 * chest + 6.0, 0.8 * (front + back) / 2 + 4.0)
    inside = ellipse(block, 0.0, 0.1 * (back - front), 0.85 * chest + 1.0, 0.8 * (front + back) / 2 - 1.0)
    canvas.paint(block, ring & ~inside & rib_level & (np.abs(block.u) > 20.0), Tissue.CORTICAL, only=SOFT_OR_FAT)
    for side in (-1, 1):
        sterno = (side * 14.0, -an.chest_b + 18.0, an.w_clavicle - 2.0)
        acromion = (side * (an.neck_a + 0.75 * an.shoulders), 8.0, an.w_clavicle + 8.0)
        tube(canvas, sterno, acromion, 6.0, Tissue.CORTICAL, (*SOFT_OR_FAT, Tissue.LUNG))
        tube(canvas, sterno, acromion, 3.5, Tissue.CANCELLOUS, (Tissue.CORTICAL,))
        head = (side * (an.neck_a + an.shoulders - 28.0), 10.0, an.w_clavicle - 18.0)
        blob(canvas, head, (24.0, 24.0, 26.0), Tissue.CORTICAL, SOFT_OR_FAT)
        blob(canvas, head, (20.0, 20.0, 22.0), Tissue.CANCELLOUS, (Tissue.CORTICAL,))
    sternum = canvas.block(w_range=(-np.inf, an.w_clavicle - 4.0), u_range=(-16, 16))
    if not sternum.empty:
        f, _ = an.half_depths(sternum.w)
        plate = (np.abs(sternum.u) <= 14.0) & (sternum.v >= -f + an.fat + 2.0) & (sternum.v <= -f + an.fat + 12.0)
        canvas.paint(sternum, plate, Tissue.CANCELLOUS, only=SOFT_OR_FAT)


def paint_heart(canvas: Canvas, an: Anatomy) -> None:
    """The heart below ``w_heart`` (myocardium around the blood pool) and the aortic arch above it: ascending
    aorta on the right, the arch, descending aorta left of the spine."""
    hu, hv = an.heart
    centre, axes = (hu, hv, an.w_heart - 42.0), (52.0, 44.0, 50.0)
    blob(canvas, centre, axes, Tissue.MYOCARDIUM, (*SOFT_OR_FAT, Tissue.LUNG))
    block = canvas.block(*[(c - r, c + r) for c, r in zip(centre, axes, strict=True)])
    if not block.empty:
        ventricle = ellipsoid(block, (hu + 8.0, hv - 4.0, centre[2] - 6.0), (30.0, 26.0, 34.0))
        atrium = ellipsoid(block, (hu - 14.0, hv + 10.0, centre[2] + 20.0), (26.0, 22.0, 20.0))
        canvas.paint(block, ventricle | atrium, Tissue.BLOOD, only=(Tissue.MYOCARDIUM,))
    w_arch = an.w_heart + 22.0
    v_desc = float(an.spine_v(w_arch)) - 14.0
    ascending, descending = (-8.0, hv + 10.0), (16.0, v_desc)
    tube(canvas, (*ascending, an.w_heart - 20.0), (*ascending, w_arch), 14.0, Tissue.BLOOD, (*SOFT_OR_FAT, Tissue.LUNG))
    tube(canvas, (*ascending, w_arch), (*descending, w_arch), 12.0, Tissue.BLOOD, (*SOFT_OR_FAT, Tissue.LUNG))
    tube(canvas, (*descending, w_arch), (*descending, -200.0), 11.0, Tissue.BLOOD, (*SOFT_OR_FAT, Tissue.LUNG))
