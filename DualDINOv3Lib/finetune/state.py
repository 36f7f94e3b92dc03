"""What a finetuning run needs to continue exactly where it stopped: :class:`TrainingState`, saved to
``training_state.pt`` after every epoch (atomically) and read back with ``torch.load(weights_only=True)``
(tensors and plain values only: nothing in the file can run code)."""

from __future__ import annotations

import json
import math
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import DualDINOv3Error
from ..files import atomic_write
from ..models.tensor_files import check_torch_file
from .dataset import SliceSampler

STATE_FILE = "training_state.pt"
STATE_VERSION = 1
_KEYS = ("version", "epoch", "step", "best", "model", "optimizer", "rng", "history", "record")


@dataclass
class TrainingState:
    """The progress of a run after a finished epoch.

    ``model``: the trainable weights (frozen encoders are rebuilt from their checkpoints); ``optimizer``:
    the optimiser's state dict; ``rng``: every process's random states (:func:`rng_state`); ``history``: one
    metrics row per epoch; ``record``: the run's resolved configs and case lists (a resumed run must match).
    """

    epoch: int = 0
    step: int = 0
    best: float = -math.inf
    history: list[dict] = field(default_factory=list)
    model: dict[str, torch.Tensor] = field(default_factory=dict)
    optimizer: dict = field(default_factory=dict)
    rng: list[dict] = field(default_factory=list)
    record: dict = field(default_factory=dict)

    def save(self, path: str | os.PathLike) -> Path:
        snapshot = {
            "version": STATE_VERSION, "epoch": self.epoch, "step": self.step, "best": self.best,
            "model": self.model, "optimizer": self.optimizer, "rng": self.rng,
            "history": json.dumps(self.history), "record": json.dumps(self.record),
        }  # fmt: skip
        return atomic_write(path, lambda tmp: torch.save(snapshot, tmp), verify=check_torch_file)

    @classmethod
    def load(cls, path: str | os.PathLike) -> TrainingState:
        """Reads a state written by :meth:`save`; a :class:`DualDINOv3Error` for anything else."""
        path = Path(path)
        try:
            raw = torch.load(path, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as exc:
            raise DualDINOv3Error(
                f"{path}: not a readable training state ({str(exc).splitlines()[0]}); the file is damaged or not "
                "one this program wrote. Start a new run in another --out"
            ) from exc
        if not isinstance(raw, dict) or any(k not in raw for k in _KEYS) or raw["version"] != STATE_VERSION:
            raise DualDINOv3Error(f"{path}: not a training state of this version (keys {sorted(raw)[:9]})")
        return cls(
            epoch=int(raw["epoch"]),
            step=int(raw["step"]),
            best=float(raw["best"]),
            history=json.loads(raw["history"]),
            model=raw["model"],
            optimizer=raw["optimizer"],
            rng=raw["rng"],
            record=json.loads(raw["record"]),
        )


def rng_state(sampler: SliceSampler, augmentation_generator: torch.Generator) -> dict:
    """This process's random states: the slice sampler's, the augmentation's, torch's (and CUDA's)."""
    state = {
        "sampler": sampler.generator.get_state(),
        "augment": augmentation_generator.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict, sampler: SliceSampler, augmentation_generator: torch.Generator) -> None:
    sampler.generator.set_state(state["sampler"])
    augmentation_generator.set_state(state["augment"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
