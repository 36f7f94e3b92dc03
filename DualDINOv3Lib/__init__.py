"""DualDINOv3: PET/CT head-and-neck tumour segmentation with CT and PET DINOv3 encoders.

Public API (stable): :func:`load_segmenter`, :func:`save_segmenter`, :func:`build_segmenter`, and in
:mod:`DualDINOv3Lib.models` the :class:`~DualDINOv3Lib.models.DINOv3ViT` backbone and
:func:`~DualDINOv3Lib.models.load_backbone`. This package never imports slicer, vtk or qt.
"""

__version__ = "0.1.0"

from .errors import CheckpointError, ConfigError, DualDINOv3Error
from .models import build_segmenter, load_segmenter, save_segmenter

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DataError",
    "DualDINOv3Error",
    "__version__",
    "build_segmenter",
    "load_segmenter",
    "save_segmenter",
]
