"""Paper-size inference (issue 12), all in one run on one machine: the dual ViT-B/16 segmenter at 512x512.

Prints (1) the machine's matrix-product peak in float32 and in the reduced precision (a 4096^2 matmul), (2) the
segmenter's FLOPs per slice (``torch.utils.flop_counter``), (3) seconds per slice of one forward in float32, in
reduced precision and through the reference modules (the modules before issue 12: plain linear + GELU and DINOv3's
RoPE formula, the fusion's and decoder's ``reference_forward``), with effective GFLOP/s and their fraction of the
peak, and (4) the whole-volume time of a 150-slice head-and-neck-sized phantom (512x512 CT slices) through
``segment_volume`` with its defaults, with and without the feature maps (``segment_with_feature_maps``, i.e.
``dualdinov3 segment --pca-out``), and (5) the kernel floor: one profiled forward per path split into the
time in matrix kernels (matrix products, convolutions, fused attention) and the time in everything else, and the
best each path could do if everything else took no time at all (the fraction of the peak in reduced precision,
the speed-up over the reference modules in float32).

Run: ``make bench`` or ``python Testing/benchmarks/bench_paper.py [--slices N] [--quick] [--batch 2]
[--repeats 3] [--threads T] [--device auto] [--profile]``. ``--slices N`` runs only N slices of the 150-slice
phantom and extrapolates the whole-volume times to 150 slices (printed as such); ``--quick`` is
``--slices 8 --repeats 1 --batch 1`` with a 2048^2 matmul (a few minutes on 2 CPU cores). Random weights, the
paper's configuration 5 (``Training/configs/5_dual_ct_pet.yaml``): speed does not depend on the weights.
Forward timings are medians of alternating runs, so background load affects each variant alike.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import statistics
import time
from pathlib import Path

CONFIG = Path(__file__).resolve().parents[2] / "Training" / "configs" / "5_dual_ct_pet.yaml"
VOLUME_SLICES = 150
PHANTOM_SPACING = (0.5, 0.5, 2.0)  # mm (x, y, z): 512 x 512 pixels = 256 mm, 150 slices = 300 mm


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, device) -> float:
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start


def paper_model():
    """Configuration 5 with random encoders (not frozen: there is no checkpoint to freeze; same inference)."""
    import torch
    import yaml

    from DualDINOv3Lib import build_segmenter

    config = yaml.safe_load(CONFIG.read_text())
    config.pop("training", None)
    config["freeze_encoders"] = False
    torch.manual_seed(0)
    return build_segmenter(config).eval()


def matmul_peak(device, dtype, n: int, repeats: int = 3) -> float:
    """GFLOP/s of the best of ``repeats`` ``n x n`` matrix products in ``dtype`` (after one warm-up)."""
    import torch

    a, b = (torch.randn(n, n, device=device).to(dtype) for _ in range(2))
    torch.matmul(a, b)
    best = min(_timed(lambda: torch.matmul(a, b), device) for _ in range(repeats))
    return 2 * n**3 / best / 1e9


def _attention_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    from torch.utils.flop_counter import sdpa_flop_count

    return sdpa_flop_count(query_shape, key_shape, value_shape)


def flops_per_slice(model, size: int, device) -> tuple[float, float]:
    """FLOPs of one slice's forward: in all, and in attention."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from DualDINOv3Lib.models.fused_ops import plain_ops

    x = torch.randn(1, 2, size, size, device=device)
    # the plain ops: the counter does not know oneDNN's fused linear + GELU and would miss its products; nor
    # does it know the CPU's flash attention (torch 2.13), whose two products it would miss too
    cpu_flash = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _attention_flops}
    with torch.inference_mode(), plain_ops(), FlopCounterMode(display=False, custom_mapping=cpu_flash) as counter:
        model(x)
    ops = counter.get_flop_counts().get("Global", {})
    attention = sum(n for op, n in ops.items() if "scaled_dot_product" in str(op))
    return float(counter.get_total_flops()), float(attention)


def reference_forward(model, x):
    """The segmenter through the modules as they were before issue 12: the plain linear + GELU and DINOv3's RoPE
    formula in the encoders (``fused_ops.plain_ops``), channels-first contiguous encoder maps, the fusion's and
    the decoder's ``reference_forward``."""
    from DualDINOv3Lib.models.fused_ops import plain_ops

    with plain_ops():
        feats = model.features(model.pad_to_patches(x))
        pairs = zip(model.fusions, feats["ct_encoder"], feats["pet_encoder"], strict=True)
        fused = [fusion.reference_forward(c.contiguous(), p.contiguous()) for fusion, c, p in pairs]
        return model.decoder.reference_forward(fused)


def _forward_runs(args, model, device, reduced) -> tuple[dict, contextlib.ExitStack]:
    """``{name: forward of one batch}`` for the reference modules, the fp32 path and the reduced-precision path
    (as segment_volume runs it: matmul weights cast once, in a copy of the model the returned stack holds, under
    autocast); enter the stack around the calls."""
    import torch

    from DualDINOv3Lib.inference.segment import matmul_weights_in
    from DualDINOv3Lib.runtime import autocast

    x = torch.randn(args.batch, 2, args.size, args.size, device=device)
    runs = {
        "reference modules (fp32)": lambda: reference_forward(model, x),
        "fp32 path": lambda: model(x),
    }
    stack = contextlib.ExitStack()
    if reduced is not None:
        reduced_model = stack.enter_context(matmul_weights_in(copy.deepcopy(model), reduced))

        def reduced_run():
            with autocast(device, True):
                reduced_model(x)

        runs[f"{_name(reduced)} path"] = reduced_run
    return runs, stack


def forward_section(args, model, device, reduced, flops: float, peaks: dict) -> None:
    import torch

    runs, stack = _forward_runs(args, model, device, reduced)
    times = {name: [] for name in runs}
    with stack, torch.inference_mode():
        for fn in runs.values():  # warm-up (oneDNN kernels, allocator)
            fn()
        for _ in range(args.repeats):
            for name, fn in runs.items():
                times[name].append(_timed(fn, device))
    print(f"One forward, batch {args.batch} of {args.size}x{args.size} (median of {args.repeats}):")
    per_slice = {name: statistics.median(t) / args.batch for name, t in times.items()}
    for name, seconds in per_slice.items():
        rate = flops / seconds / 1e9
        peak = peaks[_name(reduced)] if name.startswith(_name(reduced)) else peaks["fp32"]
        print(f"  {name:26s} {seconds:7.3f} s/slice  {rate:7.1f} GFLOP/s  {rate / peak:5.2f} of the matmul peak")
    fp32, ref = per_slice["fp32 path"], per_slice["reference modules (fp32)"]
    print(f"  fp32 path vs reference modules: {ref / fp32:.2f}x faster")
    if reduced is not None:
        print(f"  {_name(reduced)} vs fp32: {fp32 / per_slice[f'{_name(reduced)} path']:.2f}x faster")


MATRIX_KERNELS = ("addmm", "mm", "bmm", "baddbmm", "_linear_pointwise", "convolution", "scaled_dot_product")
"""Profiler op names (substrings) that are matrix kernels; attention is the ``scaled_dot_product`` ones."""


def kernel_time(fn, batch: int) -> tuple[float, float, float]:
    """Seconds per slice of one profiled call of ``fn`` in matrix kernels (of which in attention) and in total
    (profiler self times, so nested calls are not counted twice)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as p:
        fn()
    matrix = attention = total = 0.0
    for event in p.key_averages():
        seconds = event.self_cpu_time_total / 1e6
        total += seconds
        if any(kernel in event.key for kernel in MATRIX_KERNELS):
            matrix += seconds
            attention += seconds if "scaled_dot_product" in event.key else 0.0
    return matrix / batch, attention / batch, total / batch


def floor_section(args, model, device, reduced, flops: float, attention_flops: float, peaks: dict) -> None:
    """How close each path is to its matrix kernels: the target ratios cannot be beaten by removing overhead
    if even the kernels alone fall short of them."""
    import torch

    if device.type != "cpu":
        print("Kernel floor: CPU only (the profiler's self times are host times elsewhere)")
        return
    runs, stack = _forward_runs(args, model, device, reduced)
    print(f"Kernel floor (one profiled forward, batch {args.batch}; seconds per slice):")
    results = {}
    with stack, torch.inference_mode():
        for name, fn in runs.items():
            fn()
            results[name] = kernel_time(fn, args.batch)
            matrix, attention, total = results[name]
            print(
                f"  {name:26s} total {total:6.3f}  matrix kernels {matrix:6.3f} (attention {attention:5.3f}, "
                f"{attention_flops / attention / 1e9 if attention else 0:5.0f} GFLOP/s)  other {total - matrix:6.3f}"
            )
    ref_total = results["reference modules (fp32)"][2]
    print(f"  fp32 path with zero overhead: at most {ref_total / results['fp32 path'][0]:.2f}x the reference modules")
    if reduced is not None:
        matrix = results[f"{_name(reduced)} path"][0]
        rate = flops / matrix / 1e9
        print(
            f"  {_name(reduced)} path with zero overhead: at most {rate:.0f} GFLOP/s = "
            f"{rate / peaks[_name(reduced)]:.2f} of the matmul peak"
        )


def _name(dtype) -> str:
    import torch

    return {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16", None: "fp32"}[dtype]


def phantom_slices(n: int):
    """CT (the middle ``n`` of 150 slices, 512x512) and the whole PET of a head-and-neck-sized phantom."""
    import dataclasses

    from DualDINOv3Lib.phantoms import make_phantom

    phantom = make_phantom(1000, shape=(VOLUME_SLICES, 512, 512), spacing=PHANTOM_SPACING)
    ct = phantom.ct
    first = (VOLUME_SLICES - n) // 2
    origin = (ct.origin[0], ct.origin[1], ct.origin[2] + first * ct.spacing[2])  # identity direction
    return dataclasses.replace(ct, array=ct.array[first : first + n], origin=origin), phantom.pet


def volume_section(args, model, device, default, flops: float, peaks: dict) -> None:
    import torch

    from DualDINOv3Lib import segment_volume
    from DualDINOv3Lib.inference import segment_with_feature_maps
    from DualDINOv3Lib.preprocessing import CasePreprocessor
    from DualDINOv3Lib.runtime import autocast

    start = time.perf_counter()
    ct, pet = phantom_slices(args.slices)
    made = time.perf_counter() - start
    body = int(CasePreprocessor(ct, pet, model.config.preprocessing).body_slices.sum())
    device_name = str(device)
    with torch.inference_mode(), autocast(device, None, inference=True):  # warm-up at the first batch's size
        model(torch.randn(min(4, max(body, 1)), 2, 512, 512, device=device))
    alone = _timed(lambda: segment_volume(ct, pet, model, device=device_name), device)
    joint = _timed(lambda: segment_with_feature_maps(ct, pet, model, device=device_name), device)
    print(
        f"Whole volume through segment_volume's defaults ({_name(default)}, batch 4), phantom "
        f"{VOLUME_SLICES}x512x512 at {PHANTOM_SPACING} mm (made in {made:.0f} s):"
    )
    print(f"  measured on {args.slices} slices ({body} with body):")
    print(f"    segment_volume              {alone:8.1f} s  ({alone / max(body, 1):.3f} s per body slice)")
    print(f"    segment_with_feature_maps   {joint:8.1f} s  ({joint / max(body, 1):.3f} s per body slice)")
    print(f"    with / without feature maps: {joint / alone:.2f}x")
    rate = flops * body / alone / 1e9
    print(f"    effective {rate:.1f} GFLOP/s = {rate / peaks[_name(default)]:.2f} of the {_name(default)} matmul peak")
    if args.slices < VOLUME_SLICES:
        scale = VOLUME_SLICES / args.slices
        print(
            f"  EXTRAPOLATED to {VOLUME_SLICES} slices (x{scale:.2f}, assuming the same fraction of body slices): "
            f"segment_volume {alone * scale:.0f} s, with feature maps {joint * scale:.0f} s"
        )


def profile_section(model, device, default, size: int) -> None:
    import torch
    from torch.profiler import ProfilerActivity, profile

    from DualDINOv3Lib.inference.segment import matmul_weights_in
    from DualDINOv3Lib.runtime import autocast

    x = torch.randn(1, 2, size, size, device=device)
    context = autocast(device, True) if default is not None else contextlib.nullcontext()
    with torch.inference_mode(), context, matmul_weights_in(model, default):
        model(x)
        with profile(
            activities=[ProfilerActivity.CPU, *([ProfilerActivity.CUDA] if device.type == "cuda" else [])]
        ) as p:
            model(x)
    print(f"Profile of one {_name(default)} forward (1 slice), by self time:")
    print(p.key_averages().table(sort_by="self_cpu_time_total", row_limit=15, max_name_column_width=50))


def main() -> None:
    import torch

    from DualDINOv3Lib.runtime import cpu_has_native_bf16, mixed_precision_dtype, resolve_device

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=None, help=f"phantom slices to run (of {VOLUME_SLICES})")
    parser.add_argument("--quick", action="store_true", help="--slices 8 --repeats 1 --batch 1, 2048^2 matmul")
    parser.add_argument("--batch", type=int, default=None, help="batch of the forward timings (default 2)")
    parser.add_argument("--repeats", type=int, default=None, help="forward timings per variant (default 3)")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--skip-volume", action="store_true", help="no whole-volume timings")
    parser.add_argument("--profile", action="store_true", help="also print a torch.profiler table of one forward")
    args = parser.parse_args()
    quick = {"slices": 8, "repeats": 1, "batch": 1} if args.quick else {}
    for name, full in (("slices", VOLUME_SLICES), ("repeats", 3), ("batch", 2)):
        if getattr(args, name) is None:
            setattr(args, name, quick.get(name, full))
    if not 1 <= args.slices <= VOLUME_SLICES:
        parser.error(f"--slices must be 1..{VOLUME_SLICES}")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    default = mixed_precision_dtype(device, inference=True)  # what segment_volume runs by default
    reduced = mixed_precision_dtype(device, True)
    print(
        f"torch {torch.__version__}, device {device}, {torch.get_num_threads()} threads, CPU native bf16: "
        f"{cpu_has_native_bf16()}, inference default precision: {_name(default)}"
    )
    n = 2048 if args.quick else 4096
    peaks = {"fp32": matmul_peak(device, torch.float32, n)}
    if reduced is not None:
        peaks[_name(reduced)] = matmul_peak(device, reduced, n)
    print(f"Matmul peak ({n}x{n}): " + ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in peaks.items()))
    model = paper_model().to(device)
    flops, attention_flops = flops_per_slice(model, args.size, device)
    print(
        f"Dual ViT-B/16 segmenter (paper configuration 5): {flops / 1e9:.0f} GFLOP per {args.size}^2 slice "
        f"({attention_flops / 1e9:.0f} in attention)"
    )
    forward_section(args, model, device, reduced, flops, peaks)
    floor_section(args, model, device, reduced, flops, attention_flops, peaks)
    if not args.skip_volume:
        volume_section(args, model, device, default, flops, peaks)
    if args.profile:
        profile_section(model, device, default, args.size)


if __name__ == "__main__":
    main()
