"""Slicer-side helpers of the DualDINOv3Segment module (the model itself lives in DualDINOv3Lib)."""
