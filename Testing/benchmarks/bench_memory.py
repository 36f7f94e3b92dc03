"""Working memory of the paper's dual ViT-B/16 segmenter at 512x512 per batch size, in float32 and bf16.

Run: ``make bench`` or ``python Testing/benchmarks/bench_memory.py [--batches 1 2 4 8] [--size 512] [--precisions
fp32 bf16] [--threads N]``. Each (batch, precision) runs in a fresh process: it builds a randomly initialised dual
ViT-B/16 segmenter (two ViT-B/16 encoders, fusion at blocks 2, 5, 8, 11, Primus decoder, as
``Training/configs/5_dual_ct_pet.yaml`` without its checkpoints; memory does not depend on the weights' values),
then runs one forward of a batch the way ``segment_volume`` does (``torch.inference_mode``, bf16 under CPU
autocast). Reported: the process's resident memory before the forward (interpreter, torch, the model's weights),
its peak during the forward (``ru_maxrss``), and their difference, the working memory a batch needs on top of the
model, next to the estimate :mod:`DualDINOv3Lib.inference.memory` refuses a batch by (the encoders' token
activations and the decoder's largest maps). ``segment_volume`` holds besides only the case's volumes (a 150-slice
512x512 CT and PET in float32: 0.3 GB) and, per batch, its inputs and class probabilities (a few MB per slice).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys

GB = 2**30


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def run_one(batch: int, size: int, precision: str, threads: int | None) -> dict:
    import torch

    from DualDINOv3Lib import build_segmenter
    from DualDINOv3Lib.inference.memory import batch_memory_bytes
    from DualDINOv3Lib.runtime import autocast, cpu_threads

    torch.manual_seed(0)
    config = {"architecture": "dual_stream", "backbone": "vitb16", "taps": [2, 5, 8, 11], "fusion": {"num_heads": 8},
              "preprocessing": {"crop_size": size}}  # fmt: skip
    model = build_segmenter(config).eval()
    x = torch.randn(batch, 2, size, size)
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    with cpu_threads(threads), torch.inference_mode():
        before = _rss_bytes()
        if _peak_rss_bytes() > before + 64 * 2**20:
            raise RuntimeError("the peak before the forward is above the current size: the measurement would be wrong")
        with autocast(torch.device("cpu"), precision == "bf16"):
            logits = model(x)
        peak = _peak_rss_bytes()
    assert logits.shape == (batch, model.config.num_classes, size, size)
    estimate = batch_memory_bytes(model, batch, size, torch.bfloat16 if precision == "bf16" else None)
    return {"batch": batch, "precision": precision, "before": before, "peak": peak, "weights": weights,
            "estimate": estimate}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--precisions", nargs="+", choices=("fp32", "bf16"), default=["fp32", "bf16"])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--child", nargs=2, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(run_one(int(args.child[0]), args.size, args.child[1], args.threads)))
        return
    rows = {}
    for precision in args.precisions:
        for batch in args.batches:
            cmd = [sys.executable, __file__, "--size", str(args.size), "--child", str(batch), precision]
            if args.threads:
                cmd += ["--threads", str(args.threads)]
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode != 0:
                print(f"batch {batch} {precision}: failed\n{done.stderr[-2000:]}", file=sys.stderr)
                continue
            row = json.loads(done.stdout.strip().splitlines()[-1])
            rows[batch, precision] = row
            print(f"batch {batch} {precision}: working {(row['peak'] - row['before']) / GB:.2f} GB, "
                  f"peak RSS {row['peak'] / GB:.2f} GB (before the forward {row['before'] / GB:.2f} GB, "
                  f"weights {row['weights'] / GB:.2f} GB); the up-front check estimates {row['estimate'] / GB:.2f} GB",
                  flush=True)  # fmt: skip
    print(f"\ndual ViT-B/16 at {args.size}x{args.size}, GB (working memory of one forward / peak RSS of the process):")
    print("| batch | " + " | ".join(args.precisions) + " |")
    print("|---|" + "---|" * len(args.precisions))
    for batch in args.batches:
        cells = []
        for precision in args.precisions:
            row = rows.get((batch, precision))
            cells.append(f"{(row['peak'] - row['before']) / GB:.2f} / {row['peak'] / GB:.2f}" if row else "failed")
        print(f"| {batch} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
