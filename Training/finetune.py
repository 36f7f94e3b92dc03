"""Finetune a segmenter on a HECKTOR-layout folder: ``dualdinov3 finetune`` (see its ``--help``),
kept so the documented ``python Training/finetune.py ...`` commands work."""

from DualDINOv3Lib.cli import run_as_script

if __name__ == "__main__":
    run_as_script("finetune")
