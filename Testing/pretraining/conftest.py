"""Fixtures of the pretraining tests: a phantom PET slice store and a tiny, fast pretraining config."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from DualDINOv3Lib.phantoms import make_phantom
from DualDINOv3Lib.pretraining.config import load_pretrain_config
from DualDINOv3Lib.pretraining.slices import PetSliceParams, pet_pretraining_slices
from DualDINOv3Lib.pretraining.store_writer import SliceStoreWriter

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "Training" / "configs" / "pretrain" / "tiny_cpu.yaml"
SIZE = 64


def phantom_pet_store(path: Path, seeds=(0, 1)) -> Path:
    """The real PET slice curation of phantom cases, written as a slice store of 64x64 slices."""
    params = PetSliceParams(size=SIZE)
    with SliceStoreWriter(path, modality="PT", preprocessing={"size": SIZE}, slice_size=SIZE, dtype="float32") as w:
        for seed in seeds:
            s = pet_pretraining_slices(make_phantom(seed).pet, params, f"phantom-{seed}")
            w.add_volume(s.source, s.slices, s.z_indices, {})
    return path


FAST = {
    "optim.steps": 4,
    "optim.batch_size": 4,
    "optim.warmup_steps": 1,
    "optim.freeze_last_layer_steps": 1,
    "crops.n_local": 2,
    "model.prototypes": 32,
    "model.head_hidden_dim": 32,
    "model.head_bottleneck_dim": 16,
    "gram.first_step": 1,
    "gram.refresh_every": 2,
    "run.checkpoint_every": 2,
}


def make_tiny_config(**overrides):
    """``tiny_cpu.yaml`` made faster still; ``section__key=value`` overrides."""
    return load_pretrain_config(TINY, {**FAST, **{k.replace("__", "."): v for k, v in overrides.items()}})


@pytest.fixture
def tiny_config():
    return make_tiny_config


@pytest.fixture
def make_pet_store():
    return phantom_pet_store


@pytest.fixture(scope="session")
def pet_store(tmp_path_factory):
    return phantom_pet_store(tmp_path_factory.mktemp("pet") / "store")


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: one thread is faster (and the machine is shared)
    yield
    torch.set_num_threads(threads)
