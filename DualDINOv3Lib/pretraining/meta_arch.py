"""The self-supervised meta-architecture (paper sec. 2.3, eq. 1-12): a student, its EMA teacher and the
frozen Gram teacher, and the total loss ``w_dino L_DINO + w_ibot L_iBOT + w_koleo L_KoLeo + w_gram L_Gram``.

- Student: a :class:`DINOv3ViT` with separate DINO and iBOT heads (:class:`SSLNetwork`); it sees the global
  crops with iBOT mask tokens and the local crops, in train mode (drop path, RoPE augmentation).
- Teacher: the same network, an exponential moving average of the student, in eval mode, no gradients; it
  sees only the unmasked global crops. Its outputs are Sinkhorn-Knopp centred at the teacher temperature.
- Gram teacher: a frozen backbone (a copy of the EMA teacher, or one loaded from a file) that sees the
  2x Gram crops; its patch features anchor the student's patch similarity structure.

The network's state-dict keys (``backbone.*``, ``dino_head.*``, ``ibot_head.*``) are DINOv3's, so a
checkpoint whose ``teacher`` entry holds them is read by :func:`~DualDINOv3Lib.models.load_backbone`.
"""

from __future__ import annotations

import copy
import math
from typing import NamedTuple

import torch
from torch import Tensor, nn

from ..models.vit import DINOv3ViT
from .config import ModelSection, PretrainConfig
from .dino_loss import dino_loss
from .gram_loss import gram_loss, resize_patch_tokens
from .heads import DINOHead
from .ibot_loss import ibot_loss
from .koleo_loss import koleo_per_crop
from .sinkhorn import sinkhorn_knopp


class SSLNetwork(nn.Module):
    """A backbone with a DINO head on its cls token and an iBOT head on its patch tokens."""

    def __init__(self, backbone: DINOv3ViT, model: ModelSection) -> None:
        super().__init__()
        self.backbone = backbone
        dims = dict(
            hidden_dim=model.head_hidden_dim, bottleneck_dim=model.head_bottleneck_dim, n_layers=model.head_layers
        )
        self.dino_head = DINOHead(backbone.embed_dim, model.prototypes, **dims)
        self.ibot_head = DINOHead(backbone.embed_dim, model.prototypes, **dims)

    def forward(self, global_crops: Tensor, local_crops: Tensor | None = None, masks: Tensor | None = None,
                ibot_positions: Tensor | None = None) -> dict[str, Tensor]:  # fmt: skip
        """``global_crops`` ``(n_g * B, C, G, G)`` with ``masks`` ``(n_g * B, N)`` (mask tokens) or None;
        ``local_crops`` ``(n_l * B, C, L, L)`` or None. Returns the normed ``cls`` ``(n_g * B, D)`` and
        ``patches`` ``(n_g * B, N, D)``, ``dino_global`` ``(n_g * B, K)``, ``dino_local`` ``(n_l * B, K)`` and
        ``ibot`` ``(M, K)``: the iBOT head at ``ibot_positions`` (default ``masks``), ``tokens[positions]`` order."""
        features = self.backbone.forward_features(global_crops, masks)
        cls, patches = features["x_norm_clstoken"], features["x_norm_patchtokens"]
        out = {"cls": cls, "patches": patches, "dino_global": self.dino_head(cls)}
        if local_crops is not None and local_crops.shape[0]:
            out["dino_local"] = self.dino_head(self.backbone.forward_features(local_crops)["x_norm_clstoken"])
        positions = masks if ibot_positions is None else ibot_positions
        if positions is not None:
            out["ibot"] = self.ibot_head(patches[positions])
        return out


class SSLLosses(NamedTuple):
    total: Tensor
    terms: dict[str, float]


def to_channels(crops: Tensor, channels: int) -> Tensor:
    """Single-channel crops ``(N, 1, S, S)`` replicated to the backbone's input channels."""
    return crops.expand(-1, channels, -1, -1) if crops.shape[1] != channels else crops


def mean_entropy(probs: Tensor) -> float:
    """Mean over rows of the entropy (nats) of the distributions ``probs`` ``(B, K)``."""
    p = probs.float().clamp_min(1e-30)
    return float(-(p * p.log()).sum(dim=-1).mean())


class SSLMetaArch(nn.Module):
    """Student, EMA teacher and Gram teacher, and the total loss of one batch (see the module docstring)."""

    def __init__(self, backbone: DINOv3ViT, config: PretrainConfig, n_global_crops: int = 2) -> None:
        super().__init__()
        self.config = config
        self.n_global_crops = n_global_crops
        self.student = SSLNetwork(backbone, config.model)
        self.teacher = copy.deepcopy(self.student)
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self.teacher.eval()
        self.gram_teacher: DINOv3ViT | None = None

    @property
    def in_chans(self) -> int:
        return self.student.backbone.config.in_chans

    def train(self, mode: bool = True) -> SSLMetaArch:
        """The student follows ``mode``; the teachers always stay in eval mode (no drop path, no RoPE jitter)."""
        self.training = mode
        self.student.train(mode)
        self.teacher.eval()
        if self.gram_teacher is not None:
            self.gram_teacher.eval()
        return self

    @torch.no_grad()
    def update_teacher(self, momentum: float) -> None:
        """``teacher = momentum * teacher + (1 - momentum) * student`` for every parameter."""
        teacher = [p.data for p in self.teacher.parameters()]
        student = [p.data for p in self.student.parameters()]
        torch._foreach_mul_(teacher, momentum)
        torch._foreach_add_(teacher, student, alpha=1.0 - momentum)

    @torch.no_grad()
    def refresh_gram_teacher(self) -> None:
        """The Gram teacher becomes a frozen copy of the EMA teacher's backbone."""
        if self.gram_teacher is None:
            self.gram_teacher = copy.deepcopy(self.teacher.backbone).eval()
            for p in self.gram_teacher.parameters():
                p.requires_grad_(False)
        else:
            self.gram_teacher.load_state_dict(self.teacher.backbone.state_dict())

    def set_gram_teacher(self, backbone: DINOv3ViT) -> None:
        """Uses ``backbone`` (e.g. loaded from an earlier stage's file) as the frozen Gram teacher."""
        backbone = backbone.to(next(self.student.parameters()).device).eval()
        for p in backbone.parameters():
            p.requires_grad_(False)
        self.gram_teacher = backbone

    def losses(
        self, batch: dict[str, Tensor], teacher_temperature: float, student: nn.Module | None = None
    ) -> SSLLosses:
        """The weighted total loss of a batch from :class:`~.data.Collate` and its terms (floats, for logs).

        ``student`` is the module to run the student through (the DistributedDataParallel wrapper under
        torchrun); default :attr:`student`."""
        cfg = self.config.loss
        student = student or self.student
        channels = self.in_chans
        n_g = self.n_global_crops
        global_crops = to_channels(batch["global"], channels)
        local_crops = to_channels(batch["local"], channels) if batch["local"].shape[0] else None
        masks = batch["masks"]
        batch_size = global_crops.shape[0] // n_g
        k = self.config.model.prototypes

        with torch.no_grad():
            t = self.teacher(global_crops, ibot_positions=masks)
            teacher_cls = sinkhorn_knopp(t["dino_global"], teacher_temperature, cfg.sinkhorn_iterations)
            teacher_patch = sinkhorn_knopp(t["ibot"], teacher_temperature, cfg.sinkhorn_iterations)
        s = student(global_crops, local_crops, masks=masks)
        local = s["dino_local"].float().view(-1, batch_size, k) if "dino_local" in s else None
        dino = dino_loss(s["dino_global"].float().view(n_g, batch_size, k), local, teacher_cls.view(n_g, batch_size, k),
                         cfg.student_temperature)  # fmt: skip
        ibot = ibot_loss(s["ibot"], teacher_patch, masks, cfg.student_temperature)
        koleo = koleo_per_crop(s["cls"], n_g, cfg.koleo_min_distance) if cfg.koleo_weight else s["cls"].sum() * 0
        total = cfg.dino_weight * dino.total + cfg.ibot_weight * ibot + cfg.koleo_weight * koleo
        terms = {
            "dino": float(dino.total.detach()),
            "dino_global": float(dino.global_term.detach()),
            "dino_local": float(dino.local_term.detach()),
            "ibot": float(ibot.detach()),
            "koleo": float(koleo.detach()),
        }
        if cfg.gram_weight and self.gram_teacher is not None and "gram" in batch:
            gram = self.gram(s["patches"], batch["gram"], global_crops.shape[-2:])
            total = total + cfg.gram_weight * gram
            terms["gram"] = float(gram.detach())
        terms["total"] = float(total.detach())
        terms["teacher_entropy"] = mean_entropy(teacher_cls)
        terms["teacher_entropy_max"] = math.log(k)
        return SSLLosses(total, terms)

    def gram(self, student_patches: Tensor, gram_crops: Tensor, global_hw) -> Tensor:
        """Gram loss of the student's patch tokens against the Gram teacher on its (larger) crops."""
        p = self.student.backbone.patch_size
        grid = (int(global_hw[0]) // p, int(global_hw[1]) // p)
        with torch.no_grad():
            crops = to_channels(gram_crops, self.in_chans)
            tokens = self.gram_teacher.forward_features(crops)["x_norm_patchtokens"]
            tokens = resize_patch_tokens(tokens, (crops.shape[-2] // p, crops.shape[-1] // p), grid)
        return gram_loss(student_patches, tokens)
