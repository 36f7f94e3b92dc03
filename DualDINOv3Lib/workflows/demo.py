"""``dualdinov3 demo``: make a synthetic PET/CT, segment it with the bundled model, write the results and
pictures, and print the Dice per class. Everything on CPU in well under two minutes."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from ..data.io import write_volume
from ..data.resample import resample_pet_to_ct
from ..evaluation.metrics import dice_coefficient
from ..files import check_output_folder, check_output_path
from ..inference.pca import pca_feature_maps
from ..inference.segment import segment_volume
from ..models.segmenter_checkpoint import load_segmenter
from ..phantoms.phantom import make_phantom
from ..progress import ProgressBar
from ..rendering import default_slices, display_slice, draw_contours, hot_colormap, save_slice_pngs, window, write_png

log = logging.getLogger(__name__)

DEMO_SEED = 20261123
"""A phantom seed outside the demo model's training and held-out sets."""
OUTPUTS = ("ct.nii.gz", "pet.nii.gz", "truth.nii.gz", "prediction.nii.gz", "overlay.png")
TRUTH_COLOURS = {1: (0, 255, 0), 2: (0, 255, 255)}  # GTVp green, GTVn cyan
PREDICTION_COLOURS = {1: (255, 0, 255), 2: (255, 160, 0)}  # GTVp magenta, GTVn orange


def overlay_picture(ct, pet_on_ct, truth, prediction, z: int) -> np.ndarray:
    """CT (soft-tissue window) and PET (hot, 0-10 SUV) side by side with truth and prediction contours."""
    ct_rgb = np.repeat(window(display_slice(ct, z), -160, 240)[..., None], 3, axis=-1)
    pet_rgb = hot_colormap(display_slice(pet_on_ct, z), 0.0, 10.0)
    t, p = display_slice(truth, z), display_slice(prediction, z)
    masks = [(t == c, colour) for c, colour in TRUTH_COLOURS.items()]
    masks += [(p == c, colour) for c, colour in PREDICTION_COLOURS.items()]
    gap = np.full((ct_rgb.shape[0], 4, 3), 255, np.uint8)
    picture = np.concatenate([draw_contours(ct_rgb, masks), gap, draw_contours(pet_rgb, masks)], axis=1)
    return picture.repeat(2, axis=0).repeat(2, axis=1)  # twice the size: contours one CT voxel wide stay visible


def run_demo(
    out: str | Path, *, seed: int = DEMO_SEED, model=None, device: str = "auto", overwrite: bool = False
) -> dict:
    """Runs the demo into folder ``out``; returns ``{"dice": {class: value}, "seconds": ..., "files": [...]}``."""
    start = time.perf_counter()
    out = check_output_folder(out)
    for name in OUTPUTS:
        check_output_path(out / name, overwrite=overwrite)
    for png in sorted(out.glob("*_pca_z*.png")):
        check_output_path(png, overwrite=overwrite)
    model = load_segmenter(model)
    phantom = make_phantom(seed, stratum="medium", n_nodes=2, case_id="DEMO")
    print(f"phantom {phantom.case_id}: GTVp {phantom.gtvp_cm3:.1f} cm3, GTVn {phantom.gtvn_cm3:.1f} cm3 "
          f"({phantom.n_nodes} nodes), CT {phantom.ct.shape[::-1]} voxels, PET {phantom.pet.shape[::-1]}")  # fmt: skip
    prediction = segment_volume(phantom.ct, phantom.pet, model, device=device, progress=ProgressBar("segment"))
    files = [
        write_volume(phantom.ct, out / "ct.nii.gz", overwrite=overwrite),
        write_volume(phantom.pet, out / "pet.nii.gz", overwrite=overwrite),
        write_volume(phantom.label, out / "truth.nii.gz", overwrite=overwrite),
        write_volume(prediction, out / "prediction.nii.gz", overwrite=overwrite),
    ]
    truth = np.asarray(phantom.label.array)
    z = int(np.argmax((truth == 1).sum(axis=(1, 2))))
    pet_on_ct = resample_pet_to_ct(phantom.pet, phantom.ct)
    picture = overlay_picture(phantom.ct, pet_on_ct, phantom.label, prediction, z)
    files.append(write_png(picture, out / "overlay.png", overwrite=overwrite))
    maps = pca_feature_maps(phantom.ct, phantom.pet, model, device=device, progress=ProgressBar("pca"))
    for name, volume in maps.items():
        files += save_slice_pngs(
            volume, out, sorted({z, *default_slices(truth > 0, 2)}), prefix=f"{name}_pca", overwrite=overwrite
        )
    pred = np.asarray(prediction.array)
    dice = {model.label_names[c]: dice_coefficient(truth == c, pred == c) for c in range(1, len(model.label_names))}
    return {"dice": dice, "seconds": time.perf_counter() - start, "files": files, "slice": z}
