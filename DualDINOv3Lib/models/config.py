"""Segmenter configuration: read once from YAML/JSON/dict, validated, then a plain frozen dataclass.

Example (the paper's dual-stream model, ``Training/configs/5_dual_ct_pet.yaml``)::

    name: dual_ct_pet
    architecture: dual_stream          # or single_stream
    backbone: vitb16                   # preset name or a mapping of ViTConfig fields
    taps: [2, 5, 8, 11]                # blocks fed to the decoder (default: 4 evenly spaced)
    freeze_encoders: true
    ct_encoder: {checkpoint: weights/ct_dinov3_vitb16.pth}
    pet_encoder: {checkpoint: weights/pet_dinov3_vitb16.pth}
    fusion: {num_heads: 8}
    labels: [background, GTVp, GTVn]
    preprocessing: {spacing_mm: null, crop_size: 512}   # context_mm: 8 for 2.5D inputs (dual_stream only)

Relative checkpoint paths are resolved against the folder of the config file.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..domain import LABEL_NAMES
from ..errors import ConfigError
from ..preprocessing.spec import PET_NORMALIZATIONS, PreprocessingSpec
from .vit import ViTConfig, vit_config

ARCHITECTURES = ("single_stream", "dual_stream")
PSEUDO_RGB_SOURCES = ("ct", "pet", "mean")
#: ImageNet statistics expected by natural-image DINOv3 checkpoints.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class EncoderSpec:
    """One encoder: its initial weights and the per-channel input normalisation ``(x - mean) / std``.

    ``pseudo_rgb`` (single-stream only) names the source of each input channel: ``ct``, ``pet`` or
    ``mean`` (the average of the two). ``vit`` is filled in when the model is built, from the checkpoint
    or the ``backbone`` setting, so a saved segmenter records the exact architecture.
    """

    checkpoint: str | None = None
    mean: tuple[float, ...] = (0.0, 0.0, 0.0)
    std: tuple[float, ...] = (1.0, 1.0, 1.0)
    pseudo_rgb: tuple[str, ...] = ("ct", "pet", "mean")
    vit: ViTConfig | None = None


@dataclass(frozen=True)
class SegmenterConfig:
    name: str = "segmenter"
    architecture: str = "dual_stream"
    backbone: ViTConfig = field(default_factory=ViTConfig)
    taps: tuple[int, ...] | None = None
    freeze_encoders: bool = False
    rope_augmentation: bool = False
    encoder: EncoderSpec = field(default_factory=EncoderSpec)
    ct_encoder: EncoderSpec = field(default_factory=EncoderSpec)
    pet_encoder: EncoderSpec = field(default_factory=EncoderSpec)
    fusion_heads: int = 8
    labels: tuple[str, ...] = LABEL_NAMES
    preprocessing: PreprocessingSpec = field(default_factory=PreprocessingSpec)

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    @property
    def encoder_specs(self) -> dict[str, EncoderSpec]:
        """``{"encoder": ...}`` for single-stream, ``{"ct_encoder": ..., "pet_encoder": ...}`` for dual."""
        if self.architecture == "single_stream":
            return {"encoder": self.encoder}
        return {"ct_encoder": self.ct_encoder, "pet_encoder": self.pet_encoder}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict that :func:`parse_config` reads back to an equal config."""
        d = dataclasses.asdict(self)
        d["fusion"] = {"num_heads": d.pop("fusion_heads")}
        for unused in {"encoder", "ct_encoder", "pet_encoder"} - set(self.encoder_specs):
            del d[unused]
        return d


# --------------------------------------------------------------------------------------------- parsing
def _check_keys(data: Mapping, allowed: set[str], where: str) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(allowed)}")


def _floats(value, n: int | None, where: str) -> tuple[float, ...]:
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: expected a list of numbers, got {value!r}") from exc
    if n is not None and len(out) != n:
        raise ConfigError(f"{where}: expected {n} numbers, got {len(out)}")
    return out


def _encoder(data: Mapping | None, where: str, base_dir: Path | None) -> EncoderSpec:
    data = dict(data or {})
    _check_keys(data, {"checkpoint", "mean", "std", "pseudo_rgb", "vit"}, where)
    ckpt = data.get("checkpoint")
    if ckpt is not None:
        ckpt = os.path.expanduser(str(ckpt))
        if base_dir is not None and not os.path.isabs(ckpt):
            ckpt = str(base_dir / ckpt)
    pseudo = tuple(data.get("pseudo_rgb", EncoderSpec.pseudo_rgb))
    bad = [s for s in pseudo if s not in PSEUDO_RGB_SOURCES]
    if bad:
        raise ConfigError(f"{where}.pseudo_rgb: unknown source(s) {bad}; use {list(PSEUDO_RGB_SOURCES)}")
    mean = _floats(data.get("mean", EncoderSpec.mean), None, f"{where}.mean")
    std = _floats(data.get("std", EncoderSpec.std), len(mean), f"{where}.std")
    if any(s <= 0 for s in std):
        raise ConfigError(f"{where}.std: standard deviations must be > 0, got {std}")
    vit = _vit(data["vit"], f"{where}.vit") if data.get("vit") is not None else None
    return EncoderSpec(checkpoint=ckpt, mean=mean, std=std, pseudo_rgb=pseudo, vit=vit)


def _vit(spec, where: str) -> ViTConfig:
    try:
        return vit_config(spec)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{where}: {exc}") from exc


def _preprocessing(data: Mapping | None, patch_size: int) -> PreprocessingSpec:
    data = dict(data or {})
    _check_keys(data, {f.name for f in dataclasses.fields(PreprocessingSpec)}, "preprocessing")
    spacing = data.get("spacing_mm")
    if spacing is not None:
        spacing = _floats(spacing, 2, "preprocessing.spacing_mm")
        if min(spacing) <= 0:
            raise ConfigError(f"preprocessing.spacing_mm must be positive, got {spacing}")
    crop = data.get("crop_size", 512)
    if isinstance(crop, bool) or not isinstance(crop, int) or crop < patch_size or crop % patch_size:
        raise ConfigError(
            f"preprocessing.crop_size must be a positive multiple of the patch size ({patch_size}), got {crop!r}"
        )
    ct_norm = data.get("ct_normalization", "zscore")
    if ct_norm != "zscore":
        raise ConfigError(f"preprocessing.ct_normalization must be 'zscore' (the only one), got {ct_norm!r}")
    pet_norm = data.get("pet_normalization", "minmax")
    if pet_norm not in PET_NORMALIZATIONS:
        raise ConfigError(
            f"preprocessing.pet_normalization must be one of {list(PET_NORMALIZATIONS)}, got {pet_norm!r}"
        )
    context = data.get("context_mm", 0.0)
    if isinstance(context, bool) or not isinstance(context, int | float) or not 0 <= context <= 100:
        raise ConfigError(
            f"preprocessing.context_mm must be a distance in mm in [0, 100] (0: no context), got {context!r}"
        )
    return PreprocessingSpec(
        spacing_mm=spacing,
        crop_size=crop,
        ct_normalization=ct_norm,
        pet_normalization=pet_norm,
        context_mm=float(context),
    )


_TOP_KEYS = {
    "name", "architecture", "backbone", "taps", "freeze_encoders", "rope_augmentation", "encoder",
    "ct_encoder", "pet_encoder", "fusion", "labels", "preprocessing",
    "training",  # finetuning hyperparameters, read by DualDINOv3Lib.finetune (ignored here)
}  # fmt: skip


def parse_config(data: Mapping[str, Any], base_dir: str | os.PathLike | None = None) -> SegmenterConfig:
    """Validates a config mapping; every error names the offending key and the accepted values."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"a segmenter config must be a mapping, got {type(data).__name__}")
    _check_keys(data, _TOP_KEYS, "config")
    base = Path(base_dir) if base_dir is not None else None
    arch = data.get("architecture", "dual_stream")
    if arch not in ARCHITECTURES:
        raise ConfigError(f"architecture must be one of {list(ARCHITECTURES)}, got {arch!r}")
    fusion = dict(data.get("fusion") or {})
    _check_keys(fusion, {"num_heads"}, "fusion")
    labels = tuple(str(x) for x in data.get("labels", LABEL_NAMES))
    if len(labels) < 2 or len(set(labels)) != len(labels):
        raise ConfigError(f"labels must be >= 2 distinct names, background first; got {list(labels)}")
    taps = data.get("taps")
    backbone = _vit(data.get("backbone", "vitb16"), "backbone")
    cfg = SegmenterConfig(
        name=str(data.get("name", "segmenter")),
        architecture=arch,
        backbone=backbone,
        taps=tuple(int(t) for t in taps) if taps is not None else None,
        freeze_encoders=bool(data.get("freeze_encoders", False)),
        rope_augmentation=bool(data.get("rope_augmentation", False)),
        encoder=_encoder(data.get("encoder"), "encoder", base),
        ct_encoder=_encoder(data.get("ct_encoder"), "ct_encoder", base),
        pet_encoder=_encoder(data.get("pet_encoder"), "pet_encoder", base),
        fusion_heads=int(fusion.get("num_heads", 8)),
        labels=labels,
        preprocessing=_preprocessing(data.get("preprocessing"), backbone.patch_size),
    )
    if arch == "dual_stream" and data.get("encoder") is not None:
        raise ConfigError("'encoder' is for single_stream models; a dual_stream model has ct_encoder and pet_encoder")
    if arch == "single_stream" and (data.get("ct_encoder") is not None or data.get("pet_encoder") is not None):
        raise ConfigError("'ct_encoder'/'pet_encoder' are for dual_stream models; single_stream has one 'encoder'")
    if cfg.preprocessing.context_mm > 0:
        if arch != "dual_stream":
            raise ConfigError(
                "preprocessing.context_mm (2.5D input) needs a dual_stream model, whose encoders each take their "
                "modality's three slices; set it to 0 for a single_stream model"
            )
        chans = {(spec.vit or backbone).in_chans for spec in (cfg.ct_encoder, cfg.pet_encoder)}
        if chans != {3}:
            raise ConfigError(f"preprocessing.context_mm needs encoders with 3 input channels, got {sorted(chans)}")
    return cfg


def read_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """The mapping in a ``.yaml``/``.yml``/``.json`` config file (errors name the file)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    text = path.read_text()
    if path.suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError as exc:
            raise ConfigError(f"{path}: reading YAML needs PyYAML: pip install pyyaml (or use a .json config)") from exc
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: invalid YAML: {exc}") from exc
    elif path.suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}: invalid JSON: {exc}") from exc
    else:
        raise ConfigError(f"{path}: config files must be .yaml, .yml or .json")
    data = data or {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path}: a config file must hold a mapping of keys to values")
    return dict(data)


def load_config(source: str | os.PathLike | Mapping | SegmenterConfig) -> SegmenterConfig:
    """A :class:`SegmenterConfig` from a config object, a mapping, or a ``.yaml``/``.yml``/``.json`` file."""
    if isinstance(source, SegmenterConfig):
        return source
    if isinstance(source, Mapping):
        return parse_config(source)
    path = Path(source).expanduser()
    data = read_config_file(path)
    try:
        return parse_config(data, base_dir=path.parent)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
