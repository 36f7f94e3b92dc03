"""``load_backbone``: one entry point for every published DINOv3 weight layout, strict and pickle-free."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path

import torch

from ..errors import CheckpointError
from ..files import atomic_write
from . import backbone_formats as formats
from .state_dicts import state_dict_mismatch
from .tensor_files import check_torch_file, read_tensor_file, write_safetensors
from .vit import DINOv3ViT, ViTConfig

log = logging.getLogger(__name__)

_HF_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def _read_hf_folder(folder: Path) -> tuple[object, dict]:
    for name in _HF_WEIGHT_FILES:
        if (folder / name).exists():
            return read_tensor_file(folder / name)
    raise CheckpointError(
        f"{folder}: folder holds none of {list(_HF_WEIGHT_FILES)}; expected a Hugging Face DINOv3ViTModel folder "
        "(config.json + model.safetensors) or give the path of a weights file"
    )


def _read_hf_config(path: Path) -> Mapping | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path}: not valid JSON ({exc})") from exc


def _to_official(content: object, metadata: Mapping[str, str], hf_config_path: Path | None):
    """``(layout, state dict in official names, architecture)``; ``config.json`` is read for HF weights only."""
    layout = formats.detect_layout(content, metadata)
    if layout == "dualdinov3":
        cfg = ViTConfig.from_dict(json.loads(metadata["vit_config"]))
        return layout, dict(content), cfg
    if layout == "huggingface":
        hf_config = _read_hf_config(hf_config_path) if hf_config_path is not None else None
        cfg = formats.infer_hf_config(content, hf_config)
        return layout, formats.from_huggingface(content, cfg), cfg
    sd = formats.from_training(content) if layout == "training" else content
    sd = formats.prepare_official(sd)
    return layout, sd, formats.infer_official_config(sd)


def load_backbone(source: str | os.PathLike | Mapping[str, torch.Tensor], *, device: str | torch.device = "cpu"):
    """Builds a ready (eval-mode) :class:`DINOv3ViT` from a checkpoint, recognising its layout.

    ``source`` is a path to an official flat ``.pth``, a DINOv3/MedDINOv3 training checkpoint, a Hugging
    Face ``DINOv3ViTModel`` folder or weights file (``config.json`` beside it is used when present), this
    package's ``.safetensors`` backbone, or an in-memory state dict. The architecture (width, depth,
    heads, storage tokens, patch size) comes from the weights. Loading is strict: any missing,
    unexpected or mis-shaped key raises :class:`CheckpointError` naming the first offenders.
    """
    where = "state dict"
    config_path = None
    if isinstance(source, Mapping):
        content, metadata = source, {}
    else:
        path = Path(source).expanduser()
        where = str(path)
        folder = path if path.is_dir() else path.parent
        config_path = folder / "config.json"
        content, metadata = _read_hf_folder(path) if path.is_dir() else read_tensor_file(path)
    try:
        layout, sd, cfg = _to_official(content, metadata, config_path)
    except CheckpointError as exc:
        raise CheckpointError(f"{where}: {exc}") from exc
    model = DINOv3ViT(cfg)
    problem = state_dict_mismatch(sd, model.state_dict())
    if problem:
        raise CheckpointError(
            f"{where}: {layout} checkpoint does not match a DINOv3 ViT (embed {cfg.embed_dim}, depth {cfg.depth}, "
            f"{cfg.n_storage_tokens} storage tokens): {problem}"
        )
    model.load_state_dict(sd, strict=True)
    log.info("loaded %s DINOv3 backbone (%s) from %s", layout, _arch_name(cfg), where)
    return model.to(device).eval()


def _arch_name(cfg: ViTConfig) -> str:
    return f"ViT D={cfg.embed_dim} depth={cfg.depth} heads={cfg.num_heads}/{cfg.patch_size}"


def save_backbone(model: DINOv3ViT, path: str | os.PathLike) -> Path:
    """Writes ``model`` in this package's format: ``.safetensors`` with the architecture as metadata."""
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"{path}: a DualDINOv3 backbone file must end in .safetensors")
    return write_safetensors(path, model.state_dict(), formats.backbone_metadata(model.config))


def export_official(model: DINOv3ViT, path: str | os.PathLike) -> Path:
    """Writes the flat official ``.pth`` layout (loadable by the DINOv3 hub code and by ``load_backbone``).

    ``rope_embed.periods`` is kept in float32 (the released files store bfloat16 values, which load
    into float32 unchanged), so a save/load round trip reproduces the outputs bit for bit.
    """
    sd = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    return atomic_write(path, lambda tmp: torch.save(sd, tmp), verify=check_torch_file)
