"""The ``dualdinov3 pretrain`` command: self-supervised DINOv3 pretraining of a CT or PET encoder (one stage).

    dualdinov3 pretrain --config Training/configs/pretrain/pet_stage1.yaml --data STORE [STORE ...] --out RUN
        [--init CHECKPOINT] [--max-steps N] [--device auto|cpu|cuda] [--resume] [--set section.key=value ...]
    torchrun --nproc_per_node 2 Training/pretrain.py ...     (several GPUs, or CPU processes)

``Training/pretrain.py`` runs this command.
"""

from __future__ import annotations

import argparse
import os
import time

from .arguments import add_threads_option, positive_int


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="pretraining YAML/JSON (Training/configs/pretrain/*.yaml)")
    p.add_argument("--data", required=True, nargs="+", metavar="STORE",
                   help="slice store folder(s) made by Training/prepare_pretraining.py (one modality)")  # fmt: skip
    p.add_argument("--out", required=True, help="run folder: checkpoint.pt, metrics, loss curve, exported teacher")
    p.add_argument("--init", default=None,
                   help="start from this checkpoint: any DINOv3 backbone load_backbone reads (new heads), or a "
                        "previous stage's checkpoint.pt (overrides model.init)")  # fmt: skip
    p.add_argument("--max-steps", type=positive_int, default=None,
                   help="stop after N steps (the schedules still span optim.steps; --resume continues)")  # fmt: skip
    p.add_argument("--device", default="auto", help="auto, cuda, cuda:N, mps or cpu (default: auto)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out exactly where it stopped")
    add_threads_option(p)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a config value, e.g. --set optim.batch_size=256 (repeatable)")  # fmt: skip


def add_parsers(subparsers) -> argparse.ArgumentParser:
    """Registers ``pretrain`` on the ``dualdinov3`` sub-command parsers."""
    p = subparsers.add_parser(
        "pretrain",
        help="self-supervised DINOv3 pretraining of a PET or CT encoder on slice stores (one stage)",
        description=__doc__.split("\n\n")[0],
    )
    add_arguments(p)
    p.set_defaults(func=cmd_pretrain)
    return p


def cmd_pretrain(args: argparse.Namespace) -> int:
    from ..pretraining.config import load_pretrain_config, parse_overrides
    from ..pretraining.trainer import pretrain
    from ..progress import ProgressBar

    overrides = parse_overrides(args.overrides)
    if args.init is not None:
        overrides["model.init"] = args.init
    config = load_pretrain_config(args.config, overrides)
    started = time.perf_counter()
    main_process = int(os.environ.get("RANK", "0")) == 0
    bar = ProgressBar("pretrain") if main_process else None
    result = pretrain(config, args.data, args.out, device=args.device, resume=args.resume, max_steps=args.max_steps,
                      progress=bar)  # fmt: skip
    if main_process:
        last = result.history[-1] if result.history else {}
        terms = ", ".join(f"{k} {last[k]:.4f}" for k in ("total", "dino", "ibot", "koleo", "gram") if k in last)
        print(f"pretrained {result.steps} of {config.optim.steps} steps in {time.perf_counter() - started:.1f} s"
              + (f": {terms}" if terms else ""))  # fmt: skip
        for path in (result.checkpoint, *result.exports):
            print(f"wrote {path}")
    return 0
