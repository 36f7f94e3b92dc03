"""Below the heart, for whole-body fields of view: abdomen, pelvis and thighs with the organs whose FDG
uptake a head-and-neck model must not take for tumour — liver, spleen, stomach, bowel, kidneys with urine in
the renal pelvis, the bladder full of excreted FDG — and the pelvic bones, femurs and the big muscles.
Nothing here is ever labelled: tumours are only placed in the head and neck."""

from __future__ import annotations

import numpy as np

from .anatomy import Anatomy
from .canvas import Canvas, Tissue, blob, ellipse, tube

TRUNK_TOP_BELOW_HEART_MM = 95.0
"""The trunk's organs start this far below the top of the heart (below the heart's apex)."""
THIGH_LENGTH_MM = 300.0


def trunk_top(an: Anatomy) -> float:
    return an.w_heart - TRUNK_TOP_BELOW_HEART_MM


def pelvis_floor(an: Anatomy) -> float:
    return an.w_heart - 540.0


def paint_trunk(canvas: Canvas, an: Anatomy, rng: np.random.Generator) -> None:
    """Replaces everything below :func:`trunk_top` with abdomen, pelvis and thighs."""
    top = trunk_top(an)
    block = canvas.block(w_range=(-np.inf, top))
    if block.empty:
        return
    canvas.tissue[block.index] = Tissue.AIR
    a, b = an.neck_a + 0.75 * an.shoulders, an.chest_b * rng.uniform(0.95, 1.15)
    floor = pelvis_floor(an)
    trunk = canvas.block(w_range=(floor, top))
    fat = an.fat * rng.uniform(1.5, 3.0)  # more subcutaneous fat on the trunk
    if not trunk.empty:
        canvas.paint(trunk, ellipse(trunk, 0.0, 5.0, a, b), Tissue.FAT)
        canvas.paint(trunk, ellipse(trunk, 0.0, 5.0, a - fat, b - fat), Tissue.SOFT)
    legs = canvas.block(w_range=(floor - THIGH_LENGTH_MM, floor))
    for side in (-1, 1):
        if not legs.empty:
            canvas.paint(legs, ellipse(legs, side * 0.5 * a, 5.0, 0.48 * a, 0.8 * b), Tissue.FAT)
            canvas.paint(legs, ellipse(legs, side * 0.5 * a, 5.0, 0.48 * a - fat, 0.8 * b - fat), Tissue.MUSCLE)
        head = (side * 0.5 * a, 5.0, floor + 40.0)
        tube(
            canvas,
            head,
            (side * 0.55 * a, 5.0, floor - THIGH_LENGTH_MM),
            14.0,
            Tissue.CORTICAL,
            (Tissue.MUSCLE, Tissue.SOFT),
        )
        tube(canvas, head, (side * 0.55 * a, 5.0, floor - THIGH_LENGTH_MM), 8.0, Tissue.CANCELLOUS, (Tissue.CORTICAL,))
        blob(canvas, head, (24.0, 24.0, 24.0), Tissue.CANCELLOUS, (Tissue.SOFT, Tissue.FAT, Tissue.MUSCLE))
        iliac = (side * 0.55 * a, 25.0, floor + 120.0)  # iliac wings: curved plates above the hip joints
        blob(canvas, iliac, (40.0, 12.0, 60.0), Tissue.CORTICAL, (Tissue.SOFT,))
        blob(canvas, iliac, (36.0, 8.0, 56.0), Tissue.CANCELLOUS, (Tissue.CORTICAL,))
        blob(canvas, (side * 35.0, 35.0, floor + 200.0), (18.0, 16.0, 110.0), Tissue.MUSCLE, (Tissue.SOFT,))  # psoas
        kidney = (side * 62.0, 55.0, top - 150.0 + rng.uniform(-15, 15))
        blob(canvas, kidney, (30.0, 26.0, 55.0), Tissue.KIDNEY, (Tissue.SOFT, Tissue.FAT))
        blob(canvas, kidney, (12.0, 10.0, 25.0), Tissue.URINE, (Tissue.KIDNEY,))
    blob(canvas, (-0.45 * a, -5.0, top - 50.0), (0.6 * a, 0.8 * b, 90.0), Tissue.LIVER, (Tissue.SOFT,))
    blob(canvas, (0.6 * a, 40.0, top - 60.0), (30.0, 40.0, 50.0), Tissue.SPLEEN, (Tissue.SOFT,))
    blob(canvas, (0.35 * a, -35.0, top - 40.0), (45.0, 35.0, 40.0), Tissue.BOWEL, (Tissue.SOFT,))  # stomach
    for _ in range(int(rng.integers(10, 25))):
        centre = (rng.uniform(-0.6, 0.6) * a, rng.uniform(-0.6, 0.3) * b, rng.uniform(floor + 60.0, top - 120.0))
        blob(canvas, centre, rng.uniform(10, 30, size=3), Tissue.BOWEL, (Tissue.SOFT, Tissue.FAT))
        if rng.random() < 0.4:
            blob(canvas, centre, rng.uniform(4, 10, size=3), Tissue.AIRWAY, (Tissue.BOWEL,))  # gas in the bowel
    fill = rng.uniform(0.5, 1.2)
    blob(
        canvas,
        (0.0, -30.0, floor + 45.0),
        (50.0 * fill, 38.0 * fill, 40.0 * fill),
        Tissue.URINE,
        (Tissue.SOFT, Tissue.FAT, Tissue.BOWEL),
    )
    tube(
        canvas,
        (16.0, float(an.spine_v(top)) - 14.0, top),
        (0.0, float(an.spine_v(top)) - 14.0, floor + 180.0),
        11.0,
        Tissue.BLOOD,
        (Tissue.SOFT, Tissue.FAT, Tissue.BOWEL),
    )
