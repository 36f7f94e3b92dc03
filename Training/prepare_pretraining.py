"""Builds the slice store that PET or CT pretraining streams from (paper sec. 2.1.1).

    python Training/prepare_pretraining.py --modality PT --out stores/pet INPUT [INPUT ...]

Each INPUT is an image file (.nii, .nii.gz, .nrrd, .nhdr, .mha, .mhd), a DICOM series folder, or a folder
searched recursively: in a HECKTOR-layout tree (files named ``CASE__CT.nii.gz`` / ``CASE__PT.nii.gz``) only
the ``__PT`` (or ``__CT``) images are taken; otherwise every image file and every folder holding DICOM
files. One progress line is printed per volume. Interrupted runs resume: run the same command again and the
volumes already in the store are skipped. Volumes that cannot be used are listed at the end (exit status 1);
bad arguments end with one ``prepare_pretraining: error: ...`` line (exit status 2).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import SimpleITK as sitk

try:
    from DualDINOv3Lib.data.io import NON_IMAGE_MODALITIES, READ_SUFFIXES, is_dicom_file
except ImportError:  # run from a checkout without installing the package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from DualDINOv3Lib.data.io import NON_IMAGE_MODALITIES, READ_SUFFIXES, is_dicom_file
from DualDINOv3Lib.errors import DualDINOv3Error
from DualDINOv3Lib.pretraining.slices import VolumeReport, build_pretraining_store, slice_params

PROG = "prepare_pretraining"
HECKTOR_SUFFIXES = {"PT": "__PT.nii.gz", "CT": "__CT.nii.gz"}


def _is_image_file(path: Path) -> bool:
    name = path.name.lower()
    return path.is_file() and any(name.endswith(suffix) for suffix in READ_SUFFIXES)


def _holds_dicom(folder: Path) -> bool:
    return any(p.is_file() and (p.suffix.lower() == ".dcm" or is_dicom_file(p)) for p in folder.iterdir())


def find_inputs(paths: list[str], modality: str) -> list[Path]:
    """The volumes (image files, DICOM series folders) named by ``paths``, in a stable order, each once."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if _is_image_file(path):
            found.append(path)
        elif path.is_file():
            raise DualDINOv3Error(f"{path}: not an image file; pass {', '.join(READ_SUFFIXES)} files or folders")
        elif path.is_dir():
            found.extend(_search_folder(path, modality))
        else:
            raise DualDINOv3Error(f"{path}: no such file or folder; check the path")
    unique = list(dict.fromkeys(p.resolve() for p in found))
    if not unique:
        raise DualDINOv3Error(f"no {modality} images found in {paths}; pass image files or folders holding them")
    return unique


def _search_folder(folder: Path, modality: str) -> list[Path]:
    if _holds_dicom(folder):
        return [folder]
    names = HECKTOR_SUFFIXES.values()
    if any(p.name.endswith(tuple(names)) for p in folder.rglob("*__*.nii.gz")):
        picked = sorted(p for p in folder.rglob(f"*{HECKTOR_SUFFIXES[modality]}") if p.is_file())
        if not picked:
            raise DualDINOv3Error(
                f"{folder}: a HECKTOR-layout folder (CASE__CT/__PT.nii.gz) without any *{HECKTOR_SUFFIXES[modality]}"
                f" file; pass the folder holding the {modality} images"
            )
        return picked
    files = sorted(p for p in folder.rglob("*") if _is_image_file(p))
    series = []
    for sub in sorted(d for d in folder.rglob("*") if d.is_dir() and _holds_dicom(d)):
        found = _dicom_modality(sub)
        if found in (modality, None):
            series.append(sub)
        else:
            logging.getLogger(PROG).info("%s: a DICOM %s folder, not %s; not used", sub, found or "non-image", modality)
    return files + series


def _dicom_modality(folder: Path) -> str | None:
    """The Modality (0008,0060) of the first DICOM file in ``folder``; "" if it is not an image."""
    first = next(
        p for p in sorted(folder.iterdir()) if p.is_file() and (p.suffix.lower() == ".dcm" or is_dicom_file(p))
    )
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(first))
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        return ""
    value = reader.GetMetaData("0008|0060").strip().upper() if reader.HasMetaDataKey("0008|0060") else None
    return "" if value in NON_IMAGE_MODALITIES else value


def _parse_settings(items: list[str], modality: str):
    overrides = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep:
            raise DualDINOv3Error(f"--set {item!r}: use NAME=VALUE, e.g. --set dilation_mm=8")
        try:
            overrides[name.strip()] = json.loads(text)
        except json.JSONDecodeError:
            overrides[name.strip()] = text
    return slice_params(modality, overrides)


def _progress(report: VolumeReport) -> None:
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    parser.add_argument("--modality", required=True, choices=("PT", "CT"), help="PT (PET) or CT")
    parser.add_argument("--out", required=True, help="the store folder (created, or resumed if it holds a store)")
    parser.add_argument("inputs", nargs="+", help="image files, DICOM series folders or folders to search")
    parser.add_argument("--shard-size", type=int, default=1024, help="slices per shard file (default 1024)")
    parser.add_argument("--dtype", choices=("float16", "float32"), default="float16", help="stored value type")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a preprocessing parameter (PT: background_percentile, reference_percentile, foreground_fraction, "
        "dilation_mm, min_coverage, size; CT: spacing_mm, hu_window, body_threshold_hu, min_body_area_mm2, "
        "pad_hu, size), e.g. --set dilation_mm=8 or --set hu_window=[-1000,2000]",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log details")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    try:
        params = _parse_settings(args.set, args.modality)
        inputs = find_inputs(args.inputs, args.modality)
        print(f"{len(inputs)} {args.modality} volume(s) -> {args.out}", flush=True)
        reports = build_pretraining_store(
            inputs,
            args.out,
            args.modality,
            params,
            shard_size=args.shard_size,
            dtype=args.dtype,
            on_volume=_progress,
        )
    except DualDINOv3Error as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
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


if __name__ == "__main__":
    sys.exit(main())
