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
        """Logits ``(B, num_classes, p h, p w)`` from the tapped maps ``(B, C_i, h, w)`` (or their concatenation).

        Runs at matrix-product speed: a stride-2, kernel-2 transposed convolution maps every pixel to its own
        2x2 block, one GEMM ``(pixels, C) @ (C, 4 C/2)``. The pixels are kept in that blocked order through all
        stages (channel LayerNorm and GELU are per pixel, so the order does not matter to them), and only the
        small logits are rearranged into the image once at the end, instead of copying every large map. The
        parameters are those of the ``stages`` and ``head`` modules (same state-dict names); the result equals
        :meth:`reference_forward` to float rounding.
        """
        if isinstance(maps, Tensor):
            x = maps.permute(0, 2, 3, 1)
        else:
            x = torch.cat([m.permute(0, 2, 3, 1) for m in maps], dim=-1)
        b, h, w, c = x.shape
        x = x.reshape(-1, c)  # pixels in (b, i, j) order; each stage appends its (di, dj) to the order
        n_stages = 0
        for up, norm in zip(self.stages[0::3], self.stages[1::3], strict=True):
            out = up.out_channels
            weight = up.weight.permute(0, 2, 3, 1).reshape(x.shape[1], 4 * out)  # (C_in, [di, dj, C_out])
            x = x @ weight if up.bias is None else torch.addmm(up.bias.repeat(4), x, weight)
            x = F.gelu(F.layer_norm(x.view(-1, out), norm.normalized_shape, norm.weight, norm.bias, norm.eps))
            n_stages += 1
        logits = F.linear(x, self.head.weight.flatten(1), self.head.bias)
        k = logits.shape[1]
        blocked = logits.view(b, h, w, *([2, 2] * n_stages), k)
        rows = [1] + [3 + 2 * s for s in range(n_stages)]  # i, d1i, d2i, ...
        cols = [2] + [4 + 2 * s for s in range(n_stages)]  # j, d1j, d2j, ...
        image = blocked.permute(0, 3 + 2 * n_stages, *rows, *cols)
        return image.reshape(b, k, h * 2**n_stages, w * 2**n_stages)

    def working_memory_bytes(self, height: int, width: int, element_bytes: int) -> int:
        """Peak memory one ``height x width`` slice needs in :meth:`forward` (inference): at the last stage, the
        transposed convolution's output, its LayerNorm and its GELU, each a full-resolution map of that stage's
        channels (0.60 GB for a ViT-B decoder at 512x512 in float32; ``bench_memory.py`` compares it with the
        measured working memory of the whole segmenter)."""
        channels = self.stages[-3].out_channels
        return 3 * channels * height * width * element_bytes

    def reference_forward(self, maps: list[Tensor] | tuple[Tensor, ...]) -> Tensor:
        """The same computation with PyTorch's convolution modules, channels-first (for checks)."""
        x = maps if isinstance(maps, Tensor) else torch.cat(list(maps), dim=1)
        return self.head(self.stages(x))
