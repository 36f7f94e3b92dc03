"""Segmenters: ViT encoder(s) + (fusion) + Primus multiscale decoder.

Every segmenter takes the same input, whatever its architecture: ``(B, 2, H, W)`` preprocessed axial
slices with channel 0 = CT and channel 1 = PET (see :class:`.config.PreprocessingSpec`; six channels for a
2.5D dual-stream segmenter, whose spec has ``context_mm``: CT and PET of the slice, then before, then after it),
and returns
logits ``(B, num_classes, H, W)``. Sizes that are not a multiple of the patch size are zero-padded for
the encoder and the logits cropped back.

- :class:`SingleStreamSegmenter` builds a pseudo-RGB image from CT and PET (``EncoderSpec.pseudo_rgb``,
  default ``(ct, pet, mean)``: R = CT, G = PET, B = their average), normalises each channel with the
  encoder's ``mean``/``std`` and runs one encoder (paper configurations 1-4).
- :class:`DualStreamSegmenter` feeds CT to the CT encoder and PET to the PET encoder (each replicated
  to the encoder's input channels and normalised), fuses the two at every tapped block with
  :class:`.fusion.CrossModalFusion`, and decodes the fused maps (configuration 5, Dual-DINOv3).

Frozen encoders (``freeze_encoders``) get ``requires_grad=False``, stay in eval mode even when the
segmenter trains, and run under ``torch.no_grad()``, so they cost no activation memory.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError
from ..preprocessing.spec import CONTEXT_CHANNELS, CT_SLICES, PET_SLICES
from .config import EncoderSpec, SegmenterConfig
from .decoder import PrimusMultiscaleDecoder
from .fusion import CrossModalFusion
from .vit import DINOv3ViT


class InputNormalization(nn.Module):
    """``(x - mean) / std`` per channel, with the statistics saved in the state dict."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)


class Segmenter(nn.Module, ABC):
    """Shared behaviour: input checks, padding to the patch grid, frozen encoders, decoding, and the
    features API (:meth:`encoder_tokens`) that PCA maps and other feature consumers use."""

    SHORT_NAMES: ClassVar[dict[str, str]] = {}
    """What users call each encoder (``"ct"``, ``"pet"``, ``"encoder"``) -> its attribute name."""

    def __init__(self, config: SegmenterConfig, encoders: dict[str, DINOv3ViT]) -> None:
        super().__init__()
        self.config = config
        for name, enc in encoders.items():
            self.add_module(name, enc)
            enc.set_rope_augmentation(config.rope_augmentation)
            # the mask token only serves masked-image pretraining (iBOT); a segmenter never uses it, and a
            # trainable parameter without gradient breaks DistributedDataParallel
            enc.mask_token.requires_grad_(False)
        first = next(iter(encoders.values()))
        self.patch_size = first.patch_size
        self.taps = tuple(config.taps) if config.taps is not None else first.default_taps
        for name, enc in encoders.items():
            if max(self.taps) >= len(enc.blocks):
                raise ValueError(f"taps {self.taps} exceed the {len(enc.blocks)} blocks of {name}")
        self.frozen = config.freeze_encoders
        if self.frozen:
            for enc in encoders.values():
                enc.requires_grad_(False)
                enc.eval()
        self.decoder = PrimusMultiscaleDecoder(
            len(self.taps) * self.fused_dim(first.embed_dim), config.num_classes, self.patch_size
        )

    def fused_dim(self, embed_dim: int) -> int:
        return embed_dim

    @property
    def encoders(self) -> dict[str, DINOv3ViT]:
        return {name: getattr(self, name) for name in self.config.encoder_specs}

    @property
    def label_names(self) -> tuple[str, ...]:
        return self.config.labels

    def train(self, mode: bool = True) -> Segmenter:
        super().train(mode)
        if self.frozen:
            for enc in self.encoders.values():
                enc.eval()
        return self

    def encode(self, encoder: DINOv3ViT, x: Tensor, blocks: Sequence[int] | None = None) -> tuple[Tensor, ...]:
        """Normed feature maps ``(B, D, H/p, W/p)`` of one encoder at ``blocks`` (default: the taps), in
        ascending block order; frozen encoders run without autograd."""
        blocks = self.taps if blocks is None else blocks
        with torch.no_grad() if self.frozen else contextlib.nullcontext():
            return encoder.get_intermediate_layers(x, n=blocks, reshape=True, norm=True)

    @abstractmethod
    def encoder_inputs(self, x: Tensor) -> dict[str, Tensor]:
        """What each encoder sees: ``{name: (B, in_chans, H, W)}`` normalised images from a ``(B, 2, H, W)`` input."""

    def features(self, x: Tensor) -> dict[str, tuple[Tensor, ...]]:
        """Per-encoder tapped feature maps of a padded ``(B, 2, H, W)`` input."""
        return {name: self.encode(getattr(self, name), inp) for name, inp in self.encoder_inputs(x).items()}

    @abstractmethod
    def decode_features(self, feats: dict[str, tuple[Tensor, ...]]) -> Tensor:
        """Logits ``(B, num_classes, H, W)`` from the output of :meth:`features`."""

    def pad_to_patches(self, x: Tensor) -> Tensor:
        """A ``(B, 2, H, W)`` input zero-padded at the bottom/right to a multiple of the patch size."""
        channels = self.config.preprocessing.input_channels
        if x.ndim != 4 or x.shape[1] != channels:
            what = "(CT, PET)" if channels == 2 else "(CT, PET and their context before and after the slice)"
            raise ValueError(f"expected (B, {channels}, H, W) input with channels {what}, got {tuple(x.shape)}")
        p = self.patch_size
        pad_h, pad_w = (-x.shape[-2]) % p, (-x.shape[-1]) % p
        return F.pad(x, (0, pad_w, 0, pad_h)) if pad_h or pad_w else x

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        logits = self.decode_features(self.features(self.pad_to_patches(x)))
        return logits[..., :h, :w]

    @property
    def encoder_names(self) -> tuple[str, ...]:
        """The encoders' short names: ``("ct", "pet")`` for dual-stream, ``("encoder",)`` for single-stream."""
        return tuple(self.SHORT_NAMES)

    def select_encoders(self, encoders: str | Sequence[str] | None = None) -> tuple[str, ...]:
        """The short names asked for (``None``: all), checked: an unknown name is a :class:`ConfigError`."""
        if encoders is None:
            return self.encoder_names
        chosen = (encoders,) if isinstance(encoders, str) else tuple(encoders)
        unknown = [e for e in chosen if e not in self.SHORT_NAMES]
        if unknown or not chosen:
            raise ConfigError(
                f"this segmenter has no encoder {unknown[0] if unknown else chosen!r}; it has "
                f"{', '.join(self.encoder_names)} ({self.config.architecture})"
            )
        return chosen

    def encoder_tokens(
        self, x: Tensor, layer: int = -1, encoders: str | Sequence[str] | None = None
    ) -> dict[str, Tensor]:
        """What each encoder sees: ``{short name: (B, D, H/p, W/p)}`` final-normed patch tokens of block
        ``layer`` (negative counts from the last block) for a ``(B, 2, H, W)`` input, padded to whole patches.

        A ``layer`` outside the encoder's blocks is a :class:`ConfigError` (never wrapped around).
        """
        names = self.check_layer(layer, encoders)
        inputs = self.encoder_inputs(self.pad_to_patches(x))
        out = {}
        for short in names:
            encoder = getattr(self, self.SHORT_NAMES[short])
            depth = len(encoder.blocks)
            (out[short],) = encoder.get_intermediate_layers(inputs[self.SHORT_NAMES[short]], n=[layer % depth])
        return out

    def features_and_tokens(
        self, x: Tensor, layer: int = -1, encoders: str | Sequence[str] | None = None
    ) -> tuple[dict[str, tuple[Tensor, ...]], dict[str, Tensor]]:
        """One encoder pass for two jobs: the tapped maps :meth:`decode_features` takes, and the
        :meth:`encoder_tokens` of block ``layer``, for a ``(B, 2, H, W)`` input padded to whole patches."""
        names = self.check_layer(layer, encoders)
        feats, tokens = {}, {}
        wanted = {self.SHORT_NAMES[s]: s for s in names}
        for attr, inp in self.encoder_inputs(self.pad_to_patches(x)).items():
            encoder = getattr(self, attr)
            blocks = sorted({*self.taps, layer % len(encoder.blocks)} if attr in wanted else set(self.taps))
            maps = dict(zip(blocks, self.encode(encoder, inp, blocks), strict=True))
            feats[attr] = tuple(maps[i] for i in sorted(self.taps))  # the order encode() returns
            if attr in wanted:
                tokens[wanted[attr]] = maps[layer % len(encoder.blocks)]
        return feats, tokens

    def check_layer(self, layer: int, encoders: str | Sequence[str] | None = None) -> tuple[str, ...]:
        """The encoders' short names (:meth:`select_encoders`), once ``layer`` is checked to be a block of each."""
        names = self.select_encoders(encoders)
        for short in names:
            depth = len(getattr(self, self.SHORT_NAMES[short]).blocks)
            if isinstance(layer, bool) or not isinstance(layer, int) or not -depth <= layer < depth:
                raise ConfigError(
                    f"layer {layer!r} is outside the {short} encoder's {depth} blocks; use 0..{depth - 1} or "
                    f"-{depth}..-1 (-1 is the last block)"
                )
        return names


def _replicate(channel: Tensor, n: int) -> Tensor:
    return channel.expand(-1, n, -1, -1)


class SingleStreamSegmenter(Segmenter):
    """One encoder on a pseudo-RGB composition of CT and PET (paper configurations 1-4)."""

    SHORT_NAMES: ClassVar[dict[str, str]] = {"encoder": "encoder"}

    def __init__(self, config: SegmenterConfig, encoder: DINOv3ViT) -> None:
        super().__init__(config, {"encoder": encoder})
        spec: EncoderSpec = config.encoder
        if len(spec.pseudo_rgb) != encoder.config.in_chans or len(spec.mean) != encoder.config.in_chans:
            raise ValueError(
                f"the encoder takes {encoder.config.in_chans} channels but pseudo_rgb has {len(spec.pseudo_rgb)} "
                f"and mean/std {len(spec.mean)}"
            )
        self.pseudo_rgb = spec.pseudo_rgb
        self.input_norm = InputNormalization(spec.mean, spec.std)

    def compose(self, x: Tensor) -> Tensor:
        """``(B, 2, H, W)`` CT/PET -> normalised pseudo-RGB ``(B, C, H, W)``."""
        sources = {"ct": x[:, 0:1], "pet": x[:, 1:2], "mean": x.mean(dim=1, keepdim=True)}
        return self.input_norm(torch.cat([sources[s] for s in self.pseudo_rgb], dim=1))

    def encoder_inputs(self, x: Tensor) -> dict[str, Tensor]:
        return {"encoder": self.compose(x)}

    def decode_features(self, feats: dict[str, tuple[Tensor, ...]]) -> Tensor:
        return self.decoder(feats["encoder"])


class DualStreamSegmenter(Segmenter):
    """CT encoder + PET encoder fused by cross-attention at every tap (Dual-DINOv3, configuration 5)."""

    SHORT_NAMES: ClassVar[dict[str, str]] = {"ct": "ct_encoder", "pet": "pet_encoder"}

    def __init__(self, config: SegmenterConfig, ct_encoder: DINOv3ViT, pet_encoder: DINOv3ViT) -> None:
        if ct_encoder.embed_dim != pet_encoder.embed_dim or ct_encoder.patch_size != pet_encoder.patch_size:
            raise ValueError(
                f"CT and PET encoders must share width and patch size to be fused: CT D={ct_encoder.embed_dim}/"
                f"{ct_encoder.patch_size}, PET D={pet_encoder.embed_dim}/{pet_encoder.patch_size}"
            )
        super().__init__(config, {"ct_encoder": ct_encoder, "pet_encoder": pet_encoder})
        for name, enc in self.encoders.items():
            spec = getattr(config, name)
            if len(spec.mean) != enc.config.in_chans or len(spec.std) != enc.config.in_chans:
                raise ValueError(f"{name} takes {enc.config.in_chans} channels but mean/std have {len(spec.mean)}")
        self.ct_norm = InputNormalization(config.ct_encoder.mean, config.ct_encoder.std)
        self.pet_norm = InputNormalization(config.pet_encoder.mean, config.pet_encoder.std)
        dim = ct_encoder.embed_dim
        self.fusions = nn.ModuleList(CrossModalFusion(dim, config.fusion_heads) for _ in self.taps)

    def encoder_inputs(self, x: Tensor) -> dict[str, Tensor]:
        if x.shape[1] == CONTEXT_CHANNELS:  # 2.5D: each encoder gets its modality before, at and after the slice
            ct, pet = x[:, list(CT_SLICES)], x[:, list(PET_SLICES)]
            return {"ct_encoder": self.ct_norm(ct), "pet_encoder": self.pet_norm(pet)}
        return {
            "ct_encoder": self.ct_norm(_replicate(x[:, 0:1], self.ct_encoder.config.in_chans)),
            "pet_encoder": self.pet_norm(_replicate(x[:, 1:2], self.pet_encoder.config.in_chans)),
        }

    def decode_features(self, feats: dict[str, tuple[Tensor, ...]]) -> Tensor:
        fused = [fuse(c, p) for fuse, c, p in zip(self.fusions, feats["ct_encoder"], feats["pet_encoder"], strict=True)]
        return self.decoder(fused)
