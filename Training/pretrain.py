"""Self-supervised DINOv3 pretraining of a PET or CT encoder: ``dualdinov3 pretrain`` (see its ``--help``),
kept so the documented ``python Training/pretrain.py ...`` and ``torchrun ... Training/pretrain.py`` commands work."""

from DualDINOv3Lib.cli import run_as_script

if __name__ == "__main__":
    run_as_script("pretrain")
