"""DualDINOv3: PET/CT head-and-neck tumour segmentation with CT and PET DINOv3 encoders.

Public API (stable): :func:`segment_volume` (PET/CT volumes -> label volume on the CT grid),
:func:`pca_feature_maps` (what each encoder sees, as RGB volumes), :func:`load_segmenter`,
:func:`save_segmenter`, :func:`build_segmenter`, :func:`read_volume` / :func:`write_volume` and the
:class:`~DualDINOv3Lib.data.Volume` type; in :mod:`DualDINOv3Lib.models` the
:class:`~DualDINOv3Lib.models.DINOv3ViT` backbone and :func:`~DualDINOv3Lib.models.load_backbone`.
This package never imports slicer, vtk or qt.

Exports are lazy: ``import DualDINOv3Lib`` (or any package in it) loads neither torch nor SimpleITK; a
name's module is imported when the name is first used.

Layers (each package imports only from the layers above it in this list, never from a later one; a test
checks every import):

0. ``version``, ``errors``
1. ``domain`` (label values, tumour-volume strata), ``files`` (atomic writes), ``progress``,
   ``machine`` (CPU threads and batch size: how much of the machine a job uses)
2. ``data``: Volume, image/DICOM reading and writing, SUV, resampling, labels, the HECKTOR layout
   (numpy + SimpleITK, no torch)
3. ``preprocessing`` (the paper's slice preprocessing and its inverse; the body rule),
   ``phantoms`` (synthetic PET/CT), ``evaluation`` (Dice, HD95, Table 1, splits), ``rendering`` (PNGs),
   ``runtime`` (devices, mixed precision, progress and cancel for long jobs), ``distributed`` (torchrun)
4. ``models``: the DINOv3 ViT, checkpoints, fusion, decoder, segmenters
5. ``inference`` (whole volumes, PCA maps), ``finetune``, ``pretraining``
6. ``workflows``: the jobs behind the commands (demo, finetune runs, cross-validation, prediction, ...)
7. ``cli``: the ``dualdinov3`` command
"""

from ._lazy import lazy_exports
from .version import __version__

_EXPORTS = {
    "Cancelled": ".runtime",
    "CheckpointError": ".errors",
    "ConfigError": ".errors",
    "DataError": ".errors",
    "DualDINOv3Error": ".errors",
    "Volume": ".data.volume",
    "build_segmenter": ".models.factory",
    "load_segmenter": ".models.segmenter_checkpoint",
    "pca_feature_maps": ".inference.pca",
    "read_volume": ".data.io",
    "save_segmenter": ".models.segmenter_checkpoint",
    "segment_volume": ".inference.segment",
    "write_volume": ".data.io",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = ["__version__", *sorted(_EXPORTS)]
