"""Evaluate prediction folders against a HECKTOR-layout truth folder: ``dualdinov3 evaluate`` (see its ``--help``),
kept so the documented ``python Training/evaluate.py ...`` commands work."""

from DualDINOv3Lib.cli import run_as_script

if __name__ == "__main__":
    run_as_script("evaluate")
