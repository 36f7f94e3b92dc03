"""Check a model on real PET/CT cases with truth masks (Dice and false-positive volume per case):
``dualdinov3 evaluate-real`` (see its ``--help``), kept so ``python Training/evaluate_real.py ...`` works like the
other Training scripts."""

from DualDINOv3Lib.cli import run_as_script

if __name__ == "__main__":
    run_as_script("evaluate-real")
