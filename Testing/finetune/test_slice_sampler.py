"""The training batches' foreground oversampling: class-balanced as in nnU-Net, reproducible from the seed."""

from __future__ import annotations

import numpy as np

from DualDINOv3Lib.finetune.dataset import CachedCase, SliceSampler, _class_slices


def _case(case_id: str, z: int = 40) -> CachedCase:
    """A primary (label 1) over 20 slices and one small node (label 2) on 2 other slices."""
    labels = np.zeros((z, 16, 16), dtype=np.uint8)
    labels[5:25, 4:10, 4:10] = 1
    labels[30:32, 12:14, 12:14] = 2
    images = np.zeros((z, 2, 16, 16), dtype=np.float32)
    return CachedCase(case_id, images, labels, _class_slices(labels))


def test_class_slices_lists_each_label_present():
    case = _case("A")
    assert sorted(case.class_slices) == [1, 2]
    assert case.class_slices[1].tolist() == list(range(5, 25))
    assert case.class_slices[2].tolist() == [30, 31]
    assert _class_slices(np.zeros((3, 4, 4), dtype=np.uint8)) == {}


def test_forced_slices_draw_each_tumour_class_about_equally():
    cases = [_case("A"), _case("B")]
    sampler = SliceSampler(cases, batch_size=8, foreground_oversampling=1.0, seed=3)
    picks = [pick for _ in range(200) for pick in sampler.next_indices()]
    node = np.mean([cases[c].labels[z].max() == 2 for c, z in picks])
    # by slice count the node would be drawn 2 times in 22; by class, half the time
    assert 0.43 < node < 0.57
    assert all(cases[c].labels[z].max() > 0 for c, z in picks)


def test_unforced_slices_and_cases_without_tumour_draw_any_slice():
    empty = CachedCase("E", np.zeros((10, 2, 4, 4), np.float32), np.zeros((10, 4, 4), np.uint8), {})
    sampler = SliceSampler([empty], batch_size=4, foreground_oversampling=0.5, seed=0)
    zs = {z for _ in range(100) for _, z in sampler.next_indices()}
    assert zs == set(range(10))


def test_same_seed_same_batches():
    def draws(seed):
        sampler = SliceSampler([_case("A"), _case("B")], batch_size=4, foreground_oversampling=0.5, seed=seed)
        return [sampler.next_indices() for _ in range(20)]

    assert draws(7) == draws(7)
    assert draws(7) != draws(8)
