"""The DINO and iBOT projection heads (paper sec. 2.3; separate heads as in DINOv3).

``D -> hidden -> hidden -> bottleneck`` MLP with GELU, L2 normalisation, then ``Linear(bottleneck, K)``
without bias: the prototypes. The published DINOv3 checkpoints carry no heads, so they always start here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class DINOHead(nn.Module):
    """``(..., D)`` features -> ``(..., K)`` prototype logits."""

    def __init__(self, in_dim: int, n_prototypes: int, hidden_dim: int = 2048, bottleneck_dim: int = 256,
                 n_layers: int = 3) -> None:  # fmt: skip
        super().__init__()
        if n_layers < 1:
            raise ValueError("a DINO head needs at least one layer")
        dims = [in_dim] + [hidden_dim] * (n_layers - 1) + [bottleneck_dim]
        layers: list[nn.Module] = []
        for i in range(n_layers):
            layers.append(nn.Linear(dims[i], dims[i + 1]))
            if i < n_layers - 1:
                layers.append(nn.GELU())
        self.mlp = nn.Sequential(*layers)
        self.last_layer = nn.Linear(bottleneck_dim, n_prototypes, bias=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    @property
    def n_prototypes(self) -> int:
        return self.last_layer.out_features

    def forward(self, x: Tensor) -> Tensor:
        z = F.normalize(self.mlp(x), p=2, dim=-1, eps=1e-6 if x.dtype == torch.float16 else 1e-12)
        return self.last_layer(z)
