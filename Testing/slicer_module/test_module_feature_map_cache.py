"""FeatureMapCache: keys follow everything the maps depend on; entries are complete, bounded, most recent kept."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from DualDINOv3SegmentLib.FeatureMapCache import FeatureMapCache, featureMapKey

from DualDINOv3Lib.data import Volume


def _volumes():
    ct = Volume(np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6), (1.0, 1.0, 2.0))
    return ct, ct.with_array(np.ones((4, 5, 6), np.float32))


def test_the_key_changes_with_voxels_geometry_model_layer_and_device(tmp_path):
    ct, pet = _volumes()
    model = tmp_path / "model.safetensors"
    model.write_bytes(b"weights")
    key = featureMapKey(ct, pet, str(model), "cpu")
    assert key == featureMapKey(ct, pet, str(model), "cpu")
    changed = ct.array.copy()
    changed[1, 2, 3] += 1
    other = tmp_path / "other.safetensors"
    other.write_bytes(b"weights")
    variants = [
        featureMapKey(ct.with_array(changed), pet, str(model), "cpu"),
        featureMapKey(dataclasses.replace(ct, origin=(0.0, 0.0, 1.0)), pet, str(model), "cpu"),
        featureMapKey(ct, dataclasses.replace(pet, spacing=(1.0, 1.0, 3.0)), str(model), "cpu"),
        featureMapKey(pet, ct, str(model), "cpu"),
        featureMapKey(ct, pet, str(other), "cpu"),
        featureMapKey(ct, pet, None, "cpu"),  # the bundled model
        featureMapKey(ct, pet, str(model), "cpu", layer=-2),
        featureMapKey(ct, pet, str(model), "cuda"),
    ]
    assert len({key, *variants}) == len(variants) + 1
    model.write_bytes(b"retrained")  # a model file replaced in place
    assert featureMapKey(ct, pet, str(model), "cpu") != key


def _maps(folder, value):
    folder.mkdir(exist_ok=True)
    paths = {}
    for name in ("ct", "pet"):
        paths[name] = str(folder / f"pca_{name}.npy")
        np.save(paths[name], np.full((2, 3, 4, 3), value, np.uint8))
    return paths


def test_store_load_and_at_most_max_entries_kept(tmp_path):
    cache = FeatureMapCache(str(tmp_path / "cache"), maxEntries=2)
    assert cache.load("a") is None
    for i, key in enumerate("abc"):
        cache.store(key, _maps(tmp_path / f"job{i}", i))
        if key == "b":
            cache.load("a")  # used last: kept when c arrives
    assert cache.load("b") is None  # the least recently used went
    loaded = cache.load("a")
    assert sorted(loaded) == ["ct", "pet"] and np.load(loaded["ct"]).max() == 0
    assert list(cache.load("c", ["pet"])) == ["pet"] and cache.load("c", ["encoder"]) is None
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["a", "c"]
    assert not (tmp_path / "job2" / "pca_ct.npy").exists()  # moved, not copied
    with pytest.raises(ValueError, match="maxEntries"):
        FeatureMapCache(str(tmp_path), maxEntries=0)


def test_a_failed_store_leaves_no_partial_entry(tmp_path):
    cache = FeatureMapCache(str(tmp_path / "cache"))
    maps = _maps(tmp_path / "job", 1)
    maps["pet"] = str(tmp_path / "job" / "missing.npy")
    with pytest.raises(OSError):
        cache.store("k", maps)
    assert cache.load("k") is None and [p.name for p in (tmp_path / "cache").iterdir()] == []
