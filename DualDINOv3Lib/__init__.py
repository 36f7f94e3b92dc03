"""DualDINOv3: PET/CT head-and-neck tumour segmentation with CT and PET DINOv3 encoders.

Public API (stable): :func:`segment_volume` (PET/CT volumes -> label volume on the CT grid),
:func:`pca_feature_maps` (what each encoder sees, as RGB volumes), :func:`load_segmenter`,
:func:`save_segmenter`, :func:`build_segmenter`, :func:`read_volume` / :func:`write_volume` and the
:class:`~DualDINOv3Lib.data.Volume` type; in :mod:`DualDINOv3Lib.models` the
:class:`~DualDINOv3Lib.models.DINOv3ViT` backbone and :func:`~DualDINOv3Lib.models.load_backbone`.
This package never imports slicer, vtk or qt.
"""

__version__ = "0.1.0"

from .data import Volume, read_volume, write_volume
from .errors import CheckpointError, ConfigError, DataError, DualDINOv3Error
from .inference import Cancelled, pca_feature_maps, segment_volume
from .models import build_segmenter, load_segmenter, save_segmenter

__all__ = [
    "Cancelled",
    "CheckpointError",
    "ConfigError",
    "DataError",
    "DualDINOv3Error",
    "Volume",
    "__version__",
    "build_segmenter",
    "load_segmenter",
    "pca_feature_maps",
    "read_volume",
    "save_segmenter",
    "segment_volume",
    "write_volume",
]
