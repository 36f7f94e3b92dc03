"""Build the slice store that pretraining streams from: ``dualdinov3 prepare-pretraining`` (see its ``--help``),
kept so the documented ``python Training/prepare_pretraining.py ...`` commands work."""

from DualDINOv3Lib.cli import run_as_script

if __name__ == "__main__":
    run_as_script("prepare-pretraining")
