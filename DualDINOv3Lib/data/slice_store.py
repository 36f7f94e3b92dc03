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

import itertools
import json
import logging
import os
import re
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..errors import ConfigError, DataError
from ..files import atomic_write

try:  # advisory lock against two writers on one store; not available on Windows
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None

log = logging.getLogger("dualdinov3.pretraining")

FORMAT = "dualdinov3-slice-store"
VERSION = 1
MANIFEST = "manifest.json"
DTYPES = ("float16", "float32")
_SHARD_NAME = re.compile(r"shard-\d+\.npy")
_LOCK = ".lock"


class SliceProvenance(NamedTuple):
    """Where a stored slice comes from: the ``source`` volume, its ``z`` index there, the volume's number."""

    source: str
    z: int
    volume: int


def _ours(name: str) -> bool:
    """True for the files a writer leaves in a store folder before its first manifest."""
    return name == _LOCK or name.startswith(".tmp-")


def _z_runs(z_indices: Sequence[int]) -> list[list[int]]:
    """Increasing z indices as ``[start, stop)`` runs: [3, 4, 5, 9] -> [[3, 6], [9, 10]]."""
    runs: list[list[int]] = []
    for z in (int(v) for v in z_indices):
        if runs and runs[-1][1] == z:
            runs[-1][1] = z + 1
        else:
            runs.append([z, z + 1])
    return runs


def _z_at(runs: list[list[int]], k: int) -> int:
    for start, stop in runs:
        if k < stop - start:
            return start + k
        k -= stop - start
    raise IndexError(k)


def _read_manifest(path: Path) -> dict:
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


def _open_shard(file: Path, count: int, slice_size: int, dtype: str) -> np.ndarray:
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


def _save_npy(path: Path, array: np.ndarray) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.save(f, array, allow_pickle=False)
            f.flush()
            os.fsync(f.fileno())

    atomic_write(path, write)


class SliceStoreWriter:
    """Adds volumes' slices to the store folder ``path`` (created if needed, resumed if it holds a store).

    ``modality``: ``"PT"`` or ``"CT"``; ``preprocessing``: the parameters that made the slices (JSON-able,
    e.g. ``PetSliceParams().to_dict()``); ``slice_size``: S; ``shard_size``: slices per full shard;
    ``dtype``: ``"float16"`` (half the disk; ~3 significant digits) or ``"float32"``. An existing store
    made with another modality, preprocessing, slice size, shard size or dtype is refused (ConfigError).
    Use as a context manager, or call :meth:`close` (which merges the trailing partial shards into one).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        modality: str,
        preprocessing: Mapping,
        slice_size: int = 256,
        shard_size: int = 1024,
        dtype: str = "float16",
    ) -> None:
        if dtype not in DTYPES:
            raise ConfigError(f"slice-store dtype must be one of {DTYPES}, got {dtype!r}")
        if int(shard_size) < 1 or int(slice_size) < 1:
            raise ConfigError(f"shard_size and slice_size must be positive, got {shard_size} and {slice_size}")
        self.path = Path(path)
        settings = {
            "modality": modality,
            "slice_size": int(slice_size),
            "shard_size": int(shard_size),
            "dtype": dtype,
            "preprocessing": json.loads(json.dumps(dict(preprocessing))),
        }
        self._lock_file = None
        self._closed = False
        if (self.path / MANIFEST).is_file():
            self._lock()
            try:
                self._manifest = _read_manifest(self.path)
                self._check_settings(settings)
                self._clean_and_verify()
            except BaseException:
                self._release()
                raise
            log.info(
                "%s: resuming a store of %d slices from %d volumes",
                self.path,
                len(self),
                len(self._manifest["volumes"]),
            )
        else:
            if self.path.exists() and (not self.path.is_dir() or any(not _ours(p.name) for p in self.path.iterdir())):
                raise DataError(
                    f"{self.path}: exists and is not a slice store (no {MANIFEST}); "
                    "choose a new or empty folder for the store"
                )
            self.path.mkdir(parents=True, exist_ok=True)
            self._lock()
            for leftover in self.path.glob(".tmp-*"):  # a run killed before its first manifest
                leftover.unlink()
            self._commit(
                {"format": FORMAT, "version": VERSION, **settings, "next_shard": 0, "shards": [], "volumes": []}
            )
        self._done = {v["source"] for v in self._manifest["volumes"]}

    # --- opening ------------------------------------------------------------------------------------

    def _lock(self) -> None:
        if fcntl is None:
            return
        self._lock_file = open(self.path / _LOCK, "a")
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            self._lock_file.close()
            self._lock_file = None
            raise DataError(
                f"{self.path}: another process is writing this slice store; wait for it to finish or stop it"
            ) from exc

    def _check_settings(self, wanted: dict) -> None:
        for key, value in wanted.items():
            stored = self._manifest.get(key)
            if stored != value:
                raise ConfigError(
                    f"{self.path}: this store holds slices made with {key} = {json.dumps(stored)}, but "
                    f"{json.dumps(value)} was asked for; one store holds one modality and one preprocessing. "
                    "Write to a new --out folder, or repeat the store's own settings to add to it"
                )

    def _clean_and_verify(self) -> None:
        listed = {s["file"] for s in self._manifest["shards"]}
        for entry in self.path.iterdir():
            orphan = _SHARD_NAME.fullmatch(entry.name) and entry.name not in listed
            if orphan or entry.name.startswith(".tmp-"):
                log.info("%s: removing %s, left by an interrupted run", self.path, entry.name)
                entry.unlink()
        for shard in self._manifest["shards"]:
            _open_shard(self.path / shard["file"], shard["count"], self.slice_size, self.dtype)

    # --- state --------------------------------------------------------------------------------------

    @property
    def slice_size(self) -> int:
        return self._manifest["slice_size"]

    @property
    def dtype(self) -> str:
        return self._manifest["dtype"]

    @property
    def completed_sources(self) -> frozenset[str]:
        """The sources of the volumes already in the store (those re-running a job skips)."""
        return frozenset(self._done)

    def __contains__(self, source: str) -> bool:
        return source in self._done

    def __len__(self) -> int:
        return sum(s["count"] for s in self._manifest["shards"])

    # --- writing ------------------------------------------------------------------------------------

    def add_volume(
        self, source: str, slices: np.ndarray, z_indices: Sequence[int], info: Mapping | None = None
    ) -> None:
        """Adds one volume's ``slices`` ``(N, S, S)`` (N may be 0) with their ``z_indices`` ``(N,)`` and JSON-able
        ``info``, and commits: when this returns, the volume is in the store even if the process dies next."""
        if self._closed:
            raise DataError(f"{self.path}: this writer was closed; open a new SliceStoreWriter")
        if source in self._done:
            raise DataError(f"{self.path}: {source} is already in the store; skip completed volumes (see `in`)")
        size = self.slice_size
        slices = np.asarray(slices)
        z_indices = [int(z) for z in z_indices]
        if slices.ndim != 3 or slices.shape[1:] != (size, size) or len(z_indices) != slices.shape[0]:
            raise DataError(
                f"{source}: slices must be (N, {size}, {size}) with one z index each, got {slices.shape} "
                f"and {len(z_indices)} z indices"
            )
        if any(b <= a for a, b in itertools.pairwise(z_indices)):
            raise DataError(f"{source}: z indices must increase, got {z_indices[:10]}...")
        if slices.size and not np.isfinite(slices).all():
            raise DataError(f"{source}: slices hold NaN or infinite values; the preprocessing failed on this volume")
        with np.errstate(over="ignore"):
            data = slices.astype(self.dtype)
        if slices.size and not np.isfinite(data).all():
            raise DataError(f"{source}: slice values exceed the {self.dtype} range; store as float32")

        manifest = dict(self._manifest)  # the next state; it becomes the writer's once it is on disk
        full = manifest["shard_size"]
        tail = self._tail()
        tail_count = sum(s["count"] for s in tail)
        new_shards, dropped = [], []
        if len(data) and tail_count + len(data) >= full:
            # the partial tail and the new slices fill at least one shard: rewrite them as full shards
            parts = [_open_shard(self.path / s["file"], s["count"], size, self.dtype) for s in tail]
            merged = np.concatenate([*parts, data])
            dropped = tail
            for first in range(0, len(merged), full):
                new_shards.append(self._write_shard(manifest, merged[first : first + full]))
        elif len(data):
            new_shards.append(self._write_shard(manifest, data))
        entry = {**dict(info or {}), "source": source, "start": len(self), "count": len(z_indices)}
        manifest["shards"] = manifest["shards"][: len(manifest["shards"]) - len(dropped)] + new_shards
        manifest["volumes"] = [*manifest["volumes"], {**entry, "z": _z_runs(z_indices)}]
        self._commit(manifest)
        self._done.add(source)
        self._delete(dropped)

    def _tail(self) -> list[dict]:
        """The trailing shards with fewer than ``shard_size`` slices."""
        shards = self._manifest["shards"]
        i = len(shards)
        while i > 0 and shards[i - 1]["count"] < self._manifest["shard_size"]:
            i -= 1
        return shards[i:]

    def _write_shard(self, manifest: dict, data: np.ndarray) -> dict:
        """Writes ``data`` as a new shard named from ``manifest``'s counter (advanced); returns its entry."""
        name = f"shard-{manifest['next_shard']:05d}.npy"
        manifest["next_shard"] += 1
        _save_npy(self.path / name, np.ascontiguousarray(data))
        return {"file": name, "count": len(data)}

    def _commit(self, manifest: dict) -> None:
        """Writes ``manifest`` (atomically, after the shards it lists) and makes it the writer's state."""
        self._write_manifest(manifest)
        self._manifest = manifest

    def _write_manifest(self, manifest: dict) -> None:
        text = json.dumps(manifest, separators=(",", ":"))

        def write(tmp: str) -> None:
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())

        atomic_write(self.path / MANIFEST, write)

    def _delete(self, shards: list[dict]) -> None:
        for shard in shards:
            (self.path / shard["file"]).unlink(missing_ok=True)

    def close(self) -> None:
        """Merges the trailing partial shards into one, then releases the store."""
        tail = self._tail()
        if len(tail) > 1 and not self._closed:
            parts = [_open_shard(self.path / s["file"], s["count"], self.slice_size, self.dtype) for s in tail]
            manifest = dict(self._manifest)
            merged = self._write_shard(manifest, np.concatenate(parts))
            manifest["shards"] = [*manifest["shards"][: -len(tail)], merged]
            self._commit(manifest)
            self._delete(tail)
        self._release()

    def _release(self) -> None:
        self._closed = True
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    def __enter__(self) -> SliceStoreWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        # after an error, leave the committed state exactly as it is (a re-run resumes from it)
        if exc_type is None:
            self.close()
        else:
            self._release()


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
        manifest = _read_manifest(self.path)
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
            array = _open_shard(self.path / self._files[shard], self._counts[shard], self.slice_size, self.dtype)
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
        return SliceProvenance(entry["source"], _z_at(entry["z"], index - entry["start"]), volume)

    def __repr__(self) -> str:
        where = str(self.path)
        return f"SliceStore({where!r}, modality={self.modality!r}, slices={len(self)}, volumes={len(self.volumes)})"
