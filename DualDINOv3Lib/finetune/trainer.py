"""The finetuning loop: sampling, augmentation, Dice + CE, AdamW with warm-up + cosine, validation Dice
every epoch, atomic best/last checkpoints and an exact ``resume`` (model, optimiser, step, RNG, epoch).

Files written in ``out_dir``: ``config.json`` (the resolved segmenter and training configs and the case
lists), ``metrics.jsonl`` and ``metrics.csv`` (one row per epoch), ``last.safetensors`` and
``best.safetensors`` (segmenters, loadable by :func:`~DualDINOv3Lib.load_segmenter`), and
``training_state.pt`` (:class:`~.state.TrainingState`). Everything is replaced atomically once per epoch,
so a run killed at any point resumes from its last finished epoch and, being deterministic, reaches the
same weights.

The loop is a few named steps: :meth:`FinetuneRun.restore` (resume), :meth:`FinetuneRun.train_epoch`,
:meth:`FinetuneRun.validate`, :meth:`FinetuneRun.save_epoch`.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from ..data.hecktor import HecktorCase
from ..distributed import DistributedContext, init_distributed, parameter_checksums, shutdown_distributed
from ..errors import DualDINOv3Error
from ..files import write_text
from ..models.config import SegmenterConfig, load_config
from ..models.factory import build_segmenter
from ..models.segmenter import Segmenter
from ..models.segmenter_checkpoint import save_segmenter
from ..models.state_dicts import state_dict_mismatch
from ..runtime import CancelFlag, ProgressCallback, autocast, check_cancel, resolve_device
from .augment import augment_batch
from .config import FinetuneConfig, learning_rate_at, same_record
from .dataset import CachedCase, SliceSampler, load_cached_case
from .losses import DiceCELoss
from .state import STATE_FILE, TrainingState, rng_state, set_rng_state
from .validation import distributed_validation

log = logging.getLogger(__name__)

__all__ = ["STATE_FILE", "FinetuneResult", "FinetuneRun", "finetune"]


@dataclass
class FinetuneResult:
    out_dir: Path
    best_path: Path
    last_path: Path
    best_dice: float
    epochs: int
    history: list[dict] = field(default_factory=list)
    rank_checksums: list[list[float]] | None = None


def run_record(config: SegmenterConfig, cfg: FinetuneConfig, train, val) -> dict:
    """What identifies a run (``config.json``): a resumed run must have the same record."""
    return json.loads(json.dumps({
        "segmenter": config.to_dict(),
        "training": cfg.to_dict(),
        "train_cases": [c.case_id for c in train],
        "validation_cases": [c.case_id for c in val],
    }))  # fmt: skip


def _optimizer(model: Segmenter, cfg: FinetuneConfig) -> torch.optim.AdamW:
    """AdamW with weight decay on weight matrices and convolution kernels only."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            plain = p.ndim < 2 or name.endswith(("cls_token", "storage_tokens", "mask_token"))
            (no_decay if plain else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.learning_rate, betas=cfg.betas)


def _write_metrics(out_dir: Path, history: list[dict]) -> None:
    lines = "".join(json.dumps(row) + "\n" for row in history)
    write_text(out_dir / "metrics.jsonl", lines)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(dict.fromkeys(k for row in history for k in row)))
    writer.writeheader()
    writer.writerows(history)
    write_text(out_dir / "metrics.csv", buffer.getvalue())


class FinetuneRun:
    """One process's part of a finetuning run: data, model, optimiser and random streams, built once."""

    def __init__(
        self,
        config: SegmenterConfig,
        cfg: FinetuneConfig,
        *,
        train_cases: list[HecktorCase],
        val_cases: list[HecktorCase],
        out_dir: Path,
        ctx: DistributedContext,
        device: torch.device,
        cache_dir: Path,
    ) -> None:
        if cfg.batch_size % ctx.world_size:
            raise DualDINOv3Error(f"batch size {cfg.batch_size} must be divisible by the {ctx.world_size} processes")
        self.config, self.cfg, self.ctx, self.device, self.out_dir = config, cfg, ctx, device, out_dir
        self.record = run_record(config, cfg, train_cases, val_cases)
        out_dir.mkdir(parents=True, exist_ok=True)
        self.train, self.val = self._cached_cases(train_cases, val_cases, cache_dir)
        torch.manual_seed(cfg.seed)
        self.model = build_segmenter(config).to(device)
        self.optimizer = _optimizer(self.model, cfg)
        per_rank = cfg.batch_size // ctx.world_size
        self.sampler = SliceSampler(self.train, per_rank, cfg.foreground_oversampling, cfg.seed * 1009 + ctx.rank)
        self.augmentation_generator = torch.Generator(device=device).manual_seed(cfg.seed * 7919 + ctx.rank + 1)
        self.loss_fn = DiceCELoss()
        ddp_devices = [device.index] if device.type == "cuda" else None
        self.train_model = DistributedDataParallel(self.model, device_ids=ddp_devices) if ctx.enabled else self.model
        self.best_path, self.last_path = out_dir / "best.safetensors", out_dir / "last.safetensors"

    def _cached_cases(self, train_cases, val_cases, cache_dir: Path) -> tuple[list[CachedCase], list[CachedCase]]:
        spec = self.config.preprocessing
        if self.ctx.is_main:
            text = json.dumps(self.record, indent=2)
            write_text(self.out_dir / "config.json", text)
            train = [load_cached_case(c, spec, cache_dir) for c in train_cases]
        self.ctx.barrier()  # the main process fills the cache first
        if not self.ctx.is_main:
            train = [load_cached_case(c, spec, cache_dir) for c in train_cases]
        return train, [load_cached_case(c, spec, cache_dir) for c in val_cases]

    # --- the steps --------------------------------------------------------------------------------------

    def restore(self, state: TrainingState) -> None:
        """Continues from ``state``: trainable weights, optimiser, every process's random streams."""
        if not same_record(state.record, self.record):
            raise DualDINOv3Error(
                f"{self.out_dir} was started with another config or other cases; resume with the same ones or "
                "use another --out"
            )
        frozen = tuple(f"{n}." for n in self.model.encoders) if self.model.frozen else ()
        mismatch = state_dict_mismatch(state.model, self.model.state_dict(), may_lack=frozen)
        if mismatch:
            raise DualDINOv3Error(f"{self.out_dir / STATE_FILE} does not fit this model ({mismatch}); use a new --out")
        self.model.load_state_dict(state.model, strict=False)
        self.optimizer.load_state_dict(state.optimizer)
        if len(state.rng) != self.ctx.world_size:
            raise DualDINOv3Error(f"this run was saved with {len(state.rng)} processes; resume it with the same number")
        set_rng_state(state.rng[self.ctx.rank], self.sampler, self.augmentation_generator)
        log.info("resuming %s at epoch %d (step %d)", self.out_dir, state.epoch, state.step)

    def train_epoch(self, state: TrainingState, progress: ProgressCallback | None, cancel: CancelFlag) -> dict:
        """``iterations_per_epoch`` optimiser steps; returns the epoch's metrics row (loss, lr, time)."""
        cfg, started, losses = self.cfg, time.perf_counter(), []
        self.train_model.train()
        for it in range(cfg.iterations_per_epoch):
            check_cancel(cancel, "finetuning")
            lr = learning_rate_at(state.step, cfg)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            losses.append(self.train_step())
            state.step += 1
            if progress is not None:
                message = f"epoch {state.epoch + 1}/{cfg.epochs} loss {np.mean(losses):.4f}"
                progress((it + 1) / cfg.iterations_per_epoch, message)
        return {"epoch": state.epoch + 1, "step": state.step, "lr": lr, "train_loss": float(np.mean(losses)),
                "seconds": round(time.perf_counter() - started, 2)}  # fmt: skip

    def train_step(self) -> float:
        """One batch: sample, augment, forward, Dice + CE, backward, clip, AdamW step; returns the loss."""
        images, labels = self.sampler.next_batch()
        sources = self.config.preprocessing.channel_modalities  # (0, 1) for CT, PET: each draws its own
        images, labels = augment_batch(
            images.to(self.device), labels.to(self.device), self.augmentation_generator, self.cfg.augmentation, sources
        )
        with autocast(self.device, self.cfg.mixed_precision):
            logits = self.train_model(images)
        loss = self.loss_fn(logits.float(), labels).total
        if not torch.isfinite(loss):
            raise DualDINOv3Error(
                f"the training loss became {float(loss)}; lower the learning rate (--learning-rate) or check the "
                "data. Nothing of this epoch was saved: the last finished epoch is kept for --resume"
            )
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.grad_clip is not None:
            trainable = [p for p in self.model.parameters() if p.requires_grad]
            torch.nn.utils.clip_grad_norm_(trainable, self.cfg.grad_clip)
        self.optimizer.step()
        return float(loss.detach())

    def validate(self, epoch: int) -> dict:
        """Validation Dice per class (``dice_<c>``, ``dice_mean``) when this epoch validates, else ``{}``."""
        cfg = self.cfg
        if not self.val or ((epoch + 1) % cfg.validate_every and epoch + 1 != cfg.epochs):
            return {}
        return distributed_validation(
            self.model, self.val, self.ctx, self.device, cfg.validation_batch_size, self.config.num_classes
        )

    def save_epoch(self, state: TrainingState, row: dict) -> None:
        """Records the epoch in ``state`` and, on the main process, writes every run file atomically."""
        rng = self.ctx.gather_objects(rng_state(self.sampler, self.augmentation_generator))
        state.epoch = row["epoch"]
        if not self.ctx.is_main:
            return
        state.history.append(row)
        score = row.get("dice_mean", math.nan)
        extra = {"epoch": str(state.epoch), "train_loss": f"{row['train_loss']:.6f}"}
        save_segmenter(self.model, self.last_path, extra=extra)
        if (not math.isnan(score) and score > state.best) or not self.best_path.exists():
            state.best = score if not math.isnan(score) else state.best
            save_segmenter(self.model, self.best_path, extra={**extra, "validation_dice": f"{score:.6f}"})
        _write_metrics(self.out_dir, state.history)
        state.model = self._trainable_weights()
        state.optimizer = self.optimizer.state_dict()
        state.rng, state.record = rng, self.record
        state.save(self.out_dir / STATE_FILE)
        log.info("epoch %d: %s", state.epoch, json.dumps(row))

    def _trainable_weights(self) -> dict[str, torch.Tensor]:
        """The state dict without frozen encoders (they are rebuilt from their checkpoints on resume)."""
        weights = self.model.state_dict()
        if self.model.frozen:
            frozen = tuple(f"{name}." for name in self.model.encoders)
            weights = {k: v for k, v in weights.items() if not k.startswith(frozen)}
        return {k: v.detach().cpu().clone() for k, v in weights.items()}

    def finish(self, state: TrainingState) -> FinetuneResult:
        """Checks that every process ended with the same weights (``ranks.json``) and reports the run."""
        checksums = self.ctx.gather_objects(parameter_checksums(self.model)) if self.ctx.enabled else None
        if self.ctx.is_main and checksums is not None:
            in_sync = all(c == checksums[0] for c in checksums)
            log.info("parameters %s across %d processes", "identical" if in_sync else "DIFFER", self.ctx.world_size)
            text = json.dumps({"rank_checksums": checksums, "in_sync": in_sync})
            write_text(self.out_dir / "ranks.json", text)
        return FinetuneResult(
            self.out_dir, self.best_path, self.last_path, state.best, self.cfg.epochs, state.history, checksums
        )


def _saved_state(out_dir: Path, resume: bool) -> TrainingState | None:
    state_path = out_dir / STATE_FILE
    if not resume:
        if state_path.exists():
            raise DualDINOv3Error(
                f"{out_dir} already holds a training run; pass --resume to continue it or choose another --out"
            )
        return None
    if not state_path.exists():
        raise DualDINOv3Error(
            f"--resume: {out_dir} holds no finished epoch to continue ({STATE_FILE} is missing); run the same "
            "command without --resume to start"
        )
    return TrainingState.load(state_path)


def finetune(
    segmenter_config: SegmenterConfig | Mapping | str | os.PathLike,
    train_cases: list[HecktorCase],
    val_cases: list[HecktorCase],
    out_dir: str | os.PathLike,
    cfg: FinetuneConfig,
    *,
    device: str | torch.device = "auto",
    resume: bool = False,
    cache_dir: str | os.PathLike | None = None,
    progress_factory: Callable[[int], ProgressCallback] | None = None,
    on_epoch_end: Callable[[list[dict]], None] | None = None,
    cancel: CancelFlag = None,
) -> FinetuneResult:
    """Finetunes a segmenter on HECKTOR-layout cases; see the module docstring for the files written.

    ``resume``: continue the run saved in ``out_dir`` (an error if there is none). ``progress_factory(epoch)``
    returns a ``progress(fraction, message)`` callback for that epoch (main process only).
    ``on_epoch_end(history)`` runs on the main process after each epoch's files are written. Under
    ``torchrun`` every process runs this function; batches are split over processes.
    """
    config = load_config(segmenter_config)
    out_dir = Path(out_dir)
    saved = _saved_state(out_dir, resume)
    ctx, device = init_distributed(resolve_device(device))
    try:
        cache = Path(cache_dir) if cache_dir is not None else out_dir / "cache"
        run = FinetuneRun(
            config, cfg, train_cases=train_cases, val_cases=val_cases, out_dir=out_dir, ctx=ctx, device=device,
            cache_dir=cache,
        )  # fmt: skip
        state = saved if saved is not None else TrainingState(record=run.record)
        if saved is not None:
            run.restore(saved)
        while state.epoch < cfg.epochs:
            progress = progress_factory(state.epoch) if (progress_factory and ctx.is_main) else None
            row = run.train_epoch(state, progress, cancel)
            row.update(run.validate(state.epoch))
            run.save_epoch(state, row)
            if ctx.is_main and on_epoch_end is not None:
                on_epoch_end(state.history)
            ctx.barrier()
        return run.finish(state)
    finally:
        shutdown_distributed(ctx)
