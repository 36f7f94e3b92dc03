"""The DINOv3 vision transformer: ViT-S/16, ViT-B/16, ViT-L/16 and small custom sizes.

State-dict names match the official ("hub") checkpoints, so a released ``.pth`` loads without renaming.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .block import Block
from .rope import RopePositionEmbedding, with_prefix


@dataclass(frozen=True)
class ViTConfig:
    """Architecture of a :class:`DINOv3ViT`. Defaults are the official ViT-B/16."""

    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    patch_size: int = 16
    in_chans: int = 3
    ffn_ratio: float = 4.0
    n_storage_tokens: int = 4
    layerscale_init: float | None = 1e-5
    norm_eps: float = 1e-5
    qkv_bias: bool = True
    mask_k_bias: bool = True
    proj_bias: bool = True
    ffn_bias: bool = True
    rope_base: float = 100.0
    rope_shift: float | None = None
    rope_jitter: float | None = None
    rope_rescale: float | None = 2.0
    drop_path_rate: float = 0.0

    def __post_init__(self) -> None:
        if self.embed_dim % self.num_heads:
            raise ValueError(f"embed_dim {self.embed_dim} is not divisible by num_heads {self.num_heads}")
        if (self.embed_dim // self.num_heads) % 4:
            raise ValueError(f"head dim {self.embed_dim // self.num_heads} must be divisible by 4 for 2D RoPE")
        if self.depth < 1 or self.patch_size < 1 or self.in_chans < 1 or self.n_storage_tokens < 0:
            raise ValueError(f"invalid ViT config: {self}")

    @property
    def head_dim(self) -> int:
        return self.embed_dim // self.num_heads

    @property
    def default_taps(self) -> tuple[int, ...]:
        """Four evenly spaced blocks ending at the last one: (2, 5, 8, 11) for depth 12."""
        return tuple(sorted({max(round((i + 1) * self.depth / 4) - 1, 0) for i in range(4)}))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ViTConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown ViT config keys {unknown}; known keys: {sorted(known)}")
        return cls(**data)


#: Named architectures. ``vits16``/``vitb16``/``vitl16`` are the official DINOv3 sizes; the small ones
#: exist for tests, the demo model and quick experiments on a CPU.
VIT_PRESETS: dict[str, ViTConfig] = {
    "vits16": ViTConfig(embed_dim=384, depth=12, num_heads=6),
    "vitb16": ViTConfig(embed_dim=768, depth=12, num_heads=12),
    "vitl16": ViTConfig(embed_dim=1024, depth=24, num_heads=16),
    "vit_tiny16": ViTConfig(embed_dim=192, depth=12, num_heads=3),
    "vit_nano16": ViTConfig(embed_dim=64, depth=4, num_heads=2),
}


def vit_config(spec: str | dict | ViTConfig) -> ViTConfig:
    """Resolves a preset name, a dict (optionally ``{"preset": name, ...overrides}``) or a config."""
    if isinstance(spec, ViTConfig):
        return spec
    if isinstance(spec, str):
        if spec not in VIT_PRESETS:
            raise ValueError(f"unknown ViT preset {spec!r}; choose one of {sorted(VIT_PRESETS)}")
        return VIT_PRESETS[spec]
    if isinstance(spec, dict):
        spec = dict(spec)
        base = vit_config(spec.pop("preset")) if "preset" in spec else ViTConfig()
        return ViTConfig.from_dict({**base.to_dict(), **spec})
    raise TypeError(f"a ViT config must be a preset name, a dict or a ViTConfig, got {type(spec).__name__}")


class PatchEmbed(nn.Module):
    """``Conv2d(in_chans, D, p, stride p)``; sizes not divisible by ``p`` are floored by the conv."""

    def __init__(self, in_chans: int, embed_dim: int, patch_size: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x)  # (B, D, H/p, W/p)


class DINOv3ViT(nn.Module):
    """DINOv3 ViT with 2D RoPE, storage (register) tokens, LayerScale and a mask token.

    Input ``(B, C, H, W)``; tokens are ``[cls, storage..., patches...]`` with patches row-major.
    """

    def __init__(self, config: ViTConfig | str | dict = "vitb16") -> None:
        super().__init__()
        cfg = vit_config(config)
        self.config = cfg
        self.embed_dim = cfg.embed_dim
        self.patch_size = cfg.patch_size
        self.n_storage_tokens = cfg.n_storage_tokens
        self.patch_embed = PatchEmbed(cfg.in_chans, cfg.embed_dim, cfg.patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.embed_dim))
        if cfg.n_storage_tokens > 0:
            self.storage_tokens = nn.Parameter(torch.zeros(1, cfg.n_storage_tokens, cfg.embed_dim))
        self.mask_token = nn.Parameter(torch.zeros(1, cfg.embed_dim))
        self.rope_embed = RopePositionEmbedding(
            cfg.head_dim, base=cfg.rope_base, shift=cfg.rope_shift, jitter=cfg.rope_jitter, rescale=cfg.rope_rescale
        )
        self.blocks = nn.ModuleList(
            Block(
                cfg.embed_dim,
                cfg.num_heads,
                ffn_ratio=cfg.ffn_ratio,
                qkv_bias=cfg.qkv_bias,
                proj_bias=cfg.proj_bias,
                ffn_bias=cfg.ffn_bias,
                mask_k_bias=cfg.mask_k_bias,
                layerscale_init=cfg.layerscale_init,
                norm_eps=cfg.norm_eps,
                drop_path=cfg.drop_path_rate,
            )
            for _ in range(cfg.depth)
        )
        self.norm = nn.LayerNorm(cfg.embed_dim, eps=cfg.norm_eps)
        self.init_weights()

    @property
    def n_prefix_tokens(self) -> int:
        return 1 + self.n_storage_tokens

    @property
    def default_taps(self) -> tuple[int, ...]:
        return self.config.default_taps

    def set_rope_augmentation(self, enabled: bool) -> None:
        """Switches RoPE train-time augmentation (it only ever acts in ``train()`` mode)."""
        self.rope_embed.augment = bool(enabled)

    def init_weights(self) -> None:
        """Random initialisation as in DINOv3 (truncated normal 0.02, zero biases, zero mask token)."""
        nn.init.normal_(self.cls_token, std=0.02)
        if self.n_storage_tokens > 0:
            nn.init.normal_(self.storage_tokens, std=0.02)
        nn.init.zeros_(self.mask_token)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                module.reset_parameters()
        self.patch_embed.proj.reset_parameters()

    def prepare_tokens(self, x: Tensor, masks: Tensor | None = None) -> tuple[Tensor, tuple[int, int]]:
        """Patch-embeds ``x`` and prepends the prefix tokens; ``masks`` ``(B, h*w)`` bool -> mask token."""
        patches = self.patch_embed(x)
        b, _, h, w = patches.shape
        patches = patches.flatten(2).transpose(1, 2)
        if masks is not None:
            if masks.shape != patches.shape[:2]:
                raise ValueError(f"masks must have shape {tuple(patches.shape[:2])}, got {tuple(masks.shape)}")
            patches = torch.where(masks.unsqueeze(-1), self.mask_token.to(patches.dtype).unsqueeze(0), patches)
        prefix = [self.cls_token.expand(b, -1, -1)]
        if self.n_storage_tokens > 0:
            prefix.append(self.storage_tokens.expand(b, -1, -1))
        return torch.cat([*prefix, patches], dim=1), (h, w)

    def _rope(self, h: int, w: int) -> tuple[Tensor, Tensor]:
        sin, cos = self.rope_embed(h, w)
        return with_prefix(sin, cos, self.n_prefix_tokens)

    def _check_input(self, x: Tensor) -> None:
        if x.ndim != 4 or x.shape[1] != self.config.in_chans:
            raise ValueError(f"expected input (B, {self.config.in_chans}, H, W), got {tuple(x.shape)}")
        if x.shape[-2] < self.patch_size or x.shape[-1] < self.patch_size:
            raise ValueError(f"input {tuple(x.shape[-2:])} is smaller than one {self.patch_size}px patch")

    def forward_features(self, x: Tensor, masks: Tensor | None = None) -> dict[str, Tensor]:
        """Runs all blocks. Returns normed cls ``(B, D)``, storage ``(B, S, D)``, patch tokens
        ``(B, h*w, D)``, the un-normed tokens ``x_prenorm`` and the ``masks`` given."""
        self._check_input(x)
        tokens, (h, w) = self.prepare_tokens(x, masks)
        rope = self._rope(h, w)
        for blk in self.blocks:
            tokens = blk(tokens, rope)
        normed = self.norm(tokens)
        p = self.n_prefix_tokens
        return {
            "x_norm_clstoken": normed[:, 0],
            "x_storage_tokens": normed[:, 1:p],
            "x_norm_patchtokens": normed[:, p:],
            "x_prenorm": tokens,
            "masks": masks,
        }

    def forward(self, x: Tensor, masks: Tensor | None = None) -> Tensor:
        """The normed cls token ``(B, D)``."""
        return self.forward_features(x, masks)["x_norm_clstoken"]

    def get_intermediate_layers(
        self,
        x: Tensor,
        n: int | Sequence[int] | None = None,
        *,
        reshape: bool = True,
        norm: bool = True,
        return_class_token: bool = False,
    ) -> tuple:
        """Outputs of chosen blocks with the prefix tokens dropped.

        ``n``: block indices (default :attr:`default_taps`, (2, 5, 8, 11) for 12 blocks) or an int for
        the last ``n`` blocks. ``norm`` applies the final norm to each output. With ``reshape`` each map
        is ``(B, D, H//p, W//p)``, else ``(B, h*w, D)``. With ``return_class_token`` each entry is a
        ``(map, cls)`` pair. Blocks after the last tap are not run.
        """
        self._check_input(x)
        depth = len(self.blocks)
        if n is None:
            taps = list(self.default_taps)
        elif isinstance(n, int):
            taps = list(range(depth - n, depth))
        else:
            taps = sorted(int(i) for i in n)
        if not taps or taps[0] < 0 or taps[-1] >= depth:
            raise ValueError(f"block indices {taps} out of range for a ViT of depth {depth}")
        tokens, (h, w) = self.prepare_tokens(x)
        rope = self._rope(h, w)
        outputs = []
        for i, blk in enumerate(self.blocks[: taps[-1] + 1]):
            tokens = blk(tokens, rope)
            if i in taps:
                outputs.append(self.norm(tokens) if norm else tokens)
        p = self.n_prefix_tokens
        maps = [out[:, p:] for out in outputs]
        if reshape:
            b = x.shape[0]
            maps = [m.transpose(1, 2).reshape(b, -1, h, w) for m in maps]  # views of the token rows, no copy
        if return_class_token:
            return tuple(zip(maps, [out[:, 0] for out in outputs], strict=True))
        return tuple(maps)
