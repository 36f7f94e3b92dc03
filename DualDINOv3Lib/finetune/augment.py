"""nnU-Net-style data augmentation of 2D PET/CT training batches, on tensors, on any device.

``augment_batch(images, labels, generator, config)`` takes images ``(B, C, H, W)`` (channel 0 CT z-scored,
channel 1 PET scaled to [0, 1]; 2.5D inputs add both modalities' neighbouring slices, which share their
modality's random choices) and labels ``(B, H, W)`` int64 and returns both augmented, same shapes, dtypes and
device. It runs in two steps that can also be called apart: :func:`sample_augmentation`
draws every random choice for the batch from ``generator`` (nothing else: no global RNG), and
:func:`apply_augmentation` applies them. The same generator state therefore gives the same batch, which an
exact ``--resume`` needs.

Transforms, order, probabilities and ranges are nnU-Net v2's defaults for 2D (``nnUNetTrainer.
get_training_transforms`` with batchgeneratorsv2), each decided per sample with its own probability:

==========================  ====  ==========================================================================
transform                   p     parameters
==========================  ====  ==========================================================================
rotation                    0.2   angle uniform in [-180, 180] deg (nnU-Net's range for near-square patches)
scaling                     0.2   zoom-out factor uniform in [0.7, 1.4], same on both axes; one affine grid
                                  with the rotation; images bilinear, labels nearest, zeros outside
Gaussian noise              0.1   std uniform in [0, 0.1] (nnU-Net's "noise_variance" is used as a std),
                                  one std for all channels, independent noise per channel
Gaussian blur               0.2   each channel with p 0.5; sigma uniform in [0.5, 1] px per channel and axis
brightness (multiplicative) 0.15  factor per channel from [0.75, 1.25] (see below)
contrast                    0.15  factor per channel from [0.75, 1.25]; result clipped to the channel's range
low-resolution simulation   0.25  each channel with p 0.5; zoom uniform in [0.5, 1]; nearest down, bilinear up
gamma on the inverted image 0.1   gamma per channel from [0.7, 1.5]; mean and std of the channel kept
gamma                       0.3   as above, not inverted
mirroring                   0.5   per axis (height, width), independently
==========================  ====  ==========================================================================

Factors "from [lo, hi]" around 1 are drawn as nnU-Net does: with probability 0.5 uniform in [lo, 1], otherwise
uniform in [1, hi], so shrinking and stretching are equally likely whatever the range's asymmetry.
nnU-Net v1 upsampled the low-resolution simulation with cubic interpolation; v2, followed here, is bilinear.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..errors import ConfigError, DataError
from .augment_intensity import (
    add_gaussian_noise,
    adjust_contrast,
    gamma_transform,
    gaussian_blur,
    scale_brightness,
    simulate_low_resolution,
)
from .augment_spatial import mirror, rotate_scale

Range = tuple[float, float]


@dataclass(frozen=True)
class AugmentationConfig:
    """Probabilities (``p_*``, per sample unless named per channel) and ranges; the defaults are nnU-Net's.

    ``enabled=False`` (or :meth:`none`) turns augmentation off: :func:`augment_batch` returns its inputs.
    ``mirror_axes``: 0 = height (rows), 1 = width (columns). Angles in degrees; sigmas in pixels.
    """

    enabled: bool = True
    p_rotation: float = 0.2
    rotation_deg: Range = (-180.0, 180.0)
    p_scaling: float = 0.2
    scaling: Range = (0.7, 1.4)
    p_noise: float = 0.1
    noise_std: Range = (0.0, 0.1)
    p_blur: float = 0.2
    p_blur_per_channel: float = 0.5
    blur_sigma: Range = (0.5, 1.0)
    p_brightness: float = 0.15
    brightness: Range = (0.75, 1.25)
    p_contrast: float = 0.15
    contrast: Range = (0.75, 1.25)
    contrast_preserve_range: bool = True
    p_low_resolution: float = 0.25
    p_low_resolution_per_channel: float = 0.5
    low_resolution_zoom: Range = (0.5, 1.0)
    p_gamma_inverted: float = 0.1
    p_gamma: float = 0.3
    gamma: Range = (0.7, 1.5)
    gamma_retain_stats: bool = True
    p_mirror: float = 0.5
    mirror_axes: tuple[int, ...] = (0, 1)

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name.startswith("p_") and not (_is_number(value) and 0.0 <= value <= 1.0):
                raise ConfigError(f"augmentation {f.name} must be a probability in [0, 1], got {value!r}")
            if f.name in _RANGE_LIMITS:
                object.__setattr__(self, f.name, _checked_range(f.name, value))
            if f.type == "bool" and not isinstance(value, bool):
                raise ConfigError(f"augmentation {f.name} must be true or false, got {value!r}")
        axes = tuple(self.mirror_axes)
        if len(set(axes)) != len(axes) or any(a not in (0, 1) for a in axes):
            raise ConfigError(f"augmentation mirror_axes must be distinct axes among 0 (height), 1 (width): {axes}")
        object.__setattr__(self, "mirror_axes", axes)

    @classmethod
    def none(cls) -> AugmentationConfig:
        """The configuration that leaves batches unchanged."""
        return cls(enabled=False)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> AugmentationConfig:
        """Builds a config from a mapping (a YAML/JSON section); unknown names are a :class:`ConfigError`."""
        values = dict(values or {})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown augmentation setting(s) {unknown}; valid names: {sorted(known)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})

    def to_dict(self) -> dict[str, Any]:
        """Plain values (lists for ranges), for saving beside a training run."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


#: Each range setting and the interval its values must lie in: (lowest allowed, lowest is allowed, highest).
_RANGE_LIMITS: dict[str, tuple[float, bool, float]] = {
    "rotation_deg": (-math.inf, True, math.inf),
    "scaling": (0.0, False, math.inf),
    "noise_std": (0.0, True, math.inf),
    "blur_sigma": (0.0, False, math.inf),
    "brightness": (0.0, False, math.inf),
    "contrast": (0.0, True, math.inf),
    "low_resolution_zoom": (0.0, False, 1.0),
    "gamma": (0.0, False, math.inf),
}


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _checked_range(name: str, value: object) -> Range:
    if not (isinstance(value, (tuple, list)) and len(value) == 2 and all(_is_number(v) for v in value)):
        raise ConfigError(f"augmentation {name} must be a pair [low, high] of numbers, got {value!r}")
    low, high = float(value[0]), float(value[1])
    floor, floor_allowed, ceiling = _RANGE_LIMITS[name]
    if low > high:
        raise ConfigError(f"augmentation {name} = {[low, high]}: low must not exceed high")
    if low < floor or (low == floor and not floor_allowed) or high > ceiling:
        interval = f"{'[' if floor_allowed else '('}{floor:g}, {ceiling:g}]"
        raise ConfigError(f"augmentation {name} = {[low, high]} must lie in {interval}")
    return low, high


@dataclass(frozen=True)
class AugmentationParams:
    """Every random choice for one batch (on the generator's device). ``do_*`` are per-sample ``(B,)`` bool,
    ``*_channels`` per-channel ``(B, C)`` bool; values are ``(B,)`` or ``(B, C)`` (``blur_sigma``: ``(B, C, 2)``)."""

    do_spatial: Tensor
    angle: Tensor  # radians, 0 where no rotation
    scale: Tensor  # 1 where no scaling
    noise_channels: Tensor
    noise_std: Tensor
    blur_channels: Tensor
    blur_sigma: Tensor
    brightness_channels: Tensor
    brightness: Tensor
    contrast_channels: Tensor
    contrast: Tensor
    low_resolution_channels: Tensor
    low_resolution_zoom: Tensor
    gamma_inverted_channels: Tensor
    gamma_inverted: Tensor
    gamma_channels: Tensor
    gamma: Tensor
    flip: Tensor  # (B, 2) bool: mirror along height, width

    def for_channels(self, sources: tuple[int, ...]) -> AugmentationParams:
        """The same choices for a batch whose channel ``c`` takes the choices of channel ``sources[c]``."""
        index = list(sources)
        per_channel = {
            f.name: getattr(self, f.name)[:, index]
            for f in dataclasses.fields(self)
            if f.name not in ("do_spatial", "angle", "scale", "flip")
        }
        return dataclasses.replace(self, **per_channel)


def _uniform(low: float, high: float, shape: tuple[int, ...], generator: torch.Generator) -> Tensor:
    return low + (high - low) * torch.rand(shape, generator=generator, device=generator.device)


def _around_one(value_range: Range, shape: tuple[int, ...], generator: torch.Generator) -> Tensor:
    """nnU-Net's sampling of factors: half the time in [low, 1] (if low < 1), otherwise in [max(low, 1), high]."""
    low, high = value_range
    below = (torch.rand(shape, generator=generator, device=generator.device) < 0.5) & (low < 1.0)
    return torch.where(below, _uniform(low, 1.0, shape, generator), _uniform(max(low, 1.0), high, shape, generator))


def sample_augmentation(
    batch: int, channels: int, generator: torch.Generator, config: AugmentationConfig = AugmentationConfig()
) -> AugmentationParams:
    """Draws all choices for a batch of ``batch`` samples with ``channels`` channels from ``generator``.

    The number of values drawn depends only on ``batch`` and ``channels``, so generator states stay in step.
    """
    _check_generator(generator)
    b, c = batch, channels

    def per_sample(p: float) -> Tensor:
        return torch.rand(b, generator=generator, device=generator.device) < p

    def per_channel(p_sample: float, p_channel: float = 1.0) -> Tensor:
        chosen = per_sample(p_sample)[:, None]
        return chosen & (torch.rand((b, c), generator=generator, device=generator.device) < p_channel)

    rotate = per_sample(config.p_rotation)
    angle = torch.deg2rad(_uniform(*config.rotation_deg, (b,), generator)) * rotate
    zoom = per_sample(config.p_scaling)
    scale = torch.where(zoom, _uniform(*config.scaling, (b,), generator), 1.0)
    flip = torch.rand((b, 2), generator=generator, device=generator.device) < config.p_mirror
    flip[:, [a for a in (0, 1) if a not in config.mirror_axes]] = False
    return AugmentationParams(
        do_spatial=rotate | zoom,
        angle=angle,
        scale=scale,
        noise_channels=per_channel(config.p_noise),
        noise_std=_uniform(*config.noise_std, (b,), generator)[:, None].expand(b, c),
        blur_channels=per_channel(config.p_blur, config.p_blur_per_channel),
        blur_sigma=_uniform(*config.blur_sigma, (b, c, 2), generator),
        brightness_channels=per_channel(config.p_brightness),
        brightness=_around_one(config.brightness, (b, c), generator),
        contrast_channels=per_channel(config.p_contrast),
        contrast=_around_one(config.contrast, (b, c), generator),
        low_resolution_channels=per_channel(config.p_low_resolution, config.p_low_resolution_per_channel),
        low_resolution_zoom=_uniform(*config.low_resolution_zoom, (b, c), generator),
        gamma_inverted_channels=per_channel(config.p_gamma_inverted),
        gamma_inverted=_around_one(config.gamma, (b, c), generator),
        gamma_channels=per_channel(config.p_gamma),
        gamma=_around_one(config.gamma, (b, c), generator),
        flip=flip,
    )


def _on_channels(images: Tensor, chosen: Tensor, transform, *values: Tensor) -> None:
    """Applies ``transform(x, *values)`` in place to the chosen (sample, channel) images of ``images``.

    ``chosen`` is ``(B, C)`` bool; each of ``values`` is ``(B, C, ...)``, indexed alike."""
    b, c, h, w = images.shape
    index = chosen.to(images.device).reshape(b * c).nonzero().squeeze(1)
    if index.numel() == 0:
        return
    flat = images.view(b * c, h, w)
    picked = [v.to(images.device).reshape(b * c, *v.shape[2:]).index_select(0, index) for v in values]
    flat.index_copy_(0, index, transform(flat.index_select(0, index), *picked))


@torch.no_grad()
def apply_augmentation(
    images: Tensor,
    labels: Tensor | None,
    params: AugmentationParams,
    generator: torch.Generator,
    config: AugmentationConfig = AugmentationConfig(),
) -> tuple[Tensor, Tensor | None]:
    """Applies sampled ``params`` to ``images`` ``(B, C, H, W)`` and ``labels`` ``(B, H, W)`` (or ``None``).

    ``generator`` supplies the noise fields (drawn only for the samples that get noise). Returns new tensors;
    the inputs are not modified.
    """
    _check_batch(images, labels)
    if params.noise_channels.shape != images.shape[:2]:
        raise DataError(
            f"augmentation parameters were drawn for (B, C) = {tuple(params.noise_channels.shape)} but the images "
            f"are {tuple(images.shape)}; call sample_augmentation with this batch's size and channel count"
        )
    images = images.clone(memory_format=torch.contiguous_format)
    labels = None if labels is None else labels.clone()
    spatial = params.do_spatial.to(images.device).nonzero().squeeze(1)
    if spatial.numel() > 0:
        moved, moved_labels = rotate_scale(
            images.index_select(0, spatial),
            None if labels is None else labels.index_select(0, spatial),
            params.angle.index_select(0, spatial.to(params.angle.device)),
            params.scale.index_select(0, spatial.to(params.scale.device)),
        )
        images.index_copy_(0, spatial, moved)
        if labels is not None:
            labels.index_copy_(0, spatial, moved_labels)

    _on_channels(images, params.noise_channels, lambda x, std: add_gaussian_noise(x, std, generator), params.noise_std)
    radius = max(1, math.ceil(3.0 * config.blur_sigma[1]))
    _on_channels(images, params.blur_channels, lambda x, s: gaussian_blur(x, s, radius), params.blur_sigma)
    _on_channels(images, params.brightness_channels, scale_brightness, params.brightness)
    keep_range = config.contrast_preserve_range
    _on_channels(images, params.contrast_channels, lambda x, f: adjust_contrast(x, f, keep_range), params.contrast)
    _on_channels(images, params.low_resolution_channels, simulate_low_resolution, params.low_resolution_zoom)
    retain = config.gamma_retain_stats
    for chosen, gamma, inverted in (
        (params.gamma_inverted_channels, params.gamma_inverted, True),
        (params.gamma_channels, params.gamma, False),
    ):
        _on_channels(images, chosen, lambda x, g, inv=inverted: gamma_transform(x, g, _full(g, inv), retain), gamma)
    return mirror(images, labels, params.flip, inplace=True)


def _full(like: Tensor, value: bool) -> Tensor:
    return torch.full(like.shape, value, dtype=torch.bool, device=like.device)


def augment_batch(
    images: Tensor,
    labels: Tensor | None,
    generator: torch.Generator,
    config: AugmentationConfig = AugmentationConfig(),
    channel_sources: tuple[int, ...] | None = None,
) -> tuple[Tensor, Tensor | None]:
    """Augments a training batch: images ``(B, C, H, W)`` float, labels ``(B, H, W)`` integer (or ``None``).

    All randomness comes from ``generator`` (e.g. ``torch.Generator().manual_seed(seed)``; a generator on the
    images' CUDA device avoids moving noise fields from the CPU). Returns new tensors of the same shapes, dtypes
    and device; with a disabled config the inputs themselves are returned and the generator is not used.
    ``channel_sources``: for each channel, the channel whose random choices it shares (e.g. a 2.5D input's
    neighbouring CT slices share the CT's brightness, blur and gamma: ``PreprocessingSpec.channel_modalities``);
    ``None``: every channel draws its own. Noise fields are drawn per channel either way.
    """
    _check_batch(images, labels)
    _check_generator(generator)
    if not config.enabled:
        return images, labels
    if channel_sources is None:
        params = sample_augmentation(images.shape[0], images.shape[1], generator, config)
    else:
        if len(channel_sources) != images.shape[1]:
            raise ValueError(
                f"channel_sources names {len(channel_sources)} channels, the images have {images.shape[1]}"
            )
        params = sample_augmentation(images.shape[0], max(channel_sources) + 1, generator, config)
        params = params.for_channels(channel_sources)
    return apply_augmentation(images, labels, params, generator, config)


def _check_generator(generator: object) -> None:
    if not isinstance(generator, torch.Generator):
        raise ConfigError(
            f"augmentation needs a torch.Generator (got {type(generator).__name__}); "
            "create one with torch.Generator().manual_seed(seed) and keep it for the whole run"
        )


def _check_batch(images: Tensor, labels: Tensor | None) -> None:
    if not isinstance(images, Tensor) or images.ndim != 4 or not images.is_floating_point():
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise DataError(f"augmentation expects images as a floating-point (B, C, H, W) tensor, got {shape}")
    if labels is None:
        return
    b, _, h, w = images.shape
    if not isinstance(labels, Tensor) or labels.shape != (b, h, w):
        shape = tuple(labels.shape) if isinstance(labels, Tensor) else type(labels).__name__
        raise DataError(f"labels must be a (B, H, W) = {(b, h, w)} tensor matching the images, got {shape}")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise DataError(f"labels must hold integer class indices (e.g. int64), got {labels.dtype}")
    if labels.device != images.device:
        raise DataError(f"images are on {images.device} but labels on {labels.device}; move both to one device")
