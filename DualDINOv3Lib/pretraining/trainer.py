"""The pretraining loop (paper sec. 2.3): one stage of DINO + iBOT + KoLeo (+ Gram) training.

Files in the run folder: ``config.json`` (the resolved config), ``checkpoint.pt`` (see :mod:`.checkpoint`,
replaced atomically every ``run.checkpoint_every`` steps and at the end), ``metrics.jsonl``/``.csv`` and
``loss_curve.png`` (:mod:`.metrics`), ``teacher_backbone.safetensors``/``.pth`` at the end and
``teacher_stepNNNNNN.*`` at the ``run.save_teacher_at`` steps. A run killed at any point resumes from its
last checkpoint with ``resume=True`` and, being deterministic on the same hardware, reaches the same
weights as a run that was never interrupted.

Under ``torchrun`` every process runs :func:`pretrain`: the student is wrapped in DistributedDataParallel,
the teachers are plain modules updated identically on every process, Sinkhorn sums are all-reduced.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel

from ..distributed import DistributedContext, init_distributed, shutdown_distributed
from ..errors import ConfigError, DualDINOv3Error
from ..files import atomic_write
from ..models.backbone_loading import load_backbone
from ..models.tensor_files import read_tensor_file
from ..models.vit import DINOv3ViT, vit_config
from ..runtime import CancelFlag, check_cancel, resolve_device
from . import schedules
from .checkpoint import (
    CHECKPOINT,
    export_teacher,
    is_pretraining_checkpoint,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from .config import PretrainConfig
from .crops import MultiCrop
from .data import BatchPlan, Collate, CropDataset, crop_loader, open_stores
from .meta_arch import SSLMetaArch
from .metrics import write_loss_curve, write_metrics
from .param_groups import parameter_groups

log = logging.getLogger(__name__)


class NonFiniteLossError(DualDINOv3Error, FloatingPointError):
    """The loss became NaN or infinite; nothing after the last checkpoint was written."""


@dataclass
class PretrainResult:
    out_dir: Path
    checkpoint: Path
    exports: tuple[Path, ...]
    steps: int
    history: list[dict] = field(default_factory=list)
    rank_checksums: list[list[float]] | None = None


def build_backbone(config: PretrainConfig) -> DINOv3ViT:
    cfg = dataclasses.replace(vit_config(config.model.backbone), drop_path_rate=config.model.drop_path_rate)
    backbone = DINOv3ViT(cfg)
    backbone.set_rope_augmentation(config.model.rope_augmentation)
    return backbone


def initialise(arch: SSLMetaArch, init: str | os.PathLike) -> str:
    """Loads ``init`` into student and teacher: a pretraining checkpoint (networks and heads: the next stage
    of a run) or any backbone ``load_backbone`` reads (new heads). Returns which of the two it was."""
    content, _ = read_tensor_file(Path(init)) if Path(init).suffix == ".pt" else (None, None)
    try:
        if is_pretraining_checkpoint(content):
            arch.student.load_state_dict(content["student"])
            arch.teacher.load_state_dict(content["teacher"])
            return "pretraining checkpoint"
        source = load_backbone(init)
        arch.student.backbone.load_state_dict(source.state_dict())
        arch.teacher.backbone.load_state_dict(source.state_dict())
    except RuntimeError as exc:  # shape or key mismatch between the init file and model.backbone
        raise ConfigError(
            f"{init} does not match model.backbone {arch.student.backbone.config.embed_dim}-dim x "
            f"{arch.student.backbone.config.depth}: set model.backbone to the architecture of the file ({exc})"
        ) from exc
    return "backbone"


def _mixed_precision(config: PretrainConfig, device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA GPUs that support it (fp16 is unsafe for DINO training), else fp32."""
    wanted = config.run.mixed_precision
    bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
    if wanted and not bf16:
        log.warning("run.mixed_precision: this device has no bf16; training in float32")
    if (wanted is None or wanted) and bf16:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def pretrain(
    config: PretrainConfig,
    stores: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    *,
    device: str | torch.device = "auto",
    resume: bool = False,
    max_steps: int | None = None,
    progress: Callable[[float, str], None] | None = None,
    cancel: CancelFlag = None,
) -> PretrainResult:
    """Runs (or with ``resume`` continues) one pretraining stage; see the module docstring for the files.

    ``max_steps`` stops the run after that many steps (counted from the stage's start) with a checkpoint and
    exports, without changing the schedules, which still span ``optim.steps``: ``resume`` continues it.
    ``progress(fraction, message)`` is called on the main process after every step."""
    out_dir = Path(out_dir)
    if (out_dir / CHECKPOINT).exists() and not resume:
        raise DualDINOv3Error(
            f"{out_dir} already holds a pretraining run; pass --resume to continue it or choose another --out"
        )
    group, device = init_distributed(resolve_device(device))
    try:
        return _pretrain(config, list(stores), out_dir, group, device, resume, max_steps, progress, cancel)
    finally:
        shutdown_distributed(group)


def _plan(config: PretrainConfig, group: DistributedContext) -> BatchPlan:
    per = config.optim.batch_size // (group.world_size * config.optim.accumulation_steps)
    if per * group.world_size * config.optim.accumulation_steps != config.optim.batch_size or per < 1:
        raise ConfigError(
            f"optim.batch_size {config.optim.batch_size} is not divisible by {group.world_size} process(es) x "
            f"{config.optim.accumulation_steps} accumulation step(s); change one of them"
        )
    if config.loss.koleo_weight and per < 2:
        raise ConfigError("KoLeo needs at least 2 slices per process and micro-batch: raise optim.batch_size")
    return BatchPlan(per, config.optim.accumulation_steps, group.world_size, group.rank)


def _pretrain(config, stores, out_dir: Path, group, device, resume, max_steps, progress, cancel) -> PretrainResult:
    record = config.to_dict()
    state = load_checkpoint(out_dir / CHECKPOINT) if resume and (out_dir / CHECKPOINT).exists() else None
    if state is not None and json.loads(state["config"]) != record:
        raise DualDINOv3Error(
            f"{out_dir} was started with another config; resume with the same one or use another --out"
        )
    plan = _plan(config, group)
    if group.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        atomic_write(out_dir / "config.json", lambda tmp: Path(tmp).write_text(json.dumps(record, indent=2)))

    torch.manual_seed(config.run.seed)
    arch = SSLMetaArch(build_backbone(config), config)
    if state is None and config.model.init:
        kind = initialise(arch, config.model.init)
        log.info("initialised student and teacher from %s (%s)", config.model.init, kind)
    if config.uses_gram and config.gram.teacher:
        arch.set_gram_teacher(load_backbone(config.gram.teacher))
    arch.to(device)
    groups = parameter_groups(arch.student, arch.student.backbone.config.depth, layer_decay=config.optim.layer_decay,
                              patch_embed_lr_multiplier=config.optim.patch_embed_lr_multiplier)  # fmt: skip
    for g in groups:
        g.pop("names")
    optimizer = torch.optim.AdamW(groups, lr=0.0, betas=config.optim.betas, weight_decay=0.0)
    step, history = 0, []
    if state is not None:
        arch.student.load_state_dict(state["student"])
        arch.teacher.load_state_dict(state["teacher"])
        if "gram_teacher" in state:
            if arch.gram_teacher is None:
                arch.refresh_gram_teacher()
            arch.gram_teacher.load_state_dict(state["gram_teacher"])
        optimizer.load_state_dict(state["optimizer"])
        step, history = int(state["step"]), json.loads(state["history"])
        if len(state["rng"]) != group.world_size:
            raise DualDINOv3Error(f"this run was saved by {len(state['rng'])} processes; resume it with as many")
        set_rng_state(state["rng"][group.rank])
        log.info("resuming %s at step %d", out_dir, step)
    student = arch.student
    if group.enabled:
        student = DistributedDataParallel(arch.student, device_ids=[device.index] if device.type == "cuda" else None)

    opened, modality = open_stores(stores)
    c = config.crops
    multicrop = MultiCrop(n_local=c.n_local, global_scale=c.global_scale, local_scale=c.local_scale,
                          flip_probability=c.flip_probability, modality=modality)  # fmt: skip
    gram_scale = config.gram.crop_scale if config.uses_gram else 0
    dataset = CropDataset(opened, multicrop, plan, config.run.seed, c.sizes, c.size_weights, gram_scale)
    m = config.masking
    collate = Collate(plan, config.run.seed, arch.student.backbone.patch_size, m.min_ratio, m.max_ratio,
                      m.sample_probability)  # fmt: skip
    loop = _Loop(config, arch, student, optimizer, group, device, out_dir, record)
    total = config.optim.steps
    stop = total if max_steps is None else max(min(int(max_steps), total), step)
    batches = iter(crop_loader(dataset, collate, step, stop, config.run.num_workers))
    saved_step = step
    arch.train()
    while step < stop:
        check_cancel(cancel, "pretraining")
        row = loop.step(step, batches)
        step += 1
        if step % config.run.log_every == 0 or step == stop:
            history.append(row)
        if progress is not None and group.is_main:
            progress(step / total, f"step {step}/{total} loss {row['total']:.4f} ({row['seconds']:.2f} s/step)")
        if step in config.run.save_teacher_at and group.is_main:
            export_teacher(arch, out_dir, f"teacher_step{step:06d}")
        if step % config.run.checkpoint_every == 0 or step == stop:
            loop.save(step, history)
            saved_step = step
    exports: tuple[Path, ...] = ()
    if group.is_main:
        exports = export_teacher(arch, out_dir)
        write_loss_curve(out_dir, history)
    checksums = None
    if group.enabled:
        networks = (*arch.student.parameters(), *arch.teacher.parameters())  # teachers must agree too
        checksums = group.gather_objects([float(p.detach().double().sum()) for p in networks])
        if group.is_main:
            text = json.dumps({"rank_checksums": checksums, "in_sync": all(x == checksums[0] for x in checksums)})
            atomic_write(out_dir / "ranks.json", lambda tmp: Path(tmp).write_text(text))
    log.info("pretraining finished at step %d (last checkpoint at %d)", step, saved_step)
    return PretrainResult(out_dir, out_dir / CHECKPOINT, exports, step, history, checksums)


class _Loop:
    """One optimisation step and the checkpoint writing of a run."""

    def __init__(self, config: PretrainConfig, arch: SSLMetaArch, student, optimizer, group: DistributedContext, device,
                 out_dir: Path, record: dict) -> None:  # fmt: skip
        self.config, self.arch, self.student, self.optimizer = config, arch, student, optimizer
        self.group, self.device, self.out_dir, self.record = group, device, out_dir, record
        self.last_saved = None

    def hyperparameters(self, step: int) -> dict[str, float]:
        o, loss = self.config.optim, self.config.loss
        lr = o.learning_rate
        if o.scale_learning_rate:
            lr = schedules.scaled_learning_rate(lr, o.batch_size)
        return {
            "lr": schedules.learning_rate(step, lr, o.steps, o.warmup_steps, o.min_learning_rate),
            "weight_decay": schedules.cosine(step, o.weight_decay, o.weight_decay_end, o.steps),
            "momentum": schedules.ema_momentum(step, o.momentum_start, o.steps, o.momentum_end),
            "teacher_temperature": schedules.teacher_temperature(
                step,
                loss.teacher_temperature_start,
                loss.teacher_temperature_end,
                loss.teacher_temperature_warmup_steps,
            ),
        }

    def _gram_refresh_due(self, step: int) -> bool:
        g = self.config.gram
        if not self.config.uses_gram or g.teacher or step < g.first_step:
            return False
        if self.arch.gram_teacher is None or step == g.first_step:
            return True
        return bool(g.refresh_every) and (step - g.first_step) % g.refresh_every == 0

    def step(self, step: int, batches) -> dict:
        started = time.perf_counter()
        o = self.config.optim
        hp = self.hyperparameters(step)
        for g in self.optimizer.param_groups:
            frozen = (g["is_last_layer"] and step < o.freeze_last_layer_steps) or (
                g["is_backbone"] and step < o.head_warmup_steps
            )
            g["lr"] = 0.0 if frozen else hp["lr"] * g["lr_multiplier"]
            g["weight_decay"] = hp["weight_decay"] * g["wd_multiplier"]
        if self._gram_refresh_due(step):
            self.arch.refresh_gram_teacher()
        self.optimizer.zero_grad(set_to_none=True)
        terms: list[dict] = []
        for micro in range(o.accumulation_steps):
            batch = {k: v.to(self.device, non_blocking=True) for k, v in next(batches).items()}
            if int(batch["step"]) != step:
                raise RuntimeError(f"data stream out of step: got step {int(batch['step'])}, expected {step}")
            last = micro == o.accumulation_steps - 1
            sync = self.student.no_sync() if (self.group.enabled and not last) else contextlib.nullcontext()
            with sync:
                with _mixed_precision(self.config, self.device):
                    losses = self.arch.losses(batch, hp["teacher_temperature"], self.student)
                if not self.group.all_finite(losses.total):
                    raise NonFiniteLossError(
                        f"the loss became {float(losses.total.detach())} at step {step + 1} ({losses.terms}); "
                        "stopped without writing a checkpoint. Lower optim.learning_rate or raise optim.warmup_steps, "
                        "then --resume from the last checkpoint"
                    )
                (losses.total / o.accumulation_steps).backward()
            terms.append(losses.terms)
        self._drop_frozen_gradients(step)
        for module in (self.arch.student.backbone, self.arch.student.dino_head, self.arch.student.ibot_head):
            params = [p for p in module.parameters() if p.grad is not None]
            if params and o.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(params, o.grad_clip)
        self.optimizer.step()
        self.arch.update_teacher(hp["momentum"])
        row = {"step": step + 1, **hp}
        for key in terms[0]:
            row[key] = sum(t[key] for t in terms) / len(terms)
        row["seconds"] = round(time.perf_counter() - started, 4)
        return row

    def _drop_frozen_gradients(self, step: int) -> None:
        """No update (and no weight decay) for the heads' last layers and, during the head warm-up, the
        backbone: AdamW skips parameters without a gradient."""
        o = self.config.optim
        for g in self.optimizer.param_groups:
            if (g["is_last_layer"] and step < o.freeze_last_layer_steps) or (
                g["is_backbone"] and step < o.head_warmup_steps
            ):
                for p in g["params"]:
                    p.grad = None

    def save(self, step: int, history: list[dict]) -> None:
        rng = self.group.gather_objects(rng_state())
        if self.group.is_main:
            save_checkpoint(self.out_dir / CHECKPOINT, step=step, arch=self.arch, optimizer=self.optimizer, rng=rng,
                            history=history, config=self.record)  # fmt: skip
            write_metrics(self.out_dir, history)
        self.group.barrier()
