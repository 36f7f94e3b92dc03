"""``dualdinov3 selfcheck | info | build-segmenter``: models and weight files."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from ..files import check_output_path
from ..version import __version__


def _count(model) -> str:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return f"{total / 1e6:.2f}M parameters ({trainable / 1e6:.2f}M trainable)"


def cmd_selfcheck(args: argparse.Namespace) -> int:
    import torch

    from ..models import build_segmenter, load_segmenter, save_segmenter

    torch.manual_seed(0)
    start = time.perf_counter()
    model = build_segmenter({"name": "selfcheck", "architecture": "dual_stream", "backbone": args.backbone}).eval()
    x = torch.randn(2, 2, args.size, args.size)
    with torch.no_grad():
        logits = model(x)
    expected = (2, model.config.num_classes, args.size, args.size)
    if tuple(logits.shape) != expected or not torch.isfinite(logits).all():
        print(f"self-check FAILED: logits {tuple(logits.shape)}, expected finite {expected}", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        path = save_segmenter(model, Path(tmp) / "selfcheck.safetensors")
        with torch.no_grad():
            again = load_segmenter(path)(x)
    if not torch.equal(again, logits):
        print("self-check FAILED: a saved and reloaded segmenter gives different outputs", file=sys.stderr)
        return 1
    print(f"dualdinov3 {__version__}, torch {torch.__version__}")
    print(f"dual-stream {args.backbone} segmenter: {_count(model)}")
    print(f"forward {tuple(x.shape)} -> {tuple(logits.shape)}, save/load identical")
    print(f"self-check passed in {time.perf_counter() - start:.1f} s")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from ..models import load_backbone, load_segmenter
    from ..models.backbone_formats import SEGMENTER_FORMAT
    from ..models.tensor_files import read_safetensors_metadata

    path = Path(args.path)
    meta = read_safetensors_metadata(path) if path.suffix == ".safetensors" else {}
    if meta.get("format") == SEGMENTER_FORMAT:
        model = load_segmenter(path)
        cfg = model.config
        print(f"{path}: DualDINOv3 segmenter {cfg.name!r} (format {meta['format_version']})")
        print(f"  architecture: {cfg.architecture}, taps {list(model.taps)}, {_count(model)}")
        for name, enc in model.encoders.items():
            c = enc.config
            print(f"  {name}: ViT D={c.embed_dim} depth={c.depth} heads={c.num_heads} patch={c.patch_size}")
        print(f"  labels: {list(cfg.labels)}")
        print(f"  preprocessing: {json.loads(meta['preprocessing'])}")
        return 0
    model = load_backbone(path)
    c = model.config
    print(f"{path}: DINOv3 backbone, ViT D={c.embed_dim} depth={c.depth} heads={c.num_heads} patch={c.patch_size}")
    print(f"  storage tokens {c.n_storage_tokens}, input channels {c.in_chans}, {_count(model)}")
    return 0


def cmd_build_segmenter(args: argparse.Namespace) -> int:
    from ..models import build_segmenter, load_config, save_segmenter

    config = load_config(args.config)
    checkpoints = tuple(spec.checkpoint for spec in config.encoder_specs.values())
    out = check_output_path(args.output, overwrite=args.overwrite, suffixes=(".safetensors",), inputs=checkpoints)
    model = build_segmenter(config)
    save_segmenter(model, out)
    print(f"wrote {out}: {model.config.architecture} segmenter {model.config.name!r}, {_count(model)}")
    return 0


def add_parsers(sub) -> None:
    p = sub.add_parser("selfcheck", help="build, run, save and reload a small dual-stream model")
    p.add_argument("--backbone", default="vit_nano16", help="ViT preset (default: vit_nano16)")
    p.add_argument("--size", type=int, default=64, help="input slice size in pixels (default: 64)")
    p.set_defaults(func=cmd_selfcheck)

    p = sub.add_parser("info", help="describe a segmenter or DINOv3 backbone weights file or folder")
    p.add_argument("path")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("build-segmenter", help="build a segmenter from a config and save it (untrained decoder)")
    p.add_argument("config", help="YAML or JSON segmenter config (see Training/configs)")
    p.add_argument("-o", "--output", required=True, help="output .safetensors file")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.set_defaults(func=cmd_build_segmenter)
