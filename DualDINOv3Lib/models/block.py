"""The pre-norm transformer block of the DINOv3 ViT, with LayerScale and batch-subset drop path."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .attention import SelfAttention
from .fused_ops import fused_ops_enabled
from .layers import LayerScale, Mlp


class Block(nn.Module):
    """``x + ls1(attn(norm1(x)))`` then ``x + ls2(mlp(norm2(x)))``.

    Drop path follows DINOv3: during training each residual branch is computed for a random subset of
    ``max(1, int(B * (1 - drop_path)))`` samples and added back scaled by ``B / subset``, which saves
    the compute of the dropped samples instead of multiplying them by zero.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        *,
        ffn_ratio: float = 4.0,
        qkv_bias: bool = True,
        proj_bias: bool = True,
        ffn_bias: bool = True,
        mask_k_bias: bool = False,
        layerscale_init: float | None = 1e-5,
        norm_eps: float = 1e-5,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = SelfAttention(dim, num_heads, qkv_bias=qkv_bias, proj_bias=proj_bias, mask_k_bias=mask_k_bias)
        self.ls1 = LayerScale(dim, layerscale_init) if layerscale_init else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, int(dim * ffn_ratio), bias=ffn_bias)
        self.ls2 = LayerScale(dim, layerscale_init) if layerscale_init else nn.Identity()
        self.drop_path = drop_path

    def _attn_branch(self, x: Tensor, rope: tuple[Tensor, Tensor] | None) -> Tensor:
        return self.ls1(self.attn(self.norm1(x), rope))

    def _mlp_branch(self, x: Tensor) -> Tensor:
        return self.ls2(self.mlp(self.norm2(x)))

    def forward(self, x: Tensor, rope: tuple[Tensor, Tensor] | None = None) -> Tensor:
        if not (self.training and self.drop_path > 0.0):
            if isinstance(self.ls1, LayerScale) and isinstance(self.ls2, LayerScale) and fused_ops_enabled():
                # x + gamma * branch in one pass: under autocast the branch is bf16 and the residual stream
                # float32, and the separate product and sum of mixed dtypes take 3.5x as long (issue 12)
                x = torch.addcmul(x, self.attn(self.norm1(x), rope), self.ls1.gamma)
                return torch.addcmul(x, self.mlp(self.norm2(x)), self.ls2.gamma)
            x = x + self._attn_branch(x, rope)
            return x + self._mlp_branch(x)
        b = x.shape[0]
        keep = max(int(b * (1.0 - self.drop_path)), 1)
        scale = b / keep
        idx = torch.randperm(b, device=x.device)[:keep]
        x = torch.index_add(x, 0, idx, self._attn_branch(x[idx], rope).to(x.dtype), alpha=scale)
        idx = torch.randperm(b, device=x.device)[:keep]
        return torch.index_add(x, 0, idx, self._mlp_branch(x[idx]).to(x.dtype), alpha=scale)
