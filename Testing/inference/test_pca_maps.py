"""``pca_feature_maps``: RGB volumes on the CT grid with one PCA per encoder for the whole volume."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from DualDINOv3Lib import pca_feature_maps
from DualDINOv3Lib.data import Volume
from DualDINOv3Lib.errors import DualDINOv3Error
from DualDINOv3Lib.models import build_segmenter


@pytest.fixture(scope="module")
def cases():
    rng = np.random.default_rng(2)
    yy, xx = np.mgrid[:64, :72]
    ct = np.full((7, 64, 72), -1000.0, np.float32)
    pet = np.zeros((7, 64, 72), np.float32)
    for z in range(1, 7):
        body = ((yy - 32 - z) / 22) ** 2 + ((xx - 36) / (20 + 2 * z)) ** 2 < 1
        ct[z, body] = rng.normal(40, 30, body.sum())
        pet[z, body] = rng.gamma(2.0, 0.5, body.sum())
    ct[5], pet[5] = ct[2], pet[2]  # identical content at two heights
    ct_volume = Volume(ct, (1.0, 1.0, 2.5), origin=(3.0, 4.0, 5.0), direction=(-1, 0, 0, 0, -1, 0, 0, 0, 1))
    return ct_volume, ct_volume.with_array(pet, modality="PT")


def _model(architecture):
    torch.manual_seed(0)
    return build_segmenter(
        {"architecture": architecture, "backbone": "vit_nano16", "preprocessing": {"crop_size": 64}}
    ).eval()


def test_rgb_volumes_on_the_ct_grid_with_colours_shared_across_slices(cases):
    ct, pet = cases
    maps = pca_feature_maps(ct, pet, _model("dual_stream"), mixed_precision=False)  # equal slices compared below
    assert sorted(maps) == ["ct", "pet"]
    for volume in maps.values():
        assert volume.array.shape == (*ct.shape, 3) and volume.array.dtype == np.uint8
        assert volume.same_grid(ct) and volume.direction == ct.direction
        assert not volume.array[0].any()  # no body -> black
        assert volume.array[1:].std() > 10  # the components spread over the colour range
        # one PCA for the whole volume: identical slices get identical colours
        np.testing.assert_array_equal(volume.array[2], volume.array[5])
    assert not np.array_equal(maps["ct"].array, maps["pet"].array)


def test_chosen_encoder_and_layer(cases):
    ct, pet = cases
    model = _model("dual_stream")
    last = pca_feature_maps(ct, pet, model, encoders="pet")
    first = pca_feature_maps(ct, pet, model, encoders=["pet"], layer=0)
    assert list(last) == ["pet"] and not np.array_equal(last["pet"].array, first["pet"].array)
    with pytest.raises(DualDINOv3Error, match="no encoder 'encoder'"):
        pca_feature_maps(ct, pet, model, encoders="encoder")
    single = pca_feature_maps(ct, pet, _model("single_stream"))
    assert list(single) == ["encoder"]


def test_a_layer_outside_the_encoder_is_refused_not_wrapped(cases):
    ct, pet = cases
    model = _model("dual_stream")  # vit_nano16: 4 blocks
    for layer in (4, 99, -5):
        with pytest.raises(DualDINOv3Error, match=rf"layer {layer} is outside the ct encoder's 4 blocks"):
            pca_feature_maps(ct, pet, model, layer=layer)
    np.testing.assert_array_equal(
        pca_feature_maps(ct, pet, model, encoders="ct", layer=-4)["ct"].array,
        pca_feature_maps(ct, pet, model, encoders="ct", layer=0)["ct"].array,
    )


def test_encoder_tokens_are_each_encoders_normed_block_output():
    model = _model("dual_stream")
    x = torch.randn(2, 2, 40, 36)  # not a multiple of the 16-pixel patches: padded like forward() pads
    with torch.no_grad():
        tokens = model.encoder_tokens(x, layer=1)
        padded = torch.nn.functional.pad(x, (0, 12, 0, 8))
        inputs = model.encoder_inputs(padded)
        (ct,) = model.ct_encoder.get_intermediate_layers(inputs["ct_encoder"], n=[1], norm=True)
    assert sorted(tokens) == ["ct", "pet"] and tokens["ct"].shape == (2, model.ct_encoder.embed_dim, 3, 3)
    torch.testing.assert_close(tokens["ct"], ct, rtol=0, atol=0)
    assert model.encoder_names == ("ct", "pet") and _model("single_stream").encoder_names == ("encoder",)
    with pytest.raises(DualDINOv3Error, match="no encoder 'mri'"):
        model.encoder_tokens(x, encoders=["ct", "mri"])


@pytest.mark.parametrize("budget", [0.0, 1024.0])
def test_one_encoder_pass_gives_the_labels_and_maps_of_two_separate_jobs(cases, budget):
    from DualDINOv3Lib import segment_volume
    from DualDINOv3Lib.inference import segment_with_feature_maps

    ct, pet = cases
    model = _model("dual_stream")
    calls = []
    for encoder in model.encoders.values():  # count the encoder passes
        encoder.patch_embed.register_forward_pre_hook(lambda *args: calls.append(1))
    fp32 = {"mixed_precision": False, "batch_size": 2}  # equal arithmetic, whatever this CPU's default precision
    label, maps = segment_with_feature_maps(ct, pet, model, layer=-2, token_budget_mb=budget, **fp32)
    joint_calls = len(calls)
    calls.clear()
    expected_label = segment_volume(ct, pet, model, **fp32)
    expected_maps = pca_feature_maps(ct, pet, model, layer=-2, **fp32)
    separate_calls = len(calls)
    np.testing.assert_array_equal(label.array, expected_label.array)
    assert label.same_grid(ct) and sorted(maps) == ["ct", "pet"]
    for name, volume in maps.items():
        difference = np.abs(volume.array.astype(int) - expected_maps[name].array.astype(int))
        assert difference.max() <= (0 if budget == 0 else 2), name  # kept tokens are float16
        assert volume.same_grid(ct)
    # kept tokens: the encoders run once per batch instead of three times (segment, PCA fit, PCA maps)
    assert separate_calls == 3 * joint_calls if budget else joint_calls > separate_calls / 3
