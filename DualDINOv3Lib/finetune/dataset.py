"""Training data: preprocessed cases cached on disk (memory-mapped) and 2D slice batches with
foreground oversampling, drawn from a ``torch.Generator`` so a resumed run draws the same batches."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..data.hecktor import HecktorCase, read_hecktor_case
from ..errors import DataError
from ..files import atomic_write, write_text
from ..preprocessing.context import with_context
from ..preprocessing.slices import preprocess_case
from ..preprocessing.spec import CONTEXT_CHANNELS, SWAPPED_CONTEXT, PreprocessingSpec

log = logging.getLogger(__name__)


def _cache_key(case: HecktorCase, spec: PreprocessingSpec) -> str:
    """Changes when the preprocessing or any source file (size, modification time) changes."""
    parts = [json.dumps([spec.spacing_mm, spec.crop_size, spec.ct_normalization, spec.pet_normalization])]
    for path in (case.ct, case.pet, case.label):
        stat = Path(path).stat()
        parts.append(f"{Path(path).name}:{stat.st_size}:{stat.st_mtime_ns}")
    return hashlib.sha1("|".join(parts).encode()).hexdigest()[:12]


@dataclass
class CachedCase:
    """One preprocessed case: images ``(Z, 2, S, S)`` float32 (CT, PET) and labels ``(Z, S, S)`` uint8, memory-mapped;
    ``class_slices``: for each label present, the indices of the slices that contain it (ascending label);
    ``slice_mm``: the distance between slices; ``context_mm``: the segmenter's 2.5D context (0: none), added by
    :meth:`inputs` (the cache holds single slices, so 2D and 2.5D runs share it)."""

    case_id: str
    images: np.ndarray
    labels: np.ndarray
    class_slices: dict[int, np.ndarray]
    slice_mm: float = 0.0
    context_mm: float = 0.0

    def inputs(self, indices) -> Tensor:
        """Model inputs ``(N, C, S, S)`` float32 for the slices ``indices``, as
        :meth:`~DualDINOv3Lib.preprocessing.CasePreprocessor.images` gives them at inference."""
        indices = np.atleast_1d(np.asarray(indices, dtype=np.int64))
        if self.context_mm > 0:
            return with_context(self._read, indices, self.images.shape[0], self.slice_mm, self.context_mm)
        return self._read(indices)

    def _read(self, indices: np.ndarray) -> Tensor:
        return torch.from_numpy(np.array(self.images[indices], dtype=np.float32))


def load_cached_case(case: HecktorCase, spec: PreprocessingSpec, cache_dir: Path) -> CachedCase:
    """Preprocesses ``case`` once (paper sec. 2.2) and keeps the arrays in ``cache_dir`` for later runs."""
    if case.label is None:
        raise DataError(f"case {case.case_id} has no label file ({case.case_id}.nii.gz); training needs labels")
    key = _cache_key(case, spec)
    images_path = cache_dir / f"{case.case_id}-{key}-images.npy"
    labels_path = cache_dir / f"{case.case_id}-{key}-labels.npy"
    meta_path = cache_dir / f"{case.case_id}-{key}-meta.json"
    needed = (images_path, labels_path, meta_path) if spec.context_mm > 0 else (images_path, labels_path)
    if not all(path.exists() for path in needed):
        ct, pet, label = read_hecktor_case(case)
        images, labels, prep = preprocess_case(ct, pet, dataclasses.replace(spec, context_mm=0.0), label)
        cache_dir.mkdir(parents=True, exist_ok=True)
        atomic_write(images_path, lambda tmp: np.save(tmp, images))
        atomic_write(labels_path, lambda tmp: np.save(tmp, labels))
        write_text(meta_path, json.dumps({"slice_mm": prep.ct.spacing[2]}))
        log.info("cached %s: %d slices", case.case_id, images.shape[0])
    images = np.load(images_path, mmap_mode="r")
    labels = np.load(labels_path, mmap_mode="r")
    slice_mm = float(json.loads(meta_path.read_text())["slice_mm"]) if meta_path.exists() else 0.0
    return CachedCase(case.case_id, images, labels, _class_slices(labels), slice_mm, spec.context_mm)


def _class_slices(labels: np.ndarray) -> dict[int, np.ndarray]:
    present = np.zeros((labels.shape[0], 256), dtype=bool)  # labels are uint8
    for z in range(labels.shape[0]):  # one slice at a time: the labels are memory-mapped
        present[z, np.unique(labels[z])] = True
    return {int(c): np.flatnonzero(present[:, c]) for c in range(1, 256) if present[:, c].any()}


class SliceSampler:
    """Batches of (case, slice) pairs: cases uniformly at random, then a random slice; the last
    ``round(batch_size * foreground_oversampling)`` of every batch is a slice with tumour, chosen as nnU-Net does:
    first one of the tumour classes the case has, uniformly, then a slice that contains it. So a case's small
    nodes (GTVn) are drawn as often as its primary (GTVp), although they cover fewer slices.
    """

    def __init__(self, cases: list[CachedCase], batch_size: int, foreground_oversampling: float, seed: int) -> None:
        if not cases:
            raise DataError("no training cases; check the data folder and the split")
        self.cases = cases
        self.batch_size = batch_size
        self.n_foreground = round(batch_size * foreground_oversampling)
        self.generator = torch.Generator().manual_seed(seed)

    def _randint(self, high: int) -> int:
        return int(torch.randint(high, (1,), generator=self.generator))

    def next_indices(self) -> list[tuple[int, int]]:
        picks = []
        for i in range(self.batch_size):
            c = self._randint(len(self.cases))
            case = self.cases[c]
            if i >= self.batch_size - self.n_foreground and case.class_slices:
                classes = list(case.class_slices.values())
                slices = classes[self._randint(len(classes))]
                z = int(slices[self._randint(slices.size)])
            else:
                z = self._randint(case.images.shape[0])
            picks.append((c, z))
        return picks

    def next_batch(self) -> tuple[Tensor, Tensor]:
        """Images ``(B, C, S, S)`` float32 and labels ``(B, S, S)`` int64 (CPU).

        2.5D images (6 channels: the slice, then its context before and after it) have their context swapped in
        half of the samples at random, so a model does not depend on which way a scanner ordered its slices."""
        picks = self.next_indices()
        images = torch.cat([self.cases[c].inputs(z) for c, z in picks])
        labels = np.stack([self.cases[c].labels[z] for c, z in picks])
        if images.shape[1] == CONTEXT_CHANNELS:
            swap = torch.rand(len(picks), generator=self.generator) < 0.5
            images[swap] = images[swap][:, list(SWAPPED_CONTEXT)]
        return images, torch.from_numpy(labels.astype(np.int64))
