"""The Primus multiscale 2D decoder (MedDINOv3): inverts the p x p patch embedding in log2(p) 2x steps
(four for the paper's 16x16 patches, three for the bundled model's 8x8)."""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .fused_ops import compute_dtype

TILE_ELEMENTS = 2**22  # elements of the last map of a decoder tile (8 MB in bf16; measured best of 2^18..2^24)
MIN_TILE_ROWS = 256  # input pixels of a tile at the stage where tiling starts, so its product stays efficient


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
        small logits are rearranged into the image once at the end, instead of copying every large map.

        In blocked order each input pixel's descendants are consecutive rows, so the late stages (small weights,
        large maps) run on tiles of pixels through to the logits (:meth:`_stage_plan`): their maps stay in cache
        and are never held at full resolution. Under autocast the LayerNorm keeps the compute dtype (autocast
        would widen the largest maps to float32 only for the next product to round them back). The parameters
        are those of the ``stages`` and ``head`` modules (same state-dict names); the result equals
        :meth:`reference_forward` to float rounding.
        """
        if isinstance(maps, Tensor):
            x = maps.permute(0, 2, 3, 1)
        else:
            x = torch.cat([m.permute(0, 2, 3, 1) for m in maps], dim=-1)
        b, h, w, _ = x.shape
        x = x.reshape(b * h * w, -1)  # pixels in (b, i, j) order; each stage appends its (di, dj) to the order
        dtype = compute_dtype(x)
        pairs = zip(self.stages[0::3], self.stages[1::3], strict=True)
        stages = [self._stage_parameters(up, norm) for up, norm in pairs]
        whole, tile_rows = self._stage_plan(x.shape[0])
        for params in stages[:whole]:
            x = self._stage(x, *params, dtype)
        tiles = [x] if tile_rows is None else x.split(tile_rows)
        logits = [self._tail(tile, stages[whole:], dtype) for tile in tiles]
        logits = logits[0] if len(logits) == 1 else torch.cat(logits)
        n_stages = len(stages)
        k = logits.shape[1]
        blocked = logits.view(b, h, w, *([2, 2] * n_stages), k)
        rows = [1] + [3 + 2 * s for s in range(n_stages)]  # i, d1i, d2i, ...
        cols = [2] + [4 + 2 * s for s in range(n_stages)]  # j, d1j, d2j, ...
        image = blocked.permute(0, 3 + 2 * n_stages, *rows, *cols)
        return image.reshape(b, k, h * 2**n_stages, w * 2**n_stages)

    def _stage_plan(self, rows: int) -> tuple[int, int | None]:
        """``(whole, tile_rows)``: the first ``whole`` stages run on all ``rows`` pixels at once; the rest and the
        head on tiles of ``tile_rows`` of their input pixels (None: no tiling), sized so a tile's last map has
        about :data:`TILE_ELEMENTS` elements. Tiling starts at the first stage whose tiles still have
        :data:`MIN_TILE_ROWS` rows: earlier stages have large weights, which tiles would re-read many times."""
        ups = list(self.stages[0::3])
        last_channels = ups[-1].out_channels
        for start in range(len(ups)):
            growth = 4 ** (len(ups) - start) * last_channels  # last-map elements per input pixel of this stage
            tile_rows = TILE_ELEMENTS // growth
            if tile_rows >= MIN_TILE_ROWS:
                pixels = rows * 4**start
                return start, (tile_rows if pixels > tile_rows else None)
        return len(ups), None

    @staticmethod
    def _stage_parameters(up: nn.ConvTranspose2d, norm: nn.LayerNorm) -> tuple:
        out = up.out_channels
        weight = up.weight.permute(0, 2, 3, 1).reshape(up.in_channels, 4 * out)  # (C_in, [di, dj, C_out])
        bias = None if up.bias is None else up.bias.repeat(4)
        return weight, bias, norm

    @staticmethod
    def _stage(x: Tensor, weight: Tensor, bias: Tensor | None, norm: nn.LayerNorm, dtype: torch.dtype) -> Tensor:
        x = (x @ weight if bias is None else torch.addmm(bias, x, weight)).view(-1, norm.normalized_shape[0])
        keep_bf16 = x.device.type == "cpu" and x.dtype == dtype != torch.float32  # normalise without widening
        with torch.autocast(x.device.type, enabled=False) if keep_bf16 else contextlib.nullcontext():
            return F.gelu(F.layer_norm(x, norm.normalized_shape, norm.weight, norm.bias, norm.eps))

    def _tail(self, x: Tensor, stages: list[tuple], dtype: torch.dtype) -> Tensor:
        for params in stages:
            x = self._stage(x, *params, dtype)
        return F.linear(x, self.head.weight.flatten(1), self.head.bias)

    def working_memory_bytes(self, height: int, width: int, element_bytes: int) -> int:
        """Peak memory one ``height x width`` slice needs in :meth:`forward` (inference): the largest map of the
        stages run whole (its product, LayerNorm and GELU) or, if larger, the logits (blocked and as an image);
        tiles are a few MB in all (``bench_memory.py`` compares it with the measured working memory of the whole
        segmenter)."""
        ups = list(self.stages[0::3])
        pixels = (height // 2 ** len(ups)) * (width // 2 ** len(ups))
        whole, _ = self._stage_plan(pixels)
        largest = max([4 ** (s + 1) * pixels * up.out_channels for s, up in enumerate(ups[:whole])], default=0)
        logits = 2 * self.head.out_channels * height * width * element_bytes
        return max(3 * largest * element_bytes, logits)

    def reference_forward(self, maps: list[Tensor] | tuple[Tensor, ...]) -> Tensor:
        """The same computation with PyTorch's convolution modules, channels-first (for checks)."""
        x = maps if isinstance(maps, Tensor) else torch.cat(list(maps), dim=1)
        return self.head(self.stages(x))
