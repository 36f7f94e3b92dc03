"""The demo segmenter shipped inside the package (trained on synthetic phantoms, not on patients)."""

from __future__ import annotations

from pathlib import Path

from ..errors import CheckpointError

BUNDLED_MODEL_NAME = "demo_dual_p8.safetensors"
BUNDLED_MODEL = Path(__file__).resolve().parent.parent / "resources" / BUNDLED_MODEL_NAME
"""A small dual-stream model (two 4-block, 96-dim ViTs with 8x8 patches) trained on synthetic head-and-neck
phantoms with ``Training/configs/demo_dual_p8.yaml``; README.md gives the commands that reproduce it."""


def bundled_model_path() -> Path:
    """The bundled demo model's file; a clear error if the installation lacks it."""
    if not BUNDLED_MODEL.is_file():
        raise CheckpointError(
            f"the bundled demo model {BUNDLED_MODEL} is missing from this installation; reinstall dualdinov3, "
            "or pass a segmenter file explicitly (--model / load_segmenter(path))"
        )
    return BUNDLED_MODEL
