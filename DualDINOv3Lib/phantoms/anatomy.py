"""Head-and-neck anatomy of the synthetic PET/CT phantoms: a tissue-class map on the CT grid.

Every voxel of the CT grid gets one :class:`~.canvas.Tissue`; the CT (HU) and the PET activity (SUV) are then
looked up per tissue (see :mod:`.phantom`), so both modalities show exactly the same anatomy. The patient
frame (``u``, ``v``, ``w`` in mm) is described in :mod:`.canvas`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .canvas import Canvas, Grid, Tissue, ellipse, ellipsoid, sigmoid


@dataclass(frozen=True)
class Anatomy:
    """One patient's drawn anatomy (all lengths in mm, patient frame; see the module docstring)."""

    height: float  # w of the last slice
    w_skull: float  # skull base
    w_mandible: float  # inferior border of the mandible
    w_oropharynx: float  # centre of the oropharynx (level of the tonsils and tongue base)
    w_larynx: float  # top of the larynx; below it the airway is the larynx/trachea
    neck_a: float  # neck half-width (lateral)
    neck_b: float  # neck half-depth (antero-posterior)
    shoulders: float  # extra half-width reached at the bottom slice
    face_a: float
    face_front: float  # distance from the centre to the anterior skin at face level
    face_back: float
    fat: float  # subcutaneous fat thickness
    outline: tuple[tuple[int, float, float], ...]  # (harmonic, relative amplitude, phase) of the body outline
    v_spine: float  # vertebral body centre at the neck's mid-height
    lordosis: float  # anterior bow of the cervical spine
    vertebra: tuple[float, float]  # vertebral body half-width, half-depth
    vertebra_period: float  # vertebra + disc height
    disc: float
    disc_phase: float
    canal_r: float
    airway_gap: float  # from the vertebral body centre to the airway centre (anterior)
    trachea_r: float
    oropharynx: tuple[float, float]  # airway half-width, half-depth at the oropharynx
    mandible: tuple[float, float, float]  # arch half-width, half-depth, v of the arch centre
    mandible_height: float
    brain: tuple[float, float, float]  # brain half-axes (u, v, w)
    brain_centre: tuple[float, float]  # (v, w)
    skull: float
    scalp: float

    def spine_v(self, w):
        """v of the vertebral body centre at height ``w`` (cervical lordosis: bowed anteriorly)."""
        t = np.clip(np.asarray(w) / max(self.w_skull, 1.0), 0.0, 1.0)
        return self.v_spine - self.lordosis * (np.sin(np.pi * t) - 0.5)

    def airway_v(self, w):
        return self.spine_v(w) - self.airway_gap

    def neck_half_width(self, w):
        """Lateral half-width (mm) of the neck/face outline at height ``w`` (before the outline harmonics)."""
        w = np.asarray(w, dtype=np.float64)
        face = sigmoid((w - (self.w_mandible - 4.0)) / 4.0)
        shoulders = self.shoulders * sigmoid((0.12 * self.height - w) / 6.0)
        return self.neck_a + (self.face_a - self.neck_a) * face + shoulders


def draw_anatomy(rng: np.random.Generator, grid: Grid) -> tuple[Anatomy, float, float]:
    """A random plausible anatomy for ``grid`` and the body centre (cx, cy) in mm that fits it in the FOV."""
    height = (grid.shape[0] - 1) * grid.spacing[2]
    neck_a, neck_b = rng.uniform(50, 58), rng.uniform(48, 56)
    v_spine = rng.uniform(-2, 4)
    airway_gap = rng.uniform(21, 26)
    mand_a, mand_b = rng.uniform(40, 46), rng.uniform(44, 50)
    v_mand = v_spine - airway_gap + rng.uniform(-1, 5)
    brain = (rng.uniform(58, 65), rng.uniform(70, 78), rng.uniform(55, 65))
    skull, scalp = rng.uniform(5, 7), rng.uniform(4, 6)
    w_skull = height * rng.uniform(0.74, 0.79)
    w_mandible = height * rng.uniform(0.33, 0.38)
    anatomy = Anatomy(
        height=height,
        w_skull=w_skull,
        w_mandible=w_mandible,
        w_oropharynx=w_mandible + rng.uniform(4, 12),
        w_larynx=height * rng.uniform(0.18, 0.24),
        neck_a=neck_a,
        neck_b=neck_b,
        shoulders=rng.uniform(10, 22),
        face_a=neck_a + rng.uniform(6, 12),
        face_front=-(v_mand - mand_b) + rng.uniform(8, 12),
        face_back=neck_b + rng.uniform(0, 6),
        fat=rng.uniform(4, 9),
        outline=tuple((k, rng.uniform(0.01, 0.035), rng.uniform(0, 2 * np.pi)) for k in (2, 3, 4)),
        v_spine=v_spine,
        lordosis=rng.uniform(3, 7),
        vertebra=(rng.uniform(9, 11), rng.uniform(7.5, 9)),
        vertebra_period=rng.uniform(17, 21),
        disc=rng.uniform(4, 6),
        disc_phase=rng.uniform(0, 21),
        canal_r=rng.uniform(6.5, 8),
        airway_gap=airway_gap,
        trachea_r=rng.uniform(7, 9),
        oropharynx=(rng.uniform(9, 13), rng.uniform(5, 8)),
        mandible=(mand_a, mand_b, v_mand),
        mandible_height=rng.uniform(24, 30),
        brain=brain,
        brain_centre=(rng.uniform(2, 10), w_skull + brain[2] - rng.uniform(0, 4)),
        skull=skull,
        scalp=scalp,
    )
    # centre the body's antero-posterior extent in the field of view, then shift it a little at random
    head = brain[1] + skull + scalp
    front = max(anatomy.face_front, head - anatomy.brain_centre[0])
    back = max(anatomy.face_back, head + anatomy.brain_centre[0])
    x, y, _ = grid.axes()
    slack_y = max(0.0, (y[-1] - y[0]) / 2 - (front + back) / 2 - 4.0)
    slack_x = max(0.0, (x[-1] - x[0]) / 2 - max(brain[0] + skull + scalp, anatomy.neck_a + anatomy.shoulders) - 4.0)
    cx = (x[0] + x[-1]) / 2 + rng.uniform(-1, 1) * min(slack_x, 8.0)
    cy = (y[0] + y[-1]) / 2 + (front - back) / 2 + rng.uniform(-1, 1) * min(slack_y, 6.0)
    return anatomy, float(cx), float(cy)


def paint_anatomy(canvas: Canvas, anatomy: Anatomy, rng: np.random.Generator) -> None:
    """Paints body, fat, muscle, airway, glands, spine, mandible and head into ``canvas.tissue`` (in place)."""
    _paint_body(canvas, anatomy)
    _paint_soft_organs(canvas, anatomy, rng)
    _paint_airway(canvas, anatomy)
    _paint_spine(canvas, anatomy)
    _paint_mandible(canvas, anatomy)
    _paint_head(canvas, anatomy)


def _paint_body(canvas: Canvas, an: Anatomy) -> None:
    """Neck and face: an elliptic cylinder whose axes vary along z (wider shoulders at the bottom, the face
    reaching forward above the mandible) with a wavy outline; subcutaneous fat under the skin."""
    block = canvas.block()
    w = block.w
    face = sigmoid((w - (an.w_mandible - 4.0)) / 4.0)
    a = an.neck_half_width(w)
    b_front = an.neck_b + (an.face_front - an.neck_b) * face
    b_back = an.neck_b + (an.face_back - an.neck_b) * face
    b = np.where(block.v < 0, b_front, b_back)  # (Z, Y, 1)
    theta = np.arctan2(block.v, block.u)  # (1, Y, X)
    radius = 1.0 + sum(amp * np.cos(k * theta + phase) for k, amp, phase in an.outline)
    r2 = (radius**2).astype(np.float32)
    u2, v2 = (block.u**2).astype(np.float32), (block.v**2).astype(np.float32)
    body = u2 / (a**2) + v2 / (b**2) <= r2
    inner = u2 / ((a - an.fat) ** 2) + v2 / ((b - an.fat) ** 2) <= r2
    head_axes = np.add(an.brain, an.skull + an.scalp)
    head_block = canvas.block(w_range=(an.brain_centre[1] - head_axes[2], np.inf))
    head_centre = (0.0, *an.brain_centre)
    canvas.paint(block, body, Tissue.FAT)
    canvas.paint(head_block, ellipsoid(head_block, head_centre, head_axes), Tissue.FAT)
    canvas.paint(block, inner, Tissue.SOFT)
    canvas.paint(head_block, ellipsoid(head_block, head_centre, head_axes - 2.5), Tissue.SOFT)
    # fat between the neck muscles: the posterior cervical triangles, below the mandible
    low = canvas.block(w_range=(0, an.w_mandible))
    for side in (-1, 1):
        a_low = an.neck_half_width(low.w)
        fat = ellipse(low, side * (a_low - an.fat - 12.0), 0.35 * an.neck_b, 9.0, 11.0)
        canvas.paint(low, fat, Tissue.FAT, only=(Tissue.SOFT,))


def _paint_soft_organs(canvas: Canvas, an: Anatomy, rng: np.random.Generator) -> None:
    """Palatine tonsils beside the oropharynx, parotid glands behind the mandible's ramus, submandibular
    glands under the mandible's body (all bilateral)."""
    mand_a, _, v_mand = an.mandible
    w_oro = an.w_oropharynx
    v_air = float(an.airway_v(w_oro))
    organs = (
        (Tissue.TONSIL, an.oropharynx[0] + 5.0, v_air, w_oro + 4.0, (6.0, 8.0, 11.0)),
        (Tissue.PAROTID, mand_a + 7.0, v_mand + 20.0, an.w_mandible + 32.0, (9.0, 14.0, 18.0)),
        (Tissue.SUBMANDIBULAR, mand_a - 13.0, v_mand - 14.0, an.w_mandible - 4.0, (9.0, 10.0, 9.0)),
    )
    for tissue, u, v, w, axes in organs:
        axes = np.asarray(axes) * rng.uniform(0.85, 1.15, size=3)
        for side in (-1, 1):
            centre = (side * u + rng.uniform(-2, 2), v + rng.uniform(-2, 2), w + rng.uniform(-3, 3))
            block = canvas.block(*[(c - r, c + r) for c, r in zip(centre, axes, strict=True)])
            canvas.paint(block, ellipsoid(block, centre, axes), tissue, only=(Tissue.SOFT, Tissue.FAT))


def _paint_airway(canvas: Canvas, an: Anatomy) -> None:
    """Trachea/larynx (round) up to the larynx, the wider oropharynx and nasopharynx above it, up to the
    skull base; the maxillary sinuses beside the nasal cavity."""
    top = an.w_skull - 6.0
    block = canvas.block(w_range=(0, top), u_range=(-25, 25), v_range=(-60, 30))
    w = block.w
    oro = sigmoid((w - an.w_larynx) / 5.0)
    a = an.trachea_r + (an.oropharynx[0] - an.trachea_r) * oro
    b = an.trachea_r * 0.85 + (an.oropharynx[1] - an.trachea_r * 0.85) * oro
    canvas.paint(block, ellipse(block, 0.0, an.airway_v(w), a, b), Tissue.AIRWAY, only=(Tissue.SOFT,))
    v_sinus = float(an.airway_v(an.w_skull)) - 30.0
    w_sinus = an.w_skull - 12.0
    for side in (-1, 1):
        centre, axes = (side * 24.0, v_sinus, w_sinus), (11.0, 13.0, 14.0)
        block = canvas.block(*[(c - r, c + r) for c, r in zip(centre, axes, strict=True)])
        canvas.paint(block, ellipsoid(block, centre, axes), Tissue.AIRWAY, only=(Tissue.SOFT, Tissue.FAT))


def _paint_spine(canvas: Canvas, an: Anatomy) -> None:
    """Cervical vertebrae up to the skull base: body (cortical rim, cancellous core), discs between the
    bodies, spinal canal, and the arch with spinous and transverse processes."""
    block = canvas.block(w_range=(0, an.w_skull), u_range=(-35, 35))
    w = block.w
    vs = an.spine_v(w)
    va, vb = an.vertebra
    in_disc = np.mod(w - an.disc_phase, an.vertebra_period) < an.disc  # (Z, 1, 1)
    body = ellipse(block, 0.0, vs, va, vb)
    core = ellipse(block, 0.0, vs, va - 1.8, vb - 1.8)
    canal_v = vs + vb + an.canal_r + 1.0
    canal = ellipse(block, 0.0, canal_v, an.canal_r, an.canal_r)
    arch = ellipse(block, 0.0, canal_v, an.canal_r + 3.5, an.canal_r + 3.5) & ~canal
    dv = block.v - canal_v
    spinous = (np.abs(block.u) <= 3.0) & (dv >= an.canal_r) & (dv <= an.canal_r + 24.0)
    transverse = (np.abs(block.u) <= an.canal_r + 16.0) & (np.abs(block.v - (vs + vb)) <= 2.5)
    bone_level = ~in_disc
    canvas.paint(block, arch | spinous, Tissue.CORTICAL)  # the arch overlaps the disc levels (facet joints)
    canvas.paint(block, (transverse | body) & bone_level, Tissue.CORTICAL)
    canvas.paint(block, core & bone_level, Tissue.CANCELLOUS)
    canvas.paint(block, body & in_disc, Tissue.DISC)
    canvas.paint(block, canal, Tissue.CORD)


def _paint_mandible(canvas: Canvas, an: Anatomy) -> None:
    """The mandible's body (an anterior horseshoe, 10 mm thick) and its two rami rising towards the skull base."""
    mand_a, mand_b, v_mand = an.mandible
    w0, w1 = an.w_mandible, an.w_mandible + an.mandible_height
    block = canvas.block(w_range=(w0, w1))
    outer = ellipse(block, 0.0, v_mand, mand_a, mand_b)
    inner = ellipse(block, 0.0, v_mand, mand_a - 10.0, mand_b - 10.0)
    core_out = ellipse(block, 0.0, v_mand, mand_a - 2.0, mand_b - 2.0)
    core_in = ellipse(block, 0.0, v_mand, mand_a - 8.0, mand_b - 8.0)
    front = block.v <= v_mand + 6.0
    canvas.paint(block, outer & ~inner & front, Tissue.CORTICAL)
    canvas.paint(block, core_out & ~core_in & front, Tissue.CANCELLOUS)
    ramus = canvas.block(w_range=(w0 + 4.0, an.w_skull - 4.0))
    for side in (-1, 1):
        u0 = side * (mand_a - 4.0)
        plate = (np.abs(ramus.u - u0) <= 3.5) & (ramus.v >= v_mand) & (ramus.v <= v_mand + 26.0)
        marrow = (np.abs(ramus.u - u0) <= 1.5) & (ramus.v >= v_mand + 2.0) & (ramus.v <= v_mand + 24.0)
        canvas.paint(ramus, plate, Tissue.CORTICAL)
        canvas.paint(ramus, marrow, Tissue.CANCELLOUS)


def _paint_head(canvas: Canvas, an: Anatomy) -> None:
    """Skull (a shell around the brain, closing as the skull base below it) and the brain: a grey-matter
    cortex around white matter."""
    axes = np.asarray(an.brain)
    centre = (0.0, *an.brain_centre)
    block = canvas.block(w_range=(an.brain_centre[1] - axes[2] - an.skull, np.inf))
    skull = ellipsoid(block, centre, axes + an.skull)
    brain = ellipsoid(block, centre, axes)
    white = ellipsoid(block, centre, axes - 7.0)  # a cortex ~7 mm thick (folded cortex, seen at PET resolution)
    canvas.paint(block, skull & ~brain, Tissue.CORTICAL)
    canvas.paint(block, brain, Tissue.GREY_MATTER)
    canvas.paint(block, white, Tissue.WHITE_MATTER)
