"""Reading and writing tensor files without ever unpickling code.

``.safetensors`` files are read with the safetensors library; PyTorch files (``.pth``, ``.pt``,
``.bin``, ``.ckpt``) with ``torch.load(weights_only=True)``, which only rebuilds tensors and plain
containers and refuses any other Python object. Checkpoints from elsewhere are untrusted.
"""

from __future__ import annotations

import json
import os
import pickle
import zipfile
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
        if not _refused_code(exc):  # not a code reference: not a pickle at all (text, truncated download...)
            raise CheckpointError(f"{path}: not a readable PyTorch file (unpickling failed)") from exc
        raise CheckpointError(
            f"{path}: refused to load: the file holds Python objects other than tensors and plain containers, "
            "and loading them could run arbitrary code. Re-save only the state dict "
            "(torch.save(model.state_dict(), path)) or convert it to .safetensors."
        ) from exc
    except (RuntimeError, OSError, EOFError, KeyError, ValueError, TypeError, IndexError, AttributeError) as exc:
        # garbage bytes make the legacy unpickler fail in many ways (e.g. KeyError on an unknown opcode)
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(f"{path}: not a readable PyTorch file ({first}). Is the download complete?") from exc


_REFUSAL_WORDS = ("global", "unsupported class", "reduce")
"""How torch's ``weights_only`` unpickler has worded a refused code reference across versions ("Unsupported
global", "Trying to load unsupported GLOBAL posix.system", "Unsupported class"); bytes that are no pickle at
all read "Unsupported operand" or "invalid load key" instead."""


def _refused_code(exc: pickle.UnpicklingError) -> bool:
    """Whether torch's ``weights_only`` unpickler refused a code reference (its wording varies by version)
    rather than failing on bytes that are not a pickle at all."""
    text = str(exc).lower()
    return any(word in text for word in _REFUSAL_WORDS)


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
    return atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=metadata), verify=check_safetensors_size)


def check_torch_file(path: Path) -> None:
    """``torch.save`` writes a zip archive; a short write (full disk) leaves it without its central directory."""
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError) as exc:
        raise CheckpointError(f"{path}: the written PyTorch file is incomplete ({exc})") from exc
    if bad is not None:
        raise CheckpointError(f"{path}: the written PyTorch file is damaged ({bad})")


def check_safetensors_size(path: Path) -> None:
    """Raises :class:`CheckpointError` when the file is shorter than its header says (a short write)."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        n = int.from_bytes(head, "little") if len(head) == 8 else -1
        try:
            header = json.loads(f.read(n)) if 0 < n <= size - 8 else None
        except (UnicodeDecodeError, json.JSONDecodeError):
            header = None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: the .safetensors header is incomplete ({size} bytes)")
    end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0)
    if size < 8 + n + end:
        raise CheckpointError(f"{path}: holds {size} of the {8 + n + end} bytes its header describes")
