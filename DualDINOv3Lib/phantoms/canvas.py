"""The canvas the phantoms are painted on: tissue classes, the CT grid, and blocks of voxels with patient
coordinates in mm.

Patient frame used here (mm): ``u`` = x - body centre (towards the patient's left, LPS), ``v`` = y -
body centre (towards posterior), ``w`` = height above a fixed anatomical origin (the top of the heart), so the
anatomy is drawn once per patient and the CT grid is a window onto it (``w`` of its first slice: ``w_start``).
Array order is (z, y, x) as everywhere in :mod:`DualDINOv3Lib.data`; the direction is the identity (axial, LPS).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from ..errors import ConfigError

MIN_FOV_XY_MM = 140.0
"""In-plane field of view of the smallest grid accepted: a HECKTOR-2020-style 144 mm crop."""
MIN_FOV_Z_MM = 90.0
"""Along z the grid must hold the primary tumour's region and the upper neck's lymph-node levels."""


class Tissue(IntEnum):
    """Tissue classes of the phantom (uint8 values of :attr:`Canvas.tissue`). Each has its own HU and SUV
    ranges (:mod:`.ct_image`, :mod:`.pet_image`); the label is GTVp where GTVP or NECROSIS, GTVn where GTVN
    or NODE_CYST."""

    AIR = 0
    FAT = 1
    SOFT = 2  # connective and other soft tissue
    CORTICAL = 3
    CANCELLOUS = 4  # vertebral, mandibular and humeral marrow
    AIRWAY = 5  # air inside the body: pharynx, larynx, trachea, nasal cavity, sinuses
    GREY_MATTER = 6
    WHITE_MATTER = 7
    CORD = 8  # spinal canal
    DISC = 9
    TONSIL = 10  # lymphoid tissue of Waldeyer's ring: palatine and lingual tonsils, adenoid
    PAROTID = 11
    SUBMANDIBULAR = 12
    GTVP = 13
    GTVN = 14
    MUSCLE = 15  # named muscles: sternocleidomastoid, paraspinal, pterygoid, scalene
    TONGUE = 16
    VOCAL_CORDS = 17
    CARTILAGE = 18  # thyroid and cricoid cartilage, partly calcified
    THYROID = 19
    VESSEL = 20  # carotid arteries and jugular veins
    BROWN_FAT = 21  # supraclavicular and cervical fat depots that may take up FDG
    LUNG = 22
    MYOCARDIUM = 23
    BLOOD = 24  # heart chambers and aorta
    TOOTH = 25
    METAL = 26  # dental fillings and implants
    CEREBELLUM = 27
    BRAINSTEM = 28
    EYE = 29
    COUCH = 30  # the scanner table, outside the body
    NECROSIS = 31  # necrotic core of a GTVp (labelled GTVp)
    NODE_CYST = 32  # cystic centre of a lymph node (labelled GTVn)
    KIDNEY = 33
    URINE = 34  # renal pelvis and bladder: excreted FDG
    LIVER = 35
    SPLEEN = 36
    BOWEL = 37  # stomach and bowel loops


GTVP_TISSUES = (Tissue.GTVP, Tissue.NECROSIS)
SOFT_OR_FAT = (Tissue.SOFT, Tissue.FAT)
"""What most organs are painted over (``only=``), so they never replace bone, air or each other."""
GTVN_TISSUES = (Tissue.GTVN, Tissue.NODE_CYST)
BONE = (Tissue.CORTICAL, Tissue.CANCELLOUS)
LESION_HOST = (
    Tissue.FAT,
    Tissue.SOFT,
    Tissue.AIRWAY,
    Tissue.TONSIL,
    Tissue.PAROTID,
    Tissue.SUBMANDIBULAR,
    Tissue.MUSCLE,
    Tissue.TONGUE,
    Tissue.BROWN_FAT,
    Tissue.VOCAL_CORDS,
)
"""Tissues a tumour may grow into (it fills the airway; it never replaces bone, cartilage, vessels, cord or
brain)."""


@dataclass(frozen=True)
class Grid:
    """An axial voxel grid with identity direction: ``shape`` (z, y, x); ``spacing``/``origin`` (x, y, z) mm."""

    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]

    def axes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Physical coordinates (mm) of the voxel centres along x, y and z (three 1D float64 arrays)."""
        nz, ny, nx = self.shape
        return tuple(
            self.origin[i] + self.spacing[i] * np.arange(n, dtype=np.float64) for i, n in enumerate((nx, ny, nz))
        )

    @property
    def voxel_cm3(self) -> float:
        return self.spacing[0] * self.spacing[1] * self.spacing[2] / 1000.0


def check_ct_grid(shape, spacing) -> None:
    """Raises :class:`ConfigError` unless the grid is 3D, positive and large enough to hold a head and neck."""
    if len(shape) != 3 or len(spacing) != 3 or min(shape) < 8 or min(spacing) <= 0:
        raise ConfigError(
            f"phantom CT grid shape (z, y, x) = {tuple(shape)} with spacing (x, y, z) = {tuple(spacing)} mm is "
            "invalid: give three sizes of at least 8 voxels and three positive spacings"
        )
    fov = (shape[2] * spacing[0], shape[1] * spacing[1], shape[0] * spacing[2])
    if min(fov[:2]) < MIN_FOV_XY_MM or fov[2] < MIN_FOV_Z_MM:
        raise ConfigError(
            f"phantom CT field of view {fov[0]:.0f} x {fov[1]:.0f} x {fov[2]:.0f} mm (x, y, z) is too small for a "
            f"head and neck: it needs at least {MIN_FOV_XY_MM:.0f} mm in-plane and {MIN_FOV_Z_MM:.0f} mm along z; "
            "use more voxels or a larger spacing"
        )


def sigmoid(t: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-t))


@dataclass(frozen=True)
class Block:
    """A box of the canvas: ``index`` into the (z, y, x) array and the patient-frame coordinates of its
    voxels, shaped for broadcasting: ``u`` (1, 1, X), ``v`` (1, Y, 1), ``w`` (Z, 1, 1) in mm."""

    index: tuple[slice, slice, slice]
    u: np.ndarray
    v: np.ndarray
    w: np.ndarray

    @property
    def empty(self) -> bool:
        return min(self.u.size, self.v.size, self.w.size) == 0


class Canvas:
    """The tissue map being painted, with the patient frame: body centre ``(cx, cy)`` in mm (x, y) and the
    height ``w_start`` of the first slice."""

    def __init__(self, grid: Grid, cx: float, cy: float, w_start: float = 0.0) -> None:
        x, y, z = grid.axes()
        self.grid = grid
        self.u, self.v, self.w = x - cx, y - cy, z - z[0] + w_start
        self.tissue = np.zeros(grid.shape, dtype=np.uint8)

    def block(self, u_range=None, v_range=None, w_range=None) -> Block:
        """The voxels whose centres lie in the given closed ranges (mm, patient frame; None = all)."""
        cuts = []
        for axis, bounds in ((self.w, w_range), (self.v, v_range), (self.u, u_range)):
            if bounds is None:
                cuts.append(slice(0, axis.size))
            else:
                lo = int(np.searchsorted(axis, bounds[0], side="left"))
                hi = int(np.searchsorted(axis, bounds[1], side="right"))
                cuts.append(slice(lo, max(lo, hi)))
        zs, ys, xs = cuts
        return Block(
            index=(zs, ys, xs),
            u=self.u[xs][None, None, :],
            v=self.v[ys][None, :, None],
            w=self.w[zs][:, None, None],
        )

    def paint(self, block: Block, mask: np.ndarray, tissue: Tissue, only: tuple[Tissue, ...] | None = None) -> None:
        """Sets ``tissue`` where ``mask`` (broadcastable to the block) is true, optionally only over ``only``."""
        if block.empty:
            return
        view = self.tissue[block.index]
        mask = np.broadcast_to(mask, view.shape)
        if only is not None:
            mask = mask & np.isin(view, np.asarray(only, dtype=np.uint8))
        view[mask] = tissue


def ellipse(block: Block, cu, cv, a, b) -> np.ndarray:
    """In-plane ellipse per slice (``cu, cv, a, b`` scalars or (Z, 1, 1) arrays), as a boolean block."""
    return ((block.u - cu) / a) ** 2 + ((block.v - cv) / b) ** 2 <= 1.0


def ellipsoid(block: Block, centre, axes) -> np.ndarray:
    return (
        ((block.u - centre[0]) / axes[0]) ** 2
        + ((block.v - centre[1]) / axes[1]) ** 2
        + ((block.w - centre[2]) / axes[2]) ** 2
    ) <= 1.0


def segment_distance(block: Block, start, end) -> np.ndarray:
    """Distance (mm) of every voxel of ``block`` from the line segment ``start``-``end`` (u, v, w)."""
    a, d = np.asarray(start, dtype=np.float64), np.subtract(end, start).astype(np.float64)
    du, dv, dw = block.u - a[0], block.v - a[1], block.w - a[2]
    t = np.clip((du * d[0] + dv * d[1] + dw * d[2]) / max(float(d @ d), 1e-9), 0.0, 1.0)
    return np.sqrt((du - t * d[0]) ** 2 + (dv - t * d[1]) ** 2 + (dw - t * d[2]) ** 2)


def tube(canvas: Canvas, start, end, radius: float, tissue: Tissue, only: tuple[Tissue, ...] | None = None) -> None:
    """Paints a round tube of ``radius`` mm around the segment ``start``-``end`` (patient frame)."""
    lo = np.minimum(start, end) - radius
    hi = np.maximum(start, end) + radius
    block = canvas.block((lo[0], hi[0]), (lo[1], hi[1]), (lo[2], hi[2]))
    if not block.empty:
        canvas.paint(block, segment_distance(block, start, end) <= radius, tissue, only=only)


def blob(canvas: Canvas, centre, axes, tissue: Tissue, only: tuple[Tissue, ...] | None = None) -> None:
    """Paints an axis-aligned ellipsoid (``centre`` and half-``axes`` in mm, patient frame)."""
    block = canvas.block(*[(c - r, c + r) for c, r in zip(centre, axes, strict=True)])
    if not block.empty:
        canvas.paint(block, ellipsoid(block, centre, axes), tissue, only=only)
