"""The segmenter file: one ``.safetensors`` holding weights, config, label names and preprocessing.

Metadata (all strings, JSON where structured): ``format`` = ``dualdinov3.segmenter``, ``format_version``,
``config`` (the resolved :class:`.config.SegmenterConfig`, architectures included), ``labels``,
``preprocessing``, ``library_version``, and any ``extra`` entries given by the caller (e.g. training
provenance). Nothing in it is pickled, so a segmenter from elsewhere is safe to open.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

import torch

from ..errors import CheckpointError, ConfigError
from ..version import __version__
from .backbone_formats import BACKBONE_FORMAT, SEGMENTER_FORMAT
from .config import parse_config
from .factory import build_segmenter
from .segmenter import Segmenter
from .state_dicts import state_dict_mismatch
from .tensor_files import read_safetensors_metadata, read_tensor_file, write_safetensors

FORMAT_VERSION = 1


def save_segmenter(model: Segmenter, path: str | os.PathLike, extra: Mapping[str, str] | None = None) -> Path:
    """Writes ``model`` to ``path`` (``.safetensors``) atomically; returns the path."""
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"{path}: a DualDINOv3 segmenter file must end in .safetensors")
    cfg = model.config
    metadata = {
        "format": SEGMENTER_FORMAT,
        "format_version": str(FORMAT_VERSION),
        "config": json.dumps(cfg.to_dict()),
        "labels": json.dumps(list(cfg.labels)),
        "preprocessing": json.dumps(cfg.to_dict()["preprocessing"]),
        "library_version": __version__,
    }
    for key, value in (extra or {}).items():
        if key in metadata:
            raise ValueError(f"extra metadata may not replace {key!r}")
        metadata[key] = str(value)
    return write_safetensors(path, model.state_dict(), metadata)


def read_segmenter_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The metadata of a segmenter file, after checking its format and version."""
    path = Path(path)
    if path.suffix != ".safetensors":
        raise CheckpointError(
            f"{path}: a DualDINOv3 segmenter is a .safetensors file; to build one from a backbone checkpoint "
            "use build_segmenter(config) with the checkpoint in the config"
        )
    return _check_metadata(path, read_safetensors_metadata(path))


def _check_metadata(path: Path, metadata: Mapping[str, str]) -> dict[str, str]:
    fmt = metadata.get("format")
    if fmt == BACKBONE_FORMAT:
        raise CheckpointError(f"{path}: this is a DINOv3 backbone, not a segmenter: load it with load_backbone()")
    if fmt != SEGMENTER_FORMAT:
        raise CheckpointError(
            f"{path}: not a DualDINOv3 segmenter (metadata format {fmt!r}); DINOv3 backbones load with "
            "load_backbone(), segmenters are written by save_segmenter() or the finetuning script"
        )
    version = int(metadata.get("format_version", "0"))
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: segmenter format version {version} is newer than this DualDINOv3 ({__version__}, reads "
            f"version <= {FORMAT_VERSION}): upgrade the package"
        )
    return dict(metadata)


def load_segmenter(path: str | os.PathLike | None = None, *, device: str | torch.device = "cpu") -> Segmenter:
    """Rebuilds a segmenter from its file alone (no encoder checkpoints needed); returns it in eval mode.

    Without ``path`` the bundled demo model is loaded (trained on synthetic phantoms only).
    """
    if path is None:
        from .bundled import bundled_model_path

        path = bundled_model_path()
    path = Path(path).expanduser()
    if path.suffix != ".safetensors":
        raise CheckpointError(
            f"{path}: a DualDINOv3 segmenter is a .safetensors file; DINOv3 backbones load with load_backbone()"
        )
    tensors, metadata = read_tensor_file(path)
    metadata = _check_metadata(path, metadata)
    try:
        config = parse_config(json.loads(metadata["config"]))
        model = build_segmenter(config, load_weights=False)
    except (KeyError, json.JSONDecodeError, ConfigError) as exc:
        raise CheckpointError(f"{path}: the segmenter's stored config is unreadable ({exc})") from exc
    mismatch = state_dict_mismatch(tensors, model.state_dict())
    if mismatch:
        raise CheckpointError(
            f"{path}: weights do not match the stored config ({mismatch}); the file is damaged or was edited by hand"
        )
    model.load_state_dict(tensors, strict=True)
    return model.to(device).eval()
