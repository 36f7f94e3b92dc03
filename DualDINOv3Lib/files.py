"""Writing files so that a crash, Ctrl-C or a full disk never leaves a half-written or emptied output behind.

Every file the project writes goes through :func:`atomic_write`: the data go to a temporary file beside the
target, the write is checked (the writer's errors, and a ``verify`` of the result for writers that only
warn on a short write), flushed to the disk, and only then renamed onto the target. On any failure the
temporary file is removed and the old file, if there was one, is untouched.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path

from .errors import DualDINOv3Error, OutputExistsError, WriteError

_created_folders: list[Path] = []
"""Output folders :func:`check_output_folder` created in this process (see :func:`remove_created_folders`)."""


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync(path: Path, *, folder: bool = False) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if folder else 0))
    except OSError:
        if folder:
            return  # some platforms cannot open folders; the rename is still atomic
        raise
    try:
        os.fsync(fd)
    except OSError:
        if not folder:
            raise
    finally:
        os.close(fd)


def atomic_write(
    path: str | os.PathLike, write: Callable[[str], object], *, verify: Callable[[Path], object] | None = None
) -> Path:
    """Calls ``write(tmp_path)``, checks the result, then renames the temporary file onto ``path``.

    The temporary file lies in the same folder (so the rename is atomic) and ends with ``path``'s own
    name, suffix included, so writers that choose the format from the suffix (SimpleITK) still work.
    ``verify(tmp_path)`` raises if the written file is incomplete. Any failure (``OSError`` such as a full
    disk, the writer's own error, a failed check) raises :class:`~DualDINOv3Lib.errors.WriteError` naming
    the file and the cause; ``KeyboardInterrupt`` passes through. Either way the temporary file is removed
    and an existing ``path`` is left as it was.
    """
    path = Path(path)
    temporary = path.with_name(f".tmp-{uuid.uuid4().hex}-{path.name}")
    kept = "the existing file was kept" if path.exists() else "nothing was written"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(str(temporary))
        if not temporary.is_file():
            raise WriteError(f"cannot write {path}: the writer produced no file; {kept}")
        if verify is not None:
            verify(temporary)
        _fsync(temporary)
        # some writers (safetensors) create private 0600 files: give the result the usual permissions
        # (those of the file it replaces, else 0666 minus the umask)
        os.chmod(temporary, path.stat().st_mode & 0o777 if path.exists() else 0o666 & ~_umask())
        os.replace(temporary, path)
        _fsync(path.parent, folder=True)
    except WriteError:
        raise
    except OSError as exc:
        raise WriteError(f"cannot write {path}: {exc.strerror or exc}; {kept}", path=path) from exc
    except Exception as exc:  # the writer's own error (the image library's, safetensors', torch's ...)
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        cause = lines[-1] if lines else type(exc).__name__
        raise WriteError(f"cannot write {path}: {cause}; {kept}", path=path) from exc
    finally:
        if temporary.exists():
            temporary.unlink()
    return path


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Writes ``text`` (UTF-8) atomically, checking that every byte reached the file."""
    data = text.encode("utf-8")

    def verify(tmp: Path) -> None:
        if tmp.stat().st_size != len(data):
            raise WriteError(f"only {tmp.stat().st_size} of {len(data)} bytes were written")

    return atomic_write(path, lambda tmp: Path(tmp).write_bytes(data), verify=verify)


def check_output_path(
    path: str | os.PathLike,
    *,
    overwrite: bool,
    suffixes: tuple[str, ...] | None = None,
    inputs: tuple[str | os.PathLike | None, ...] = (),
) -> Path:
    """Checks, before any work is done, that a result can be written to ``path``.

    Raises :class:`~DualDINOv3Lib.errors.OutputExistsError` if it exists (unless ``overwrite``) and
    :class:`~DualDINOv3Lib.errors.DualDINOv3Error` if it is a folder, its suffix is not one of
    ``suffixes``, it is (or lies inside) one of the job's ``inputs``, or its folder cannot be created or
    written.
    """
    path = Path(path)
    name = path.name.lower()
    if suffixes is not None and not any(name.endswith(s) for s in suffixes):
        raise DualDINOv3Error(f"{path}: the output must end in one of {', '.join(suffixes)}")
    if path.is_dir():
        raise DualDINOv3Error(f"{path} is a folder; give a file name for the output")
    for source in (Path(s) for s in inputs if s is not None):
        target = path.resolve()
        if target == source.resolve() or (source.is_dir() and source.resolve() in target.parents):
            raise DualDINOv3Error(
                f"{path}: is one of this job's inputs ({source}); writing it would destroy the input. Choose "
                "another output name"
            )
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path} exists; choose another output or pass --overwrite to replace it")
    check_output_folder(path.parent)
    return path


def check_output_folder(folder: str | os.PathLike) -> Path:
    """Creates ``folder`` if needed and checks that files can be written in it."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise DualDINOv3Error(f"{folder} is a file, not a folder; choose another output location")
    missing = [p for p in (folder, *folder.parents) if not p.exists()]
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DualDINOv3Error(f"cannot create the output folder {folder}: {exc.strerror}") from exc
    _created_folders.extend(missing)
    if not os.access(folder, os.W_OK | os.X_OK):
        raise DualDINOv3Error(f"cannot write in {folder} (permission denied); choose another output location")
    return folder


def remove_created_folders() -> list[Path]:
    """Removes the output folders :func:`check_output_folder` created that are still empty (a job that
    failed or was interrupted before writing leaves no empty folder behind); returns those removed."""
    removed = []
    for folder in sorted(set(_created_folders), key=lambda p: len(p.parts), reverse=True):
        try:
            folder.rmdir()
            removed.append(folder)
        except OSError:
            pass  # not empty (something was written), or already gone
    _created_folders.clear()
    return removed
