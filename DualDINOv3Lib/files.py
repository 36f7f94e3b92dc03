"""Writing files so that a crash or a full disk never leaves a half-written output behind."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path

from .errors import DualDINOv3Error, OutputExistsError


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


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
        # some writers (safetensors) create private 0600 files: give the result the usual permissions
        # (those of the file it replaces, else 0666 minus the umask)
        os.chmod(temporary, path.stat().st_mode & 0o777 if path.exists() else 0o666 & ~_umask())
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()
    return path


def check_output_path(path: str | os.PathLike, *, overwrite: bool, suffixes: tuple[str, ...] | None = None) -> Path:
    """Checks, before any work is done, that a result can be written to ``path``.

    Raises :class:`~DualDINOv3Lib.errors.OutputExistsError` if it exists (unless ``overwrite``) and
    :class:`~DualDINOv3Lib.errors.DualDINOv3Error` if it is a folder, its suffix is not one of
    ``suffixes``, or its folder cannot be created or written.
    """
    path = Path(path)
    name = path.name.lower()
    if suffixes is not None and not any(name.endswith(s) for s in suffixes):
        raise DualDINOv3Error(f"{path}: the output must end in one of {', '.join(suffixes)}")
    if path.is_dir():
        raise DualDINOv3Error(f"{path} is a folder; give a file name for the output")
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path} exists; choose another output or pass --overwrite to replace it")
    check_output_folder(path.parent)
    return path


def check_output_folder(folder: str | os.PathLike) -> Path:
    """Creates ``folder`` if needed and checks that files can be written in it."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise DualDINOv3Error(f"{folder} is a file, not a folder; choose another output location")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DualDINOv3Error(f"cannot create the output folder {folder}: {exc.strerror}") from exc
    if not os.access(folder, os.W_OK | os.X_OK):
        raise DualDINOv3Error(f"cannot write in {folder} (permission denied); choose another output location")
    return folder
