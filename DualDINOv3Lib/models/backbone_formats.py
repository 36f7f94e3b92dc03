"""Recognising the published DINOv3 weight layouts and converting them to this package's names.

Layouts (the package's own names are the official ones, so "official" needs no renaming):

- ``official``: the flat hub ``.pth`` (``cls_token``, ``storage_tokens``, ``blocks.N.attn.qkv.*``, ...).
- ``training``: a DINOv3 / MedDINOv3 training checkpoint; the backbone is ``teacher`` -> ``backbone.*``.
- ``huggingface``: ``transformers`` ``DINOv3ViTModel`` (``embeddings.*``, ``[model.]layer.N.*``).
- ``dualdinov3``: this package's own ``.safetensors`` with the architecture in its metadata.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping

import torch

from ..errors import CheckpointError
from .rope import RopePositionEmbedding
from .vit import ViTConfig

log = logging.getLogger(__name__)

BACKBONE_FORMAT = "dualdinov3.backbone"
SEGMENTER_FORMAT = "dualdinov3.segmenter"
_DEFAULT_HEAD_DIM = 64  # every official DINOv3 ViT up to ViT-H+ uses 64-dim heads
_SEGMENTER_KEY_PREFIXES = ("decoder.", "encoder.", "ct_encoder.", "pet_encoder.", "fusions.")


def detect_layout(content: object, metadata: Mapping[str, str]) -> str:
    """Names the layout of a loaded weights file, or raises a :class:`CheckpointError` saying what it is."""
    fmt = metadata.get("format", "")
    if fmt == BACKBONE_FORMAT:
        return "dualdinov3"
    if fmt == SEGMENTER_FORMAT:
        raise CheckpointError(
            "this file is a DualDINOv3 segmenter, not a backbone: load it with DualDINOv3Lib.load_segmenter()"
        )
    if not isinstance(content, Mapping):
        raise CheckpointError(f"expected a dict of tensors, found a {type(content).__name__}")
    if isinstance(content.get("teacher"), Mapping):
        return "training"
    keys = list(content)
    if "cls_token" in content and any(k.startswith("blocks.") for k in keys):
        return "official"
    if any(k.endswith("embeddings.cls_token") for k in keys):
        return "huggingface"
    if any(k.startswith(_SEGMENTER_KEY_PREFIXES) for k in keys) or "state_dict" in content:
        raise CheckpointError(
            "this looks like a segmentation model or a training state, not a DINOv3 backbone "
            f"(first keys: {keys[:5]}); for a DualDINOv3 segmenter use load_segmenter()"
        )
    raise CheckpointError(
        "not a DINOv3 backbone checkpoint: expected the official keys (cls_token, blocks.0.attn.qkv.weight, ...), "
        f"a training checkpoint with a 'teacher' entry, or Hugging Face DINOv3ViTModel keys; first keys: {keys[:5]}"
    )


def _float32(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for k, v in sd.items():
        if not isinstance(v, torch.Tensor):
            raise CheckpointError(f"entry {k!r} is a {type(v).__name__}, expected a tensor")
        out[k] = v.float() if v.is_floating_point() else v
    return out


# ----------------------------------------------------------------------------------------- official
def from_training(content: Mapping) -> dict[str, torch.Tensor]:
    """The EMA teacher's backbone of a DINOv3/MedDINOv3 training checkpoint, heads dropped."""
    teacher = content["teacher"]
    backbone = {k[len("backbone.") :]: v for k, v in teacher.items() if k.startswith("backbone.")}
    if not backbone:
        raise CheckpointError(
            f"the 'teacher' entry has no 'backbone.*' keys (first keys: {list(teacher)[:5]}); "
            "is this a DINOv3 training checkpoint?"
        )
    dropped = sorted({k.split(".")[0] for k in teacher if not k.startswith("backbone.")})
    if dropped:
        log.info("training checkpoint: using teacher backbone, dropping %s", dropped)
    return backbone


def prepare_official(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Float32 copy of an official state dict; refuses variants this ViT does not implement."""
    if any(".mlp.w1." in k or ".mlp.w12." in k for k in sd):
        raise CheckpointError(
            "this checkpoint uses a SwiGLU feed-forward (ViT-S+/L+/H+/7B); only the ViT-S/16, ViT-B/16 and "
            "ViT-L/16 DINOv3 models (plain MLP) are supported"
        )
    if any(k.startswith("cls_norm.") for k in sd):
        raise CheckpointError("untied cls/patch norms (cls_norm.*, used by ViT-7B) are not supported")
    # local_cls_norm only ever normalises local crops during DINOv3 training; it plays no part at inference.
    return _float32({k: v for k, v in sd.items() if not k.startswith("local_cls_norm.")})


def infer_official_config(sd: Mapping[str, torch.Tensor]) -> ViTConfig:
    """Architecture of an official-layout state dict, read from tensor shapes."""
    try:
        embed_dim = sd["cls_token"].shape[-1]
        proj = sd["patch_embed.proj.weight"]
        fc1 = sd["blocks.0.mlp.fc1.weight"]
    except KeyError as exc:
        raise CheckpointError(f"incomplete DINOv3 checkpoint: key {exc.args[0]!r} is missing") from exc
    block_ids = {int(m.group(1)) for k in sd if (m := re.match(r"blocks\.(\d+)\.", k))}
    depth = max(block_ids) + 1
    if block_ids != set(range(depth)):
        raise CheckpointError(f"blocks {sorted(set(range(depth)) - block_ids)[:5]} are missing from the checkpoint")
    if "rope_embed.periods" not in sd:
        raise CheckpointError(
            "key 'rope_embed.periods' is missing: every DINOv3 checkpoint stores it, and the number of "
            "attention heads is read from it. Is this a DINOv3 (not DINOv2) checkpoint?"
        )
    head_dim = 4 * sd["rope_embed.periods"].numel()
    storage = sd["storage_tokens"].shape[1] if "storage_tokens" in sd else 0

    def has(suffix: str) -> bool:  # any block: a key missing from one block is then reported as missing
        return any(k.startswith("blocks.") and k.endswith(suffix) for k in sd)

    return ViTConfig(
        embed_dim=embed_dim,
        depth=depth,
        num_heads=embed_dim // head_dim,
        patch_size=proj.shape[-1],
        in_chans=proj.shape[1],
        ffn_ratio=fc1.shape[0] / embed_dim,
        n_storage_tokens=storage,
        layerscale_init=1e-5 if has(".ls1.gamma") else None,
        qkv_bias=has(".attn.qkv.bias"),
        mask_k_bias=has(".attn.qkv.bias_mask"),
        proj_bias=has(".attn.proj.bias"),
        ffn_bias=has(".mlp.fc1.bias"),
    )


# ------------------------------------------------------------------------------------- hugging face
_HF_BLOCK_RENAMES = {
    "norm1": "norm1",
    "norm2": "norm2",
    "attention.o_proj": "attn.proj",
    "layer_scale1.lambda1": "ls1.gamma",
    "layer_scale2.lambda1": "ls2.gamma",
    "mlp.up_proj": "mlp.fc1",
    "mlp.down_proj": "mlp.fc2",
}
_HF_EMBED_RENAMES = {
    "embeddings.cls_token": "cls_token",
    "embeddings.register_tokens": "storage_tokens",
    "embeddings.patch_embeddings.weight": "patch_embed.proj.weight",
    "embeddings.patch_embeddings.bias": "patch_embed.proj.bias",
    "norm.weight": "norm.weight",
    "norm.bias": "norm.bias",
}


def _strip_hf_prefix(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drops any wrapper prefix and the ``model.`` of ``model.layer.N`` (transformers >= 5 in memory)."""
    anchor = next(k for k in sd if k.endswith("embeddings.cls_token"))
    prefix = anchor[: -len("embeddings.cls_token")]
    out = {}
    for k, v in sd.items():
        k = k[len(prefix) :] if k.startswith(prefix) else k
        out[k[len("model.") :] if k.startswith("model.layer.") else k] = v
    return out


def _check_hf_config(c: Mapping, *, embed_dim: int, depth: int, ffn_hidden: int, heads) -> None:
    """A ``config.json`` that contradicts the weights' shapes is an error, not a silently wrong model."""
    stated = {"hidden_size": embed_dim, "num_hidden_layers": depth, "intermediate_size": ffn_hidden}
    wrong = [
        f"{key} {c[key]} (the weights have {value})" for key, value in stated.items() if key in c and c[key] != value
    ]
    if isinstance(heads, bool) or not isinstance(heads, int) or heads < 1 or embed_dim % heads:
        wrong.append(f"num_attention_heads {heads!r} (must be a whole number >= 1 dividing the width {embed_dim})")
    elif (embed_dim // heads) % 4:
        wrong.append(f"num_attention_heads {heads} (head size {embed_dim // heads} must be a multiple of 4 for RoPE)")
    if wrong:
        raise CheckpointError(
            f"config.json contradicts the weights: {'; '.join(wrong)}. Use the config.json that came with these "
            "weights, or remove it to infer the architecture from the weights"
        )


def infer_hf_config(sd: Mapping[str, torch.Tensor], hf_config: Mapping | None) -> ViTConfig:
    """Architecture from a Hugging Face ``config.json`` (preferred) or from tensor shapes."""
    sd = _strip_hf_prefix(sd)
    c = dict(hf_config or {})
    if c.get("use_gated_mlp") or any(".mlp.gate_proj." in k for k in sd):
        raise CheckpointError("gated-MLP (SwiGLU) DINOv3 models are not supported; use ViT-S/16, ViT-B/16 or ViT-L/16")
    if c and c.get("model_type") not in (None, "dinov3_vit"):
        raise CheckpointError(f"config.json describes a {c.get('model_type')!r} model, expected 'dinov3_vit'")
    embed_dim = sd["embeddings.cls_token"].shape[-1]
    patch_w = sd["embeddings.patch_embeddings.weight"]
    depth = 1 + max(int(m.group(1)) for k in sd if (m := re.match(r"layer\.(\d+)\.", k)))
    heads = c.get("num_attention_heads", embed_dim // _DEFAULT_HEAD_DIM)
    if not c:
        log.warning("no config.json: assuming %d-dim attention heads", _DEFAULT_HEAD_DIM)
    ffn_hidden = sd["layer.0.mlp.up_proj.weight"].shape[0]
    _check_hf_config(c, embed_dim=embed_dim, depth=depth, ffn_hidden=ffn_hidden, heads=heads)

    def has(suffix: str) -> bool:
        return any(k.startswith("layer.") and k.endswith(suffix) for k in sd)

    qkv_bias = has(".attention.q_proj.bias") or has(".attention.v_proj.bias")
    key_bias = has(".attention.k_proj.bias")
    regs = sd["embeddings.register_tokens"].shape[1] if "embeddings.register_tokens" in sd else 0
    return ViTConfig(
        embed_dim=embed_dim,
        depth=depth,
        num_heads=int(heads),
        patch_size=patch_w.shape[-1],
        in_chans=patch_w.shape[1],
        ffn_ratio=ffn_hidden / embed_dim,
        n_storage_tokens=regs,
        layerscale_init=1e-5 if has(".layer_scale1.lambda1") else None,
        norm_eps=float(c.get("layer_norm_eps", 1e-5)),
        qkv_bias=qkv_bias or key_bias,
        mask_k_bias=qkv_bias and not key_bias,
        proj_bias=has(".attention.o_proj.bias"),
        ffn_bias=has(".mlp.up_proj.bias"),
        rope_base=float(c.get("rope_theta", 100.0)),
        rope_shift=c.get("pos_embed_shift"),
        rope_jitter=c.get("pos_embed_jitter"),
        rope_rescale=c.get("pos_embed_rescale", 2.0),
    )


def from_huggingface(sd: Mapping[str, torch.Tensor], cfg: ViTConfig) -> dict[str, torch.Tensor]:
    """Renames a ``DINOv3ViTModel`` state dict to the official layout (q/k/v fused into qkv)."""
    sd = _float32(_strip_hf_prefix(sd))
    out: dict[str, torch.Tensor] = {}
    for src, dst in _HF_EMBED_RENAMES.items():
        if src in sd and sd[src].numel() > 0:  # a model without register tokens stores an empty (1, 0, D) tensor
            out[dst] = sd[src]
    if "embeddings.mask_token" in sd:
        out["mask_token"] = sd["embeddings.mask_token"].reshape(1, -1)
    d = cfg.embed_dim
    for i in range(cfg.depth):
        hf, ours = f"layer.{i}.", f"blocks.{i}."
        for src, dst in _HF_BLOCK_RENAMES.items():
            for leaf in ("", ".weight", ".bias"):
                if hf + src + leaf in sd:
                    out[ours + dst + leaf] = sd[hf + src + leaf]
        att = hf + "attention."
        try:
            out[ours + "attn.qkv.weight"] = torch.cat([sd[f"{att}{n}_proj.weight"] for n in "qkv"], dim=0)
        except KeyError as exc:
            raise CheckpointError(f"incomplete Hugging Face checkpoint: {exc.args[0]!r} is missing") from exc
        if cfg.qkv_bias:
            biases = [sd.get(f"{att}{n}_proj.bias", torch.zeros(d)) for n in "qkv"]
            out[ours + "attn.qkv.bias"] = torch.cat(biases)
            if cfg.mask_k_bias:
                mask = torch.ones(3 * d)
                mask[d : 2 * d] = 0.0
                out[ours + "attn.qkv.bias_mask"] = mask
        used = {hf + s + leaf for s in _HF_BLOCK_RENAMES for leaf in ("", ".weight", ".bias")}
        used |= {f"{att}{n}_proj.{p}" for n in "qkv" for p in ("weight", "bias")}
        extra = [k for k in sd if k.startswith(hf) and k not in used]
        if extra:
            raise CheckpointError(f"unexpected keys in Hugging Face checkpoint: {extra[:5]}")
    known = set(_HF_EMBED_RENAMES) | {"embeddings.mask_token"}
    extra = [k for k in sd if not k.startswith("layer.") and k not in known]
    if extra:
        raise CheckpointError(f"unexpected keys in Hugging Face checkpoint: {extra[:5]}")
    # transformers recomputes the RoPE periods instead of storing them
    out["rope_embed.periods"] = RopePositionEmbedding.default_periods(cfg.head_dim, cfg.rope_base)
    return out


def backbone_metadata(cfg: ViTConfig) -> dict[str, str]:
    return {"format": BACKBONE_FORMAT, "format_version": "1", "vit_config": json.dumps(cfg.to_dict())}
