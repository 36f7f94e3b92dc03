"""Multi-head self-attention of the DINOv3 ViT, with RoPE on queries and keys."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from .layers import QKVLinear
from .rope import apply_rope


class SelfAttention(nn.Module):
    """Fused-qkv attention computed by PyTorch's ``scaled_dot_product_attention`` (no mask).

    ``rope`` is a ``(sin, cos)`` pair of ``(N, Dh)`` tables already padded for the prefix tokens
    (see :func:`.rope.with_prefix`), so every token is rotated in one operation.
    """

    def __init__(
        self, dim: int, num_heads: int, *, qkv_bias: bool = True, proj_bias: bool = True, mask_k_bias: bool = False
    ) -> None:
        super().__init__()
        if dim % num_heads != 0:
            raise ValueError(f"embed dim {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = QKVLinear(dim, bias=qkv_bias, mask_k_bias=mask_k_bias)
        self.proj = nn.Linear(dim, dim, bias=proj_bias)

    def forward(self, x: Tensor, rope: tuple[Tensor, Tensor] | None = None) -> Tensor:
        b, n, d = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each (B, heads, N, Dh)
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, d))
