"""The ``dualdinov3 segment`` and ``dualdinov3 pca`` commands: files in, label volume / PCA maps out."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np

from ..files import check_output_folder, check_output_path
from ..machine import DEFAULT_BATCH_SIZE
from ..progress import ProgressBar
from .arguments import add_head_neck_option, add_threads_option, non_negative_float, positive_int

log = logging.getLogger("dualdinov3")

PCA_VOLUME = "{name}_pca.nii.gz"
PCA_PNG_PREFIX = "{name}_pca"


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ct", required=True, help="CT: NIfTI/NRRD/MHA file or DICOM series folder (HU)")
    p.add_argument("--pet", required=True, help="PET: file or DICOM series folder (SUV, or Bq/ml DICOM converted)")
    p.add_argument("--model", default=None, help="segmenter .safetensors file (default: the bundled demo model)")
    p.add_argument(
        "--precision",
        choices=("auto", "fp32", "mixed"),
        default="auto",
        help="auto (default): bf16 (fp16 without bf16) on CUDA and on CPUs with native bf16 (AVX-512-BF16 or "
        "AMX), float32 elsewhere; mixed: bf16 on any CPU too (slow where emulated); fp32: float32 everywhere",
    )
    p.add_argument(
        "--no-input-checks",
        dest="check_inputs",
        action="store_false",
        help="skip the plausibility checks (CT in HU, PET in SUV, not the same image, not swapped)",
    )
    p.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cuda, cuda:N, mps or cpu")
    p.add_argument("--batch-size", type=positive_int, default=DEFAULT_BATCH_SIZE,
                   help=f"slices per forward pass (default: {DEFAULT_BATCH_SIZE}; about 0.3 GB each for a dual "
                        "ViT-B at 512x512 in float32, see the README's memory table)")  # fmt: skip
    add_threads_option(p)
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")


def add_parsers(sub) -> None:
    p = sub.add_parser("segment", help="segment GTVp/GTVn on a PET/CT; writes a label volume on the CT grid")
    _add_common(p)
    p.add_argument("-o", "--output", required=True, help="output label file (.nii.gz, .nii, .nrrd or .mha)")
    p.add_argument("--pca-out", default=None, help="also write CT/PET encoder PCA maps (volumes and PNGs) here")
    p.add_argument(
        "--min-component-mm3", type=non_negative_float, default=0.0, help="drop predicted regions smaller than this"
    )
    add_head_neck_option(p)
    p.add_argument("--all-slices", action="store_true", help="also run slices without body (default: skip them)")
    p.set_defaults(func=cmd_segment)

    p = sub.add_parser("pca", help="RGB PCA maps of what each encoder sees (volumes on the CT grid and PNGs)")
    _add_common(p)
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--encoders", nargs="+", default=None, help="ct, pet (dual-stream) or encoder (default: all)")
    p.add_argument("--layer", type=int, default=-1, help="encoder block whose tokens are used (default: -1, last)")
    p.add_argument("--slices", type=int, nargs="+", default=None, help="slice indices for PNGs (default: 3 in body)")
    p.set_defaults(func=cmd_pca)


def _inputs(args) -> tuple:
    return (args.ct, args.pet, args.model)


def _pca_outputs(folder: Path, names, args) -> None:
    """Refuses to run if PCA outputs of ours already lie in ``folder`` (unless ``overwrite``) or would
    replace an input."""
    overwrite = args.overwrite
    check_output_folder(folder)
    for name in names:
        check_output_path(folder / PCA_VOLUME.format(name=name), overwrite=overwrite, inputs=_inputs(args))
        pngs = sorted(folder.glob(PCA_PNG_PREFIX.format(name=name) + "_z*.png"))
        if pngs and not overwrite:
            check_output_path(pngs[0], overwrite=False)


def _load_inputs(args, model=None):
    from ..data.io import read_volume
    from ..inference.segment import resolve_segmenter

    model = model if model is not None else resolve_segmenter(args.model)
    ct = read_volume(args.ct, modality="CT")
    pet = read_volume(args.pet, modality="PT")
    for note in (*getattr(ct, "notes", ()), *getattr(pet, "notes", ())):
        print(f"note: {note}")
    return model, ct, pet


def _run_options(args) -> dict:
    """The options every inference job takes, from the command line."""
    return {
        "device": args.device,
        "batch_size": args.batch_size,
        "check_inputs": args.check_inputs,
        "mixed_precision": {"auto": None, "fp32": False, "mixed": True}[args.precision],
    }


def _write_pca(model, ct, pet, args, folder: Path, encoders, layer: int, slices, focus) -> None:
    from ..inference import pca_feature_maps

    maps = pca_feature_maps(
        ct, pet, model, encoders=encoders, layer=layer, progress=ProgressBar("pca"), **_run_options(args)
    )
    _save_maps(maps, args, folder, slices, focus)


def _save_maps(maps: dict, args, folder: Path, slices, focus) -> None:
    from ..data.io import write_volume
    from ..rendering import default_slices, save_slice_pngs

    slices = slices if slices is not None else default_slices(focus)
    for name, volume in maps.items():
        path = write_volume(volume, folder / PCA_VOLUME.format(name=name), overwrite=args.overwrite)
        pngs = save_slice_pngs(
            volume, folder, slices, prefix=PCA_PNG_PREFIX.format(name=name), overwrite=args.overwrite
        )
        print(f"wrote {path} and {len(pngs)} PNGs (slices {', '.join(map(str, slices))})")


def _pca_names(model, encoders, layer: int = -1) -> list[str]:
    return list(model.check_layer(layer, encoders))


def cmd_segment(args: argparse.Namespace) -> int:
    from ..data.io import WRITE_SUFFIXES, write_volume
    from ..inference import segment_volume, segment_with_feature_maps

    output = check_output_path(args.output, overwrite=args.overwrite, suffixes=WRITE_SUFFIXES, inputs=_inputs(args))
    from ..runtime import resolve_device

    args.device = resolve_device(args.device)
    model = None
    if args.pca_out is not None:
        from ..inference.segment import resolve_segmenter

        model = resolve_segmenter(args.model)
        _pca_outputs(Path(args.pca_out), _pca_names(model, None), args)
    model, ct, pet = _load_inputs(args, model)
    options = {
        "skip_empty_slices": not args.all_slices,
        "min_component_mm3": args.min_component_mm3,
        "head_neck_only": not args.keep_outside_head_neck,
    }
    if args.pca_out is None:
        label, maps = (
            segment_volume(ct, pet, model, progress=ProgressBar("segment"), **options, **_run_options(args)),
            {},
        )
    else:  # one encoder pass for the labels and the feature maps
        label, maps = segment_with_feature_maps(
            ct, pet, model, progress=ProgressBar("segment"), **options, **_run_options(args)
        )
    write_volume(label, output, overwrite=args.overwrite)
    voxel_cm3 = float(np.prod(label.spacing)) / 1000.0
    counts = np.bincount(np.asarray(label.array).ravel(), minlength=len(model.label_names))
    found = ", ".join(f"{name} {counts[i] * voxel_cm3:.2f} cm3" for i, name in enumerate(model.label_names) if i > 0)
    print(f"wrote {output}: {found}")
    if maps:
        _save_maps(maps, args, Path(args.pca_out), None, np.asarray(label.array) > 0)
    return 0


def cmd_pca(args: argparse.Namespace) -> int:
    from ..inference.segment import resolve_segmenter
    from ..preprocessing.body import BODY_THRESHOLD_HU

    folder = Path(args.out)
    from ..runtime import resolve_device

    args.device = resolve_device(args.device)
    model = resolve_segmenter(args.model)
    _pca_outputs(folder, _pca_names(model, args.encoders, args.layer), args)
    model, ct, pet = _load_inputs(args, model)
    if args.slices is not None:
        bad = [z for z in args.slices if not 0 <= z < ct.shape[0]]
        if bad:
            from ..errors import DataError

            raise DataError(f"slice {bad[0]} is outside the CT's {ct.shape[0]} slices (0..{ct.shape[0] - 1})")
    body = np.asarray(ct.array) > BODY_THRESHOLD_HU
    _write_pca(model, ct, pet, args, folder, args.encoders, args.layer, args.slices, body)
    return 0
