"""Running a segmenter on whole volumes: :func:`segment_volume` (labels on the CT grid) and
:func:`pca_feature_maps` (what each encoder sees, as RGB volumes), with progress, cancel and devices.
Exports are lazy."""

from .._lazy import lazy_exports

_EXPORTS = {
    "Cancelled": "..runtime",
    "pca_feature_maps": ".pca",
    "remove_small_components": ".postprocess",
    "resolve_device": "..runtime",
    "segment_volume": ".segment",
    "segment_with_feature_maps": ".joint",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
