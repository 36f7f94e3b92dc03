"""Cross-validate configurations, evaluated as the paper's Table 1: ``dualdinov3 crossval`` (see its ``--help``),
kept so the documented ``python Training/crossval.py ...`` commands work."""

from DualDINOv3Lib.cli import run_as_script

if __name__ == "__main__":
    run_as_script("crossval")
