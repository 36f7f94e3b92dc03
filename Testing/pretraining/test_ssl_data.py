"""Streaming crops: every sample has a number, a batch depends only on the seed and the step (not on the
worker count or on which steps ran before), processes and micro-batches never share a sample within an epoch,
and every process uses the same crop size at a step."""

from __future__ import annotations

import pytest
import torch

from DualDINOv3Lib.errors import DataError
from DualDINOv3Lib.pretraining.crops import MultiCrop
from DualDINOv3Lib.pretraining.data import BatchPlan, Collate, CropDataset, crop_loader, crop_sizes_at

pytestmark = pytest.mark.usefixtures("one_thread")


def dataset(store, plan, sizes=((32, 16),), weights=(1.0,), gram=2):
    return CropDataset([store], MultiCrop(n_local=2), plan, 7, [list(s) for s in sizes], list(weights), gram)


def test_sample_numbers_cover_each_epoch_once_across_processes_and_micro_batches():
    plans = [BatchPlan(3, accumulation_steps=2, world_size=2, rank=r) for r in range(2)]
    numbers = [n for step in range(5) for micro in range(2) for plan in plans for n in plan.sample_numbers(step, micro)]
    assert sorted(numbers) == list(range(5 * 2 * 2 * 3))
    assert plans[1].step_of(plans[1].sample_numbers(3, 1)[2]) == (3, 1)


def test_batches_do_not_depend_on_workers_or_on_the_start_step(pet_store):
    plan = BatchPlan(2)
    data = dataset(pet_store, plan)
    collate = Collate(plan, 7, 8)
    serial = list(crop_loader(data, collate, 0, 3, num_workers=0))
    workers = list(crop_loader(data, collate, 0, 3, num_workers=2))
    late = list(crop_loader(data, collate, 2, 3, num_workers=0))
    for a, b in zip(serial, workers, strict=True):
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert all(torch.equal(serial[2][k], late[0][k]) for k in late[0])
    batch = serial[0]
    assert batch["global"].shape == (4, 1, 32, 32) and batch["local"].shape == (4, 1, 16, 16)
    assert batch["gram"].shape == (4, 1, 64, 64) and batch["masks"].shape == (4, 16)
    assert int(batch["masks"].any(dim=1).sum()) == 2  # half of the global crops are masked


def test_every_slice_is_seen_once_per_epoch(pet_store):
    plan = BatchPlan(1)
    data = dataset(pet_store, plan)
    n = len(data)
    assert sorted(data.slice_index(i) for i in range(n)) == list(range(n))
    assert [data.slice_index(i) for i in range(n)] != [data.slice_index(i) for i in range(n, 2 * n)]


def test_one_crop_size_per_step_shared_by_all_processes():
    sizes, weights = [[32, 16], [64, 24]], [0.5, 0.5]
    drawn = [crop_sizes_at(step, 3, sizes, weights, 2) for step in range(40)]
    assert {d.global_size for d in drawn} == {32, 64}
    assert all(d.gram_size == 2 * d.global_size for d in drawn)
    assert drawn == [crop_sizes_at(step, 3, sizes, weights, 2) for step in range(40)]  # no rank in the seed


def test_stores_of_two_modalities_are_refused(pet_store, tmp_path):
    import numpy as np

    from DualDINOv3Lib.pretraining.store_writer import SliceStoreWriter

    with SliceStoreWriter(tmp_path / "ct", modality="CT", preprocessing={}, slice_size=64) as w:
        w.add_volume("ct", np.zeros((2, 64, 64), np.float32), [0, 1])
    with pytest.raises(DataError, match="mix modalities"):
        CropDataset([pet_store, tmp_path / "ct"], MultiCrop(), BatchPlan(1), 0, [[32, 16]], [1.0], 0)
