"""Pretraining does something real: ``tiny_cpu.yaml`` (a 4-block ViT from scratch, 150 steps on the phantom PET
slices of three cases) lowers the total loss, keeps the teacher's entropy strictly between 0 and ln K, and its
teacher's frozen patch features separate lesion from non-lesion body patches of six other phantom cases better
than the same network at initialisation (k-NN, leave one case out, ROC AUC)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from DualDINOv3Lib.data.resample import resample_pet_to_ct
from DualDINOv3Lib.models import load_backbone
from DualDINOv3Lib.phantoms import make_phantom
from DualDINOv3Lib.pretraining.config import load_pretrain_config
from DualDINOv3Lib.pretraining.trainer import build_backbone, pretrain

TINY = Path(__file__).resolve().parents[2] / "Training" / "configs" / "pretrain" / "tiny_cpu.yaml"

PROBE_MARGIN = 0.02
"""The AUC margin the teacher after 150 steps must have over initialisation (measured: 0.787 -> 0.842)."""


def probe_slices(seeds, size: int = 64, pool: int = 3):
    """PET on the CT grid, volume min-max, lesion slices only, pooled to ~3.75 mm (about the training slices'
    scale) and padded to ``size``: ``(N, 1, size, size)`` images, lesion fractions and case numbers."""
    images, labels, cases = [], [], []
    for i, seed in enumerate(seeds):
        phantom = make_phantom(seed, shape=(48, 168, 168))  # a fixed grid (HECKTOR-like crop), as the probe pools it
        pet = resample_pet_to_ct(phantom.pet, phantom.ct).array
        pet = (pet - pet.min()) / (pet.max() - pet.min())
        lesion = (phantom.label.array > 0).astype(np.float32)
        z = np.nonzero(lesion.sum(axis=(1, 2)))[0]
        image = F.avg_pool2d(torch.from_numpy(pet[z])[:, None], pool)
        label = F.avg_pool2d(torch.from_numpy(lesion[z])[:, None], pool)
        pad = size - image.shape[-1]
        padding = (pad // 2, pad - pad // 2, pad // 2, pad - pad // 2)
        images.append(F.pad(image, padding))
        labels.append(F.pad(label, padding))
        cases += [i] * len(z)
    return torch.cat(images), torch.cat(labels), torch.tensor(cases)


def knn_auc(features, positive, negative, cases, k: int = 10) -> float:
    """ROC AUC of the share of lesion patches among each patch's k cosine-nearest patches of the other cases."""
    keep = positive | negative
    f, y, c = F.normalize(features[keep], dim=-1), positive[keep].float(), cases[keep]
    sims = f @ f.t()
    sims[c[:, None] == c[None, :]] = -2.0
    score = y[sims.topk(k, dim=1).indices].mean(dim=1)
    pos, neg = score[y > 0], score[y == 0]
    greater = (pos[:, None] > neg[None, :]).float() + 0.5 * (pos[:, None] == neg[None, :]).float()
    return float(greater.mean())


def probe(backbone, images, labels, cases) -> float:
    p = backbone.patch_size
    with torch.no_grad():
        tokens = backbone.forward_features(images.expand(-1, 3, -1, -1))["x_norm_patchtokens"].flatten(0, 1)
    fraction = F.avg_pool2d(labels, p).flatten()
    uptake = F.avg_pool2d(images, p).flatten()
    patch_cases = cases[:, None].expand(-1, (images.shape[-1] // p) ** 2).flatten()
    # negatives: warm body patches without lesion (air or cold patches would make the task trivial; the phantoms'
    # hot physiology - tonsils, glands, active muscles, brain - is among them)
    return knn_auc(tokens, fraction > 0.3, (fraction == 0) & (uptake > 0.1), patch_cases)


def test_knn_auc_against_known_cases():
    f = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    pos = torch.tensor([True, True, False, False])
    assert knn_auc(f, pos, ~pos, torch.arange(4), k=1) == 1.0
    assert knn_auc(f, pos, ~pos, torch.tensor([0, 0, 1, 1]), k=1) == 0.0  # only the other case is a neighbour


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")
def test_a_short_cpu_run_learns(tmp_path, make_pet_store):
    store = make_pet_store(tmp_path / "store", seeds=(0, 1, 2))
    config = load_pretrain_config(TINY)
    result = pretrain(config, [store], tmp_path / "run", device="cpu")
    history = result.history
    assert len(history) == config.optim.steps
    first = np.mean([row["total"] for row in history[:10]])
    last = np.mean([row["total"] for row in history[-10:]])
    assert last < first - 0.02, (first, last)
    ln_k = math.log(config.model.prototypes)
    entropies = [row["teacher_entropy"] for row in history]
    assert all(0 < e < ln_k for e in entropies), (min(entropies), max(entropies), ln_k)
    metrics = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in metrics] == list(range(1, config.optim.steps + 1))
    # DINO learns something: below ln K at the end (it starts at ln K)
    assert np.mean([row["dino"] for row in history[-10:]]) < ln_k - 0.02

    images, labels, cases = probe_slices(range(10, 16))
    torch.manual_seed(config.run.seed)  # the trainer's initialisation
    before = probe(build_backbone(config).eval(), images, labels, cases)
    after = probe(load_backbone(result.exports[0]), images, labels, cases)
    assert after > before + PROBE_MARGIN, f"k-NN AUC at initialisation {before:.4f}, after pretraining {after:.4f}"
