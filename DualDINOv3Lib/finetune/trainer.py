"""The finetuning loop: sampling, augmentation, Dice + CE, AdamW with warm-up + cosine, validation Dice
every epoch, atomic best/last checkpoints and an exact ``resume`` (model, optimiser, step, RNG, epoch).

Files written in ``out_dir``: ``config.json`` (the resolved segmenter and training configs and the case
lists), ``metrics.jsonl`` and ``metrics.csv`` (one row per epoch), ``last.safetensors`` and
``best.safetensors`` (segmenters, loadable by :func:`~DualDINOv3Lib.load_segmenter`), and
``training_state.pt`` (what ``resume`` needs; tensors and plain values only, read with
``weights_only=True``). Everything is replaced atomically once per epoch, so a run killed at any point
resumes from its last finished epoch and, being deterministic, reaches the same weights.
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
from ..errors import DualDINOv3Error
from ..files import atomic_write
from ..models.config import SegmenterConfig, load_config
from ..models.factory import build_segmenter
from ..models.segmenter import Segmenter
from ..models.segmenter_checkpoint import save_segmenter
from ..runtime import CancelFlag, autocast, check_cancel, resolve_device
from .augment import augment_batch
from .config import FinetuneConfig, learning_rate_at
from .dataset import CachedCase, SliceSampler, load_cached_case
from .distributed import DistributedContext, init_distributed, parameter_checksums, shutdown_distributed
from .losses import DiceCELoss

log = logging.getLogger(__name__)

STATE_FILE = "training_state.pt"
STATE_VERSION = 1


@dataclass
class FinetuneResult:
    out_dir: Path
    best_path: Path
    last_path: Path
    best_dice: float
    epochs: int
    history: list[dict] = field(default_factory=list)
    rank_checksums: list[list[float]] | None = None


def _trainable_state(model: Segmenter) -> dict[str, torch.Tensor]:
    """The state dict without frozen encoders (they are rebuilt from their checkpoints on resume)."""
    state = model.state_dict()
    if model.frozen:
        frozen = tuple(f"{name}." for name in model.encoders)
        state = {k: v for k, v in state.items() if not k.startswith(frozen)}
    return {k: v.detach().cpu().clone() for k, v in state.items()}


def _optimizer(model: Segmenter, cfg: FinetuneConfig) -> torch.optim.AdamW:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (
                decay if p.ndim >= 2 and not name.endswith(("cls_token", "storage_tokens", "mask_token")) else no_decay
            ).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.learning_rate, betas=cfg.betas)


def case_dice_scores(
    model: Segmenter, cases: list[CachedCase], device: torch.device, batch_size: int, num_classes: int
) -> list[list[float]]:
    """Per foreground class, the 3D Dice on the model grid of each case in which the class is in the truth
    or the prediction (a case where both are empty does not count for that class)."""
    per_class: list[list[float]] = [[] for _ in range(1, num_classes)]
    model.eval()
    with torch.inference_mode():
        for case in cases:
            inter = np.zeros(num_classes)
            sums = np.zeros(num_classes)
            for start in range(0, case.images.shape[0], batch_size):
                x = torch.from_numpy(np.array(case.images[start : start + batch_size])).to(device)
                with autocast(device):
                    pred = model(x).argmax(dim=1).cpu().numpy()
                truth = np.asarray(case.labels[start : start + batch_size])
                for c in range(1, num_classes):
                    p, t = pred == c, truth == c
                    inter[c] += np.logical_and(p, t).sum()
                    sums[c] += p.sum() + t.sum()
            for c in range(1, num_classes):
                if sums[c] > 0:
                    per_class[c - 1].append(float(2 * inter[c] / sums[c]))
    return per_class


def summarize_dice(per_class: list[list[float]]) -> dict[str, float]:
    """``{"dice_<c>": mean over cases, "dice_mean": mean over classes}`` (NaN where no case counts)."""
    out = {f"dice_{c}": float(np.mean(v)) if v else math.nan for c, v in enumerate(per_class, start=1)}
    valid = [v for v in out.values() if not math.isnan(v)]
    out["dice_mean"] = float(np.mean(valid)) if valid else math.nan
    return out


def distributed_validation(model, val, ctx: DistributedContext, device, batch_size: int, num_classes: int) -> dict:
    """Validation Dice with the cases shared out over the processes (no rank idles at a barrier while the
    main one validates alone, which could exceed the process group's timeout on large validation sets)."""
    mine = case_dice_scores(model, val[ctx.rank :: ctx.world_size], device, batch_size, num_classes)
    gathered = ctx.gather_objects(mine)
    return summarize_dice([[d for rank in gathered for d in rank[c]] for c in range(num_classes - 1)])


def _write_metrics(out_dir: Path, history: list[dict]) -> None:
    lines = "".join(json.dumps(row) + "\n" for row in history)
    atomic_write(out_dir / "metrics.jsonl", lambda tmp: Path(tmp).write_text(lines))
    keys = list(dict.fromkeys(k for row in history for k in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=keys)
    writer.writeheader()
    writer.writerows(history)
    atomic_write(out_dir / "metrics.csv", lambda tmp: Path(tmp).write_text(buffer.getvalue()))


def _run_record(config: SegmenterConfig, cfg: FinetuneConfig, train, val) -> dict:
    return {
        "segmenter": config.to_dict(),
        "training": cfg.to_dict(),
        "train_cases": [c.case_id for c in train],
        "validation_cases": [c.case_id for c in val],
    }


def _rng_state(sampler: SliceSampler, aug_gen: torch.Generator) -> dict:
    state = {"sampler": sampler.generator.get_state(), "augment": aug_gen.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: Mapping, sampler: SliceSampler, aug_gen: torch.Generator) -> None:
    sampler.generator.set_state(state["sampler"])
    aug_gen.set_state(state["augment"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


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
    progress_factory: Callable[[int], Callable[[float, str], None]] | None = None,
    on_epoch_end: Callable[[list[dict]], None] | None = None,
    cancel: CancelFlag = None,
) -> FinetuneResult:
    """Finetunes a segmenter on HECKTOR-layout cases; see the module docstring for the files written.

    ``progress_factory(epoch)`` returns a ``progress(fraction, message)`` callback for that epoch (main
    process only). ``on_epoch_end(history)`` runs on the main process after each epoch's files are written.
    Under ``torchrun`` every process runs this function; batches are split over processes.
    """
    config = load_config(segmenter_config)
    out_dir = Path(out_dir)
    state_path = out_dir / STATE_FILE
    if state_path.exists() and not resume:
        raise DualDINOv3Error(
            f"{out_dir} already holds a training run; pass --resume to continue it or choose another --out"
        )
    ctx, device = init_distributed(resolve_device(device))
    try:
        return _finetune(config, train_cases, val_cases, out_dir, cfg, ctx, device, resume, cache_dir,
                         progress_factory, on_epoch_end, cancel)  # fmt: skip
    finally:
        shutdown_distributed(ctx)


def _finetune(config, train_cases, val_cases, out_dir, cfg, ctx: DistributedContext, device, resume, cache_dir,
              progress_factory, on_epoch_end, cancel) -> FinetuneResult:  # fmt: skip
    if cfg.batch_size % ctx.world_size:
        raise DualDINOv3Error(f"batch size {cfg.batch_size} must be divisible by the {ctx.world_size} processes")
    out_dir.mkdir(parents=True, exist_ok=True)
    cache_dir = Path(cache_dir) if cache_dir is not None else out_dir / "cache"
    record = _run_record(config, cfg, train_cases, val_cases)
    state_path = out_dir / STATE_FILE
    state = torch.load(state_path, map_location="cpu", weights_only=True) if resume and state_path.exists() else None
    if resume and state is None and ctx.is_main:
        log.warning("%s holds no saved state yet: starting from the beginning", out_dir)
    if state is not None and json.loads(state["record"]) != json.loads(json.dumps(record)):
        raise DualDINOv3Error(
            f"{out_dir} was started with another config or other cases; resume with the same ones or use another --out"
        )
    if ctx.is_main:
        text = json.dumps(record, indent=2)
        atomic_write(out_dir / "config.json", lambda tmp: Path(tmp).write_text(text))
        train = [load_cached_case(c, config.preprocessing, cache_dir) for c in train_cases]
    ctx.barrier()  # the main process fills the cache first
    if not ctx.is_main:
        train = [load_cached_case(c, config.preprocessing, cache_dir) for c in train_cases]
    val = [load_cached_case(c, config.preprocessing, cache_dir) for c in val_cases]

    torch.manual_seed(cfg.seed)
    model = build_segmenter(config).to(device)
    optimizer = _optimizer(model, cfg)
    sampler = SliceSampler(
        train, cfg.batch_size // ctx.world_size, cfg.foreground_oversampling, cfg.seed * 1009 + ctx.rank
    )
    aug_gen = torch.Generator(device=device).manual_seed(cfg.seed * 7919 + ctx.rank + 1)
    loss_fn = DiceCELoss()
    start_epoch, step, best, history = 0, 0, -math.inf, []
    if state is not None:
        missing, unexpected = model.load_state_dict(state["model"], strict=False)
        frozen = tuple(f"{n}." for n in model.encoders) if model.frozen else ()
        if unexpected or any(not k.startswith(frozen) for k in missing):
            raise DualDINOv3Error(
                f"{state_path} does not fit this model (missing {missing[:3]}, unexpected {unexpected[:3]})"
            )
        optimizer.load_state_dict(state["optimizer"])
        start_epoch, step, best = int(state["epoch"]), int(state["step"]), float(state["best"])
        history = json.loads(state["history"])
        rng = state["rng"]
        if len(rng) != ctx.world_size:
            raise DualDINOv3Error(f"this run was saved with {len(rng)} processes; resume it with the same number")
        _set_rng_state(rng[ctx.rank], sampler, aug_gen)
        log.info("resuming %s at epoch %d (step %d)", out_dir, start_epoch, step)
    train_model = (
        DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        if ctx.enabled
        else model
    )
    augmentation = cfg.augmentation_config()
    best_path, last_path = out_dir / "best.safetensors", out_dir / "last.safetensors"

    for epoch in range(start_epoch, cfg.epochs):
        started = time.perf_counter()
        progress = progress_factory(epoch) if (progress_factory and ctx.is_main) else None
        train_model.train()
        losses = []
        for it in range(cfg.iterations_per_epoch):
            check_cancel(cancel, "finetuning")
            lr = learning_rate_at(step, cfg)
            for group in optimizer.param_groups:
                group["lr"] = lr
            images, labels = sampler.next_batch()
            images, labels = augment_batch(images.to(device), labels.to(device), aug_gen, augmentation)
            with autocast(device, cfg.mixed_precision):
                logits = train_model(images)
            loss = loss_fn(logits.float(), labels).total
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], cfg.grad_clip)
            optimizer.step()
            step += 1
            losses.append(float(loss.detach()))
            if progress is not None:
                progress(
                    (it + 1) / cfg.iterations_per_epoch, f"epoch {epoch + 1}/{cfg.epochs} loss {np.mean(losses):.4f}"
                )
        row = {"epoch": epoch + 1, "step": step, "lr": lr, "train_loss": float(np.mean(losses)),
               "seconds": round(time.perf_counter() - started, 2)}  # fmt: skip
        rng_states = ctx.gather_objects(_rng_state(sampler, aug_gen))
        if val and ((epoch + 1) % cfg.validate_every == 0 or epoch + 1 == cfg.epochs):
            row.update(distributed_validation(model, val, ctx, device, cfg.validation_batch_size, config.num_classes))
        if ctx.is_main:
            history.append(row)
            score = row.get("dice_mean", math.nan)
            extra = {"epoch": str(epoch + 1), "train_loss": f"{row['train_loss']:.6f}"}
            save_segmenter(model, last_path, extra=extra)
            if (not math.isnan(score) and score > best) or not best_path.exists():
                best = score if not math.isnan(score) else best
                save_segmenter(model, best_path, extra={**extra, "validation_dice": f"{score:.6f}"})
            _write_metrics(out_dir, history)
            snapshot = {
                "version": STATE_VERSION, "epoch": epoch + 1, "step": step, "best": best,
                "model": _trainable_state(model), "optimizer": optimizer.state_dict(),
                "rng": rng_states, "history": json.dumps(history), "record": json.dumps(record),
            }  # fmt: skip
            atomic_write(state_path, lambda tmp, s=snapshot: torch.save(s, tmp))
            log.info("epoch %d: %s", epoch + 1, json.dumps(row))
            if on_epoch_end is not None:
                on_epoch_end(history)
        ctx.barrier()
    checksums = ctx.gather_objects(parameter_checksums(model)) if ctx.enabled else None
    if ctx.is_main and checksums is not None:
        in_sync = all(c == checksums[0] for c in checksums)
        log.info("parameters %s across %d processes", "identical" if in_sync else "DIFFER", ctx.world_size)
        text = json.dumps({"rank_checksums": checksums, "in_sync": in_sync})
        atomic_write(out_dir / "ranks.json", lambda tmp: Path(tmp).write_text(text))
    return FinetuneResult(out_dir, best_path, last_path, best, cfg.epochs, history, checksums)
