"""Reading and writing tensor files without ever unpickling code.

``.safetensors`` files are read with the safetensors library; PyTorch files (``.pth``, ``.pt``,
``.bin``, ``.ckpt``) with ``torch.load(weights_only=True)``, which only rebuilds tensors and plain
containers and refuses any other Python object. Checkpoints from elsewhere are untrusted.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ..errors import CheckpointError
from ..files import atomic_write


def read_safetensors_metadata(path: str | os.PathLike) -> dict[str, str]:
    """Only the string metadata of a ``.safetensors`` file (reads the header, not the tensors)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable .safetensors file ({exc}). Is the download complete?") from exc


def read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and the string metadata of a ``.safetensors`` file."""
    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable .safetensors file ({exc}). Is the download complete?") from exc


def read_torch(path: Path) -> Any:
    """The object of a PyTorch file, loaded with ``weights_only=True`` (tensors and containers only)."""
    try:
        try:
            return torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as exc:  # legacy (non-zip) files cannot be memory-mapped
            if "mmap" not in str(exc):
                raise
            return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "global" not in str(exc):  # not a code reference: not a pickle at all (text, truncated download...)
            raise CheckpointError(f"{path}: not a readable PyTorch file (unpickling failed)") from exc
        raise CheckpointError(
            f"{path}: refused to load: the file holds Python objects other than tensors and plain containers, "
            "and loading them could run arbitrary code. Re-save only the state dict "
            "(torch.save(model.state_dict(), path)) or convert it to .safetensors."
        ) from exc
    except (RuntimeError, OSError, EOFError) as exc:
        raise CheckpointError(f"{path}: not a readable PyTorch file ({exc}). Is the download complete?") from exc


def read_tensor_file(path: str | os.PathLike) -> tuple[Any, dict[str, str]]:
    """``(content, metadata)`` of a safetensors or PyTorch file; metadata is empty for PyTorch files."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such file")
    if path.is_dir():
        raise CheckpointError(f"{path}: is a folder, expected a weights file")
    if path.suffix == ".safetensors":
        return read_safetensors(path)
    return read_torch(path), {}


def write_safetensors(path: str | os.PathLike, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> Path:
    """Writes contiguous CPU copies of ``tensors`` with string ``metadata``, atomically."""
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    return atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))
