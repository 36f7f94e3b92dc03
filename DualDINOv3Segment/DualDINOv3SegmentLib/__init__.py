"""Slicer-side package of the DualDINOv3Segment module (the model itself lives in DualDINOv3Lib).

One concern per file: ``SegmentationLogic`` (the console API, no Qt), ``Inputs`` (checks, SUV), ``MRMLVolumes``
(nodes <-> library volumes), ``Terminology`` (segment codes and colours from the .term.json), ``Jobs`` and
``InferenceWorker`` (the separate inference process), ``FeatureMapCache`` (the maps a Segment run computed, for
Show feature maps), ``ModelCatalog``, ``Parameters``, ``Dependencies``, ``SampleData``, and ``Widget`` (Qt;
imported only by the module file inside Slicer). Importing this package loads neither torch nor Qt.
"""

from .SegmentationLogic import DualDINOv3SegmentLogic

__all__ = ["DualDINOv3SegmentLogic"]
