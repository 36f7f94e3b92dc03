"""Synthetic head-and-neck FDG-PET/CT phantoms with GTVp/GTVn labels, for tests, demos, training and pipelines.

:func:`make_phantom` builds one case from a seed: a patient (:mod:`.anatomy` and its head, neck and thorax
organs), a scan of that patient (:mod:`.acquisition`: field of view, voxel sizes, PET resolution and noise, CT
kernel and contrast, all randomised), the tumours (:mod:`.lesions`), then the CT in HU (:mod:`.ct_image`) and
the FDG-PET in SUV on its own grid (:mod:`.pet_image`); the label (0 background, 1 GTVp, 2 GTVn) is on the CT
grid. :func:`~.cases.write_phantom_cases` writes a set of them as a HECKTOR-layout folder.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field

import numpy as np

from ..data.volume import LABEL_MODALITY, Volume
from ..domain import STRATA, stratum_of
from ..errors import ConfigError, DualDINOv3Error
from .acquisition import FIXED_SHAPE, FIXED_SPACING, FOV_MODES, Acquisition, draw_acquisition
from .anatomy import Anatomy, draw_anatomy, paint_airway, paint_body, paint_spine
from .anatomy_head import paint_head, paint_jaws, paint_mouth
from .anatomy_neck import paint_brown_fat, paint_larynx, paint_muscles, paint_thyroid, paint_vessels
from .anatomy_thorax import paint_heart, paint_thorax
from .anatomy_trunk import paint_trunk
from .canvas import GTVN_TISSUES, GTVP_TISSUES, Canvas, Grid, check_ct_grid
from .ct_image import ct_image
from .lesions import place_nodes, place_primary
from .pet_image import pet_image

log = logging.getLogger(__name__)

_NODE_COUNT_P = (0.25, 0.35, 0.25, 0.15)  # P(0, 1, 2, 3 nodes) when n_nodes is not given
_LESION_MARGIN_MM = 15.0  # lesions are centred at least this far inside the CT's first and last slices
CROP_PROBABILITY = 0.15
CROP_MARGIN_MM = (15.0, 60.0)
"""Some datasets keep only a box around the tumours (the IBSI sarcoma PET/CTs: 5 cm around the lesion), so the body
is cut at the image's edge, without skin or fat there. In this share of the phantoms (drawn fields of view only) the
scan is cropped in-plane to the lesions' bounding box plus a margin drawn per side from this range, so that a model
learns that a cut edge is neither tumour nor a reason to call the tissue beside it tumour."""


@dataclass(frozen=True, eq=False)
class Phantom:
    """One synthetic case.

    ``ct``: HU (float32 with integer values, modality ``"CT"``). ``pet``: SUV (float32, modality ``"PT"``)
    on its own, coarser grid. ``label``: uint8 0/1/2 = background/GTVp/GTVn on the CT grid (modality
    :data:`LABEL_MODALITY`). ``gtvp_cm3``/``gtvn_cm3``: the label's volumes (GTVn: all nodes together);
    ``stratum``: the GTVp's volume stratum (``"small"``, ``"medium"``, ``"large"``).
    """

    case_id: str
    seed: int
    stratum: str
    ct: Volume
    pet: Volume
    label: Volume
    gtvp_cm3: float
    gtvn_cm3: float
    n_nodes: int
    psf_fwhm_mm: float
    fov: str = "fixed"
    scan: dict = field(default_factory=dict)

    def facts(self) -> dict:
        """The per-case facts as JSON-ready plain values (what ``cases.json`` holds)."""
        return {
            "case_id": self.case_id,
            "seed": self.seed,
            "stratum": self.stratum,
            "gtvp_cm3": round(self.gtvp_cm3, 3),
            "gtvn_cm3": round(self.gtvn_cm3, 3),
            "n_nodes": self.n_nodes,
            "psf_fwhm_mm": round(self.psf_fwhm_mm, 3),
            "fov": self.fov,
            **self.scan,
        }


def make_phantom(
    seed: int,
    *,
    stratum: str | None = None,
    n_nodes: int | None = None,
    case_id: str | None = None,
    shape: tuple[int, int, int] | None = None,
    spacing: tuple[float, float, float] | None = None,
    pet_spacing: tuple[float, float, float] | None = None,
    fov: str | None = None,
) -> Phantom:
    """A synthetic head-and-neck PET/CT case, identical for the same arguments.

    ``seed``: integer >= 0 (numpy Generator seed). ``stratum``: the GTVp volume stratum to produce
    (``"small"`` < 5 cm3, ``"medium"`` 5-15, ``"large"`` > 15), drawn at random when None. ``n_nodes``:
    0-3 lymph nodes (drawn when None). ``case_id``: default ``PHANTOM-<seed>``.

    The scan is drawn from the seed (see :mod:`.acquisition` for the ranges): ``fov`` ``"hecktor"`` (a
    144 mm crop around the oropharynx), ``"head_neck"`` (upper thorax to skull base or vertex), ``"brain"``
    (from the lower neck into the brain) or ``"whole_body"`` (from the thighs), drawn when None, with drawn
    voxel sizes. A given ``shape`` (z, y, x) and/or ``spacing`` (x, y, z, mm) fixes the CT grid instead
    (default 48 x 168 x 168 voxels of 1.25 x 1.25 x 3 mm; at least 140 mm in-plane and 90 mm along z),
    centred on the oropharynx;
    ``pet_spacing`` (x, y, z, mm) fixes the PET grid, which covers the CT's field of view. A drawn field of view is
    cropped in-plane around the lesions in :data:`CROP_PROBABILITY` of the cases (the body cut at the image edge).
    """
    fixed = shape is not None or spacing is not None
    seed = _check_args(seed, stratum, n_nodes, shape, spacing, pet_spacing, fov, fixed)
    rng = np.random.default_rng(seed)
    drawn_stratum = STRATA[int(rng.choice(3, p=(0.35, 0.40, 0.25)))]
    drawn_nodes = int(rng.choice(4, p=_NODE_COUNT_P))
    stratum = stratum or drawn_stratum
    n_nodes = drawn_nodes if n_nodes is None else n_nodes
    case_id = case_id or f"PHANTOM-{seed:03d}"

    anatomy = draw_anatomy(rng)
    acq = draw_acquisition(rng, anatomy, fov=fov, shape=shape, spacing=spacing, pet_spacing=pet_spacing)
    canvas = _canvas(acq, anatomy, rng)
    metal = _paint_patient(canvas, anatomy, rng)
    window = (canvas.w[0] + _LESION_MARGIN_MM, canvas.w[-1] - _LESION_MARGIN_MM)
    primary, nodes = _place_lesions(canvas, anatomy, rng, stratum, n_nodes, window)

    label = np.zeros(canvas.grid.shape, dtype=np.uint8)
    label[np.isin(canvas.tissue, np.asarray(GTVP_TISSUES, dtype=np.uint8))] = 1
    label[np.isin(canvas.tissue, np.asarray(GTVN_TISSUES, dtype=np.uint8))] = 2
    ct = ct_image(canvas, acq, rng, metal)
    pet, physiology = pet_image(canvas, primary, nodes, acq, rng)

    grid = canvas.grid
    gtvp_cm3 = float(np.count_nonzero(label == 1)) * grid.voxel_cm3
    gtvn_cm3 = float(np.count_nonzero(label == 2)) * grid.voxel_cm3
    if stratum_of(gtvp_cm3) != stratum:  # place_primary sized it; painting nodes never removes GTVp voxels
        raise AssertionError(f"GTVp of {gtvp_cm3:.2f} cm3 is not {stratum}")
    ct_volume = Volume(ct, grid.spacing, grid.origin, units="HU", modality="CT")
    label_volume = ct_volume.with_array(label, units=None, modality=LABEL_MODALITY)
    crop = None
    if not fixed and rng.random() < CROP_PROBABILITY:
        crop = rng.uniform(*CROP_MARGIN_MM, size=4)
        ct_volume, pet, label_volume = _crop_to_lesions(ct_volume, pet, label_volume, crop)
    scan = {
        "ct_spacing_mm": [round(s, 3) for s in grid.spacing],
        "ct_slices": grid.shape[0],
        "pet_spacing_mm": [round(s, 3) for s in acq.pet_spacing],
        "pet_ct_shift_mm": [round(m, 2) for m in acq.misregistration_mm],
        "contrast": acq.contrast,
        "dental_metal": len(metal),
        "crop_margins_mm": None if crop is None else [round(float(m), 1) for m in crop],
        **physiology,
    }
    return Phantom(
        case_id=case_id,
        seed=seed,
        stratum=stratum,
        ct=ct_volume,
        pet=pet,
        label=label_volume,
        gtvp_cm3=gtvp_cm3,
        gtvn_cm3=gtvn_cm3,
        n_nodes=len(nodes),
        psf_fwhm_mm=acq.psf_fwhm_mm,
        fov="fixed" if fixed else acq.fov,
        scan=scan,
    )


def _crop_to_lesions(ct: Volume, pet: Volume, label: Volume, margins_mm) -> tuple[Volume, Volume, Volume]:
    """CT and label cropped in-plane to the lesions' bounding box plus ``margins_mm`` (-x, +x, -y, +y); the PET to
    the same physical box and one voxel more. All grids have the identity direction."""
    ys, xs = np.nonzero(np.asarray(label.array).any(axis=0))
    (sx, sy, _), (ox, oy, _) = ct.spacing, ct.origin
    x0 = max(0, int(xs.min() - margins_mm[0] / sx))
    x1 = min(ct.shape[2], int(np.ceil(xs.max() + margins_mm[1] / sx)) + 1)
    y0 = max(0, int(ys.min() - margins_mm[2] / sy))
    y1 = min(ct.shape[1], int(np.ceil(ys.max() + margins_mm[3] / sy)) + 1)
    origin = (round(ox + x0 * sx, 3), round(oy + y0 * sy, 3), ct.origin[2])

    def cut(volume: Volume) -> Volume:
        return dataclasses.replace(volume, array=volume.array[:, y0:y1, x0:x1].copy(), origin=origin)

    (psx, psy, _), (pox, poy, _) = pet.spacing, pet.origin
    px0 = max(0, int(np.floor((origin[0] - pox) / psx)) - 1)
    px1 = min(pet.shape[2], int(np.ceil((origin[0] + (x1 - x0 - 1) * sx - pox) / psx)) + 2)
    py0 = max(0, int(np.floor((origin[1] - poy) / psy)) - 1)
    py1 = min(pet.shape[1], int(np.ceil((origin[1] + (y1 - y0 - 1) * sy - poy) / psy)) + 2)
    pet_origin = (pox + px0 * psx, poy + py0 * psy, pet.origin[2])
    pet = dataclasses.replace(pet, array=pet.array[:, py0:py1, px0:px1].copy(), origin=pet_origin)
    return cut(ct), pet, cut(label)


def _canvas(acq: Acquisition, an: Anatomy, rng: np.random.Generator) -> Canvas:
    """The CT grid (origin off the isocentre, as scanners write it) and the patient placed in it: the neck
    centred (a HECKTOR crop: the oropharynx centred), shifted by the drawn patient position."""
    _, ny, nx = acq.shape
    sx, sy, _ = acq.spacing
    origin = (
        -0.5 * (nx - 1) * sx + rng.uniform(-5, 5),
        -0.5 * (ny - 1) * sy + rng.uniform(-25, -5),
        -rng.uniform(150, 450),
    )
    grid = Grid(acq.shape, acq.spacing, tuple(round(float(o), 3) for o in origin))
    x, y, _ = grid.axes()
    if acq.fov == "hecktor":
        cy = (y[0] + y[-1]) / 2 - float(an.airway_v(an.w_oropharynx)) + 0.3 * acq.shift_mm[1]
        cx = (x[0] + x[-1]) / 2 + 0.3 * acq.shift_mm[0]
    else:
        cy = (y[0] + y[-1]) / 2 + acq.shift_mm[1]
        cx = (x[0] + x[-1]) / 2 + acq.shift_mm[0]
    return Canvas(grid, float(cx), float(cy), acq.w_start)


def _paint_patient(canvas: Canvas, an: Anatomy, rng: np.random.Generator) -> list:
    """Paints the whole patient in order (later structures overwrite earlier ones unless restricted to some
    tissues); returns the dental metal pieces' centres."""
    paint_body(canvas, an)
    paint_thorax(canvas, an)
    paint_heart(canvas, an)
    paint_trunk(canvas, an, rng)
    paint_muscles(canvas, an)
    paint_brown_fat(canvas, an, rng)
    paint_vessels(canvas, an, rng)
    paint_airway(canvas, an)
    paint_mouth(canvas, an, rng)
    paint_larynx(canvas, an)
    paint_thyroid(canvas, an, rng)
    paint_spine(canvas, an)
    metal = paint_jaws(canvas, an, rng)
    paint_head(canvas, an)
    return metal


def _place_lesions(
    canvas: Canvas, anatomy, rng: np.random.Generator, stratum: str, n_nodes: int, window, tries: int = 5
):
    """The GTVp and the nodes; if the nodes do not fit beside this GTVp, both are drawn again."""
    healthy = canvas.tissue.copy()
    for attempt in range(tries):
        try:
            primary = place_primary(canvas, anatomy, rng, stratum, window)
            return primary, place_nodes(canvas, anatomy, rng, n_nodes, primary, window)
        except DualDINOv3Error:
            if attempt == tries - 1:
                raise
            canvas.tissue[...] = healthy
    raise AssertionError("unreachable")


def _check_args(seed, stratum, n_nodes, shape, spacing, pet_spacing, fov, fixed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"phantom seed must be an integer >= 0, got {seed!r}")
    if stratum is not None and stratum not in STRATA:
        raise ConfigError(f"phantom stratum must be one of {', '.join(STRATA)} (or None for random), got {stratum!r}")
    if n_nodes is not None and (isinstance(n_nodes, bool) or n_nodes not in range(4)):
        raise ConfigError(f"phantom n_nodes must be 0, 1, 2 or 3 (or None for random), got {n_nodes!r}")
    if fov is not None and (fov not in FOV_MODES or fixed):
        raise ConfigError(
            f"phantom fov must be one of {', '.join(FOV_MODES)} (or None for random), and cannot be combined with "
            f"a fixed shape/spacing; got fov={fov!r}"
        )
    if fixed:
        check_ct_grid(shape or FIXED_SHAPE, spacing or FIXED_SPACING)
    if pet_spacing is not None and (len(pet_spacing) != 3 or min(pet_spacing) <= 0):
        raise ConfigError(f"phantom PET spacing must be three positive numbers (x, y, z) in mm, got {pet_spacing!r}")
    return int(seed)
