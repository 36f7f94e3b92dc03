"""The KoLeo regulariser (paper eq. 1; Sablayrolles et al. 2019): ``-mean_i log(d_i)`` with ``d_i`` the
distance of the L2-normalised feature ``i`` to its nearest neighbour in the batch. It spreads the cls
tokens of one crop over the sphere.

PET and CT stores contain adjacent, nearly identical slices, and a batch may hold the same slice twice:
two identical features have ``d = 0``, where ``-log d`` and its gradient ``1/d`` are unbounded (and the
gradient of ``|x - y|`` is undefined). The distance is therefore softened to ``sqrt(d^2 + min_distance^2)``:
unchanged for distinct features (``d >> min_distance``), bounded by ``-log(min_distance)`` with a zero
gradient for exact duplicates, and still pushing near-duplicates apart with a gradient at most
``1 / (2 min_distance)``. (A hard clamp would instead stop all gradient below the threshold, which at the
start of training from scratch, when every cls token is nearly the same, switches KoLeo off.)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def koleo_loss(features: Tensor, min_distance: float = 1e-3, eps: float = 1e-8) -> Tensor:
    """KoLeo of ``features`` ``(B, D)``, ``B >= 2``; L2-normalised here, so positive row scaling is ignored."""
    if features.shape[0] < 2:
        raise ValueError("KoLeo needs at least two samples per crop and process")
    x = F.normalize(features.float(), p=2, dim=-1, eps=eps)
    with torch.no_grad():
        dots = x @ x.t()
        dots.fill_diagonal_(-2.0)
        neighbour = dots.argmax(dim=1)
    squared = (x - x[neighbour]).pow(2).sum(dim=-1)
    return -torch.log(torch.sqrt(squared + min_distance**2) + eps).mean()


def koleo_per_crop(cls_tokens: Tensor, n_crops: int, min_distance: float = 1e-3) -> Tensor:
    """KoLeo of each crop's ``B`` cls tokens (``cls_tokens`` ``(n_crops * B, D)``, crop-major), averaged."""
    return torch.stack([koleo_loss(c, min_distance) for c in cls_tokens.chunk(n_crops)]).mean()
