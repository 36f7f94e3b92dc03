"""``dualdinov3 demo | phantom | prepare-pretraining``: data in, data out."""

from __future__ import annotations

import argparse
import sys
import time

from .arguments import add_threads_option, positive_int


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


def cmd_prepare_pretraining(args: argparse.Namespace) -> int:
    from ..pretraining.inputs import find_inputs, parse_slice_settings
    from ..pretraining.slices import build_pretraining_store

    params = parse_slice_settings(args.set, args.modality)
    inputs = find_inputs(args.inputs, args.modality)
    print(f"{len(inputs)} {args.modality} volume(s) -> {args.out}", flush=True)
    reports = build_pretraining_store(
        inputs, args.out, args.modality, params, shard_size=args.shard_size, dtype=args.dtype, on_volume=_volume_line
    )
    added = [r for r in reports if r.status == "added"]
    failed = [r for r in reports if r.status == "failed"]
    total = reports[-1].store_slices if reports else 0
    print(
        f"done: {len(added)} volume(s) added ({sum(r.kept for r in added)} slices), "
        f"{len(reports) - len(added) - len(failed)} already there, {len(failed)} failed; store holds {total} slices"
    )
    for report in failed:
        message = report.error if report.source in report.error else f"{report.source}: {report.error}"
        print(f"failed: {message}", file=sys.stderr)
    return 1 if failed else 0


def _volume_line(report) -> None:
    head = f"[{report.index}/{report.total}] {report.source}:"
    if report.status == "added":
        line = (
            f"{head} kept {report.kept} of {report.slices_in_volume} slices in {report.seconds:.1f} s "
            f"(store: {report.store_slices} slices)"
        )
    elif report.status == "skipped":
        line = f"{head} already in the store, skipped"
    elif report.source in (report.error or ""):  # the message names the file already
        line = f"[{report.index}/{report.total}] FAILED: {report.error}"
    else:
        line = f"{head} FAILED: {report.error}"
    print(line, flush=True)


def add_parsers(sub) -> None:
    p = sub.add_parser("demo", help="segment a synthetic PET/CT with the bundled model; write pictures, print Dice")
    p.add_argument("--out", default="dualdinov3-demo", help="output folder (default: ./dualdinov3-demo)")
    p.add_argument("--seed", type=int, default=20261123, help="phantom seed (default: the documented demo case)")
    p.add_argument("--model", default=None, help="segmenter file (default: the bundled demo model)")
    p.add_argument("--device", default="auto", help="auto, cuda, mps or cpu")
    p.add_argument("--overwrite", action="store_true", help="replace existing demo outputs")
    add_threads_option(p)
    p.set_defaults(func=cmd_demo)

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

    p = sub.add_parser(
        "prepare-pretraining",
        help="build the slice store that PET or CT pretraining streams from (paper sec. 2.1.1)",
        description="Each INPUT is an image file (.nii, .nii.gz, .nrrd, .nhdr, .mha, .mhd), a DICOM series "
        "folder, or a folder searched recursively: in a HECKTOR-layout tree (CASE__CT.nii.gz / CASE__PT.nii.gz) "
        "only the images of --modality are taken; otherwise every image file and every folder holding DICOM "
        "files. Interrupted runs resume: run the same command again and the volumes already in the store are "
        "skipped. Volumes that cannot be used are listed at the end (exit status 1).",
    )
    p.add_argument("--modality", required=True, choices=("PT", "CT"), help="PT (PET) or CT")
    p.add_argument("--out", required=True, help="the store folder (created, or resumed if it holds a store)")
    p.add_argument("inputs", nargs="+", help="image files, DICOM series folders or folders to search")
    p.add_argument("--shard-size", type=positive_int, default=1024, help="slices per shard file (default 1024)")
    p.add_argument("--dtype", choices=("float16", "float32"), default="float16", help="stored value type")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a preprocessing parameter (PT: background_percentile, reference_percentile, foreground_fraction, "
        "dilation_mm, min_coverage, size; CT: spacing_mm, hu_window, body_threshold_hu, min_body_area_mm2, "
        "pad_hu, size), e.g. --set dilation_mm=8 or --set hu_window=[-1000,2000]",
    )
    p.set_defaults(func=cmd_prepare_pretraining)
