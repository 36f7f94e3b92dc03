"""The head of the phantoms: jaws and teeth (with dental metal in some patients), tongue and the lymphoid
tissue of Waldeyer's ring, salivary glands, skull, brain with cerebellum and brainstem, and the eyes."""

from __future__ import annotations

import numpy as np

from .anatomy import Anatomy
from .canvas import SOFT_OR_FAT, Canvas, Tissue, blob, ellipse, ellipsoid


def paint_jaws(canvas: Canvas, an: Anatomy, rng: np.random.Generator) -> list[tuple[float, float, float]]:
    """Mandible (a horseshoe and two rami), maxilla with the hard palate, both rows of teeth, and dental
    metal (fillings, crowns) in about half the patients. Returns the metal pieces' centres (for the CT's
    streak artefacts)."""
    mand_a, mand_b, v_mand = an.mandible
    w0, w1 = an.w_mandible, an.w_occlusal
    block = canvas.block(w_range=(w0, w1 - 6.0))
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
        # medial pterygoid muscle, inside the ramus
        blob(canvas, (side * (mand_a - 14.0), v_mand + 16.0, w0 + 30.0), (6.0, 12.0, 16.0), Tissue.MUSCLE, SOFT_OR_FAT)
    # maxilla: the upper alveolar arch and the hard palate
    upper = canvas.block(w_range=(w1 + 6.0, an.w_palate + 3.0))
    arch = ellipse(upper, 0.0, v_mand + 2.0, mand_a - 2.0, mand_b - 2.0) & ~ellipse(
        upper, 0.0, v_mand + 2.0, mand_a - 11.0, mand_b - 11.0
    )
    canvas.paint(upper, arch & (upper.v <= v_mand + 8.0), Tissue.CANCELLOUS)
    palate = canvas.block(w_range=(an.w_palate - 2.0, an.w_palate + 2.0))
    plate = ellipse(palate, 0.0, v_mand + 4.0, mand_a - 16.0, mand_b - 14.0) & (palate.v <= v_mand + 20.0)
    canvas.paint(palate, plate, Tissue.CORTICAL)
    # teeth: a ring on each alveolar arch either side of the occlusal plane
    teeth = canvas.block(w_range=(w1 - 8.0, w1 + 8.0))
    ring = ellipse(teeth, 0.0, v_mand + 1.0, mand_a - 2.5, mand_b - 2.5) & ~ellipse(
        teeth, 0.0, v_mand + 1.0, mand_a - 9.5, mand_b - 9.5
    )
    gaps = np.cos(np.arctan2(teeth.v - v_mand, teeth.u) * 16.0) > -0.7  # the spaces between the teeth
    canvas.paint(teeth, ring & gaps & (teeth.v <= v_mand + 6.0) & (np.abs(teeth.w - w1) >= 0.8), Tissue.TOOTH)
    metal = []
    for _ in range(int(rng.choice(5, p=(0.5, 0.15, 0.15, 0.1, 0.1)))):
        angle = rng.uniform(0.15, np.pi - 0.15)  # along the front of the arch
        centre = (
            (mand_a - 6.0) * np.cos(angle),
            v_mand + 1.0 - (mand_b - 6.0) * np.sin(angle),
            w1 + rng.choice((-1, 1)) * rng.uniform(2.0, 5.0),
        )
        blob(canvas, centre, (rng.uniform(1.5, 3.5), rng.uniform(1.5, 3.0), rng.uniform(1.5, 3.5)), Tissue.METAL)
        metal.append(tuple(float(c) for c in centre))
    return metal


def paint_mouth(canvas: Canvas, an: Anatomy, rng: np.random.Generator) -> None:
    """Tongue in the oral cavity; Waldeyer's ring: palatine tonsils beside the oropharynx, the lingual tonsil
    at the base of the tongue and the adenoid on the nasopharynx's roof; parotid and submandibular glands."""
    mand_a, mand_b, v_mand = an.mandible
    w_oro = an.w_oropharynx
    v_air = float(an.airway_v(w_oro))
    tongue_centre = (0.0, v_mand + 8.0, an.w_mandible + 0.55 * an.mandible_height)
    blob(
        canvas, tongue_centre, (mand_a - 12.0, mand_b - 6.0, 0.5 * an.mandible_height + 4.0), Tissue.TONGUE, SOFT_OR_FAT
    )
    v_adenoid = float(an.airway_v(an.w_palate)) + 6.0
    organs = (
        (Tissue.TONSIL, an.oropharynx[0] + 5.0, v_air, w_oro + 4.0, (6.0, 8.0, 11.0), True),
        (Tissue.TONSIL, 0.0, v_air - an.oropharynx[1] - 5.0, w_oro - 2.0, (14.0, 5.0, 9.0), False),
        (Tissue.TONSIL, 0.0, v_adenoid, an.w_palate + 10.0, (12.0, 5.0, 9.0), False),
        (Tissue.PAROTID, mand_a + 7.0, v_mand + 20.0, an.w_mandible + 32.0, (9.0, 14.0, 18.0), True),
        (Tissue.SUBMANDIBULAR, mand_a - 13.0, v_mand - 14.0, an.w_mandible - 4.0, (9.0, 10.0, 9.0), True),
    )
    size = rng.uniform(0.5, 1.3)  # lymphoid tissue: large in the young, atrophic in the old
    for tissue, u, v, w, axes, bilateral in organs:
        axes = np.asarray(axes) * rng.uniform(0.85, 1.15, size=3) * (size if tissue == Tissue.TONSIL else 1.0)
        for side in (-1, 1) if bilateral else (0,):
            centre = (side * u + rng.uniform(-2, 2), v + rng.uniform(-2, 2), w + rng.uniform(-3, 3))
            blob(canvas, centre, axes, tissue, only=(*SOFT_OR_FAT, Tissue.TONGUE, Tissue.MUSCLE))


def paint_head(canvas: Canvas, an: Anatomy) -> None:
    """Skull (a shell around the brain, thick at the skull base) and the brain: grey-matter cortex around white
    matter, the cerebellum in the posterior fossa, the brainstem running down into the cord; the anterior
    cranial fossa leaves room for the orbits (eyes) and the nasal cavity below the frontal lobes, walled off from
    the brain by bone, so that every axial slice through the brain shows it enclosed by the skull."""
    axes = np.asarray(an.brain)
    centre = (0.0, *an.brain_centre)
    block = canvas.block(w_range=(an.brain_centre[1] - axes[2] - an.skull, np.inf))
    if block.empty:
        return
    # the posterior fossa's floor: below the foramen magnum only the brainstem continues, into the cord
    above_floor = block.w >= an.w_skull
    skull = ellipsoid(block, centre, axes + an.skull) & (block.w >= an.w_skull - an.skull)
    v_face, w_face = an.brain_centre[0] - 0.3 * axes[1], an.w_skull + 28.0
    face = (block.v < v_face) & (block.w < w_face)
    brain = ellipsoid(block, centre, axes) & ~face & above_floor
    # the bone between the brain and the face: the sphenoid and the orbital roofs close the cranium in front
    front_wall = skull & face & ((block.v >= v_face - an.skull) | (block.w >= w_face - an.skull))
    white = ellipsoid(block, centre, axes - 8.0) & ~face & above_floor
    base = block.w < an.w_skull + 12.0  # the skull base: thick, marrow-filled bone with the foramen magnum
    foramen = (np.abs(block.u) <= 14.0) & (np.abs(block.v - an.brain_centre[0] - 0.15 * axes[1]) <= 16.0)
    canvas.paint(block, skull & ~brain & ~face & ~base, Tissue.CORTICAL)
    canvas.paint(block, skull & ~brain & ~face & base & ~foramen, Tissue.CANCELLOUS)
    canvas.paint(block, front_wall, Tissue.CORTICAL)
    canvas.paint(block, brain, Tissue.GREY_MATTER)
    canvas.paint(block, white, Tissue.WHITE_MATTER)
    floor = canvas.block(w_range=(an.w_skull - 3.0, an.w_skull + 8.0))  # petrous ridges
    for side in (-1, 1):
        du, dv = floor.u - side * 32.0, floor.v - an.brain_centre[0]
        ridge = np.abs(du * 0.8 + side * dv * 0.6) <= 4.0
        canvas.paint(floor, ridge & (np.abs(du) <= 16.0) & (np.abs(dv) <= 20.0), Tissue.CORTICAL)
    v_fossa = an.brain_centre[0] + 0.45 * axes[1]
    for side in (-1, 1):
        blob(
            canvas,
            (side * 24.0, v_fossa, an.w_skull + 22.0),
            (26.0, 24.0, 20.0),
            Tissue.CEREBELLUM,
            (Tissue.GREY_MATTER, Tissue.WHITE_MATTER),
        )
    stem_v = an.brain_centre[0] + 0.15 * axes[1]
    stem = canvas.block(w_range=(an.w_skull - 6.0, an.w_skull + 45.0), u_range=(-13, 13))
    if not stem.empty:
        v = stem_v + (stem.w - an.w_skull) * 0.15
        canvas.paint(stem, ellipse(stem, 0.0, v, 12.0, 11.0), Tissue.BRAINSTEM)
    for side in (-1, 1):  # eyes in the orbits, with retro-orbital fat
        eye = (side * 32.0, an.brain_centre[0] - axes[1] + 8.0, an.w_skull + 18.0)
        blob(canvas, (eye[0], eye[1] + 14.0, eye[2]), (14.0, 18.0, 13.0), Tissue.FAT, (Tissue.SOFT,))
        blob(canvas, eye, (12.0, 12.0, 12.0), Tissue.EYE, (Tissue.SOFT, Tissue.FAT))
