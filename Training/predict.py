"""Segment every case of a HECKTOR-layout folder: ``dualdinov3 predict`` (see its ``--help``),
kept so the documented ``python Training/predict.py ...`` commands work."""

from DualDINOv3Lib.cli import run_as_script

if __name__ == "__main__":
    run_as_script("predict")
