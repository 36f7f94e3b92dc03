"""The pretraining configuration: one YAML (or JSON) file with the sections below, validated once here.

Unknown sections or keys are errors; values are checked against the type of their default; command-line
``--set section.key=value`` options override the file. Defaults are the paper's stage 1 (sec. 2.3,
REFERENCE.md sec. 2) on a ViT-B/16; ``Training/configs/pretrain/*.yaml`` hold the three stages per
modality and a tiny CPU config.

Learning rate and batch: ``optim.learning_rate`` is used as given for ``optim.batch_size`` (the global
batch: processes x per-process batch x ``accumulation_steps``). With ``optim.scale_learning_rate`` it is
taken as the rate for a batch of 1024 and scaled by ``sqrt(batch_size / 1024)`` (DINOv3's rule), so a
smaller batch on fewer GPUs can keep the paper's number.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError


@dataclass(frozen=True)
class ModelSection:
    """Student/teacher backbone and heads. ``backbone``: a ViT preset name or a dict (see ``ViTConfig``);
    ``init``: a checkpoint ``load_backbone`` reads, or a pretraining ``checkpoint.pt`` (stage chaining), or null
    (random initialisation)."""

    backbone: Any = "vitb16"
    init: str | None = None
    drop_path_rate: float = 0.3
    rope_augmentation: bool = True
    prototypes: int = 65536
    head_hidden_dim: int = 2048
    head_bottleneck_dim: int = 256
    head_layers: int = 3


@dataclass(frozen=True)
class CropsSection:
    """Multi-crop. ``sizes``: ``[global, local]`` pixel sizes, one pair drawn per batch with ``size_weights``
    (the same on every process); stage 3 lists low- and high-resolution pairs."""

    n_local: int = 8
    sizes: list = field(default_factory=lambda: [[224, 96]])
    size_weights: list = field(default_factory=lambda: [1.0])
    global_scale: tuple[float, float] = (0.32, 1.0)
    local_scale: tuple[float, float] = (0.05, 0.32)
    flip_probability: float = 0.5


@dataclass(frozen=True)
class MaskingSection:
    min_ratio: float = 0.1
    max_ratio: float = 0.5
    sample_probability: float = 0.5


@dataclass(frozen=True)
class LossSection:
    dino_weight: float = 1.0
    ibot_weight: float = 1.0
    koleo_weight: float = 0.1
    gram_weight: float = 0.0
    student_temperature: float = 0.1
    teacher_temperature_start: float = 0.04
    teacher_temperature_end: float = 0.07
    teacher_temperature_warmup_steps: int = 30000
    sinkhorn_iterations: int = 3
    koleo_min_distance: float = 1e-3


@dataclass(frozen=True)
class GramSection:
    """Gram anchoring. ``teacher``: a backbone file for the Gram teacher (e.g. stage 1's
    ``teacher_step020000.safetensors``); null: a copy of the EMA teacher at ``first_step``. ``refresh_every``:
    steps between refreshes from the EMA teacher (0: never). ``crop_scale``: Gram crop size / global size."""

    teacher: str | None = None
    first_step: int = 0
    refresh_every: int = 0
    crop_scale: int = 2


@dataclass(frozen=True)
class OptimSection:
    steps: int = 100000
    batch_size: int = 1024
    accumulation_steps: int = 1
    learning_rate: float = 2e-4
    scale_learning_rate: bool = False
    min_learning_rate: float = 1e-6
    warmup_steps: int = 10000
    weight_decay: float = 0.04
    weight_decay_end: float = 0.04
    betas: tuple[float, float] = (0.9, 0.98)
    grad_clip: float = 3.0
    layer_decay: float = 0.9
    patch_embed_lr_multiplier: float = 0.2
    freeze_last_layer_steps: int = 1250
    head_warmup_steps: int = 0
    momentum_start: float = 0.996
    momentum_end: float = 1.0


@dataclass(frozen=True)
class RunSection:
    """``mixed_precision``: bf16 autocast (null: on for CUDA GPUs with bf16). ``save_teacher_at``: steps at
    which the EMA teacher backbone is also saved on its own (a later stage's Gram teacher)."""

    seed: int = 0
    num_workers: int = 2
    log_every: int = 10
    checkpoint_every: int = 1000
    mixed_precision: bool | None = None
    save_teacher_at: list = field(default_factory=list)


SECTIONS = {
    "model": ModelSection,
    "crops": CropsSection,
    "masking": MaskingSection,
    "loss": LossSection,
    "gram": GramSection,
    "optim": OptimSection,
    "run": RunSection,
}
OPTIONAL = {"init", "teacher", "mixed_precision"}


@dataclass(frozen=True)
class PretrainConfig:
    model: ModelSection = ModelSection()
    crops: CropsSection = CropsSection()
    masking: MaskingSection = MaskingSection()
    loss: LossSection = LossSection()
    gram: GramSection = GramSection()
    optim: OptimSection = OptimSection()
    run: RunSection = RunSection()

    def to_dict(self) -> dict:
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @property
    def uses_gram(self) -> bool:
        return self.loss.gram_weight > 0


def _coerce(where: str, name: str, value: Any, default: Any) -> Any:
    if value is None and name in OPTIONAL:
        return None
    if name == "backbone":
        if not isinstance(value, (str, dict)):
            raise ConfigError(f"{where}: a ViT preset name or a mapping, got {value!r}")
        return value
    if isinstance(default, tuple):
        if not isinstance(value, (list, tuple)) or len(value) != len(default):
            raise ConfigError(f"{where}: expected {len(default)} numbers, got {value!r}")
        return tuple(float(v) for v in value)
    if isinstance(default, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return list(value)
    if isinstance(default, bool) or name == "mixed_precision":
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return int(value)
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        try:
            return float(value)
        except ValueError as exc:
            raise ConfigError(f"{where}: expected a number, got {value!r}") from exc
    if not isinstance(value, str):
        raise ConfigError(f"{where}: expected text, got {value!r}")
    return value


def parse_pretrain_config(data: Mapping[str, Any] | None, overrides: Mapping[str, Any] | None = None) -> PretrainConfig:
    """A checked :class:`PretrainConfig` from a mapping of sections and ``{"section.key": value}`` overrides."""
    data = {k: dict(v or {}) for k, v in (data or {}).items()} if isinstance(data, Mapping) else data
    if not isinstance(data, dict):
        raise ConfigError("a pretraining config must be a mapping of sections (model, crops, masking, ...)")
    unknown = sorted(set(data) - set(SECTIONS))
    if unknown:
        raise ConfigError(f"unknown pretraining config section(s) {unknown}; allowed: {sorted(SECTIONS)}")
    for key, value in (overrides or {}).items():
        section, _, name = key.partition(".")
        if section not in SECTIONS or not name:
            raise ConfigError(f"override {key!r}: write section.key=value with a section in {sorted(SECTIONS)}")
        data.setdefault(section, {})[name] = value
    sections = {}
    for section, cls in SECTIONS.items():
        fields = {f.name: f for f in dataclasses.fields(cls)}
        given = data.get(section, {})
        unknown = sorted(set(given) - set(fields))
        if unknown:
            raise ConfigError(f"{section}: unknown key(s) {unknown}; allowed: {sorted(fields)}")
        defaults = cls()
        values = {n: _coerce(f"{section}.{n}", n, v, getattr(defaults, n)) for n, v in given.items()}
        sections[section] = cls(**values)
    config = PretrainConfig(**sections)
    _validate(config)
    return config


def _validate(c: PretrainConfig) -> None:
    positive = {
        "model.prototypes": c.model.prototypes,
        "optim.steps": c.optim.steps,
        "optim.batch_size": c.optim.batch_size,
        "optim.accumulation_steps": c.optim.accumulation_steps,
        "run.log_every": c.run.log_every,
        "run.checkpoint_every": c.run.checkpoint_every,
        "gram.crop_scale": c.gram.crop_scale,
    }
    for name, value in positive.items():
        if value < 1:
            raise ConfigError(f"{name} must be at least 1, got {value}")
    if c.optim.learning_rate <= 0 or c.optim.weight_decay < 0 or c.optim.warmup_steps < 0:
        raise ConfigError("optim.learning_rate must be > 0, optim.weight_decay and optim.warmup_steps >= 0")
    temperatures = (c.loss.student_temperature, c.loss.teacher_temperature_start, c.loss.teacher_temperature_end)
    if min(temperatures) <= 0:
        raise ConfigError(f"loss temperatures must be > 0, got {temperatures}")
    if not 0 <= c.masking.min_ratio <= c.masking.max_ratio < 1:
        raise ConfigError("masking: need 0 <= min_ratio <= max_ratio < 1")
    if not 0 <= c.model.drop_path_rate < 1:
        raise ConfigError(f"model.drop_path_rate must be in [0, 1), got {c.model.drop_path_rate}")
    sizes = c.crops.sizes
    if not sizes or any(not isinstance(s, (list, tuple)) or len(s) != 2 for s in sizes):
        raise ConfigError(f"crops.sizes must be a list of [global, local] pixel sizes, got {sizes!r}")
    if len(c.crops.size_weights) != len(sizes) or any(float(w) < 0 for w in c.crops.size_weights):
        raise ConfigError("crops.size_weights must give one non-negative weight per entry of crops.sizes")
    if sum(float(w) for w in c.crops.size_weights) <= 0:
        raise ConfigError("crops.size_weights must not all be 0")
    if c.loss.koleo_weight > 0 and c.optim.batch_size < 2:
        raise ConfigError("KoLeo needs at least 2 slices per process and step: raise optim.batch_size")


def load_pretrain_config(path: str | os.PathLike, overrides: Mapping[str, Any] | None = None) -> PretrainConfig:
    """Reads a YAML (needs PyYAML) or JSON pretraining config file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file; see Training/configs/pretrain/ for examples")
    text = path.read_text(encoding="utf-8")
    if path.suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError as exc:
            raise ConfigError(
                f"{path}: reading YAML needs PyYAML (pip install pyyaml), or give a .json config"
            ) from exc
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}: not valid JSON ({exc})") from exc
    try:
        return parse_pretrain_config(data, overrides)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc


def parse_overrides(items: list[str] | None) -> dict[str, Any]:
    """``["optim.learning_rate=1e-4", ...]`` -> ``{"optim.learning_rate": 1e-4}`` (values parsed as YAML/JSON)."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, text = item.partition("=")
        if not sep:
            raise ConfigError(f"--set {item!r}: write section.key=value, e.g. --set optim.learning_rate=1e-4")
        try:
            import yaml

            value = yaml.safe_load(text)
        except ImportError:
            try:
                value = json.loads(text)
            except json.JSONDecodeError:
                value = text
        out[key.strip()] = value
    return out
