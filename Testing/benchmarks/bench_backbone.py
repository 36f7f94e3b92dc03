"""Backbone forward speed: our DINOv3ViT vs transformers' DINOv3ViTModel with the same weights.

Run: ``make bench`` or ``python Testing/benchmarks/bench_backbone.py [--size 512] [--batch 4] [--repeats 3]``.
Runs the two alternately and prints the median wall time of each and the ratio ours / transformers (target: <= 1.0).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def _interleaved_medians(fns, repeats: int) -> list[float]:
    """Median wall time of each function, run alternately so background load affects all alike."""
    for fn in fns:
        fn()  # warm-up
    times = [[] for _ in fns]
    for _ in range(repeats):
        for fn, record in zip(fns, times, strict=True):
            start = time.perf_counter()
            fn()
            record.append(time.perf_counter() - start)
    return [statistics.median(t) for t in times]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="vitb16", choices=["vits16", "vitb16", "vitl16"])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()

    from transformers import DINOv3ViTConfig, DINOv3ViTModel

    from DualDINOv3Lib.models import VIT_PRESETS, load_backbone

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    v = VIT_PRESETS[args.arch]
    hf_cfg = DINOv3ViTConfig(
        hidden_size=v.embed_dim,
        intermediate_size=int(v.embed_dim * v.ffn_ratio),
        num_hidden_layers=v.depth,
        num_attention_heads=v.num_heads,
        num_register_tokens=v.n_storage_tokens,
        layerscale_value=1e-5,
        attn_implementation="sdpa",
    )
    hf = DINOv3ViTModel(hf_cfg).eval()
    ours = load_backbone(hf.state_dict())
    x = torch.randn(args.batch, 3, args.size, args.size)

    with torch.inference_mode():
        t_ours, t_hf = _interleaved_medians(
            [lambda: ours.forward_features(x), lambda: hf(pixel_values=x)], args.repeats
        )
    print(f"device: cpu, threads: {args.threads}, torch {torch.__version__}")
    print(f"{args.arch} forward, batch {args.batch}, {args.size}x{args.size}, median of {args.repeats}:")
    print(f"  DualDINOv3Lib DINOv3ViT        {t_ours:8.3f} s")
    print(f"  transformers DINOv3ViTModel    {t_hf:8.3f} s")
    print(f"  ratio ours / transformers      {t_ours / t_hf:8.3f}  (target <= 1.0)")


if __name__ == "__main__":
    main()
