"""``build_segmenter``: one factory for the paper's five configurations.

(1) single-stream from scratch, (2) single-stream from a natural-image DINOv3 checkpoint, (3) from a
CT checkpoint, (4) from a PET checkpoint, (5) dual-stream CT + PET with cross-attention fusion. The
config files in ``Training/configs/`` describe each.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping

from ..errors import CheckpointError, ConfigError
from .backbone_loading import load_backbone
from .config import EncoderSpec, SegmenterConfig, load_config
from .segmenter import DualStreamSegmenter, Segmenter, SingleStreamSegmenter
from .vit import DINOv3ViT, ViTConfig

log = logging.getLogger(__name__)

_ARCH_FIELDS = ("embed_dim", "depth", "num_heads", "patch_size")


def _check_matches(name: str, loaded: ViTConfig, declared: ViTConfig) -> None:
    diffs = [
        f"{f} {getattr(loaded, f)} vs {getattr(declared, f)}"
        for f in _ARCH_FIELDS
        if getattr(loaded, f) != getattr(declared, f)
    ]
    if diffs:
        raise ConfigError(
            f"{name}.vit: the checkpoint's architecture differs from the one declared ({', '.join(diffs)}); "
            "remove the vit entry to take the checkpoint's architecture"
        )


def _build_encoder(name: str, spec: EncoderSpec, config: SegmenterConfig, load_weights: bool):
    """``(encoder, resolved spec)``; the resolved spec records the exact architecture."""
    if load_weights and spec.checkpoint is not None:
        try:
            encoder = load_backbone(spec.checkpoint)
        except CheckpointError as exc:
            raise ConfigError(f"{name}.checkpoint: {exc}") from exc
        if spec.vit is not None:
            _check_matches(name, encoder.config, spec.vit)
    else:
        encoder = DINOv3ViT(spec.vit or config.backbone)
    in_chans = encoder.config.in_chans
    if len(spec.mean) != in_chans and set(spec.mean) == {0.0} and set(spec.std) == {1.0}:
        spec = dataclasses.replace(spec, mean=(0.0,) * in_chans, std=(1.0,) * in_chans)
    return encoder, dataclasses.replace(spec, vit=encoder.config)


def build_segmenter(config: SegmenterConfig | Mapping | str | os.PathLike, *, load_weights: bool = True) -> Segmenter:
    """Builds a segmenter from a config object, mapping or YAML/JSON file.

    With ``load_weights`` each encoder with a ``checkpoint`` is initialised from it (any layout that
    :func:`load_backbone` reads); encoders without one are randomly initialised. Frozen encoders need
    pretrained weights, so ``freeze_encoders`` with a missing checkpoint is an error.
    """
    cfg = load_config(config)
    if load_weights and cfg.freeze_encoders:
        missing = [name for name, spec in cfg.encoder_specs.items() if spec.checkpoint is None]
        if missing:
            raise ConfigError(
                f"freeze_encoders is true but {', '.join(missing)} has no checkpoint: a frozen random encoder "
                f"learns nothing. Set {missing[0]}.checkpoint to pretrained DINOv3 weights, or freeze_encoders: false"
            )
    built = {name: _build_encoder(name, spec, cfg, load_weights) for name, spec in cfg.encoder_specs.items()}
    cfg = dataclasses.replace(cfg, **{name: spec for name, (_, spec) in built.items()})
    encoders = {name: enc for name, (enc, _) in built.items()}
    try:
        if cfg.architecture == "single_stream":
            model = SingleStreamSegmenter(cfg, encoders["encoder"])
        else:
            model = DualStreamSegmenter(cfg, encoders["ct_encoder"], encoders["pet_encoder"])
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    log.info(
        "built %s segmenter %r: %.1fM parameters, %.1fM trainable",
        cfg.architecture,
        cfg.name,
        sum(p.numel() for p in model.parameters()) / 1e6,
        sum(p.numel() for p in model.parameters() if p.requires_grad) / 1e6,
    )
    return model
