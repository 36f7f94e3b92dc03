"""Multi-crop for single-channel PET or CT slices, in torch (paper sec. 2.3; no torchvision).

From one slice ``(S, S)``: ``2`` global crops (random-resized, area ``global_scale`` of the slice) and
``n_local`` local crops (``local_scale``), each randomly flipped left-right and intensity-augmented; and,
when a Gram teacher is used, one Gram crop per global crop: the same region and flip at ``gram_size``
(2x the global size) with no intensity change, so the Gram teacher sees a clean, sharper view.

Intensity augmentations replace the natural-image colour jitter, grayscale and solarisation, which mean
nothing (or the wrong thing) for one quantitative channel:

- contrast (multiply by ``U(1 - c, 1 + c)``): PET uptake scales with injected dose, weight, uptake time
  and calibration, CT contrast with kernel and windowing;
- brightness (add ``U(-b, b)``, CT only): the per-slice z-scoring leaves small offsets; PET keeps 0 as
  "no uptake", so no offset is added there;
- gamma (PET only, on values clipped at 0): shifts weight between low background uptake and hot spots,
  as reconstruction and SUV normalisation differences do;
- Gaussian blur (``sigma ~ U(0.1, 1.5)`` px): scanner resolution (PET point-spread) and slice thickness
  vary between centres;
- Gaussian noise, scaled by ``sqrt(|x|)`` for PET (counts are Poisson-like) and flat for CT.

Crops are returned single-channel; the model input replicates them to its 3 channels. All randomness
comes from the ``torch.Generator`` given, so a crop is reproducible from its seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass(frozen=True)
class IntensityAugmentation:
    """Probabilities and ranges of the intensity augmentations (see the module docstring)."""

    contrast: float = 0.25
    brightness: float = 0.1
    gamma: tuple[float, float] = (0.7, 1.5)
    gamma_probability: float = 0.5
    blur_probability: float = 0.5
    blur_sigma: tuple[float, float] = (0.1, 1.5)
    noise_probability: float = 0.2
    noise_std: float = 0.03


@dataclass(frozen=True)
class CropSizes:
    """One resolution of a batch: global, local and Gram crop sizes in pixels (``gram`` 0: no Gram crops)."""

    global_size: int = 224
    local_size: int = 96
    gram_size: int = 0


def _rand(gen: torch.Generator, low: float = 0.0, high: float = 1.0) -> float:
    return low + (high - low) * float(torch.rand((), generator=gen))


def random_box(height: int, width: int, scale: tuple[float, float], gen: torch.Generator,
               ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> tuple[int, int, int, int]:  # fmt: skip
    """``(top, left, h, w)`` of a box with area fraction in ``scale`` and aspect ratio in ``ratio``
    (log-uniform); after 10 failed draws, the largest central box within the ratio range."""
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * _rand(gen, *scale)
        aspect = math.exp(_rand(gen, *log_ratio))
        w = round(math.sqrt(target * aspect))
        h = round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            top = int(torch.randint(0, height - h + 1, (), generator=gen))
            left = int(torch.randint(0, width - w + 1, (), generator=gen))
            return top, left, h, w
    w, h = width, height
    if width / height < ratio[0]:
        h = round(width / ratio[0])
    elif width / height > ratio[1]:
        w = round(height * ratio[1])
    return (height - h) // 2, (width - w) // 2, h, w


def resize(image: Tensor, size: int) -> Tensor:
    """``(H, W)`` -> ``(size, size)``, bilinear, antialiased when shrinking."""
    x = image[None, None]
    shrink = size < image.shape[-1] or size < image.shape[-2]
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=shrink)[0, 0]


def gaussian_blur(image: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur of ``(H, W)`` with reflect padding."""
    radius = max(1, math.ceil(3 * sigma))
    radius = min(radius, image.shape[-1] - 1, image.shape[-2] - 1)
    t = torch.arange(-radius, radius + 1, dtype=image.dtype)
    kernel = torch.exp(-0.5 * (t / sigma) ** 2)
    kernel = kernel / kernel.sum()
    x = F.pad(image[None, None], (radius, radius, radius, radius), mode="reflect")
    x = F.conv2d(x, kernel.view(1, 1, 1, -1))
    x = F.conv2d(x, kernel.view(1, 1, -1, 1))
    return x[0, 0]


def augment_intensity(image: Tensor, modality: str, aug: IntensityAugmentation, gen: torch.Generator) -> Tensor:
    """One random draw of the intensity augmentations for ``modality`` ``"PT"`` or ``"CT"``."""
    x = image * _rand(gen, 1.0 - aug.contrast, 1.0 + aug.contrast)
    if modality == "CT":
        x = x + _rand(gen, -aug.brightness, aug.brightness)
    elif _rand(gen) < aug.gamma_probability:
        x = x.clamp_min(0.0) ** _rand(gen, *aug.gamma)
    if _rand(gen) < aug.blur_probability:
        x = gaussian_blur(x, _rand(gen, *aug.blur_sigma))
    if _rand(gen) < aug.noise_probability:
        noise = torch.randn(x.shape, generator=gen, dtype=x.dtype) * aug.noise_std
        x = x + (noise * x.abs().sqrt() if modality == "PT" else noise)
    return x


@dataclass(frozen=True)
class MultiCrop:
    """The crop recipe; :meth:`__call__` makes the crops of one slice."""

    n_global: int = 2
    n_local: int = 8
    global_scale: tuple[float, float] = (0.32, 1.0)
    local_scale: tuple[float, float] = (0.05, 0.32)
    flip_probability: float = 0.5
    modality: str = "PT"
    intensity: IntensityAugmentation = IntensityAugmentation()

    def __call__(self, image: Tensor, sizes: CropSizes, gen: torch.Generator) -> dict[str, Tensor]:
        """``image`` ``(S, S)`` float -> ``global`` ``(n_global, G, G)``, ``local`` ``(n_local, L, L)`` and,
        if ``sizes.gram_size``, ``gram`` ``(n_global, 2G, 2G)`` (same regions and flips as ``global``)."""
        image = image.float()
        height, width = image.shape
        # geometry first, for every crop, so the regions do not depend on the intensity settings
        plan = []
        for kind, count, scale in (
            ("global", self.n_global, self.global_scale),
            ("local", self.n_local, self.local_scale),
        ):
            for _ in range(count):
                plan.append((kind, random_box(height, width, scale, gen), _rand(gen) < self.flip_probability))
        out: dict[str, list[Tensor]] = {"global": [], "local": [], "gram": []}
        for kind, (top, left, h, w), flip in plan:
            region = image[top : top + h, left : left + w]
            if flip:
                region = region.flip(-1)
            if kind == "global" and sizes.gram_size:
                out["gram"].append(resize(region, sizes.gram_size))
            size = sizes.global_size if kind == "global" else sizes.local_size
            out[kind].append(augment_intensity(resize(region, size), self.modality, self.intensity, gen))
        result = {"global": torch.stack(out["global"])}
        result["local"] = (
            torch.stack(out["local"]) if out["local"] else torch.empty(0, sizes.local_size, sizes.local_size)
        )
        if out["gram"]:
            result["gram"] = torch.stack(out["gram"])
        return result
