"""Optimiser parameter groups of the student (paper sec. 2.3; DINOv3's recipe).

- No weight decay on biases, norms and LayerScale (names ending in ``bias`` or containing ``norm`` or
  ``gamma``): decaying them shrinks normalisation gains and residual scales, not capacity.
- Layer-wise learning-rate decay: a parameter of layer ``id`` gets ``decay ** (L + 1 - id)``, with the patch
  embedding and the cls/storage/mask tokens at ``id = 0``, block ``i`` at ``i + 1`` and everything after the
  blocks (final norm, heads) at ``L + 1``; early layers of a pretrained model move least.
- The patch embedding's rate is further multiplied by ``patch_embed_lr_multiplier`` (0.2).
- The heads' last layers (the prototypes) are flagged so the trainer can hold them still early on.
"""

from __future__ import annotations

from torch import nn

_LAYER_ZERO = ("patch_embed", "cls_token", "storage_tokens", "mask_token")


def layer_id(name: str, depth: int) -> int:
    """The layer index of backbone parameter ``name`` (without the ``backbone.`` prefix)."""
    if name.startswith(_LAYER_ZERO):
        return 0
    if name.startswith("blocks."):
        return int(name.split(".")[1]) + 1
    return depth + 1


def no_weight_decay(name: str) -> bool:
    return name.endswith("bias") or "norm" in name or "gamma" in name


def parameter_groups(model: nn.Module, depth: int, *, layer_decay: float = 0.9,
                     patch_embed_lr_multiplier: float = 0.2) -> list[dict]:  # fmt: skip
    """AdamW groups for a network with ``backbone``, ``dino_head`` and ``ibot_head`` children.

    Each group has ``params``, ``lr_multiplier``, ``wd_multiplier`` (0 or 1), ``is_last_layer``,
    ``is_backbone`` and the ``names`` of its parameters; parameters with the same settings share a group.
    """
    groups: dict[tuple, dict] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        is_backbone = name.startswith("backbone.")
        inner = name[len("backbone.") :] if is_backbone else name
        lr_mult = layer_decay ** (depth + 1 - layer_id(inner, depth)) if is_backbone else 1.0
        if is_backbone and inner.startswith("patch_embed"):
            lr_mult *= patch_embed_lr_multiplier
        key = (lr_mult, 0.0 if no_weight_decay(name) else 1.0, ".last_layer." in f".{name}", is_backbone)
        group = groups.setdefault(key, {"params": [], "names": [], "lr_multiplier": key[0], "wd_multiplier": key[1],
                                        "is_last_layer": key[2], "is_backbone": key[3]})  # fmt: skip
        group["params"].append(param)
        group["names"].append(name)
    return list(groups.values())
