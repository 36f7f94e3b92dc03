"""Writing files so that a crash or a full disk never leaves a half-written output behind."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path


def atomic_write(path: str | os.PathLike, write: Callable[[str], object]) -> Path:
    """Calls ``write(tmp_path)`` then renames the temporary file onto ``path``.

    The temporary file lies in the same folder (so the rename is atomic) and ends with ``path``'s own
    name, suffix included, so writers that choose the format from the suffix (SimpleITK) still work.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".tmp-{uuid.uuid4().hex}-{path.name}")
    try:
        write(str(temporary))
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()
    return path
