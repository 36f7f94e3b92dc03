"""``Volume``: a voxel array that always carries its physical geometry (spacing, origin, direction)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from ..errors import DataError

LABEL_MODALITY = "label"
"""``Volume.modality`` of a label map (segmentation); such volumes are written as uint8."""

_IDENTITY = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)


def _float_tuple(values, length: int, name: str) -> tuple[float, ...]:
    try:
        out = tuple(float(v) for v in np.asarray(values, dtype=np.float64).reshape(-1))
    except (TypeError, ValueError) as exc:
        raise DataError(f"Volume {name} must be {length} numbers, got {values!r}") from exc
    if len(out) != length or not all(np.isfinite(out)):
        raise DataError(f"Volume {name} must be {length} finite numbers, got {values!r}")
    return out


@dataclass(frozen=True, eq=False)
class Volume:
    """A 3D image in physical space (immutable).

    ``array``: voxels in numpy (z, y, x) order, shape ``(Z, Y, X)``, or ``(Z, Y, X, C)`` for a
    multi-component (e.g. RGB) volume. It is stored as a read-only view: build a new volume with
    :meth:`with_array` instead of editing it in place.
    ``spacing``: voxel size (x, y, z) in mm. ``origin``: physical position (x, y, z) in mm (LPS, as
    SimpleITK/DICOM) of the centre of voxel ``array[0, 0, 0]``. ``direction``: the 3x3 direction
    cosine matrix, row-major, 9 numbers, exactly as SimpleITK's ``GetDirection()``.
    ``units``: e.g. ``"HU"`` or ``"SUV"`` (optional). ``modality``: e.g. ``"CT"``, ``"PT"`` or
    :data:`LABEL_MODALITY` (optional). ``notes``: provenance notes a user should see (e.g. how PET
    values were converted to SUV, or that they were taken as SUV); they travel with the volume through
    :meth:`with_array` and ``dataclasses.replace``.
    """

    array: np.ndarray
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: tuple[float, ...] = _IDENTITY
    units: str | None = None
    modality: str | None = None
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        array = np.asarray(self.array)
        if array.ndim not in (3, 4):
            raise DataError(
                f"a Volume array must be (z, y, x) or (z, y, x, components), got shape {array.shape}; "
                "reshape it or pass one 3D image at a time"
            )
        array = array.view()
        array.flags.writeable = False
        spacing = _float_tuple(self.spacing, 3, "spacing")
        if min(spacing) <= 0:
            raise DataError(f"Volume spacing must be positive (mm), got {spacing}")
        direction = _float_tuple(self.direction, 9, "direction")
        if abs(abs(np.linalg.det(np.reshape(direction, (3, 3)))) - 1.0) > 1e-3:
            raise DataError(f"Volume direction {direction} is not an orthonormal 3x3 matrix (row-major)")
        object.__setattr__(self, "array", array)
        object.__setattr__(self, "spacing", spacing)
        object.__setattr__(self, "origin", _float_tuple(self.origin, 3, "origin"))
        object.__setattr__(self, "direction", direction)
        notes = (self.notes,) if isinstance(self.notes, str) else tuple(str(note) for note in self.notes)
        object.__setattr__(self, "notes", notes)

    # --- conversion ------------------------------------------------------------------------------

    @classmethod
    def from_sitk(cls, image: sitk.Image, *, units: str | None = None, modality: str | None = None) -> Volume:
        """The voxels and geometry of a 3D SimpleITK image (scalar, or vector -> ``(Z, Y, X, C)``)."""
        if image.GetDimension() != 3:
            raise DataError(
                f"expected a 3D image, got a {image.GetDimension()}D image of size {image.GetSize()}; "
                "a Volume holds exactly one 3D image"
            )
        return cls(
            array=sitk.GetArrayFromImage(image),
            spacing=image.GetSpacing(),
            origin=image.GetOrigin(),
            direction=image.GetDirection(),
            units=units,
            modality=modality,
        )

    def to_sitk(self) -> sitk.Image:
        """A SimpleITK image with this volume's voxels (copied) and geometry; 4D arrays become vector images."""
        image = sitk.GetImageFromArray(np.ascontiguousarray(self.array), isVector=self.is_vector)
        image.SetSpacing(self.spacing)
        image.SetOrigin(self.origin)
        image.SetDirection(self.direction)
        return image

    def with_array(self, new_array: np.ndarray, **changes) -> Volume:
        """The same geometry with other voxels of the same (Z, Y, X) shape.

        ``changes`` may replace ``units``, ``modality`` (e.g. ``modality=LABEL_MODALITY`` for a
        segmentation of this volume) and/or ``notes``; otherwise they are kept. A ``(Z, Y, X, C)`` array is
        allowed on a ``(Z, Y, X)`` grid.
        """
        new_array = np.asarray(new_array)
        if new_array.shape[:3] != self.shape or new_array.ndim not in (3, 4):
            raise DataError(
                f"new array of shape {new_array.shape} does not fit this volume's grid (z, y, x) = {self.shape}; "
                "resample it onto the grid first (DualDINOv3Lib.data.resample_to_grid)"
            )
        unknown = set(changes) - {"units", "modality", "notes"}
        if unknown:
            raise TypeError(f"with_array can only change units, modality and notes, not {sorted(unknown)}")
        return dataclasses.replace(self, array=new_array, **changes)

    # --- geometry --------------------------------------------------------------------------------

    @property
    def shape(self) -> tuple[int, int, int]:
        """Grid size in (z, y, x) order (components excluded)."""
        return tuple(int(n) for n in self.array.shape[:3])

    @property
    def size_xyz(self) -> tuple[int, int, int]:
        """Grid size in (x, y, z) order, as SimpleITK's ``GetSize()``."""
        z, y, x = self.shape
        return (x, y, z)

    @property
    def is_vector(self) -> bool:
        """True for a multi-component volume (array shape ``(Z, Y, X, C)``)."""
        return self.array.ndim == 4

    @property
    def is_label(self) -> bool:
        """True for a label map: modality :data:`LABEL_MODALITY` or a boolean array."""
        return self.modality == LABEL_MODALITY or self.array.dtype == np.bool_

    def index_to_physical(self, index_xyz) -> np.ndarray:
        """Physical point (x, y, z) in mm of a (possibly fractional) voxel index given in (x, y, z) order."""
        matrix = np.reshape(self.direction, (3, 3))
        return np.asarray(self.origin) + matrix @ (np.asarray(index_xyz, dtype=np.float64) * np.asarray(self.spacing))

    def physical_extent(self) -> np.ndarray:
        """Axis-aligned box (mm) covered by the voxels' outer faces.

        Shape (3, 2): rows x, y, z; columns min, max.
        """
        corners = [
            self.index_to_physical((i, j, k))
            for i in (-0.5, self.size_xyz[0] - 0.5)
            for j in (-0.5, self.size_xyz[1] - 0.5)
            for k in (-0.5, self.size_xyz[2] - 0.5)
        ]
        corners = np.stack(corners)
        return np.stack([corners.min(axis=0), corners.max(axis=0)], axis=1)

    def same_grid(self, other: Volume, tol: float = 1e-3) -> bool:
        """True when both volumes have the same (z, y, x) size, and spacing and origin agree to ``tol`` mm
        and direction cosines to ``tol``."""
        return (
            self.shape == other.shape
            and np.allclose(self.spacing, other.spacing, rtol=0.0, atol=tol)
            and np.allclose(self.origin, other.origin, rtol=0.0, atol=tol)
            and np.allclose(self.direction, other.direction, rtol=0.0, atol=tol)
        )

    def __repr__(self) -> str:
        return (
            f"Volume(shape(z,y,x)={self.array.shape}, dtype={self.array.dtype}, spacing={self.spacing}, "
            f"origin={self.origin}, direction={self.direction}, units={self.units!r}, modality={self.modality!r}"
            + (f", notes={self.notes!r})" if self.notes else ")")
        )
