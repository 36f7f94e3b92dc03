"""Head-and-neck anatomy of the synthetic PET/CT phantoms: one patient drawn from a seed, painted as a
tissue-class map onto the CT grid.

Every voxel of the CT grid gets one :class:`~.canvas.Tissue`; the CT (HU) and the PET activity (SUV) are then
looked up per tissue, so both modalities show exactly the same anatomy. The patient is drawn in absolute
heights ``w`` (mm above the top of the heart, see :mod:`.canvas`) from the upper thorax to the vertex, and the
CT grid is a window onto it, so a 144 mm crop, a full head-and-neck scan and a scan starting in the brain show
the same kind of patient. Typical adult heights (scaled per patient by 0.9-1.1): clavicles 85 mm, cricoid 125,
vocal cords 140, hyoid 163, mandible's lower border 172, oropharynx 185, hard palate 215, skull base 238,
vertex about 360.

This module draws the patient (:func:`draw_anatomy`) and paints the body, spine and airway; the head, neck and
thorax organs are in :mod:`.anatomy_head`, :mod:`.anatomy_neck` and :mod:`.anatomy_thorax`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .canvas import Canvas, Tissue, blob, ellipse, ellipsoid, sigmoid

SPINE_BELOW_HEART_MM = 440.0
"""The spine (down to the sacrum) ends this far below the top of the heart."""


@dataclass(frozen=True)
class Anatomy:
    """One patient's drawn anatomy (lengths in mm, patient frame; see the module docstring)."""

    w_heart: float  # top of the heart
    w_clavicle: float  # clavicles, thoracic inlet
    w_lung_apex: float
    w_thyroid: float  # centre of the thyroid lobes
    w_larynx: float  # cricoid: below it the airway is the trachea
    w_cords: float  # vocal cords
    w_hyoid: float
    w_mandible: float  # inferior border of the mandible
    w_oropharynx: float  # centre of the oropharynx (level of the tonsils and tongue base)
    w_occlusal: float  # where the upper and lower teeth meet
    w_palate: float  # hard palate
    w_skull: float  # skull base (foramen magnum)
    neck_a: float  # neck half-width (lateral)
    neck_b: float  # neck half-depth (antero-posterior)
    shoulders: float  # extra half-width of the shoulders below the clavicles
    chest_b: float  # half-depth of the upper thorax
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
    brain: tuple[float, float, float]  # brain half-axes (u, v, w)
    brain_centre: tuple[float, float]  # (v, w)
    skull: float
    scalp: float
    heart: tuple[float, float]  # u, v of the heart's centre

    @property
    def mandible_height(self) -> float:
        return self.w_occlusal - self.w_mandible

    @property
    def vertex(self) -> float:
        return self.brain_centre[1] + self.brain[2] + self.skull + self.scalp

    def spine_v(self, w):
        """v of the vertebral body centre at height ``w`` (cervical lordosis: bowed anteriorly)."""
        t = np.clip((np.asarray(w) - self.w_clavicle) / max(self.w_skull - self.w_clavicle, 1.0), 0.0, 1.0)
        return self.v_spine - self.lordosis * (np.sin(np.pi * t) - 0.5)

    def airway_v(self, w):
        return self.spine_v(w) - self.airway_gap

    def neck_half_width(self, w):
        """Lateral half-width (mm) of the body outline at height ``w`` (before the outline harmonics)."""
        w = np.asarray(w, dtype=np.float64)
        face = sigmoid((w - (self.w_mandible - 4.0)) / 4.0)
        shoulders = self.shoulders * sigmoid((self.w_clavicle + 5.0 - w) / 7.0)
        return self.neck_a + (self.face_a - self.neck_a) * face + shoulders

    def half_depths(self, w):
        """(front, back) half-depths (mm) of the body outline at height ``w``."""
        w = np.asarray(w, dtype=np.float64)
        face = sigmoid((w - (self.w_mandible - 4.0)) / 4.0)
        chest = (self.chest_b - self.neck_b) * sigmoid((self.w_clavicle - 5.0 - w) / 8.0)
        front = self.neck_b + chest + (self.face_front - self.neck_b) * face
        back = self.neck_b + chest + (self.face_back - self.neck_b) * face
        return front, back


def draw_anatomy(rng: np.random.Generator) -> Anatomy:
    """A random plausible adult anatomy (sizes and landmark heights vary per patient)."""
    s = rng.uniform(0.9, 1.1)  # patient size: heights and the neck's girth
    neck_a, neck_b = rng.uniform(48, 62) * s, rng.uniform(46, 58) * s
    v_spine = rng.uniform(-2, 4)
    airway_gap = rng.uniform(21, 26)
    mand_a, mand_b = rng.uniform(40, 46), rng.uniform(44, 50)
    v_mand = v_spine - airway_gap + rng.uniform(-1, 5)
    brain = (rng.uniform(60, 68), rng.uniform(75, 84), rng.uniform(62, 70))
    skull, scalp = rng.uniform(5, 7), rng.uniform(4, 6)
    w_skull = 238.0 * s + rng.uniform(-5, 5)
    w_mandible = 172.0 * s + rng.uniform(-5, 5)
    w_occlusal = w_mandible + rng.uniform(24, 30)
    return Anatomy(
        w_heart=rng.uniform(20, 35),
        w_clavicle=85.0 * s + rng.uniform(-6, 6),
        w_lung_apex=100.0 * s + rng.uniform(-5, 5),
        w_thyroid=113.0 * s + rng.uniform(-5, 5),
        w_larynx=125.0 * s + rng.uniform(-4, 4),
        w_cords=140.0 * s + rng.uniform(-4, 4),
        w_hyoid=w_mandible - rng.uniform(6, 12),
        w_mandible=w_mandible,
        w_oropharynx=w_mandible + rng.uniform(8, 16),
        w_occlusal=w_occlusal,
        w_palate=w_occlusal + rng.uniform(14, 20),
        w_skull=w_skull,
        neck_a=neck_a,
        neck_b=neck_b,
        shoulders=rng.uniform(90, 130) * s,
        chest_b=rng.uniform(85, 110) * s,
        face_a=neck_a + rng.uniform(6, 14),
        face_front=-(v_mand - mand_b) + rng.uniform(8, 12),
        face_back=neck_b + rng.uniform(0, 6),
        fat=rng.uniform(3, 14),
        outline=tuple((k, rng.uniform(0.01, 0.035), rng.uniform(0, 2 * np.pi)) for k in (2, 3, 4)),
        v_spine=v_spine,
        lordosis=rng.uniform(3, 8),
        vertebra=(rng.uniform(9, 12), rng.uniform(7.5, 9.5)),
        vertebra_period=rng.uniform(17, 21),
        disc=rng.uniform(4, 6),
        disc_phase=rng.uniform(0, 21),
        canal_r=rng.uniform(6.5, 8),
        airway_gap=airway_gap,
        trachea_r=rng.uniform(7, 9.5),
        oropharynx=(rng.uniform(8, 14), rng.uniform(4, 8)),
        mandible=(mand_a, mand_b, v_mand),
        brain=brain,
        brain_centre=(rng.uniform(4, 12), w_skull + brain[2] - rng.uniform(14, 20)),
        skull=skull,
        scalp=scalp,
        heart=(rng.uniform(10, 25), rng.uniform(-35, -15)),
    )


def paint_body(canvas: Canvas, an: Anatomy) -> None:
    """Body and head: an elliptic cylinder whose axes vary along z (the shoulders and chest at the bottom, the
    face reaching forward above the mandible) with a wavy outline, the head an ellipsoid around the brain;
    subcutaneous fat under the skin and fat planes between the neck muscles."""
    block = canvas.block()
    w = block.w
    a = an.neck_half_width(w)
    front, back = an.half_depths(w)
    b = np.where(block.v < 0, front, back)  # (Z, Y, 1)
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
    # fat of the posterior cervical triangles, between the neck muscles below the mandible
    low = canvas.block(w_range=(an.w_clavicle, an.w_mandible))
    for side in (-1, 1):
        a_low = an.neck_half_width(low.w)
        fat = ellipse(low, side * (a_low - an.fat - 12.0), 0.35 * an.neck_b, 9.0, 11.0)
        canvas.paint(low, fat, Tissue.FAT, only=(Tissue.SOFT,))


def paint_spine(canvas: Canvas, an: Anatomy) -> None:
    """Cervical and upper thoracic vertebrae up to the skull base: body (cortical rim, cancellous core), discs
    between the bodies, spinal canal, and the arch with spinous and transverse processes."""
    block = canvas.block(w_range=(an.w_heart - SPINE_BELOW_HEART_MM, an.w_skull), u_range=(-35, 35))
    if block.empty:
        return
    w = block.w
    vs = an.spine_v(w)
    va, vb = an.vertebra
    va = va + 4.0 * sigmoid((an.w_clavicle - w) / 10.0)  # thoracic bodies are larger
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


def paint_airway(canvas: Canvas, an: Anatomy) -> None:
    """Trachea (round) up to the cricoid, the larynx and the wider oropharynx above it, the nasopharynx up to
    the skull base; the nasal cavity in front of it above the palate; the maxillary sinuses beside it."""
    top = an.w_skull - 8.0
    block = canvas.block(w_range=(-np.inf, top), u_range=(-25, 25), v_range=(-70, 40))
    if not block.empty:
        w = block.w
        oro = sigmoid((w - an.w_larynx) / 5.0)
        a = an.trachea_r + (an.oropharynx[0] - an.trachea_r) * oro
        b = an.trachea_r * 0.85 + (an.oropharynx[1] - an.trachea_r * 0.85) * oro
        canvas.paint(block, ellipse(block, 0.0, an.airway_v(w), a, b), Tissue.AIRWAY, only=(Tissue.SOFT,))
    nasal = canvas.block(w_range=(an.w_palate + 2.0, an.w_skull + 22.0), u_range=(-14, 14))
    if not nasal.empty:
        v_back = float(an.airway_v(an.w_palate))
        cavity = (np.abs(nasal.u) <= 11.0) & (nasal.v >= v_back - 62.0) & (nasal.v <= v_back + 4.0)
        septum = np.abs(nasal.u) <= 1.2
        turbinates = np.abs(np.abs(nasal.u) - 8.0) <= 2.0
        wave = np.cos(nasal.w / 5.0) > 0.3  # the turbinates seen as soft-tissue shelves every few mm
        canvas.paint(nasal, cavity & ~septum & ~(turbinates & wave), Tissue.AIRWAY, only=(Tissue.SOFT, Tissue.FAT))
    v_sinus = float(an.airway_v(an.w_palate)) - 34.0
    w_sinus = an.w_palate + 14.0
    for side in (-1, 1):
        blob(canvas, (side * 25.0, v_sinus, w_sinus), (11.0, 14.0, 15.0), Tissue.AIRWAY, only=(Tissue.SOFT, Tissue.FAT))
