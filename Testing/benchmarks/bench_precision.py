"""Paper-size segmenter speed on this machine, as ratios measured in one run: the decoder's matrix-product
path against PyTorch's transposed convolutions, and bf16 autocast against float32; plus the label agreement of
bf16 with float32 (the bundled model on held-out phantoms, and a randomly initialised dual ViT-B/16).

Run: ``make bench`` or ``python Testing/benchmarks/bench_precision.py [--size 512] [--batch 2] [--repeats 3]
[--phantoms 2] [--threads N]``. Speeds are medians of alternating runs (background load affects both alike).
"""

from __future__ import annotations

import argparse
import statistics
import time


def _median_seconds(fns: dict, repeats: int) -> dict:
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def speed(args) -> None:
    import torch

    from DualDINOv3Lib import build_segmenter
    from DualDINOv3Lib.runtime import autocast, cpu_has_native_bf16

    torch.manual_seed(0)
    model = build_segmenter({"architecture": "dual_stream", "backbone": "vitb16"}).eval()
    x = torch.randn(args.batch, 2, args.size, args.size)
    cpu = torch.device("cpu")
    with torch.inference_mode():
        feats = model.features(x)
        fused = [f(c, p) for f, c, p in zip(model.fusions, feats["ct_encoder"], feats["pet_encoder"], strict=True)]

        def bf16(fn):
            def run():
                with autocast(cpu, True):
                    fn()

            return run

        runs = {
            "decoder, transposed convolutions (fp32)": lambda: model.decoder.reference_forward(fused),
            "decoder, matrix products (fp32)": lambda: model.decoder(fused),
            "decoder, matrix products (bf16)": bf16(lambda: model.decoder(fused)),
            "whole segmenter (fp32)": lambda: model(x),
            "whole segmenter (bf16)": bf16(lambda: model(x)),
        }
        seconds = _median_seconds(runs, args.repeats)
    print(f"dual ViT-B/16 segmenter, batch {args.batch} of {args.size}x{args.size}, {torch.get_num_threads()} threads, "
          f"CPU native bf16: {cpu_has_native_bf16()}")  # fmt: skip
    for name, s in seconds.items():
        print(f"  {name:42s} {s / args.batch:7.3f} s per slice")
    conv, gemm = seconds["decoder, transposed convolutions (fp32)"], seconds["decoder, matrix products (fp32)"]
    print(f"  decoder speed-up, matrix products / convolutions: {conv / gemm:.2f}x")
    fp32, bf16_s = seconds["whole segmenter (fp32)"], seconds["whole segmenter (bf16)"]
    print(f"  segmenter speed-up, bf16 / fp32: {fp32 / bf16_s:.2f}x")


def agreement(args) -> None:
    import numpy as np
    import torch

    from DualDINOv3Lib import build_segmenter, load_segmenter, segment_volume
    from DualDINOv3Lib.evaluation import dice_coefficient
    from DualDINOv3Lib.phantoms import make_phantom

    model = load_segmenter()
    rows = []
    for seed in range(1000, 1000 + args.phantoms):
        phantom = make_phantom(seed)
        labels = {
            p: np.asarray(segment_volume(phantom.ct, phantom.pet, model, device="cpu", mixed_precision=p).array)
            for p in (False, True)
        }
        truth = np.asarray(phantom.label.array)
        same = float((labels[False] == labels[True]).mean())
        dice = {p: [dice_coefficient(truth == c, labels[p] == c) for c in (1, 2)] for p in labels}
        change = max(abs(a - b) for a, b in zip(dice[True], dice[False], strict=True))
        rows.append((seed, same, change))
        print(f"  bundled model, phantom {seed}: voxels agreeing {100 * same:.3f}%, largest Dice change {change:.4f}")
    torch.manual_seed(0)
    vitb = build_segmenter({"architecture": "dual_stream", "backbone": "vitb16", "preprocessing": {"crop_size": 256}})
    phantom = make_phantom(1000)
    from DualDINOv3Lib.preprocessing import CasePreprocessor

    prep = CasePreprocessor(phantom.ct, phantom.pet, vitb.config.preprocessing)
    z = np.flatnonzero(np.asarray(phantom.label.array).any(axis=(1, 2)))[:2]
    with torch.inference_mode():
        x = prep.images(z)
        fp32 = vitb.eval()(x).argmax(1)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            bf16 = vitb(x).argmax(1)
    same = 100 * float((fp32 == bf16).float().mean())
    print(f"  random dual ViT-B/16 (2 slices, 256x256 model inputs): pixels agreeing {same:.3f}%")


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--phantoms", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--skip-speed", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if not args.skip_speed:
        speed(args)
    print("bf16 autocast against float32 (labels on the CT grid):")
    agreement(args)


if __name__ == "__main__":
    main()
