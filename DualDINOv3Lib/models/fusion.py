"""Bidirectional CT <-> PET cross-attention fusion of one feature scale (Dual-DINOv3 paper, sec. 2.4)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .fused_ops import compute_dtype


class CrossAttention(nn.Module):
    """Multi-head attention of ``query`` tokens over ``context`` tokens, each with its own projections."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"fusion dim {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)

    def _heads(self, x: Tensor) -> Tensor:
        b, n, d = x.shape
        return x.view(b, n, self.num_heads, d // self.num_heads).transpose(1, 2)

    def forward(self, query: Tensor, context: Tensor) -> Tensor:
        """``(B, N, D)`` query tokens attend over ``(B, M, D)`` context tokens; returns ``(B, N, D)``.

        The heads are strided views of the projections, handed to the attention kernel as they are. Stacking
        the k and v weights into one product was measured no faster: the stacked weight must be rebuilt every
        call, which costs what the larger product saves.
        """
        b, n, d = query.shape
        q, k, v = self._heads(self.q(query)), self._heads(self.k(context)), self._heads(self.v(context))
        out = F.scaled_dot_product_attention(q, k, v)
        return self.out(out.transpose(1, 2).reshape(b, n, d))


class CrossModalFusion(nn.Module):
    """Fuses a CT map and a PET map of the same scale into one map.

    PET tokens query CT keys/values and CT tokens query PET keys/values, each modality with its own
    trainable q/k/v. Choices the paper leaves open, made here:

    - pre-norm: each stream is layer-normed before projection (the frozen encoders' normed outputs
      differ in scale between CT and PET models);
    - residual: each stream keeps its own features, ``x + attn(norm(x), norm(other))``, so the fusion
      starts near a plain concatenation and learns what to take from the other modality;
    - the two cross-attended streams are concatenated channel-wise, ``[CT, PET]``, and projected by a
      1x1 conv to ``out_dim`` channels (default: the encoder width).

    Inputs ``(B, D, h, w)`` each; output ``(B, out_dim, h, w)``. Attention is global over the ``h*w``
    tokens of the slice.
    """

    def __init__(self, dim: int, num_heads: int = 8, out_dim: int | None = None) -> None:
        super().__init__()
        self.norm_ct = nn.LayerNorm(dim)
        self.norm_pet = nn.LayerNorm(dim)
        self.ct_from_pet = CrossAttention(dim, num_heads)  # CT queries, PET keys/values
        self.pet_from_ct = CrossAttention(dim, num_heads)  # PET queries, CT keys/values
        self.project = nn.Conv2d(2 * dim, out_dim or dim, kernel_size=1)

    def forward(self, ct: Tensor, pet: Tensor) -> Tensor:
        """Fused map ``(B, out_dim, h, w)`` (channels-last in memory) from CT and PET maps ``(B, D, h, w)``.

        Runs on token rows throughout: an encoder's map is a view of its ``(B, h*w, D)`` tokens, so the
        ``flatten(2).transpose(1, 2)`` below is free, and the 1x1 projection of the channel concatenation
        ``[CT, PET]`` is two matrix products summed into one output (no concatenated copy). The result equals
        :meth:`reference_forward` to float rounding, with the same parameters.
        """
        if ct.shape != pet.shape:
            raise ValueError(f"CT and PET feature maps differ in shape: {tuple(ct.shape)} vs {tuple(pet.shape)}")
        b, d, h, w = ct.shape
        ct_t = ct.flatten(2).transpose(1, 2)
        pet_t = pet.flatten(2).transpose(1, 2)
        dtype = compute_dtype(ct)  # cast each normed stream once, not in every projection that reads it
        ct_n, pet_n = self.norm_ct(ct_t).to(dtype), self.norm_pet(pet_t).to(dtype)
        ct_t = ct_t + self.ct_from_pet(ct_n, pet_n)
        pet_t = pet_t + self.pet_from_ct(pet_n, ct_n)
        weight = self.project.weight.flatten(1)  # (out, 2D): columns [CT, PET]
        fused = F.linear(ct_t, weight[:, :d], self.project.bias)
        fused = torch.baddbmm(fused, pet_t, weight[:, d:].t().expand(b, -1, -1))
        return fused.transpose(1, 2).unflatten(2, (h, w))

    def reference_forward(self, ct: Tensor, pet: Tensor) -> Tensor:
        """The implementation before issue 12 (a concatenated copy, channels-first, and a 1x1 convolution; it was
        given channels-first contiguous maps), kept as the parity and speed reference."""
        if ct.shape != pet.shape:
            raise ValueError(f"CT and PET feature maps differ in shape: {tuple(ct.shape)} vs {tuple(pet.shape)}")
        b, d, h, w = ct.shape
        ct_t = ct.flatten(2).transpose(1, 2)
        pet_t = pet.flatten(2).transpose(1, 2)
        ct_n, pet_n = self.norm_ct(ct_t), self.norm_pet(pet_t)
        ct_t = ct_t + self.ct_from_pet(ct_n, pet_n)
        pet_t = pet_t + self.pet_from_ct(pet_n, ct_n)
        both = torch.cat((ct_t, pet_t), dim=-1).transpose(1, 2).reshape(b, 2 * d, h, w)
        return self.project(both)
