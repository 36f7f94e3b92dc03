"""Self-supervised DINOv3 pretraining of a PET or CT encoder: the same command as ``dualdinov3 pretrain``.

    python Training/pretrain.py --config Training/configs/pretrain/pet_stage1.yaml --data STORE --out RUN \
        --init dinov3_vitb16_pretrain_lvd1689m-73cec8be.pth
    python Training/pretrain.py ... --resume                        # continue a killed run exactly
    torchrun --nproc_per_node 2 Training/pretrain.py ...             # several GPUs (or CPU processes)
"""

from __future__ import annotations

import sys

from DualDINOv3Lib.cli.pretrain import main

if __name__ == "__main__":
    sys.exit(main())
