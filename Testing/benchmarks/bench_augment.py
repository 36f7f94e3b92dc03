"""Augmentation speed: one (16, 2, 512, 512) PET/CT training batch through ``augment_batch``.

Run: ``python Testing/benchmarks/bench_augment.py [--batch 16] [--size 512] [--repeats 5] [--device cpu]``.
Prints the median wall time of a batch with nnU-Net's default probabilities, with every transform forced on,
and of each transform alone (forced on for every sample and channel).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time

import torch

from DualDINOv3Lib.finetune import AugmentationConfig, augment_batch

OFF = dict(
    p_rotation=0.0,
    p_scaling=0.0,
    p_noise=0.0,
    p_blur=0.0,
    p_brightness=0.0,
    p_contrast=0.0,
    p_low_resolution=0.0,
    p_gamma_inverted=0.0,
    p_gamma=0.0,
    p_mirror=0.0,
)
ALONE = {
    "rotation + scaling": dict(p_rotation=1.0, p_scaling=1.0),
    "Gaussian noise": dict(p_noise=1.0),
    "Gaussian blur": dict(p_blur=1.0, p_blur_per_channel=1.0),
    "brightness": dict(p_brightness=1.0),
    "contrast": dict(p_contrast=1.0),
    "low resolution": dict(p_low_resolution=1.0, p_low_resolution_per_channel=1.0),
    "gamma (inverted)": dict(p_gamma_inverted=1.0),
    "gamma": dict(p_gamma=1.0),
    "mirroring": dict(p_mirror=1.0),
}


def _median_seconds(fn, repeats: int, device: torch.device) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    setup = torch.Generator().manual_seed(0)
    shape = (args.batch, args.size, args.size)
    labels = torch.randint(0, 3, shape, generator=setup).to(device)
    images = torch.stack([torch.randn(shape, generator=setup), torch.rand(shape, generator=setup)], dim=1).to(device)
    generator = torch.Generator(device=device).manual_seed(0)

    def timed(config: AugmentationConfig) -> float:
        return _median_seconds(lambda: augment_batch(images, labels, generator, config), args.repeats, device)

    all_on = {k: 1.0 for k in OFF} | {"p_blur_per_channel": 1.0, "p_low_resolution_per_channel": 1.0}
    print(f"device: {device}, threads: {args.threads}, torch {torch.__version__}")
    print(f"augment_batch on ({args.batch}, 2, {args.size}, {args.size}) float32 + labels, median of {args.repeats}:")
    print(f"  nnU-Net default probabilities   {timed(AugmentationConfig()) * 1000:9.1f} ms")
    print(f"  every transform on every image  {timed(AugmentationConfig(**all_on)) * 1000:9.1f} ms")
    print(f"  none (copy only)                {timed(AugmentationConfig(**OFF)) * 1000:9.1f} ms")
    for name, settings in ALONE.items():
        config = dataclasses.replace(AugmentationConfig(**OFF), **settings)
        print(f"    {name:<28s}  {timed(config) * 1000:9.1f} ms")


if __name__ == "__main__":
    main()
