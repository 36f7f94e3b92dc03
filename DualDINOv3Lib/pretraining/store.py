"""The on-disk slice store that pretraining streams from: many volumes' 2D slices in one folder.

Layout of a store folder::

    manifest.json        format name + version, modality, slice size, dtype, preprocessing parameters,
                         the shards (file, slice count) and the completed source volumes (first slice,
                         slice count, z indices as [start, stop) runs, per-volume stats)
    shard-00000.npy      (n, S, S) float16 or float32 slices, n <= shard_size, memory-mapped for reading
    shard-00001.npy ...

Slices are numbered in the order volumes were added; shard ``k`` holds the slices after those of shards
``0..k-1``. Every shard except the last few is full (``shard_size`` slices).

Writing (:class:`SliceStoreWriter`) is resumable and crash-safe: every file is written under a temporary
name and renamed; the manifest is rewritten (the same way) only after the shards it lists are on disk, and
files it no longer lists are deleted only after that. The manifest is the only truth: opening a store
for writing deletes shard and temporary files it does not list (left by a killed run), so re-running the
same job skips the completed volumes and goes on from the last complete one.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..errors import DataError

try:  # advisory lock against two writers on one store; not available on Windows
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None

log = logging.getLogger("dualdinov3.pretraining")

FORMAT = "dualdinov3-slice-store"
VERSION = 1
MANIFEST = "manifest.json"
DTYPES = ("float16", "float32")
SHARD_NAME = re.compile(r"shard-\d+\.npy")
LOCK_FILE = ".lock"


class SliceProvenance(NamedTuple):
    """Where a stored slice comes from: the ``source`` volume, its ``z`` index there, the volume's number."""

    source: str
    z: int
    volume: int


def is_store_file(name: str) -> bool:
    """True for the files a writer leaves in a store folder before its first manifest."""
    return name == LOCK_FILE or name.startswith(".tmp-")


def z_runs(z_indices: Sequence[int]) -> list[list[int]]:
    """Increasing z indices as ``[start, stop)`` runs: [3, 4, 5, 9] -> [[3, 6], [9, 10]]."""
    runs: list[list[int]] = []
    for z in (int(v) for v in z_indices):
        if runs and runs[-1][1] == z:
            runs[-1][1] = z + 1
        else:
            runs.append([z, z + 1])
    return runs


def z_at(runs: list[list[int]], k: int) -> int:
    for start, stop in runs:
        if k < stop - start:
            return start + k
        k -= stop - start
    raise IndexError(k)


def read_manifest(path: Path) -> dict:
    file = path / MANIFEST
    try:
        manifest = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{file}: cannot be read as a slice-store manifest ({exc}); rebuild the store") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise DataError(f"{file}: is not a {FORMAT} manifest; pass the folder written by prepare_pretraining.py")
    if manifest.get("version") != VERSION:
        raise DataError(
            f"{file}: slice store version {manifest.get('version')} but this library reads version {VERSION}; "
            "rebuild the store with this version of DualDINOv3"
        )
    return manifest


def open_shard(file: Path, count: int, slice_size: int, dtype: str) -> np.ndarray:
    """``file`` memory-mapped read-only, checked to be ``(count, S, S)`` of ``dtype``."""
    try:
        array = np.load(file, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DataError(
            f"{file}: slice-store shard is missing or damaged ({exc}); rebuild the store "
            "(or restore the folder from a backup)"
        ) from exc
    if array.shape != (count, slice_size, slice_size) or array.dtype != np.dtype(dtype):
        raise DataError(
            f"{file}: slice-store shard holds {array.dtype} {array.shape}, the manifest says {dtype} "
            f"{(count, slice_size, slice_size)}; the store was modified by hand: rebuild it"
        )
    return array


class SliceStore:
    """Reads a slice store: ``len(store)``, ``store[i]`` -> ``(S, S)`` float32, :meth:`provenance`.

    Shards are memory-mapped on first use (at most ``max_open_shards`` at a time), never loaded whole.
    Picklable: a copy (e.g. in a torch DataLoader worker) opens its own memory maps, so it is a map-style
    dataset as it is. The manifest is read once, when the store is opened.
    """

    def __init__(self, path: str | os.PathLike, max_open_shards: int = 64) -> None:
        self.path = Path(path)
        if not (self.path / MANIFEST).is_file():
            raise DataError(
                f"{self.path}: not a slice store (no {MANIFEST}); build one with Training/prepare_pretraining.py"
            )
        manifest = read_manifest(self.path)
        self.modality: str = manifest["modality"]
        self.slice_size: int = manifest["slice_size"]
        self.dtype: str = manifest["dtype"]
        self.preprocessing: dict = manifest["preprocessing"]
        self.volumes: list[dict] = manifest["volumes"]
        self._files = [s["file"] for s in manifest["shards"]]
        self._counts = [s["count"] for s in manifest["shards"]]
        self._ends = np.cumsum(self._counts, dtype=np.int64)
        self._volume_starts = np.asarray([v["start"] for v in self.volumes], dtype=np.int64)
        self.max_open_shards = int(max_open_shards)
        self._reset_cache()

    def _reset_cache(self) -> None:
        self._open: OrderedDict[int, np.ndarray] = OrderedDict()
        self._pid = os.getpid()

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_open"] = OrderedDict()  # memory maps are per process
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._reset_cache()

    def __len__(self) -> int:
        return int(self._ends[-1]) if len(self._ends) else 0

    def _locate(self, index: int) -> tuple[int, int]:
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"slice {index} out of range for a store of {n} slices")
        index %= n
        shard = int(np.searchsorted(self._ends, index, side="right"))
        return shard, index - (int(self._ends[shard - 1]) if shard else 0)

    def _shard(self, shard: int) -> np.ndarray:
        if self._pid != os.getpid():  # a forked worker: map the files anew
            self._reset_cache()
        array = self._open.get(shard)
        if array is None:
            array = open_shard(self.path / self._files[shard], self._counts[shard], self.slice_size, self.dtype)
            self._open[shard] = array
            while len(self._open) > self.max_open_shards:
                self._open.popitem(last=False)
        else:
            self._open.move_to_end(shard)
        return array

    def __getitem__(self, index: int) -> np.ndarray:
        shard, row = self._locate(int(index))
        return np.array(self._shard(shard)[row], dtype=np.float32)  # a copy, not a view of the map

    @property
    def open_shards(self) -> int:
        """How many shards this process has memory-mapped now."""
        return len(self._open)

    def provenance(self, index: int) -> SliceProvenance:
        """The source volume and z index of slice ``index``."""
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"slice {index} out of range for a store of {n} slices")
        index %= n
        volume = int(np.searchsorted(self._volume_starts, index, side="right")) - 1
        # volumes with no slices share their start with the next one: take the last volume starting there
        entry = self.volumes[volume]
        return SliceProvenance(entry["source"], z_at(entry["z"], index - entry["start"]), volume)

    def __repr__(self) -> str:
        where = str(self.path)
        return f"SliceStore({where!r}, modality={self.modality!r}, slices={len(self)}, volumes={len(self.volumes)})"
