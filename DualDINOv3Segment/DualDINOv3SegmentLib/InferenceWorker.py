"""The inference process: ``python InferenceWorker.py job.json``, run by :mod:`.Jobs` outside Slicer's process.

``job.json``: ``{"task": "segment" | "featureMaps", "ct": path, "pet": path, "model": path or null,
"device", "batchSize", "threads", "outputDir", ...}``; the CT (HU) and PET (SUV, already converted) are NRRD files the
logic wrote. Outputs are ``.npy`` arrays on the CT grid in ``outputDir`` (the logic knows the geometry).
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
        label = segment_volume(
            ct,
            pet,
            job.get("model"),
            skip_empty_slices=bool(job.get("skipEmptySlices", True)),
            min_component_mm3=float(job.get("minComponentMm3", 0.0)),
            **common,
        )
        np.save(out / "label.npy", label.array)
        return {"label": str(out / "label.npy")}
    if job["task"] == "featureMaps":
        maps = pca_feature_maps(ct, pet, job.get("model"), encoders=job.get("encoders"), **common)
        outputs = {}
        for name, volume in maps.items():
            np.save(out / f"pca_{name}.npy", volume.array)
            outputs[name] = str(out / f"pca_{name}.npy")
        return outputs
    raise ValueError(f"unknown task {job['task']!r}")


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
