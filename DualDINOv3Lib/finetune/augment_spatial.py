"""Spatial augmentations of a batch of slices and their label maps, sample by sample, in one pass each.

Images are ``(B, C, H, W)`` floating point, labels ``(B, H, W)`` integer class indices (or ``None``); both are
moved by the same transform, images with bilinear and labels with nearest-neighbour interpolation, so a label
map never gains values it did not have.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def affine_matrices(angle: Tensor, scale: Tensor, height: int, width: int) -> Tensor:
    """``(B, 2, 3)`` matrices for ``F.affine_grid`` (normalised coordinates, ``align_corners=False``).

    Each maps an output pixel's position, taken in pixels about the image centre, to the input position
    ``scale * R(angle) @ q`` that it samples: ``angle`` ``(B,)`` in radians, ``scale`` ``(B,)`` a zoom-out
    factor as in nnU-Net (``scale > 1`` makes structures smaller, ``< 1`` larger; areas change by
    ``1 / scale**2``). Working in pixels (not in normalised units) keeps rotations rigid on non-square images.
    """
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.zeros(angle.shape[0], 2, 3, dtype=angle.dtype, device=angle.device)
    theta[:, 0, 0] = scale * cos
    theta[:, 0, 1] = -scale * sin * (height / width)
    theta[:, 1, 0] = scale * sin * (width / height)
    theta[:, 1, 1] = scale * cos
    return theta


def rotate_scale(images: Tensor, labels: Tensor | None, angle: Tensor, scale: Tensor) -> tuple[Tensor, Tensor | None]:
    """Rotates every sample by its ``angle`` ``(B,)`` (radians) and zooms it by ``1 / scale`` ``(B,)`` about the
    image centre; see :func:`affine_matrices`. Positive angles turn the content counter-clockwise on screen
    (rows running down, columns to the right): ``angle = pi/2`` equals ``torch.rot90(x, k=1, dims=(-2, -1))``
    on a square image. Pixels that come from outside the slice are 0 in the images and in the labels (background).
    """
    b, c, h, w = images.shape
    grid_dtype = images.dtype if images.dtype in (torch.float32, torch.float64) else torch.float32
    theta = affine_matrices(angle.to(images.device, torch.float64), scale.to(images.device, torch.float64), h, w)
    grid = F.affine_grid(theta.to(grid_dtype), [b, c, h, w], align_corners=False)
    warped = F.grid_sample(images.to(grid_dtype), grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    warped = warped.to(images.dtype)
    if labels is None:
        return warped, None
    warped_labels = F.grid_sample(
        labels[:, None].to(grid_dtype), grid, mode="nearest", padding_mode="zeros", align_corners=False
    )
    return warped, warped_labels[:, 0].round().to(labels.dtype)


def mirror(
    images: Tensor, labels: Tensor | None, flip: Tensor, *, inplace: bool = False
) -> tuple[Tensor, Tensor | None]:
    """Mirrors sample ``i`` along height where ``flip[i, 0]`` and along width where ``flip[i, 1]``
    (``flip``: ``(B, 2)`` bool). Images and labels of a sample are flipped alike. Returns new tensors unless
    ``inplace`` (then ``images`` and ``labels`` are changed and returned)."""
    flip = flip.to(images.device)
    if not inplace:
        images = images.clone()
        labels = None if labels is None else labels.clone()
    for along_h, along_w, dims in ((True, False, (-2,)), (False, True, (-1,)), (True, True, (-2, -1))):
        chosen = ((flip[:, 0] == along_h) & (flip[:, 1] == along_w)).nonzero().squeeze(1)
        if chosen.numel() == 0:
            continue
        images.index_copy_(0, chosen, images.index_select(0, chosen).flip(dims))
        if labels is not None:
            labels.index_copy_(0, chosen, labels.index_select(0, chosen).flip(dims))
    return images, labels
