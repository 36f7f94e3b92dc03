"""iBOT block masking (paper eq. 4): which patches of the student's global crops become mask tokens.

Half of the global crops (``mask_sample_probability``) are masked; the ``n`` masked images get
stratified ratios, image ``i`` a ratio drawn uniformly in ``[r_i, r_{i+1}]`` of
``linspace(min_ratio, max_ratio, n + 1)``, so the batch covers the whole range. An image with ratio ``r``
gets exactly ``int(N * r)`` masked patches: rectangular blocks (at least ``min_block`` patches, aspect
ratio log-uniform in [0.3, 1/0.3], at most half the grid each) and, if blocks cannot fill the count
exactly, single patches drawn at random. All randomness comes from the ``torch.Generator`` given.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def _uniform(gen: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=gen))


def block_mask(height: int, width: int, n_masked: int, gen: torch.Generator, *, min_block: int = 4,
               max_block_fraction: float = 0.5, min_aspect: float = 0.3, attempts: int = 10) -> Tensor:  # fmt: skip
    """``(height * width,)`` bool with exactly ``n_masked`` True entries, mostly in rectangular blocks."""
    n = height * width
    if not 0 <= n_masked <= n:
        raise ValueError(f"cannot mask {n_masked} of {n} patches")
    mask = torch.zeros(height, width, dtype=torch.bool)
    max_block = max(min_block, int(max_block_fraction * n))
    log_aspect = (math.log(min_aspect), math.log(1.0 / min_aspect))
    count, failures = 0, 0
    while count < n_masked and failures < attempts:
        remaining = n_masked - count
        if remaining < min_block:
            break
        area = _uniform(gen, min_block, min(max_block, remaining))
        aspect = math.exp(_uniform(gen, *log_aspect))
        h, w = round(math.sqrt(area * aspect)), round(math.sqrt(area / aspect))
        if not (1 <= h <= height and 1 <= w <= width):
            failures += 1
            continue
        top = int(torch.randint(0, height - h + 1, (), generator=gen))
        left = int(torch.randint(0, width - w + 1, (), generator=gen))
        block = mask[top : top + h, left : left + w]
        new = int((~block).sum())
        if 0 < new <= remaining:
            block.fill_(True)
            count += new
            failures = 0
        else:
            failures += 1
    flat = mask.flatten()
    if count < n_masked:  # top up to the exact count with random single patches
        free = (~flat).nonzero().squeeze(1)
        flat[free[torch.randperm(len(free), generator=gen)[: n_masked - count]]] = True
    return flat


def ibot_masks(n_images: int, height: int, width: int, gen: torch.Generator, *, min_ratio: float = 0.1,
               max_ratio: float = 0.5, sample_probability: float = 0.5) -> tuple[Tensor, Tensor]:  # fmt: skip
    """Masks ``(n_images, height * width)`` bool and the ratio drawn for each image ``(n_images,)``
    (0 for the unmasked ones). ``int(n_images * sample_probability)`` images are masked, which ones at random."""
    n = height * width
    n_masked_images = int(n_images * sample_probability)
    bounds = torch.linspace(min_ratio, max_ratio, n_masked_images + 1).tolist()
    ratios = torch.zeros(n_images)
    masks = torch.zeros(n_images, n, dtype=torch.bool)
    chosen = torch.randperm(n_images, generator=gen)[:n_masked_images]
    for i, image in enumerate(chosen.tolist()):
        ratio = _uniform(gen, bounds[i], bounds[i + 1])
        ratios[image] = ratio
        masks[image] = block_mask(height, width, int(n * ratio), gen)
    return masks, ratios
