"""Networks: the DINOv3 ViT and its checkpoint loading, CT/PET fusion, the Primus decoder, segmenters."""

from .backbone_loading import export_official, load_backbone, save_backbone
from .config import EncoderSpec, PreprocessingSpec, SegmenterConfig, load_config, parse_config
from .decoder import PrimusMultiscaleDecoder
from .factory import build_segmenter
from .fusion import CrossModalFusion
from .segmenter import DualStreamSegmenter, Segmenter, SingleStreamSegmenter
from .segmenter_checkpoint import load_segmenter, read_segmenter_metadata, save_segmenter
from .vit import VIT_PRESETS, DINOv3ViT, ViTConfig, vit_config

__all__ = [
    "VIT_PRESETS",
    "CrossModalFusion",
    "DINOv3ViT",
    "DualStreamSegmenter",
    "EncoderSpec",
    "PreprocessingSpec",
    "PrimusMultiscaleDecoder",
    "Segmenter",
    "SegmenterConfig",
    "SingleStreamSegmenter",
    "ViTConfig",
    "build_segmenter",
    "export_official",
    "load_backbone",
    "load_config",
    "load_segmenter",
    "parse_config",
    "read_segmenter_metadata",
    "save_backbone",
    "save_segmenter",
    "vit_config",
]
