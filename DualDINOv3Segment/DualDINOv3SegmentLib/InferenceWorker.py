"""The inference process: ``python InferenceWorker.py job.json``, run by :mod:`.Jobs` outside Slicer's process.

``job.json``: ``{"task": "segment" | "featureMaps", "ct": path, "pet": path, "model": path or null,
"device", "batchSize", "threads", "outputDir", ...}`` (``"featureMaps": true`` with a segment task: the PCA
maps of every encoder from the same encoder pass, output ``"featureMaps": {encoder: path}``); the CT (HU) and
PET (SUV, already converted) are NRRD files the logic wrote. Outputs are ``.npy`` arrays on the CT grid in
``outputDir`` (the logic knows the geometry).
Standard output carries one JSON object per line: ``{"progress": f, "message": m}`` while running, then
``{"done": true, "outputs": {...}}`` or ``{"error": message, "kind": exception class name}``. Only the
library and numpy are imported: no slicer, no Qt. The same file runs headless for debugging.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
import traceback
from pathlib import Path

SLICER_RESERVED_CORES = 1
"""With ``threads`` 0 (automatic) the worker uses all physical cores but this many: Slicer and the user's
other work stay responsive while a volume is segmented."""


def emit(**message) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def run(job: dict) -> dict:
    import numpy as np

    from DualDINOv3Lib import pca_feature_maps, read_volume, segment_volume
    from DualDINOv3Lib.inference import segment_with_feature_maps

    ct = dataclasses.replace(read_volume(job["ct"]), units="HU", modality="CT")
    pet = dataclasses.replace(read_volume(job["pet"]), units="SUV", modality="PT")
    out = Path(job["outputDir"])
    from DualDINOv3Lib.machine import DEFAULT_BATCH_SIZE, default_threads

    common = {
        "device": job.get("device", "auto"),
        "batch_size": int(job.get("batchSize", DEFAULT_BATCH_SIZE)),
        "threads": int(job.get("threads") or 0) or default_threads(reserve=SLICER_RESERVED_CORES),
        "progress": lambda fraction, message: emit(progress=fraction, message=message),
    }
    if job["task"] == "segment":
        options = {
            "skip_empty_slices": bool(job.get("skipEmptySlices", True)),
            "min_component_mm3": float(job.get("minComponentMm3", 0.0)),
            "head_neck_only": bool(job.get("headNeckOnly", True)),
            **common,
        }
        if job.get("featureMaps"):  # labels and every encoder's maps from one encoder pass
            label, maps = segment_with_feature_maps(
                ct, pet, job.get("model"), layer=int(job.get("featureMapLayer", -1)), **options
            )
        else:
            label, maps = segment_volume(ct, pet, job.get("model"), **options), None
        np.save(out / "label.npy", label.array)
        outputs = {"label": str(out / "label.npy")}
        if maps is not None:
            outputs["featureMaps"] = save_maps(maps, out)
        return outputs
    if job["task"] == "featureMaps":
        return save_maps(pca_feature_maps(ct, pet, job.get("model"), encoders=job.get("encoders"), **common), out)
    raise ValueError(f"unknown task {job['task']!r}")


def save_maps(maps: dict, out: Path) -> dict[str, str]:
    """``{encoder: RGB Volume}`` -> ``pca_<encoder>.npy`` files in ``out``; ``{encoder: path}``."""
    import numpy as np

    outputs = {}
    for name, volume in maps.items():
        np.save(out / f"pca_{name}.npy", volume.array)
        outputs[name] = str(out / f"pca_{name}.npy")
    return outputs


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    try:
        job = json.loads(Path(argv[0]).read_text())
        outputs = run(job)
    except Exception as exc:  # reported to the parent, which raises it with the same wording
        from DualDINOv3Lib.errors import DualDINOv3Error

        if not isinstance(exc, DualDINOv3Error):
            traceback.print_exc()
        emit(error=str(exc), kind=type(exc).__name__)
        return 1
    emit(done=True, outputs=outputs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
