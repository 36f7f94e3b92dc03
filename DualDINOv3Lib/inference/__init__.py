"""Running a segmenter on whole volumes: :func:`segment_volume` (labels on the CT grid) and
:func:`pca_feature_maps` (what each encoder sees, as RGB volumes), with progress, cancel and devices."""

from .pca import pca_feature_maps
from .postprocess import remove_small_components
from .runtime import Cancelled, resolve_device
from .segment import segment_volume

__all__ = ["Cancelled", "pca_feature_maps", "remove_small_components", "resolve_device", "segment_volume"]
