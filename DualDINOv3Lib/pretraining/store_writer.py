"""Writing a slice store (see :mod:`.store` for the layout): resumable, crash-safe, one writer at a time."""

from __future__ import annotations

import itertools
import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from ..errors import ConfigError, DataError
from ..files import atomic_write

try:  # advisory lock against two writers on one store; not available on Windows
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None

from .store import (
    DTYPES,
    FORMAT,
    LOCK_FILE,
    MANIFEST,
    SHARD_NAME,
    VERSION,
    is_store_file,
    open_shard,
    read_manifest,
    z_runs,
)

log = logging.getLogger("dualdinov3.pretraining")


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
                self._manifest = read_manifest(self.path)
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
            if self.path.exists() and (
                not self.path.is_dir() or any(not is_store_file(p.name) for p in self.path.iterdir())
            ):
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
        self._lock_file = open(self.path / LOCK_FILE, "a")
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
            orphan = SHARD_NAME.fullmatch(entry.name) and entry.name not in listed
            if orphan or entry.name.startswith(".tmp-"):
                log.info("%s: removing %s, left by an interrupted run", self.path, entry.name)
                entry.unlink()
        for shard in self._manifest["shards"]:
            open_shard(self.path / shard["file"], shard["count"], self.slice_size, self.dtype)

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
            parts = [open_shard(self.path / s["file"], s["count"], size, self.dtype) for s in tail]
            merged = np.concatenate([*parts, data])
            dropped = tail
            for first in range(0, len(merged), full):
                new_shards.append(self._write_shard(manifest, merged[first : first + full]))
        elif len(data):
            new_shards.append(self._write_shard(manifest, data))
        entry = {**dict(info or {}), "source": source, "start": len(self), "count": len(z_indices)}
        manifest["shards"] = manifest["shards"][: len(manifest["shards"]) - len(dropped)] + new_shards
        manifest["volumes"] = [*manifest["volumes"], {**entry, "z": z_runs(z_indices)}]
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
            parts = [open_shard(self.path / s["file"], s["count"], self.slice_size, self.dtype) for s in tail]
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
