"""Whole-volume inference: slices/s and peak memory of ``segment_volume`` at 64, 128 and 256 slices.

Run: ``make bench`` or ``python Testing/benchmarks/bench_inference.py [--slices 64 128 256] [--size 512]
[--backbone vits16] [--device cpu] [--batch 4]``. Each volume size runs in a fresh process so peak memory is
its own. A dual-stream model with two ViT-S/16 encoders (random weights: speed does not depend on them)
segments a synthetic PET/CT whose slices are ``size x size`` (no resampling, so every slice is a model input).
Expected: time linear in the number of slices (slices/s constant) and working memory (peak RSS minus
the input/output volumes) flat.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def run_one(slices: int, size: int, backbone: str, device: str, batch: int) -> dict:
    import numpy as np
    import torch

    from DualDINOv3Lib import build_segmenter, segment_volume
    from DualDINOv3Lib.data import Volume

    torch.manual_seed(0)
    model = build_segmenter(
        {"architecture": "dual_stream", "backbone": backbone, "preprocessing": {"crop_size": size}}
    ).eval()
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:size, :size]
    body = ((yy - size / 2) / (0.4 * size)) ** 2 + ((xx - size / 2) / (0.45 * size)) ** 2 < 1
    ct = np.where(body, 40.0, -1000.0).astype(np.float32)[None].repeat(slices, axis=0)
    ct += rng.normal(0, 10, ct.shape).astype(np.float32)
    pet = (rng.random(ct.shape, dtype=np.float32) * body).astype(np.float32)
    ct_volume = Volume(ct, (0.98, 0.98, 3.0))
    pet_volume = ct_volume.with_array(pet)
    volumes_mb = (ct.nbytes + pet.nbytes + ct[..., 0].size) / 2**20  # + uint8 output
    # warm-up on a few slices (thread pools, allocator), not timed
    segment_volume(Volume(ct[:2], ct_volume.spacing), Volume(pet[:2], ct_volume.spacing), model, device=device)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    before = _peak_rss_mb()
    start = time.perf_counter()
    segment_volume(ct_volume, pet_volume, model, device=device, batch_size=batch)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    result = {
        "slices": slices,
        "seconds": seconds,
        "slices_per_s": slices / seconds,
        "peak_rss_mb": _peak_rss_mb(),
        "rss_before_mb": before,
        "volumes_mb": volumes_mb,
    }
    if device.startswith("cuda"):
        result["gpu_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, nargs="+", default=[64, 128, 256])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--backbone", default="vits16")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(run_one(args.child, args.size, args.backbone, args.device, args.batch)))
        return
    print(
        f"segment_volume, dual-stream {args.backbone}, {args.size}x{args.size} slices, "
        f"{args.device}, batch {args.batch}"
    )
    print(f"{'slices':>7} {'time s':>8} {'slices/s':>9} {'peak RSS MB':>12} {'volumes MB':>11} {'working MB':>11}")
    for n in args.slices:
        cmd = [sys.executable, __file__, "--child", str(n), "--size", str(args.size), "--backbone", args.backbone]
        cmd += ["--device", args.device, "--batch", str(args.batch)]
        r = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])
        working = r["peak_rss_mb"] - r["volumes_mb"]
        line = (
            f"{n:>7} {r['seconds']:>8.1f} {r['slices_per_s']:>9.2f} {r['peak_rss_mb']:>12.0f} {r['volumes_mb']:>11.0f}"
        )
        line += f" {working:>11.0f}"
        if "gpu_peak_mb" in r:
            line += f"  GPU peak {r['gpu_peak_mb']:.0f} MB"
        print(line, flush=True)


if __name__ == "__main__":
    main()
