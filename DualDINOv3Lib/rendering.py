"""PNG pictures of axial slices (PCA maps, overlays) with numpy and SimpleITK only.

Slices are shown the radiological way: anterior at the top, the patient's right on the left of the image,
whatever the volume's axis flips (axis-aligned directions are handled; oblique ones are shown as stored).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .data.volume import Volume
from .errors import DataError, OutputExistsError
from .files import atomic_write


def _check_png(path: Path) -> None:
    """A PNG ends with its IEND chunk; a short write (full disk) does not."""
    with open(path, "rb") as f:
        f.seek(max(path.stat().st_size - 12, 0))
        if f.read(12)[4:8] != b"IEND":
            raise DataError(f"{path}: the PNG is incomplete (no IEND chunk)")


def write_png(image: np.ndarray, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Writes ``image`` (``(H, W)`` or ``(H, W, 3)`` uint8) as a PNG, atomically."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path} exists; choose another output or allow overwriting (--overwrite)")
    image = np.ascontiguousarray(image, dtype=np.uint8)
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3):
        raise ValueError(f"a PNG image must be (H, W) or (H, W, 3), got {image.shape}")
    sitk_image = sitk.GetImageFromArray(image, isVector=image.ndim == 3)
    return atomic_write(path, lambda tmp: sitk.WriteImage(sitk_image, tmp), verify=_check_png)


def display_slice(volume: Volume, z: int) -> np.ndarray:
    """Axial slice ``z`` of ``volume`` (``(Y, X)`` or ``(Y, X, C)``) oriented for display (LPS: A up, R left)."""
    if not 0 <= z < volume.shape[0]:
        raise DataError(f"slice {z} is outside the volume's {volume.shape[0]} slices (0..{volume.shape[0] - 1})")
    image = np.asarray(volume.array[z])
    direction = np.reshape(volume.direction, (3, 3))
    # column index i moves along direction[:, 0]; rows along direction[:, 1]. LPS: +x = left, +y = posterior.
    if direction[0, 0] < 0:
        image = image[:, ::-1]
    if direction[1, 1] < 0:
        image = image[::-1, :]
    return np.ascontiguousarray(image)


def window(image: np.ndarray, low: float, high: float) -> np.ndarray:
    """Grey values ``low..high`` -> uint8 0..255 (clipped)."""
    scaled = (np.asarray(image, dtype=np.float32) - low) / max(high - low, 1e-6)
    return (np.clip(scaled, 0.0, 1.0) * 255).round().astype(np.uint8)


def default_slices(mask: np.ndarray, count: int = 3) -> list[int]:
    """``count`` slice indices spread over the slices where ``mask`` ``(Z, ...)`` has any voxel (all if none)."""
    z_any = np.flatnonzero(np.asarray(mask).reshape(mask.shape[0], -1).any(axis=1))
    if z_any.size == 0:
        z_any = np.arange(mask.shape[0])
    picks = np.linspace(0, z_any.size - 1, num=min(count, z_any.size) + 2)[1:-1]
    return sorted({int(z_any[round(p)]) for p in picks})


def save_slice_pngs(
    volume: Volume, folder: str | os.PathLike, slices, *, prefix: str, overwrite: bool = False
) -> list[Path]:
    """One PNG per slice ``z`` of an RGB (``(Z, Y, X, 3)`` uint8) or grey uint8 volume: ``prefix_z###.png``."""
    folder = Path(folder)
    paths = [folder / f"{prefix}_z{z:03d}.png" for z in slices]
    existing = [p for p in paths if p.exists()]
    if existing and not overwrite:
        raise OutputExistsError(f"{existing[0]} exists; choose another folder or allow overwriting (--overwrite)")
    folder.mkdir(parents=True, exist_ok=True)
    return [write_png(display_slice(volume, z), p, overwrite=True) for z, p in zip(slices, paths, strict=True)]


def contour(mask: np.ndarray) -> np.ndarray:
    """The boundary pixels of a 2D boolean mask (pixels with a 4-neighbour outside it)."""
    mask = np.asarray(mask, dtype=bool)
    padded = np.pad(mask, 1, constant_values=False)
    interior = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return mask & ~interior


def hot_colormap(image: np.ndarray, low: float, high: float) -> np.ndarray:
    """Grey values -> ``(H, W, 3)`` uint8 in a black-red-yellow-white ("hot") scale, as PET is usually shown."""
    t = np.clip((np.asarray(image, dtype=np.float32) - low) / max(high - low, 1e-6), 0.0, 1.0)
    rgb = np.stack([np.clip(3 * t, 0, 1), np.clip(3 * t - 1, 0, 1), np.clip(3 * t - 2, 0, 1)], axis=-1)
    return (rgb * 255).round().astype(np.uint8)


def draw_contours(rgb: np.ndarray, masks_and_colours) -> np.ndarray:
    """``rgb`` ``(H, W, 3)`` with the contour of each ``(mask, (r, g, b))`` drawn over it."""
    out = np.array(rgb, copy=True)
    for mask, colour in masks_and_colours:
        out[contour(mask)] = colour
    return out
