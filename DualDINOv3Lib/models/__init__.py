"""Networks: the DINOv3 ViT and its checkpoint loading, CT/PET fusion, the Primus decoder, segmenters.
Exports are lazy."""

from .._lazy import lazy_exports

_EXPORTS = {
    "VIT_PRESETS": ".vit",
    "CrossModalFusion": ".fusion",
    "DINOv3ViT": ".vit",
    "DualStreamSegmenter": ".segmenter",
    "EncoderSpec": ".config",
    "PreprocessingSpec": "..preprocessing.spec",
    "PrimusMultiscaleDecoder": ".decoder",
    "Segmenter": ".segmenter",
    "SegmenterConfig": ".config",
    "SingleStreamSegmenter": ".segmenter",
    "ViTConfig": ".vit",
    "build_segmenter": ".factory",
    "export_official": ".backbone_loading",
    "load_backbone": ".backbone_loading",
    "load_config": ".config",
    "load_segmenter": ".segmenter_checkpoint",
    "parse_config": ".config",
    "read_segmenter_metadata": ".segmenter_checkpoint",
    "save_backbone": ".backbone_loading",
    "save_segmenter": ".segmenter_checkpoint",
    "vit_config": ".vit",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
