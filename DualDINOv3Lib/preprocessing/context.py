"""2.5D inputs: a slice with its neighbours ``context_mm`` before and after it along the slice axis.

The neighbours are read at a physical distance, not a slice count, so a model sees the same anatomy 8 mm away
whether the scan has 2 mm or 5 mm slices: between slices they are interpolated linearly, beyond the volume the
end slice is repeated (as a scanner's field of view would be extended by its last slice).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor


def neighbour_weights(indices: np.ndarray, num_slices: int, offset: float) -> tuple[np.ndarray, np.ndarray, Tensor]:
    """For slices ``indices`` and an ``offset`` in slices (any sign, fractional): the two slices to blend
    (``low``, ``high``) and the weight of ``high`` ``(N,)``, clamped to the volume."""
    position = np.clip(indices.astype(np.float64) + offset, 0.0, num_slices - 1)
    low = np.floor(position).astype(np.int64)
    high = np.minimum(low + 1, num_slices - 1)
    return low, high, torch.from_numpy(position - low).to(torch.float32)


def with_context(
    slices: Callable[[np.ndarray], Tensor], indices: np.ndarray, num_slices: int, slice_mm: float, context_mm: float
) -> Tensor:
    """``(N, 6, S, S)``: channels 0-1 are ``slices(indices)`` (CT, PET), 2-3 the same ``context_mm`` before
    each slice and 4-5 ``context_mm`` after it. ``slices(idx)`` returns ``(len(idx), 2, S, S)`` for unique
    ascending ``idx``; ``slice_mm`` is the distance between slices."""
    if slice_mm <= 0:
        raise ValueError(f"the slice spacing must be positive, got {slice_mm}")
    step = context_mm / slice_mm
    plans = [neighbour_weights(indices, num_slices, sign * step) for sign in (-1.0, 1.0)]
    needed = np.unique(np.concatenate([indices, *(part for low, high, _ in plans for part in (low, high))]))
    stack = slices(needed)
    row = {int(z): i for i, z in enumerate(needed)}

    def take(idx: np.ndarray) -> Tensor:
        return stack[[row[int(z)] for z in idx]]

    parts = [take(indices)]
    for low, high, weight in plans:
        w = weight.view(-1, 1, 1, 1)
        parts.append(take(low) * (1 - w) + take(high) * w)
    return torch.cat(parts, dim=1)
