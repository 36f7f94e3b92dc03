"""Synthetic head-and-neck FDG-PET/CT phantoms with GTVp/GTVn labels, for tests, demos and pipelines.

:func:`make_phantom` builds one case from a seed: a CT in HU on a scanner-like grid, an FDG-PET in SUV on
its own coarser grid (different spacing and origin), and the label (0 background, 1 GTVp, 2 GTVn) on the
CT grid. :func:`write_phantom_cases` writes a set of them as a HECKTOR-layout folder.

How the images are made: a tissue map of the anatomy on the CT grid (:mod:`.anatomy`) and the
tumours (:mod:`.phantom_lesions`). CT = HU per tissue, a slight in-plane blur (partial volume) and
Gaussian noise. PET = SUV per tissue (physiological uptake) and per-voxel tumour uptake, averaged onto a
grid about 2.5 mm in-plane, blurred by a Gaussian PSF of 5-7 mm FWHM, resampled onto the PET grid, then
noise whose variance is proportional to the signal, clipped at 0.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from ..data.volume import LABEL_MODALITY, Volume
from ..domain import STRATA, stratum_of
from ..errors import ConfigError, DualDINOv3Error
from .anatomy import draw_anatomy, paint_anatomy
from .canvas import Canvas, Grid, Tissue, check_ct_grid
from .lesions import Lesion, necrosis, place_nodes, place_primary, texture

log = logging.getLogger(__name__)

DEFAULT_SHAPE = (48, 168, 168)
"""CT grid (z, y, x): 48 slices of 3 mm, 168 x 168 pixels of 1.25 mm (a 210 mm field of view)."""
DEFAULT_SPACING = (1.25, 1.25, 3.0)
"""CT voxel size (x, y, z) in mm."""
DEFAULT_PET_SPACING = (4.0, 4.0, 3.27)
"""PET voxel size (x, y, z) in mm, as on many clinical PET/CT scanners."""
PSF_FWHM_RANGE_MM = (5.0, 7.0)
_FWHM_TO_SIGMA = 1.0 / (2.0 * np.sqrt(2.0 * np.log(2.0)))
_ACTIVITY_VOXEL_MM = 2.5  # in-plane voxel of the grid the PET activity is averaged onto before the PSF
_NODE_COUNT_P = (0.25, 0.35, 0.25, 0.15)  # P(0, 1, 2, 3 nodes) when n_nodes is not given


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
        }


def make_phantom(
    seed: int,
    *,
    stratum: str | None = None,
    n_nodes: int | None = None,
    case_id: str | None = None,
    shape: tuple[int, int, int] = DEFAULT_SHAPE,
    spacing: tuple[float, float, float] = DEFAULT_SPACING,
    pet_spacing: tuple[float, float, float] = DEFAULT_PET_SPACING,
) -> Phantom:
    """A synthetic head-and-neck PET/CT case, identical for the same arguments.

    ``seed``: integer >= 0 (numpy Generator seed). ``stratum``: the GTVp volume stratum to produce
    (``"small"`` < 5 cm3, ``"medium"`` 5-15, ``"large"`` > 15), drawn at random when None. ``n_nodes``:
    0-3 lymph nodes (drawn when None). ``case_id``: default ``PHANTOM-<seed>``. ``shape`` (z, y, x) and
    ``spacing`` (x, y, z, mm) of the CT grid (at least 200 mm in-plane and 100 mm along z);
    ``pet_spacing`` (x, y, z, mm) of the PET grid, which covers the CT's field of view.
    """
    seed = _check_args(seed, stratum, n_nodes, shape, spacing, pet_spacing)
    rng = np.random.default_rng(seed)
    drawn_stratum = STRATA[int(rng.choice(3, p=(0.35, 0.40, 0.25)))]
    drawn_nodes = int(rng.choice(4, p=_NODE_COUNT_P))
    stratum = stratum or drawn_stratum
    n_nodes = drawn_nodes if n_nodes is None else n_nodes
    case_id = case_id or f"PHANTOM-{seed:03d}"

    shape = tuple(int(n) for n in shape)
    ct_origin = (
        -0.5 * (shape[2] - 1) * spacing[0] + rng.uniform(-5, 5),
        -0.5 * (shape[1] - 1) * spacing[1] + rng.uniform(-25, -5),  # reconstruction centre off the isocentre
        -rng.uniform(150, 450),
    )
    grid = Grid(shape, tuple(map(float, spacing)), tuple(round(float(o), 3) for o in ct_origin))
    anatomy, cx, cy = draw_anatomy(rng, grid)
    canvas = Canvas(grid, cx, cy)
    paint_anatomy(canvas, anatomy, rng)
    primary, nodes = _place_lesions(canvas, anatomy, rng, stratum, n_nodes)

    label = np.zeros(shape, dtype=np.uint8)
    label[canvas.tissue == Tissue.GTVP] = 1
    label[canvas.tissue == Tissue.GTVN] = 2
    ct = _ct_image(canvas, rng)
    psf = float(rng.uniform(*PSF_FWHM_RANGE_MM))
    pet = _pet_image(canvas, primary, nodes, rng, psf, tuple(map(float, pet_spacing)))

    gtvp_cm3 = float(np.count_nonzero(label == 1)) * grid.voxel_cm3
    gtvn_cm3 = float(np.count_nonzero(label == 2)) * grid.voxel_cm3
    if stratum_of(gtvp_cm3) != stratum:  # place_primary sized it; painting nodes never removes GTVp voxels
        raise AssertionError(f"GTVp of {gtvp_cm3:.2f} cm3 is not {stratum}")
    ct_volume = Volume(ct, grid.spacing, grid.origin, units="HU", modality="CT")
    return Phantom(
        case_id=case_id,
        seed=seed,
        stratum=stratum,
        ct=ct_volume,
        pet=pet,
        label=ct_volume.with_array(label, units=None, modality=LABEL_MODALITY),
        gtvp_cm3=gtvp_cm3,
        gtvn_cm3=gtvn_cm3,
        n_nodes=len(nodes),
        psf_fwhm_mm=psf,
    )


def _place_lesions(canvas: Canvas, anatomy, rng: np.random.Generator, stratum: str, n_nodes: int, tries: int = 5):
    """The GTVp and the nodes; if the nodes do not fit beside this GTVp, both are drawn again."""
    healthy = canvas.tissue.copy()
    for attempt in range(tries):
        try:
            primary = place_primary(canvas, anatomy, rng, stratum)
            return primary, place_nodes(canvas, anatomy, rng, n_nodes, primary)
        except DualDINOv3Error:
            if attempt == tries - 1:
                raise
            canvas.tissue[...] = healthy
    raise AssertionError("unreachable")


def _check_args(seed, stratum, n_nodes, shape, spacing, pet_spacing) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"phantom seed must be an integer >= 0, got {seed!r}")
    if stratum is not None and stratum not in STRATA:
        raise ConfigError(f"phantom stratum must be one of {', '.join(STRATA)} (or None for random), got {stratum!r}")
    if n_nodes is not None and (isinstance(n_nodes, bool) or n_nodes not in range(4)):
        raise ConfigError(f"phantom n_nodes must be 0, 1, 2 or 3 (or None for random), got {n_nodes!r}")
    check_ct_grid(shape, spacing)
    if len(pet_spacing) != 3 or min(pet_spacing) <= 0:
        raise ConfigError(f"phantom PET spacing must be three positive numbers (x, y, z) in mm, got {pet_spacing!r}")
    return int(seed)


# --- CT ------------------------------------------------------------------------------------------------

_CT_HU = {  # tissue: (low, high) of the per-case HU
    Tissue.AIR: (-1005, -995),
    Tissue.FAT: (-115, -85),
    Tissue.SOFT: (35, 55),
    Tissue.CORTICAL: (800, 1150),
    Tissue.CANCELLOUS: (180, 320),
    Tissue.AIRWAY: (-1000, -960),
    Tissue.GREY_MATTER: (36, 44),
    Tissue.WHITE_MATTER: (24, 30),
    Tissue.CORD: (10, 25),
    Tissue.DISC: (70, 100),
    Tissue.TONSIL: (45, 60),
    Tissue.PAROTID: (-30, 10),
    Tissue.SUBMANDIBULAR: (35, 50),
}


def _ct_image(canvas: Canvas, rng: np.random.Generator) -> np.ndarray:
    """HU (float32, integer values in [-1024, 3071]): per-tissue values, in-plane [1 2 1]/4 blur, noise."""
    lut = np.zeros(len(Tissue), dtype=np.float32)
    for tissue, (low, high) in _CT_HU.items():
        lut[tissue] = rng.uniform(low, high)
    lut[Tissue.GTVP] = lut[Tissue.SOFT] + rng.uniform(5, 15)  # tumours are low-contrast soft tissue in CT
    lut[Tissue.GTVN] = lut[Tissue.SOFT] + rng.uniform(-10, 5)
    hu = lut[canvas.tissue]
    for axis in (1, 2):  # partial volume at tissue borders
        hu = _smooth121(hu, axis)
    hu += np.float32(rng.uniform(10, 20)) * rng.standard_normal(size=hu.shape, dtype=np.float32)
    return np.clip(np.round(hu), -1024, 3071).astype(np.float32)


def _smooth121(a: np.ndarray, axis: int) -> np.ndarray:
    """``a`` convolved with [1, 2, 1] / 4 along ``axis`` (edge voxels repeated)."""
    out = a * np.float32(0.5)
    n = a.shape[axis]
    body, before, after = (
        [slice(None)] * a.ndim,
        [slice(None)] * a.ndim,
        [slice(None)] * a.ndim,
    )
    body[axis], before[axis], after[axis] = slice(1, n - 1), slice(0, n - 2), slice(2, n)
    out[tuple(body)] += np.float32(0.25) * (a[tuple(before)] + a[tuple(after)])
    for edge, neighbour in ((0, 1), (n - 1, n - 2)):
        e, nb = [slice(None)] * a.ndim, [slice(None)] * a.ndim
        e[axis], nb[axis] = slice(edge, edge + 1), slice(neighbour, neighbour + 1)
        out[tuple(e)] += np.float32(0.25) * (a[tuple(e)] + a[tuple(nb)])
    return out


# --- PET -----------------------------------------------------------------------------------------------

_SUV = {  # tissue: (low, high) of the per-case physiological SUV
    Tissue.FAT: (0.2, 0.4),
    Tissue.SOFT: (0.6, 1.0),
    Tissue.CORTICAL: (0.3, 0.5),
    Tissue.CANCELLOUS: (1.0, 1.8),
    Tissue.GREY_MATTER: (8.0, 11.0),
    Tissue.CORD: (0.8, 1.2),
    Tissue.DISC: (0.4, 0.6),
    Tissue.TONSIL: (2.0, 4.0),
    Tissue.PAROTID: (1.2, 2.2),
    Tissue.SUBMANDIBULAR: (1.5, 3.0),
}


def _pet_image(
    canvas: Canvas,
    primary: Lesion,
    nodes: list[Lesion],
    rng: np.random.Generator,
    psf_fwhm: float,
    pet_spacing: tuple[float, float, float],
) -> Volume:
    """The PET in SUV on its own grid (covering the CT's field of view with a margin, origin shifted)."""
    lut = np.zeros(len(Tissue), dtype=np.float32)
    for tissue, (low, high) in _SUV.items():
        lut[tissue] = rng.uniform(low, high)
    lut[Tissue.WHITE_MATTER] = lut[Tissue.GREY_MATTER] * rng.uniform(0.3, 0.4)
    activity = lut[canvas.tissue]
    uptake = rng.uniform(6.0, 18.0) * texture(primary, rng.uniform(0.1, 0.3))
    if primary.cm3 > 15.0 and rng.random() < 0.5:
        uptake *= necrosis(primary, rng.uniform(0.4, 0.7))
    activity[primary.block.index][primary.mask] = uptake
    for node in nodes:  # nodes never overlap the GTVp or each other (see place_nodes)
        activity[node.block.index][node.mask] = rng.uniform(3.0, 10.0) * texture(node, rng.uniform(0.05, 0.2))

    fine = _average_in_plane(activity, canvas.grid, z_margin_mm=2.0 * pet_spacing[2] + psf_fwhm)
    sigma = psf_fwhm * _FWHM_TO_SIGMA
    blurred = sitk.DiscreteGaussian(fine, variance=[sigma**2] * 3, maximumKernelWidth=64, useImageSpacing=True)

    ct_grid = canvas.grid
    extent = np.array([(ct_grid.shape[2 - i] - 1) * ct_grid.spacing[i] for i in range(3)])
    size = [int(np.ceil(extent[i] / pet_spacing[i])) + (5 if i < 2 else 3) for i in range(3)]
    centre = np.asarray(ct_grid.origin) + extent / 2
    shift = rng.uniform(-0.5, 0.5, size=3) * np.asarray(pet_spacing)
    origin = centre - (np.asarray(size) - 1) / 2 * np.asarray(pet_spacing) + shift
    resampler = sitk.ResampleImageFilter()
    resampler.SetSize(size)
    resampler.SetOutputSpacing(pet_spacing)
    resampler.SetOutputOrigin(tuple(round(float(o), 3) for o in origin))
    resampler.SetInterpolator(sitk.sitkLinear)
    resampler.SetDefaultPixelValue(0.0)
    pet = Volume.from_sitk(resampler.Execute(blurred), units="SUV", modality="PT")

    suv = pet.array.astype(np.float32)
    variance = rng.uniform(0.01, 0.03) * suv + 0.02**2  # counting noise: variance proportional to the signal
    suv = suv + rng.standard_normal(size=suv.shape, dtype=np.float32) * np.sqrt(variance).astype(np.float32)
    return pet.with_array(np.clip(suv, 0.0, None).astype(np.float32))


def _average_in_plane(activity: np.ndarray, grid: Grid, z_margin_mm: float) -> sitk.Image:
    """``activity`` averaged over f x f in-plane blocks (f chosen for ~2.5 mm voxels), as a SimpleITK image
    whose voxel centres are the blocks' centres (zero-padded in-plane to a multiple of f).

    The anatomy goes on beyond the CT's first and last slices: the end slices are repeated over
    ``z_margin_mm``, so that the PET (whose field of view is longer) is not dimmed near the CT's ends.
    """
    f = max(1, round(_ACTIVITY_VOXEL_MM / max(grid.spacing[0], grid.spacing[1])))
    _, ny, nx = activity.shape
    pz = int(np.ceil(z_margin_mm / grid.spacing[2]))
    py, px = (-ny) % f, (-nx) % f
    activity = np.pad(activity, ((pz, pz), (0, 0), (0, 0)), mode="edge")
    if py or px:
        activity = np.pad(activity, ((0, 0), (0, py), (0, px)))
    fine = sum(activity[:, i::f, j::f] for i in range(f) for j in range(f)) * np.float32(1.0 / (f * f))
    image = sitk.GetImageFromArray(fine)
    image.SetSpacing((grid.spacing[0] * f, grid.spacing[1] * f, grid.spacing[2]))
    image.SetOrigin(
        (
            grid.origin[0] + (f - 1) / 2 * grid.spacing[0],
            grid.origin[1] + (f - 1) / 2 * grid.spacing[1],
            grid.origin[2] - pz * grid.spacing[2],
        )
    )
    return image
