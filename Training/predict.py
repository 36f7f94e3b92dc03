"""Segment every case of a HECKTOR-layout folder with a segmenter: CASE.nii.gz label files on each CT grid.

    python Training/predict.py --model runs/dual/best.safetensors --data HECKTOR_DIR --out PRED_DIR
    python Training/evaluate.py --truth HECKTOR_DIR --pred dual=PRED_DIR --out EVAL_DIR

Uses ``segment_volume``, the same path as ``dualdinov3 segment`` and the Slicer module.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from DualDINOv3Lib.data import write_volume
from DualDINOv3Lib.data.hecktor import list_hecktor_cases, read_hecktor_case
from DualDINOv3Lib.errors import DualDINOv3Error
from DualDINOv3Lib.files import check_output_folder, check_output_path
from DualDINOv3Lib.inference import segment_volume
from DualDINOv3Lib.models import load_segmenter


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None, help="segmenter .safetensors (default: the bundled demo model)")
    p.add_argument("--data", required=True, type=Path, help="HECKTOR-layout folder (labels not needed)")
    p.add_argument("--out", required=True, type=Path, help="folder for CASE.nii.gz predictions")
    p.add_argument("--device", default="auto")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--overwrite", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    try:
        cases = list_hecktor_cases(args.data)
        check_output_folder(args.out)
        for case in cases:
            check_output_path(args.out / f"{case.case_id}.nii.gz", overwrite=args.overwrite)
        model = load_segmenter(args.model)
        for i, case in enumerate(cases, start=1):
            ct, pet, _ = read_hecktor_case(case)
            label = segment_volume(ct, pet, model, device=args.device, batch_size=args.batch_size)
            path = write_volume(label, args.out / f"{case.case_id}.nii.gz", overwrite=args.overwrite)
            print(f"[{i}/{len(cases)}] {path}")
    except DualDINOv3Error as exc:
        print(f"predict: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
