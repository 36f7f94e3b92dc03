"""The Primus multiscale 2D decoder (MedDINOv3): inverts the p x p patch embedding in log2(p) 2x steps
(four for the paper's 16x16 patches, three for the bundled model's 8x8)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channel dimension of a ``(B, C, H, W)`` map."""

    def forward(self, x: Tensor) -> Tensor:
        x = F.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class PrimusMultiscaleDecoder(nn.Module):
    """Concatenated tap maps ``(B, sum C_i, h, w)`` -> logits ``(B, num_classes, p h, p w)`` for patch size ``p``.

    ``log2(p)`` stages (four for 16x16 patches) of ``ConvTranspose2d(k=2, s=2) -> channel LayerNorm (eps 1e-6)
    -> GELU`` halve the channels each time (3072 -> 1536 -> 768 -> 384 -> 192 for four ViT-B taps), then a
    1x1 conv gives the logits, so the output is at input resolution.
    """

    def __init__(self, in_channels: int, num_classes: int = 3, patch_size: int = 16) -> None:
        super().__init__()
        n_stages = patch_size.bit_length() - 1
        if 2**n_stages != patch_size:
            raise ValueError(f"the Primus decoder needs a power-of-two patch size, got {patch_size}")
        if in_channels % 2**n_stages:
            raise ValueError(f"decoder input channels {in_channels} must be divisible by {2**n_stages}")
        if num_classes < 2:
            raise ValueError(f"need at least 2 classes (background + one structure), got {num_classes}")
        stages = []
        channels = in_channels
        for _ in range(n_stages):
            stages += [
                nn.ConvTranspose2d(channels, channels // 2, kernel_size=2, stride=2),
                LayerNorm2d(channels // 2, eps=1e-6),
                nn.GELU(),
            ]
            channels //= 2
        self.stages = nn.Sequential(*stages)
        self.head = nn.Conv2d(channels, num_classes, kernel_size=1)

    def forward(self, maps: list[Tensor] | tuple[Tensor, ...]) -> Tensor:
        x = maps if isinstance(maps, Tensor) else torch.cat(list(maps), dim=1)
        return self.head(self.stages(x))
