"""The ``dualdinov3`` command.

Sub-commands: ``selfcheck`` (build, save, reload and run a small dual-stream model), ``info`` (what a
weights file is), ``build-segmenter`` (a segmenter file from a config and its encoder checkpoints).
Bad input ends with one ``dualdinov3: error: ...`` line and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

from ..errors import DualDINOv3Error
from ..version import __version__
from .inference import add_inference_parsers
from .pretrain import add_parser as add_pretrain_parser

log = logging.getLogger("dualdinov3")


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
    from ..models import build_segmenter, save_segmenter

    out = Path(args.output)
    if out.exists() and not args.overwrite:
        raise DualDINOv3Error(f"{out} exists; choose another path or pass --overwrite")
    if out.suffix != ".safetensors":
        raise DualDINOv3Error(f"{out}: the output must end in .safetensors")
    model = build_segmenter(args.config)
    save_segmenter(model, out)
    print(f"wrote {out}: {model.config.architecture} segmenter {model.config.name!r}, {_count(model)}")
    return 0


def cmd_phantom(args: argparse.Namespace) -> int:
    from ..phantoms.cases import write_phantom_cases

    start = time.perf_counter()

    def report(phantom) -> None:
        print(
            f"{phantom.case_id}: GTVp {phantom.gtvp_cm3:6.2f} cm3 ({phantom.stratum}), "
            f"GTVn {phantom.gtvn_cm3:5.2f} cm3 ({phantom.n_nodes} node{'' if phantom.n_nodes == 1 else 's'})",
            flush=True,
        )

    # the output folder and every case's files are checked before the first case is made
    facts = write_phantom_cases(args.out, args.cases, seed=args.seed, overwrite=args.overwrite, on_case=report)
    print(
        f"wrote {len(facts)} case(s) to {args.out} in {time.perf_counter() - start:.1f} s "
        "(HECKTOR layout: CASE__CT.nii.gz, CASE__PT.nii.gz, label CASE.nii.gz; facts in cases.json and cases.csv)"
    )
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from ..workflows.demo import run_demo

    result = run_demo(args.out, seed=args.seed, model=args.model, device=args.device, overwrite=args.overwrite)
    for path in result["files"]:
        print(f"wrote {path}")
    scores = ", ".join(f"{name} {value:.3f}" for name, value in result["dice"].items())
    print(f"Dice against the phantom's truth: {scores}")
    print(f"demo finished in {result['seconds']:.1f} s (overlay: slice {result['slice']}, CT/PET with truth and "
          "prediction contours; *_pca_z*.png: what each encoder sees)")  # fmt: skip
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dualdinov3", description="Dual-DINOv3 PET/CT tumour segmentation")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("selfcheck", help="build, run, save and reload a small dual-stream model")
    p.add_argument("--backbone", default="vit_nano16", help="ViT preset (default: vit_nano16)")
    p.add_argument("--size", type=int, default=64, help="input slice size in pixels (default: 64)")
    p.set_defaults(func=cmd_selfcheck)

    p = sub.add_parser("info", help="describe a segmenter or DINOv3 backbone weights file or folder")
    p.add_argument("path")
    p.set_defaults(func=cmd_info)

    add_inference_parsers(sub)
    add_pretrain_parser(sub)

    p = sub.add_parser("demo", help="segment a synthetic PET/CT with the bundled model; write pictures, print Dice")
    p.add_argument("--out", default="dualdinov3-demo", help="output folder (default: ./dualdinov3-demo)")
    p.add_argument("--seed", type=int, default=20261123, help="phantom seed (default: the documented demo case)")
    p.add_argument("--model", default=None, help="segmenter file (default: the bundled demo model)")
    p.add_argument("--device", default="auto", help="auto, cuda, mps or cpu")
    p.add_argument("--overwrite", action="store_true", help="replace existing demo outputs")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("build-segmenter", help="build a segmenter from a config and save it (untrained decoder)")
    p.add_argument("config", help="YAML or JSON segmenter config (see Training/configs)")
    p.add_argument("-o", "--output", required=True, help="output .safetensors file")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.set_defaults(func=cmd_build_segmenter)

    p = sub.add_parser(
        "phantom",
        help="write synthetic head-and-neck PET/CT cases with GTVp/GTVn labels (HECKTOR layout)",
        description="Writes N synthetic PET/CT cases PHANTOM-001... (CT in HU, PET in SUV on its own grid, "
        "label 0/1/2 on the CT grid) whose primary tumours cycle through the small (< 5 cm3), medium and "
        "large (> 15 cm3) strata. The same seed gives the same cases.",
    )
    p.add_argument("--out", required=True, help="output folder (created if missing)")
    p.add_argument("--cases", type=int, required=True, help="number of cases to write (>= 1)")
    p.add_argument("--seed", type=int, default=0, help="seed of the whole set (default: 0)")
    p.add_argument("--overwrite", action="store_true", help="replace existing case files")
    p.set_defaults(func=cmd_phantom)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    try:
        return args.func(args)
    except (DualDINOv3Error, FileNotFoundError, PermissionError) as exc:
        print(f"dualdinov3: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
