"""The bundled demo model and ``dualdinov3 demo``: the model segments held-out phantoms far better than
the same network untrained, it is the default wherever a model is optional, and the demo writes its files."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from DualDINOv3Lib import load_segmenter, segment_volume
from DualDINOv3Lib.cli import main
from DualDINOv3Lib.evaluation import dice_coefficient
from DualDINOv3Lib.models import build_segmenter
from DualDINOv3Lib.models.bundled import BUNDLED_MODEL
from DualDINOv3Lib.phantoms import make_phantom

HELD_OUT_SEEDS = (777001, 777002)  # not among the seeds the demo model was trained or validated on


@pytest.fixture(scope="module")
def bundled():
    return load_segmenter()


def test_bundled_model_is_small_and_the_default(bundled):
    assert BUNDLED_MODEL.stat().st_size < 15 * 2**20
    assert bundled.config.architecture == "dual_stream" and bundled.label_names == ("background", "GTVp", "GTVn")


@pytest.mark.slow
def test_trained_model_beats_its_untrained_self_on_held_out_phantoms(bundled):
    torch.manual_seed(0)
    untrained = build_segmenter(bundled.config).eval()
    trained_dice, untrained_dice = [], []
    for seed in HELD_OUT_SEEDS:
        phantom = make_phantom(seed, stratum="large", fov="hecktor")  # a HECKTOR crop around the oropharynx
        truth = np.asarray(phantom.label.array) == 1
        for model, scores in ((bundled, trained_dice), (untrained, untrained_dice)):
            pred = segment_volume(phantom.ct, phantom.pet, model, device="cpu")
            scores.append(dice_coefficient(truth, np.asarray(pred.array) == 1))
    assert min(trained_dice) > 0.6, trained_dice
    assert max(untrained_dice) < 0.2, untrained_dice


def test_demo_writes_volumes_and_pictures_and_refuses_to_overwrite(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "Dice against the phantom's truth: GTVp" in printed
    for name in ("ct.nii.gz", "pet.nii.gz", "truth.nii.gz", "prediction.nii.gz", "overlay.png"):
        assert (out / name).is_file(), name
    prediction = sitk.ReadImage(str(out / "prediction.nii.gz"))
    ct = sitk.ReadImage(str(out / "ct.nii.gz"))
    assert prediction.GetSize() == ct.GetSize() and prediction.GetOrigin() == ct.GetOrigin()
    assert sorted(out.glob("ct_pca_z*.png")) and sorted(out.glob("pet_pca_z*.png"))
    overlay = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "overlay.png")))
    assert overlay.shape[-1] == 3 and (overlay[..., 1] == 255).any()  # green truth contour drawn
    before = (out / "overlay.png").read_bytes()
    assert main(["demo", "--out", str(out), "--device", "cpu"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (out / "overlay.png").read_bytes() == before
