"""The up-front memory check: a batch that would need more than the memory available is refused before any
forward, naming the batch size that fits; the estimate follows the decoder's full-resolution maps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from DualDINOv3Lib import DualDINOv3Error, machine, segment_volume
from DualDINOv3Lib.data import Volume
from DualDINOv3Lib.inference import segment_with_feature_maps
from DualDINOv3Lib.inference.memory import batch_memory_bytes
from DualDINOv3Lib.models import build_segmenter
from DualDINOv3Lib.models.decoder import PrimusMultiscaleDecoder


@pytest.fixture(scope="module")
def segmenter():
    config = {"architecture": "dual_stream", "backbone": "vit_nano16", "preprocessing": {"crop_size": 64}}
    return build_segmenter(config).eval()


def _ct_pet():
    rng = np.random.default_rng(0)
    ct = np.full((6, 40, 40), -1000.0, np.float32)
    ct[:, 8:32, 6:34] = 40.0 + rng.normal(0, 5, (6, 24, 28))
    return Volume(ct, (1.5, 1.5, 3.0), modality="CT"), Volume(rng.random((6, 40, 40), np.float32), (1.5, 1.5, 3.0))


def test_the_estimate_for_the_paper_decoder_and_per_precision(segmenter):
    vitb = PrimusMultiscaleDecoder(4 * 768, num_classes=3, patch_size=16)  # 3072 -> ... -> 192 channels
    assert vitb.working_memory_bytes(512, 512, 4) == 3 * 1536 * 64 * 64 * 4  # the largest map held whole
    one = batch_memory_bytes(segmenter, 1, 64, None)
    assert batch_memory_bytes(segmenter, 4, 64, None) == 4 * one
    assert one / 2 < batch_memory_bytes(segmenter, 1, 64, torch.bfloat16) < one  # the residual stream stays fp32
    available = machine.available_memory_bytes()
    assert available is None or available > 0


def test_a_batch_that_does_not_fit_is_refused_before_any_forward(segmenter, monkeypatch):
    ct, pet = _ct_pet()
    per_slice = batch_memory_bytes(segmenter, 1, 64, None)
    monkeypatch.setattr(machine, "available_memory_bytes", lambda: int(2.5 * per_slice))
    seen = []
    hook = segmenter.encoders["ct_encoder"].blocks[0].register_forward_pre_hook(lambda *_: seen.append(1))
    try:
        for job in (segment_volume, segment_with_feature_maps):  # float32 estimate: mixed precision off
            with pytest.raises(DualDINOv3Error, match=r"a batch of 4 slices .* use a batch size of 2 or less"):
                job(ct, pet, segmenter, device="cpu", batch_size=4, mixed_precision=False)
        assert seen == []
        segment_volume(ct, pet, segmenter, device="cpu", batch_size=2, threads=1, mixed_precision=False)  # fits
        assert seen
        monkeypatch.setattr(machine, "available_memory_bytes", lambda: None)  # unknown (not Linux): no check
        segment_volume(ct, pet, segmenter, device="cpu", batch_size=4, threads=1)
    finally:
        hook.remove()
