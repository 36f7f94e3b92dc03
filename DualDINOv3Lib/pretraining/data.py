"""Streaming crops from the memory-mapped slice stores, reproducibly (paper sec. 2.3).

Every sample of the run has a number: sample ``j`` of process ``r`` in micro-batch ``a`` of step ``s`` is
``((s * A + a) * W + r) * b + j`` (``A`` accumulation steps, ``W`` processes, ``b`` slices per
process and micro-batch). The slice it shows is entry ``n mod L`` of a permutation of all ``L`` slices of
the stores drawn for epoch ``n // L`` from the run's seed, and its crops come from a generator seeded by the
run's seed and ``n``. The crop sizes of a step, and the iBOT masks of a micro-batch, come from generators
seeded by the step. So a batch depends only on the seed and the step: a resumed run (with any number of
DataLoader workers) sees exactly the batches it would have seen, and no sample is seen twice per epoch
across processes.
"""

from __future__ import annotations

import bisect
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ..errors import DataError
from .crops import CropSizes, MultiCrop
from .masking import ibot_masks
from .store import SliceStore

_STREAMS = {"sample": 1, "permutation": 2, "sizes": 3, "masks": 4}


def stream_seed(seed: int, stream: str, *values: int) -> int:
    """A 63-bit seed for one use (``stream``) of the run's ``seed`` at ``values`` (splitmix-style mixing)."""
    x = (int(seed) * 0x9E3779B97F4A7C15 + _STREAMS[stream]) & 0xFFFFFFFFFFFFFFFF
    for v in values:
        x = (x ^ (int(v) + 0x9E3779B97F4A7C15 + (x << 6) + (x >> 2))) & 0xFFFFFFFFFFFFFFFF
        x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
        x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return (x ^ (x >> 31)) & 0x7FFFFFFFFFFFFFFF


def generator(seed: int, stream: str, *values: int) -> torch.Generator:
    return torch.Generator().manual_seed(stream_seed(seed, stream, *values))


@dataclass(frozen=True)
class BatchPlan:
    """How samples are numbered (see the module docstring)."""

    per_process: int
    accumulation_steps: int = 1
    world_size: int = 1
    rank: int = 0

    def sample_numbers(self, step: int, micro: int) -> list[int]:
        first = ((step * self.accumulation_steps + micro) * self.world_size + self.rank) * self.per_process
        return list(range(first, first + self.per_process))

    def step_of(self, number: int) -> tuple[int, int]:
        """``(step, micro-batch)`` of sample ``number``."""
        unit = number // self.per_process // self.world_size
        return unit // self.accumulation_steps, unit % self.accumulation_steps


def crop_sizes_at(step: int, seed: int, sizes: Sequence[Sequence[int]], weights: Sequence[float],
                  gram_scale: int) -> CropSizes:  # fmt: skip
    """The crop sizes of ``step``, the same on every process."""
    if len(sizes) == 1:
        choice = 0
    else:
        w = torch.tensor([float(x) for x in weights], dtype=torch.float64)
        choice = int(torch.multinomial(w, 1, generator=generator(seed, "sizes", step)))
    g, loc = (int(v) for v in sizes[choice])
    return CropSizes(g, loc, g * gram_scale if gram_scale else 0)


def open_stores(stores: Sequence[str | os.PathLike | SliceStore]) -> tuple[list[SliceStore], str]:
    """The stores, opened and checked to be non-empty and of one modality, and that modality."""
    opened = [s if isinstance(s, SliceStore) else SliceStore(s) for s in stores]
    if not opened:
        raise DataError("no slice store given; build one with Training/prepare_pretraining.py")
    for store in opened:
        if len(store) == 0:
            raise DataError(f"{store.path}: the slice store is empty; add volumes to it or leave it out")
    modalities = sorted({s.modality for s in opened})
    if len(modalities) > 1:
        raise DataError(f"the stores mix modalities {modalities}; pretrain one encoder per modality")
    return opened, modalities[0]


class CropDataset(Dataset):
    """Map-style dataset over the concatenated ``stores``: item ``n`` (a sample number) -> its crops."""

    def __init__(
        self,
        stores: Sequence[str | os.PathLike | SliceStore],
        multicrop: MultiCrop,
        plan: BatchPlan,
        seed: int,
        sizes: Sequence[Sequence[int]],
        weights: Sequence[float],
        gram_scale: int,
    ) -> None:
        self.stores, self.modality = open_stores(stores)
        self.ends = np.cumsum([len(store) for store in self.stores]).tolist()
        self.multicrop, self.plan, self.seed = multicrop, plan, int(seed)
        self.sizes, self.weights, self.gram_scale = [list(s) for s in sizes], list(weights), gram_scale
        self._permutation: tuple[int, torch.Tensor] | None = None

    def __len__(self) -> int:
        return self.ends[-1]

    def slice_index(self, number: int) -> int:
        n = len(self)
        epoch, k = divmod(int(number), n)
        if self._permutation is None or self._permutation[0] != epoch:
            self._permutation = (epoch, torch.randperm(n, generator=generator(self.seed, "permutation", epoch)))
        return int(self._permutation[1][k])

    def slice(self, index: int) -> torch.Tensor:
        store = bisect.bisect_right(self.ends, index)
        start = self.ends[store - 1] if store else 0
        return torch.from_numpy(self.stores[store][index - start])

    def __getitem__(self, number: int) -> dict[str, torch.Tensor]:
        step, _ = self.plan.step_of(number)
        sizes = crop_sizes_at(step, self.seed, self.sizes, self.weights, self.gram_scale)
        image = self.slice(self.slice_index(number))
        crops = self.multicrop(image, sizes, generator(self.seed, "sample", number))
        crops["number"] = torch.tensor(number)
        return crops


class StepSampler(Sampler):
    """Yields this process's sample numbers, one list per micro-batch, from ``start_step`` to ``end_step``."""

    def __init__(self, plan: BatchPlan, start_step: int, end_step: int) -> None:
        self.plan, self.start_step, self.end_step = plan, start_step, end_step

    def __iter__(self) -> Iterator[list[int]]:
        for step in range(self.start_step, self.end_step):
            for micro in range(self.plan.accumulation_steps):
                yield self.plan.sample_numbers(step, micro)

    def __len__(self) -> int:
        return (self.end_step - self.start_step) * self.plan.accumulation_steps


@dataclass(frozen=True)
class Collate:
    """Stacks a micro-batch crop-major (all images' first global crop, then their second, ...) and draws its
    iBOT masks for the student's global crops."""

    plan: BatchPlan
    seed: int
    patch_size: int
    min_ratio: float = 0.1
    max_ratio: float = 0.5
    sample_probability: float = 0.5

    def __call__(self, items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        def crop_major(key: str) -> torch.Tensor:
            stacked = torch.stack([item[key] for item in items], dim=1)  # (n_crops, B, S, S)
            return stacked.flatten(0, 1).unsqueeze(1)  # (n_crops * B, 1, S, S)

        number = int(items[0]["number"])
        step, micro = self.plan.step_of(number)
        batch = {"global": crop_major("global"), "local": crop_major("local"), "step": torch.tensor(step)}
        if "gram" in items[0]:
            batch["gram"] = crop_major("gram")
        side = batch["global"].shape[-1] // self.patch_size
        gen = generator(self.seed, "masks", step, micro, self.plan.rank)
        masks, _ = ibot_masks(batch["global"].shape[0], side, side, gen, min_ratio=self.min_ratio,
                              max_ratio=self.max_ratio, sample_probability=self.sample_probability)  # fmt: skip
        batch["masks"] = masks
        return batch


def crop_loader(dataset: CropDataset, collate: Collate, start_step: int, end_step: int,
                num_workers: int) -> DataLoader:  # fmt: skip
    """A DataLoader over the steps ``[start_step, end_step)``; it never touches torch's global RNG."""
    return DataLoader(
        dataset,
        batch_sampler=StepSampler(dataset.plan, start_step, end_step),
        collate_fn=collate,
        num_workers=num_workers,
        persistent_workers=False,
        generator=torch.Generator().manual_seed(0),
    )
