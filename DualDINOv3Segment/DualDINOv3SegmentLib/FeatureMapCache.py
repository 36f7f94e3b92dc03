"""Feature maps computed by the Segment job, kept on disk so that "Show feature maps" needs no second encoder pass.

The Segment job runs ``segment_with_feature_maps`` (one encoder pass gives the labels and every encoder's PCA
maps) and the maps land here, one folder per key. The key is a hash of what the maps depend on: the CT and PET
voxels and geometry as the worker receives them (after the SUV conversion), the model file (path, size,
modification time), the PCA's block and the device. "Show feature maps" with the same key loads the arrays
instead of starting a worker. At most ``maxEntries`` results are kept (the oldest go first), on disk only:
nothing stays in Slicer's memory until the maps are shown.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import time
import uuid

import numpy as np

log = logging.getLogger(__name__)

PCA_LAYER = -1
"""The encoder block whose tokens the module's feature maps show (the last one, the library's default)."""


def _hashVolume(digest, volume) -> None:
    array = np.ascontiguousarray(volume.array)
    digest.update(repr((array.shape, str(array.dtype), volume.spacing, volume.origin, volume.direction)).encode())
    digest.update(memoryview(array).cast("B"))


def _modelIdentity(modelPath) -> str:
    if modelPath is None:
        from DualDINOv3Lib.models.bundled import bundled_model_path

        modelPath = bundled_model_path()
    stat = os.stat(modelPath)
    return f"{os.path.abspath(modelPath)}|{stat.st_size}|{stat.st_mtime_ns}"


def featureMapKey(ct, pet, modelPath, device: str, layer: int = PCA_LAYER) -> str:
    """The cache key of the maps of ``ct``/``pet`` (library Volumes) under the model file and settings."""
    digest = hashlib.sha256()
    for volume in (ct, pet):
        _hashVolume(digest, volume)
    digest.update(f"|{_modelIdentity(modelPath)}|layer={int(layer)}|device={device}".encode())
    return digest.hexdigest()[:32]


class FeatureMapCache:
    """Folder ``directory`` holding up to ``maxEntries`` sets of maps, ``{encoder: (Z, Y, X, 3) uint8 .npy}``."""

    def __init__(self, directory: str, maxEntries: int = 2) -> None:
        if maxEntries < 1:
            raise ValueError(f"maxEntries must be at least 1, got {maxEntries}")
        self.directory = directory
        self.maxEntries = maxEntries

    def _folder(self, key: str) -> str:
        return os.path.join(self.directory, key)

    def load(self, key: str, encoders=None) -> dict[str, str] | None:
        """``{encoder: .npy path}`` for the encoders asked for (None: all kept), or None when any is missing."""
        folder = self._folder(key)
        if not os.path.isdir(folder):
            return None
        kept = {name[len("pca_") : -len(".npy")]: os.path.join(folder, name) for name in os.listdir(folder)
                if name.startswith("pca_") and name.endswith(".npy")}  # fmt: skip
        wanted = list(kept) if encoders is None else list(encoders)
        if not wanted or any(name not in kept for name in wanted):
            return None
        self._touch(folder)
        return {name: kept[name] for name in wanted}

    def store(self, key: str, maps: dict[str, str]) -> None:
        """Move the worker's ``{encoder: .npy path}`` files in under ``key`` (complete or not at all)."""
        os.makedirs(self.directory, exist_ok=True)
        staging = os.path.join(self.directory, f".incoming-{uuid.uuid4().hex}")
        os.makedirs(staging)
        try:
            for name, path in maps.items():
                shutil.move(path, os.path.join(staging, f"pca_{name}.npy"))
            shutil.rmtree(self._folder(key), ignore_errors=True)
            os.replace(staging, self._folder(key))  # atomic: a reader sees all the maps or none
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        self._touch(self._folder(key))
        self._evict()

    def _entries(self) -> list[str]:
        return [os.path.join(self.directory, n) for n in os.listdir(self.directory) if not n.startswith(".")]

    def _touch(self, folder: str) -> None:
        """Mark ``folder`` most recently used: a modification time after every other entry's, stated exactly
        (the clock the file system would use by itself ticks too coarsely to order two quick uses)."""
        newest = max((os.stat(e).st_mtime_ns for e in self._entries()), default=0)
        stamp = max(time.time_ns(), newest + 1)
        os.utime(folder, ns=(stamp, stamp))

    def _evict(self) -> None:
        entries = sorted(self._entries(), key=lambda e: os.stat(e).st_mtime_ns, reverse=True)
        for old in entries[self.maxEntries :]:
            log.info("feature-map cache: removing %s", old)
            shutil.rmtree(old, ignore_errors=True)

    def clear(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)
