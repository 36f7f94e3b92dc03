"""Finetuning hyperparameters (paper sec. 2.4): the ``training:`` section of a run's config file, and the
one way to read a run's config file (:func:`load_run_config`)."""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..models.config import SegmenterConfig, parse_config, read_config_file
from .augment import AugmentationConfig


@dataclass(frozen=True)
class FinetuneConfig:
    """How a segmenter is finetuned. The defaults are the paper's (nnU-Net protocol, 2D slices).

    ``epochs`` x ``iterations_per_epoch`` optimiser steps of ``batch_size`` slices (the global batch,
    split over processes); AdamW(``learning_rate``, ``betas``, ``weight_decay`` on weight matrices and
    convolution kernels only); linear warm-up over ``warmup_epochs`` then cosine decay to 0, per step.
    ``foreground_oversampling``: the fraction of each batch forced to be slices that contain tumour (one of the
    case's tumour classes drawn uniformly, then a slice with it, as nnU-Net does).
    ``augmentation``: the :class:`~.augment.AugmentationConfig` (nnU-Net's defaults); in YAML ``true`` (the
    defaults), ``false`` (none) or a mapping of the settings to change, e.g. ``{p_rotation: 0.3}``.
    ``mixed_precision``: bf16 autocast on CUDA GPUs that support it (``None`` = automatic, off on CPU).
    ``grad_clip``: max gradient norm (``None``: no clipping). ``validate_every``: epochs between
    validations. ``seed``: everything random (sampling, augmentation, initialisation) derives from it.
    """

    epochs: int = 1000
    iterations_per_epoch: int = 250
    batch_size: int = 16
    learning_rate: float = 3e-4
    weight_decay: float = 5e-2
    betas: tuple[float, float] = (0.9, 0.98)
    warmup_epochs: int = 50
    foreground_oversampling: float = 0.33
    augmentation: AugmentationConfig = dataclasses.field(default_factory=AugmentationConfig)
    mixed_precision: bool | None = None
    grad_clip: float | None = 12.0
    validate_every: int = 1
    validation_batch_size: int = 8
    seed: int = 0

    @property
    def total_steps(self) -> int:
        return self.epochs * self.iterations_per_epoch

    def to_dict(self) -> dict[str, Any]:
        """Plain values, the augmentation settings in full (so ``config.json`` records what was used)."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return {**values, "betas": list(self.betas), "augmentation": self.augmentation.to_dict()}


def parse_finetune_config(data: Mapping[str, Any] | None, **overrides) -> FinetuneConfig:
    """A :class:`FinetuneConfig` from a ``training:`` mapping (unknown keys are errors) and overrides
    (``None`` overrides are ignored, so command-line options can be passed through unconditionally)."""
    data = dict(data or {})
    data.update({k: v for k, v in overrides.items() if v is not None})
    fields = {f.name: f for f in dataclasses.fields(FinetuneConfig)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"training: unknown key(s) {unknown}; allowed: {sorted(fields)}")
    values = {}
    for name, value in data.items():
        default = fields[name].default
        try:
            if name == "augmentation":
                value = _augmentation(value)
            elif name == "betas":
                value = tuple(float(b) for b in value)
                if len(value) != 2 or not all(0 <= b < 1 for b in value):
                    raise ValueError
            elif name in ("mixed_precision", "grad_clip") and value is None:
                pass
            elif isinstance(default, bool) or name == "mixed_precision":
                if not isinstance(value, bool):
                    raise ValueError
            elif isinstance(default, int):
                if isinstance(value, bool) or int(value) != value:
                    raise ValueError
                value = int(value)
            else:
                value = float(value)
        except ConfigError as exc:
            raise ConfigError(f"training.{name}: {exc}") from exc
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"training.{name}: invalid value {value!r} (default {default!r})") from exc
        values[name] = value
    cfg = FinetuneConfig(**values)
    positive = ("epochs", "iterations_per_epoch", "batch_size", "validate_every", "validation_batch_size")
    for name in positive:
        if getattr(cfg, name) < 1:
            raise ConfigError(f"training.{name} must be at least 1, got {getattr(cfg, name)}")
    if not 0 <= cfg.foreground_oversampling <= 1:
        raise ConfigError(f"training.foreground_oversampling must be in [0, 1], got {cfg.foreground_oversampling}")
    numbers = (cfg.learning_rate, cfg.weight_decay, cfg.foreground_oversampling, *cfg.betas)
    finite = all(math.isfinite(v) for v in numbers) and (cfg.grad_clip is None or cfg.grad_clip > 0)
    if not finite or cfg.learning_rate <= 0 or cfg.weight_decay < 0 or cfg.warmup_epochs < 0:
        raise ConfigError(
            "training.learning_rate must be a finite number > 0, weight_decay and warmup_epochs >= 0 "
            f"(got {cfg.learning_rate}, {cfg.weight_decay}, {cfg.warmup_epochs})"
        )
    return cfg


def _augmentation(value: Any) -> AugmentationConfig:
    """``true``: nnU-Net's defaults; ``false``: none; a mapping: the defaults with those settings changed."""
    if isinstance(value, AugmentationConfig):
        return value
    if isinstance(value, bool):
        return AugmentationConfig() if value else AugmentationConfig.none()
    if isinstance(value, Mapping):
        return AugmentationConfig.from_dict(value)
    raise ConfigError(f"expected true, false or a mapping of augmentation settings, got {value!r}")


def same_record(saved: Mapping[str, Any], current: Mapping[str, Any]) -> bool:
    """Whether a saved run record (``config.json``) describes the same run as ``current``; records written
    before augmentation settings were recorded in full (``augmentation: true/false``) are read as such."""
    saved = json.loads(json.dumps(saved))
    training = saved.get("training", {})
    if isinstance(training.get("augmentation"), bool):
        training["augmentation"] = _augmentation(training["augmentation"]).to_dict()
    return saved == json.loads(json.dumps(current))


def learning_rate_at(step: int, cfg: FinetuneConfig) -> float:
    """Linear warm-up from ~0 over ``warmup_epochs``, then cosine decay to 0 at the last step."""
    warmup = cfg.warmup_epochs * cfg.iterations_per_epoch
    if step < warmup:
        return cfg.learning_rate * (step + 1) / warmup
    progress = (step - warmup) / max(cfg.total_steps - warmup, 1)
    return cfg.learning_rate * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


@dataclass(frozen=True)
class RunConfig:
    """A finetuning run's configuration file, read once: the segmenter and its ``training:`` section."""

    segmenter: SegmenterConfig
    training: FinetuneConfig


def load_run_config(path: str | os.PathLike, **overrides) -> RunConfig:
    """The segmenter config and the :class:`FinetuneConfig` of one YAML/JSON file (read once; relative
    checkpoint paths resolved against its folder). ``overrides`` replace ``training:`` values (``None`` ones
    are ignored, so command-line options can be passed through unconditionally)."""
    path = Path(path).expanduser()
    data = read_config_file(path)
    try:
        segmenter = parse_config(data, base_dir=path.parent)
        training = parse_finetune_config(data.get("training"), **overrides)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    return RunConfig(segmenter, training)
