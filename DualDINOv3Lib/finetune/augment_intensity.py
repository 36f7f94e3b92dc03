"""Intensity augmentations on a stack of single-channel images ``x`` of shape ``(N, H, W)``.

Each function takes one parameter per image (tensors of shape ``(N,)`` or ``(N, 2)``), works on whatever
device ``x`` is on, and returns a new tensor of the same shape and dtype. The caller
(:func:`~DualDINOv3Lib.finetune.augment.apply_augmentation`) picks which (sample, channel) images of a batch
to change and passes only those, flattened to ``N``, so nothing here loops over images or pixels.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

_EPS = 1e-7


def _per_image(values: Tensor, x: Tensor) -> Tensor:
    """``(N,)`` parameters -> ``(N, 1, 1)`` on ``x``'s device and dtype, to broadcast over pixels."""
    return values.to(device=x.device, dtype=x.dtype).view(-1, 1, 1)


def add_gaussian_noise(x: Tensor, std: Tensor, generator: torch.Generator) -> Tensor:
    """Adds zero-mean Gaussian noise of standard deviation ``std`` ``(N,)`` (image units) to each image.

    The noise field is drawn from ``generator`` on the generator's device and moved to ``x``'s device when they
    differ (pass a generator on the GPU to keep large draws there).
    """
    noise = torch.randn(x.shape, generator=generator, device=generator.device, dtype=torch.float32)
    return x + noise.to(device=x.device, dtype=x.dtype) * _per_image(std, x)


def gaussian_kernels(sigma: Tensor, radius: int) -> Tensor:
    """Normalised 1D Gaussian kernels ``(N, 2 * radius + 1)`` for standard deviations ``sigma`` ``(N,)`` in pixels."""
    offsets = torch.arange(-radius, radius + 1, device=sigma.device, dtype=torch.float32)
    weights = torch.exp(-0.5 * (offsets[None, :] / sigma.float().clamp(min=1e-3)[:, None]) ** 2)
    return weights / weights.sum(dim=1, keepdim=True)


def gaussian_blur(x: Tensor, sigma: Tensor, radius: int | None = None) -> Tensor:
    """Separable Gaussian blur with its own ``sigma`` ``(N, 2)`` = (along H, along W), in pixels, per image.

    The kernels have ``radius`` taps each side (default ``ceil(3 * max sigma)``, as nnU-Net's kernel of
    about ``6 sigma + 1`` taps); borders are mirrored (reflect padding; replicate where the image is too small).
    Both passes run as one grouped convolution over all ``N`` images.
    """
    n, h, w = x.shape
    if n == 0:
        return x.clone()
    if radius is None:
        radius = max(1, math.ceil(3.0 * float(sigma.max())))
    kernels = gaussian_kernels(sigma.to(x.device).reshape(n * 2), radius).to(x.dtype).view(n, 2, -1)
    size = 2 * radius + 1
    out = x.unsqueeze(0)  # (1, N, H, W): one group per image
    mode_h = "reflect" if radius < h else "replicate"
    out = F.conv2d(F.pad(out, (0, 0, radius, radius), mode=mode_h), kernels[:, 0].reshape(n, 1, size, 1), groups=n)
    mode_w = "reflect" if radius < w else "replicate"
    out = F.conv2d(F.pad(out, (radius, radius, 0, 0), mode=mode_w), kernels[:, 1].reshape(n, 1, 1, size), groups=n)
    return out.squeeze(0)


def scale_brightness(x: Tensor, factor: Tensor) -> Tensor:
    """Multiplies each image by its ``factor`` ``(N,)`` (nnU-Net's multiplicative brightness)."""
    return x * _per_image(factor, x)


def adjust_contrast(x: Tensor, factor: Tensor, preserve_range: bool = True) -> Tensor:
    """Stretches each image about its mean by ``factor`` ``(N,)``: ``(x - mean) * factor + mean``.

    With ``preserve_range`` the result is clipped to the image's original [min, max] (nnU-Net's default).
    """
    mean = x.mean(dim=(1, 2), keepdim=True)
    out = (x - mean) * _per_image(factor, x) + mean
    if preserve_range:
        out = torch.clamp(out, x.amin(dim=(1, 2), keepdim=True), x.amax(dim=(1, 2), keepdim=True))
    return out


def _low_resolution_taps(length: int, zoom: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Along one axis of ``length`` pixels, the two source pixels and the weight of the second for each output
    pixel of "nearest-exact downsampling to ``round(length * zoom)`` pixels, then linear upsampling back"
    (both with ``align_corners=False``, the conventions of ``F.interpolate``). Shapes ``(N, length)``.
    """
    device = zoom.device
    small = torch.round(zoom.double() * length).clamp(min=1)[:, None]  # (N, 1) low-resolution sizes
    small_long = small.long()
    # Scales are rounded to float32 from exact quotients, as F.interpolate computes them on the CPU.
    # linear upsampling small -> length: source position in the low-resolution image
    dst = torch.arange(length, device=device, dtype=torch.float32)[None, :]
    src = ((dst + 0.5) * (small / length).float() - 0.5).clamp(min=0.0)
    k0 = src.floor().long().clamp(max=small_long - 1)
    k1 = torch.minimum(k0 + 1, small_long - 1)
    weight1 = src - k0.to(torch.float32)
    # nearest-exact downsampling length -> small: the full-resolution pixel that low-resolution pixel k copies
    step = (length / small).float()

    def full_res(k: Tensor) -> Tensor:
        return ((k.float() + 0.5) * step).floor().long().clamp(max=length - 1)

    return full_res(k0), full_res(k1), weight1


def simulate_low_resolution(x: Tensor, zoom: Tensor) -> Tensor:
    """Downsamples each image by ``zoom`` ``(N,)`` in (0, 1] on both axes (nearest neighbour) and upsamples it
    back to ``(H, W)`` (bilinear), as nnU-Net's low-resolution simulation does in 2D.

    Equal to ``F.interpolate(F.interpolate(img, round(H*zoom), "nearest-exact"), (H, W), "bilinear")`` per
    image, but done for all images at once: each output pixel is a linear mix of two gathered source pixels
    per axis, so images with different zooms (hence different low-resolution sizes) share one pass.
    """
    n, h, w = x.shape
    if n == 0:
        return x.clone()
    zoom = zoom.to(x.device)
    rows0, rows1, wy = _low_resolution_taps(h, zoom)
    cols0, cols1, wx = _low_resolution_taps(w, zoom)
    top = torch.gather(x, 1, rows0[:, :, None].expand(n, h, w))
    bottom = torch.gather(x, 1, rows1[:, :, None].expand(n, h, w))
    out = torch.lerp(top, bottom, wy.to(x.dtype)[:, :, None])
    left = torch.gather(out, 2, cols0[:, None, :].expand(n, h, w))
    right = torch.gather(out, 2, cols1[:, None, :].expand(n, h, w))
    return torch.lerp(left, right, wx.to(x.dtype)[:, None, :])


def gamma_transform(x: Tensor, gamma: Tensor, invert: Tensor, retain_stats: bool = True) -> Tensor:
    """nnU-Net's gamma augmentation, per image: rescale to [0, 1] by the image's own min and range,
    raise to ``gamma`` ``(N,)``, scale back to [min, max].

    ``invert`` ``(N,)`` bool applies it to ``-x`` instead (and negates back), so gamma acts on the bright end.
    With ``retain_stats`` the result is then shifted and scaled to the image's original mean and standard
    deviation (nnU-Net always does this); without it the original [min, max] is kept exactly.
    """
    sign = torch.where(invert.to(x.device), -1.0, 1.0).to(x.dtype).view(-1, 1, 1)
    y = x * sign
    if retain_stats:
        variance, mean = torch.var_mean(y, dim=(1, 2), keepdim=True)
    low = y.amin(dim=(1, 2), keepdim=True)
    span = y.amax(dim=(1, 2), keepdim=True) - low
    y = ((y - low) / span.clamp(min=_EPS)).pow(_per_image(gamma, y)) * span + low
    if retain_stats:
        new_variance, new_mean = torch.var_mean(y, dim=(1, 2), keepdim=True)
        y = (y - new_mean) * (variance.sqrt() / new_variance.sqrt().clamp(min=_EPS)) + mean
    return y * sign
