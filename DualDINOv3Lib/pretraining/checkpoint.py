"""Pretraining checkpoints and exports.

``checkpoint.pt`` (written atomically, read with ``weights_only=True``) holds everything an exact resume
needs: the step, the student and EMA teacher networks (backbone and heads), the Gram teacher, the optimiser,
every process's RNG states, the metrics so far and the resolved config. Its ``teacher`` entry uses DINOv3's
training-checkpoint names (``backbone.*``, ``dino_head.*``, ``ibot_head.*``), so
:func:`~DualDINOv3Lib.models.load_backbone` and ``dualdinov3 info`` read the EMA teacher's backbone from it.

Exports: the EMA teacher's backbone as ``<stem>.safetensors`` (this project's format) and ``<stem>.pth``
(the official flat DINOv3 layout); both load with ``load_backbone`` and can be a finetuning encoder.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import torch

from ..errors import CheckpointError
from ..files import atomic_write
from ..models.backbone_loading import export_official, save_backbone
from ..models.tensor_files import read_torch
from ..models.vit import DINOv3ViT

FORMAT = "dualdinov3-pretraining"
VERSION = 1
CHECKPOINT = "checkpoint.pt"


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def cpu_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}


def save_checkpoint(path: str | os.PathLike, *, step: int, arch, optimizer, rng: list, history: list[dict],
                    config: dict) -> Path:  # fmt: skip
    """Writes the whole training state of ``arch`` (an :class:`~.meta_arch.SSLMetaArch`) atomically."""
    content = {
        "format": FORMAT,
        "version": VERSION,
        "step": int(step),
        "config": json.dumps(config),
        "vit_config": json.dumps(arch.student.backbone.config.to_dict()),
        "student": cpu_state(arch.student),
        "teacher": cpu_state(arch.teacher),
        "optimizer": optimizer.state_dict(),
        "rng": rng,
        "history": json.dumps(history),
    }
    if arch.gram_teacher is not None:
        content["gram_teacher"] = cpu_state(arch.gram_teacher)
    return atomic_write(path, lambda tmp: torch.save(content, tmp))


def is_pretraining_checkpoint(content: object) -> bool:
    return isinstance(content, dict) and content.get("format") == FORMAT


def load_checkpoint(path: str | os.PathLike) -> dict:
    """The content of a pretraining checkpoint (tensors and plain values only; never runs pickled code)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such pretraining checkpoint")
    content = read_torch(path)
    if not is_pretraining_checkpoint(content):
        raise CheckpointError(f"{path}: not a DualDINOv3 pretraining checkpoint (no format {FORMAT!r})")
    if content.get("version") != VERSION:
        raise CheckpointError(f"{path}: pretraining checkpoint version {content.get('version')}, expected {VERSION}")
    return content


def clean_backbone(backbone: DINOv3ViT) -> DINOv3ViT:
    """A copy of ``backbone`` for inference: no drop path, default RoPE settings, eval mode."""
    config = dataclasses.replace(backbone.config, drop_path_rate=0.0)
    model = DINOv3ViT(config)
    model.load_state_dict(backbone.state_dict())
    return model.eval()


def export_teacher(arch, folder: str | os.PathLike, stem: str = "teacher_backbone") -> tuple[Path, Path]:
    """The EMA teacher's backbone as ``stem.safetensors`` and official ``stem.pth`` in ``folder``."""
    folder = Path(folder)
    backbone = clean_backbone(arch.teacher.backbone).cpu()
    return save_backbone(backbone, folder / f"{stem}.safetensors"), export_official(backbone, folder / f"{stem}.pth")
