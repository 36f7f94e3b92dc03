"""Small building blocks of the DINOv3 ViT: LayerScale, the MLP and the k-masked qkv projection."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .fused_ops import linear_gelu


class LayerScale(nn.Module):
    """Per-channel residual scaling ``x * gamma`` (DINOv3 initialises ``gamma`` to 1e-5)."""

    def __init__(self, dim: int, init_value: float = 1e-5) -> None:
        super().__init__()
        self.init_value = init_value
        self.gamma = nn.Parameter(torch.full((dim,), float(init_value)))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gamma


class Mlp(nn.Module):
    """``fc1 -> GELU -> fc2``, the feed-forward of the ViT-S/B/L DINOv3 models."""

    def __init__(self, dim: int, hidden_dim: int, bias: bool = True) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim, bias=bias)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, dim, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(linear_gelu(x, self.fc1.weight, self.fc1.bias))  # bias and GELU fused where possible


class QKVLinear(nn.Linear):
    """The fused ``Linear(D, 3D)`` producing q, k and v.

    With ``mask_k_bias`` a persistent ``bias_mask`` buffer multiplies the bias; DINOv3 sets the K third
    of it to zero (a key bias only shifts every logit of a query by a constant, which softmax ignores),
    and the released checkpoints store the mask alongside the weights.
    """

    def __init__(self, dim: int, bias: bool = True, mask_k_bias: bool = False) -> None:
        super().__init__(dim, 3 * dim, bias=bias)
        self.mask_k_bias = mask_k_bias and bias
        if self.mask_k_bias:
            mask = torch.ones(3 * dim)
            mask[dim : 2 * dim] = 0.0
            self.register_buffer("bias_mask", mask, persistent=True)

    def forward(self, x: Tensor) -> Tensor:
        if self.mask_k_bias:
            return F.linear(x, self.weight, self.bias * self.bias_mask.to(self.bias.dtype))
        return super().forward(x)
