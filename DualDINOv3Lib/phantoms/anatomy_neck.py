"""The neck of the phantoms: larynx (thyroid and cricoid cartilage, hyoid, vocal cords), thyroid gland,
carotid arteries and jugular veins, the sternocleidomastoid and paraspinal muscles with fat planes around
them, and the brown-fat depots (supraclavicular, cervical) that take up FDG in some patients."""

from __future__ import annotations

import numpy as np

from .anatomy import SPINE_BELOW_HEART_MM, Anatomy
from .canvas import SOFT_OR_FAT, Canvas, Tissue, blob, ellipse, tube


def paint_larynx(canvas: Canvas, an: Anatomy) -> None:
    """Thyroid cartilage (a shield in front of the larynx), cricoid ring, hyoid arch, and the vocal cords: two
    muscular folds narrowing the airway to the glottic slit."""
    shield = canvas.block(w_range=(an.w_cords - 8.0, an.w_hyoid - 4.0), u_range=(-30, 30))
    if not shield.empty:
        va = an.airway_v(shield.w)
        ring = ellipse(shield, 0.0, va + 2.0, 21.0, 17.0) & ~ellipse(shield, 0.0, va + 2.0, 18.5, 14.5)
        canvas.paint(shield, ring & (shield.v <= va + 6.0), Tissue.CARTILAGE, only=SOFT_OR_FAT)
    cricoid = canvas.block(w_range=(an.w_larynx, an.w_larynx + 9.0), u_range=(-20, 20))
    if not cricoid.empty:
        va = an.airway_v(cricoid.w)
        ring = ellipse(cricoid, 0.0, va, an.trachea_r + 4.0, an.trachea_r + 3.5) & ~ellipse(
            cricoid, 0.0, va, an.trachea_r + 1.5, an.trachea_r + 1.0
        )
        canvas.paint(cricoid, ring, Tissue.CARTILAGE, only=SOFT_OR_FAT)
    hyoid = canvas.block(w_range=(an.w_hyoid - 2.0, an.w_hyoid + 2.0), u_range=(-26, 26))
    if not hyoid.empty:
        vh = float(an.airway_v(an.w_hyoid)) - 6.0
        arch = ellipse(hyoid, 0.0, vh, 22.0, 16.0) & ~ellipse(hyoid, 0.0, vh, 19.0, 13.0) & (hyoid.v <= vh + 4.0)
        canvas.paint(hyoid, arch, Tissue.CORTICAL, only=SOFT_OR_FAT)
    cords = canvas.block(w_range=(an.w_cords - 3.0, an.w_cords + 3.0), u_range=(-15, 15))
    if not cords.empty:
        va = an.airway_v(cords.w)
        folds = ellipse(cords, 0.0, va, 13.0, 9.0) & (np.abs(cords.u) >= 1.5)
        canvas.paint(cords, folds, Tissue.VOCAL_CORDS, only=(Tissue.AIRWAY, Tissue.SOFT))


def paint_thyroid(canvas: Canvas, an: Anatomy, rng: np.random.Generator) -> None:
    """Two lobes beside the trachea below the larynx, joined by the isthmus in front of it."""
    size = rng.uniform(0.8, 1.3)
    va = float(an.airway_v(an.w_thyroid))
    for side in (-1, 1):
        centre = (side * (an.trachea_r + 9.0), va - 1.0, an.w_thyroid)
        blob(canvas, centre, (7.0 * size, 9.0 * size, 20.0 * size), Tissue.THYROID, SOFT_OR_FAT)
    blob(canvas, (0.0, va - an.trachea_r - 5.0, an.w_thyroid - 6.0), (12.0, 3.5, 6.0), Tissue.THYROID, SOFT_OR_FAT)


def paint_vessels(canvas: Canvas, an: Anatomy, rng: np.random.Generator) -> None:
    """Common and internal carotid arteries beside the airway, internal jugular veins lateral to them, from
    the thoracic inlet to the skull base."""
    for side in (-1, 1):
        u_carotid = side * (an.trachea_r + rng.uniform(13, 17))
        u_jugular = u_carotid + side * rng.uniform(9, 13)
        low, high = an.w_clavicle - 15.0, an.w_skull - 2.0
        v_low, v_high = float(an.airway_v(low)) + 6.0, float(an.airway_v(high)) + 14.0
        tube(
            canvas,
            (u_carotid, v_low, low),
            (u_carotid * 1.2, v_high, high),
            rng.uniform(3.5, 4.5),
            Tissue.VESSEL,
            SOFT_OR_FAT,
        )
        tube(
            canvas,
            (u_jugular, v_low + 4.0, low),
            (u_jugular * 1.1, v_high + 4.0, high),
            rng.uniform(4.5, 8.0),
            Tissue.VESSEL,
            SOFT_OR_FAT,
        )


def paint_muscles(canvas: Canvas, an: Anatomy) -> None:
    """Sternocleidomastoid (mastoid to sternum, wrapped in a fat plane) and the paraspinal muscles behind the
    spine."""
    for side in (-1, 1):
        mastoid = (side * (an.face_a - 14.0), 0.45 * an.neck_b, an.w_skull - 6.0)
        sternum = (side * 18.0, -an.neck_b + 12.0, an.w_clavicle + 4.0)
        tube(canvas, mastoid, sternum, 10.0, Tissue.FAT, (Tissue.SOFT,))
        tube(canvas, mastoid, sternum, 7.5, Tissue.MUSCLE, SOFT_OR_FAT)
    block = canvas.block(w_range=(an.w_heart - SPINE_BELOW_HEART_MM, an.w_skull - 4.0), u_range=(-45, 45))
    if block.empty:
        return
    v_back = an.spine_v(block.w) + an.vertebra[1] + 2.0 * an.canal_r + 22.0
    for side in (-1, 1):
        fat = ellipse(block, side * 19.0, v_back, 17.0, 15.0)
        muscle = ellipse(block, side * 19.0, v_back, 15.0, 13.0)
        canvas.paint(block, fat, Tissue.FAT, only=(Tissue.SOFT,))
        canvas.paint(block, muscle, Tissue.MUSCLE, only=SOFT_OR_FAT)


def paint_brown_fat(canvas: Canvas, an: Anatomy, rng: np.random.Generator) -> None:
    """Supraclavicular and lower-cervical fat depots: fat in the CT; whether they take up FDG is decided per
    patient by the PET (cold exposure, young patients)."""
    for side in (-1, 1):
        centre = (side * (an.neck_a * rng.uniform(0.55, 0.75)), rng.uniform(-5, 15), an.w_clavicle + rng.uniform(8, 20))
        axes = (rng.uniform(12, 22), rng.uniform(14, 24), rng.uniform(15, 28))
        blob(canvas, centre, axes, Tissue.BROWN_FAT, (Tissue.SOFT, Tissue.FAT, Tissue.MUSCLE))
        upper = (side * (an.neck_a - an.fat - 12.0), 0.35 * an.neck_b, an.w_larynx + rng.uniform(0, 25))
        blob(canvas, upper, (9.0, 11.0, rng.uniform(10, 20)), Tissue.BROWN_FAT, (Tissue.FAT,))
