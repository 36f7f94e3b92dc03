"""The model catalogue (``Resources/Models.json``) and its per-user download cache.

An entry is either ``"bundled": true`` (the demo model inside DualDINOv3Lib) or has ``url``, ``sha256`` and
``size`` (bytes): it is downloaded once, streamed into a temporary file in the cache folder while its SHA-256
is computed, and moved into place only when size and checksum match, so the cache never holds a partial or
wrong file. Cached files are checked again before each use. Standard library only.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

MODULE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CATALOG_FILE = os.path.join(MODULE_DIR, "Resources", "Models.json")
CHUNK = 1 << 18


def defaultCacheDirectory() -> str:
    """``$DUALDINOV3_CACHE`` if set, else ``~/.cache/DualDINOv3/models``."""
    return os.environ.get("DUALDINOV3_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "DualDINOv3", "models")


@dataclass(frozen=True)
class ModelEntry:
    id: str
    title: str
    description: str = ""
    bundled: bool = False
    url: str | None = None
    sha256: str | None = None
    size: int | None = None
    patientData: bool = False

    @property
    def fileName(self) -> str:
        return f"{self.id}.safetensors"


def _error(message: str):
    from DualDINOv3Lib.errors import CheckpointError

    return CheckpointError(message)


class ModelCatalog:
    """The entries of a catalogue file; :meth:`modelPath` gives a verified local file for an entry."""

    def __init__(self, path: str = CATALOG_FILE, cacheDirectory: str | None = None, timeout: float = 60.0) -> None:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        known = set(ModelEntry.__dataclass_fields__)
        self.entries: dict[str, ModelEntry] = {}
        for raw in data["models"]:
            unknown = set(raw) - known
            if unknown:
                raise ValueError(f"{path}: model {raw.get('id')!r} has unknown keys {sorted(unknown)}")
            entry = ModelEntry(**raw)
            if not entry.bundled and not (entry.url and entry.sha256 and entry.size):
                raise ValueError(f"{path}: model {entry.id!r} needs url, sha256 and size (or bundled: true)")
            self.entries[entry.id] = entry
        self.cacheDirectory = cacheDirectory or defaultCacheDirectory()
        self.timeout = timeout

    def ids(self) -> list[str]:
        return list(self.entries)

    def has(self, modelId: str) -> bool:
        return modelId in self.entries

    def cachedPath(self, modelId: str) -> str:
        return os.path.join(self.cacheDirectory, self.entries[modelId].fileName)

    def isAvailable(self, modelId: str) -> bool:
        """True if the model can be used without a download."""
        entry = self.entries[modelId]
        return entry.bundled or _matches(self.cachedPath(modelId), entry)

    def modelPath(self, modelId: str, progress: Callable[[float, str], None] | None = None) -> str | None:
        """The model's local file (``None`` for the bundled model, which the library finds itself).

        Downloads it into the cache first when it is not there or does not match its checksum.
        """
        entry = self.entries[modelId]
        if entry.bundled:
            return None
        path = self.cachedPath(modelId)
        if os.path.exists(path):
            if _matches(path, entry):
                return path
            os.remove(path)  # damaged or from another catalogue version
        self._download(entry, path, progress)
        return path

    def _download(self, entry: ModelEntry, path: str, progress) -> None:
        os.makedirs(self.cacheDirectory, exist_ok=True)
        fd, partial = tempfile.mkstemp(prefix=f".{entry.id}-", suffix=".part", dir=self.cacheDirectory)
        digest, received = hashlib.sha256(), 0
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(entry.url, timeout=self.timeout) as response:
                while True:
                    chunk = response.read(CHUNK)
                    if not chunk:
                        break
                    out.write(chunk)
                    digest.update(chunk)
                    received += len(chunk)
                    if progress is not None:
                        progress(min(received / entry.size, 1.0), f"downloading {entry.title}")
            if received != entry.size:
                raise _error(
                    f"the download of model {entry.id!r} from {entry.url} stopped after {received} of {entry.size}"
                    " bytes; check the network connection and try again"
                )
            if digest.hexdigest() != entry.sha256.lower():
                raise _error(
                    f"the model {entry.id!r} downloaded from {entry.url} does not match its SHA-256 checksum"
                    f" (got {digest.hexdigest()}); nothing was cached. The file on the server changed or was"
                    " damaged: update the extension or report it"
                )
            os.replace(partial, path)
        except BaseException as exc:
            if os.path.exists(partial):
                os.remove(partial)
            if isinstance(exc, OSError):
                raise _error(f"the model {entry.id!r} could not be downloaded from {entry.url}: {exc}") from exc
            raise


def _matches(path: str, entry: ModelEntry) -> bool:
    if not os.path.isfile(path) or os.path.getsize(path) != entry.size:
        return False
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest() == entry.sha256.lower()
