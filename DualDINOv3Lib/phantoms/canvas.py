"""The canvas the phantoms are painted on: tissue classes, the CT grid, and blocks of voxels with patient
coordinates in mm.

Patient frame used here (mm): ``u`` = x - body centre (towards the patient's left, LPS), ``v`` = y -
body centre (towards posterior), ``w`` = z - z of the first slice (towards the head). Array order is
(z, y, x) as everywhere in :mod:`DualDINOv3Lib.data`; the direction is the identity (axial, LPS).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from ..errors import ConfigError

MIN_FOV_XY_MM = 200.0
"""The head (skull and scalp) needs about 200 mm across, front to back, in-plane."""
MIN_FOV_Z_MM = 100.0
"""From the lower neck to the brain: the anatomy is laid out over the z extent, which must be at least this."""


class Tissue(IntEnum):
    """Tissue classes of the phantom (uint8 values of :attr:`Canvas.tissue`)."""

    AIR = 0
    FAT = 1
    SOFT = 2  # muscle and other soft tissue
    CORTICAL = 3
    CANCELLOUS = 4  # vertebral and mandibular marrow
    AIRWAY = 5  # air inside the body: pharynx, larynx, trachea, maxillary sinuses
    GREY_MATTER = 6
    WHITE_MATTER = 7
    CORD = 8  # spinal canal
    DISC = 9
    TONSIL = 10
    PAROTID = 11
    SUBMANDIBULAR = 12
    GTVP = 13
    GTVN = 14


BONE = (Tissue.CORTICAL, Tissue.CANCELLOUS)
LESION_HOST = (
    Tissue.FAT,
    Tissue.SOFT,
    Tissue.AIRWAY,
    Tissue.TONSIL,
    Tissue.PAROTID,
    Tissue.SUBMANDIBULAR,
)
"""Tissues a tumour may grow into (it fills the airway; it never replaces bone, discs, cord or brain)."""


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
    """The tissue map being painted, with the patient frame: body centre ``(cx, cy)`` in mm (x, y)."""

    def __init__(self, grid: Grid, cx: float, cy: float) -> None:
        x, y, z = grid.axes()
        self.grid = grid
        self.u, self.v, self.w = x - cx, y - cy, z - z[0]
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
