"""Pretraining speed: images (slices) per second and peak memory of ``pretrain`` on phantom PET slices.

Run: ``python Testing/benchmarks/bench_pretrain.py [--config tiny_cpu.yaml] [--steps 20] [--device cpu] [--threads N]
[--set section.key=value ...]``. For ViT-B on a GPU: ``--config Training/configs/pretrain/pet_stage1.yaml
--device cuda --set optim.batch_size=64 --set run.num_workers=8`` (the slice store is made of 256x256 phantom
slices). The first two steps (start-up) are not timed.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import tempfile
from pathlib import Path

import torch

from DualDINOv3Lib.phantoms import make_phantom
from DualDINOv3Lib.pretraining.config import load_pretrain_config, parse_overrides
from DualDINOv3Lib.pretraining.slices import PetSliceParams, pet_pretraining_slices
from DualDINOv3Lib.pretraining.store_writer import SliceStoreWriter
from DualDINOv3Lib.pretraining.trainer import pretrain

ROOT = Path(__file__).resolve().parents[2]


def phantom_store(path: Path, size: int, cases: int) -> Path:
    with SliceStoreWriter(path, modality="PT", preprocessing={"size": size}, slice_size=size, dtype="float16") as w:
        for seed in range(cases):
            s = pet_pretraining_slices(make_phantom(seed).pet, PetSliceParams(size=size), f"phantom-{seed}")
            w.add_volume(s.source, s.slices, s.z_indices, {})
    return path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default=str(ROOT / "Training" / "configs" / "pretrain" / "tiny_cpu.yaml"))
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--device", default="cpu")
    p.add_argument("--slice-size", type=int, default=None, help="store slice size (default: 64, or 256 for ViT-B)")
    p.add_argument("--cases", type=int, default=3, help="phantom cases in the store")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--set", dest="overrides", action="append", default=[])
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    overrides = {**parse_overrides(args.overrides), "optim.steps": args.steps, "run.log_every": 1,
                 "run.checkpoint_every": 10**9, "run.save_teacher_at": []}  # fmt: skip
    config = load_pretrain_config(args.config, overrides)
    size = args.slice_size or (64 if max(g for g, _ in config.crops.sizes) <= 64 else 256)
    with tempfile.TemporaryDirectory() as tmp:
        store = phantom_store(Path(tmp) / "store", size, args.cases)
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        result = pretrain(config, [store], Path(tmp) / "run", device=args.device)
    seconds = [row["seconds"] for row in result.history[2:]] or [row["seconds"] for row in result.history]
    per_step = statistics.median(seconds)
    images = config.optim.batch_size
    print(f"config {Path(args.config).name}: ViT {config.model.backbone}, batch {images}, crops {config.crops.sizes} "
          f"+ {config.crops.n_local} local, device {args.device}, {torch.get_num_threads()} threads")  # fmt: skip
    print(f"median step {per_step:.3f} s -> {images / per_step:.1f} images/s")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    if torch.cuda.is_available() and args.device.startswith("cuda"):
        print(f"peak GPU memory {torch.cuda.max_memory_allocated() / 2**20:.0f} MB")


if __name__ == "__main__":
    main()
