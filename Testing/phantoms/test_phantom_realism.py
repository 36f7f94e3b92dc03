"""What makes the phantoms look like real head-and-neck PET/CT: fields of view like real scans, hot
physiological structures that are not labelled as tumour, necrotic and cystic lesions, dental metal with its
streaks, and scanner parameters drawn from the documented ranges (DualDINOv3Lib.phantoms.acquisition)."""

from __future__ import annotations

import numpy as np
import pytest

from DualDINOv3Lib.data import resample_pet_to_ct
from DualDINOv3Lib.errors import ConfigError
from DualDINOv3Lib.phantoms import make_phantom
from DualDINOv3Lib.phantoms.canvas import Canvas, Grid, Tissue
from DualDINOv3Lib.phantoms.ct_image import _add_streaks


@pytest.fixture(scope="module")
def scans():
    """One phantom per field-of-view mode (same seed: same patient, three scans of it)."""
    return {fov: make_phantom(21, stratum="medium", n_nodes=1, fov=fov) for fov in ("hecktor", "head_neck", "brain")}


def _extent_z(phantom) -> float:
    return (phantom.ct.shape[0] - 1) * phantom.ct.spacing[2]


def test_fields_of_view_cover_what_real_scans_cover(scans):
    hecktor, head_neck, brain = scans["hecktor"], scans["head_neck"], scans["brain"]
    assert _extent_z(hecktor) == pytest.approx(144.0, abs=hecktor.ct.spacing[2])  # a HECKTOR 2020 crop
    assert _extent_z(head_neck) > 180.0 and _extent_z(brain) > 150.0
    # the full head-and-neck scan starts in the upper thorax: lungs (air at about -800 HU) in its first slice
    first = head_neck.ct.array[0]
    assert np.count_nonzero((first > -900) & (first < -700)) > 500
    # the scan that starts in the brain ends in it: the top slices are brain (soft tissue inside the skull)
    pet = resample_pet_to_ct(brain.pet, brain.ct).array
    top = brain.ct.array.shape[0] - 1 - int(12.0 / brain.ct.spacing[2])
    assert np.percentile(pet[top][brain.ct.array[top] > 0], 90) > 3.0  # cortex: very high FDG uptake
    for phantom in scans.values():
        assert phantom.fov in ("hecktor", "head_neck", "brain")
        assert 1 in np.unique(phantom.label.array)  # the tumour is always inside the field of view


def test_hot_physiology_is_not_tumour(scans):
    """Brain, cerebellum and the other hot physiological structures reach tumour-like SUVs, unlabelled."""
    for name in ("head_neck", "brain"):
        phantom = scans[name]
        pet = resample_pet_to_ct(phantom.pet, phantom.ct).array
        label = phantom.label.array
        tumour_max = pet[label == 1].max()
        outside = pet[(label == 0)]
        assert outside.max() > 0.5 * tumour_max, name
        assert np.count_nonzero(outside > 4.0) * np.prod(phantom.ct.spacing) / 1000 > 20.0, name  # > 20 cm3


@pytest.mark.slow
def test_domain_randomisation_spans_the_documented_ranges():
    facts = [make_phantom(seed, fov="hecktor").facts() for seed in range(40, 52)]
    psf = [f["psf_fwhm_mm"] for f in facts]
    thickness = [f["ct_spacing_mm"][2] for f in facts]
    pet_xy = [f["pet_spacing_mm"][0] for f in facts]
    assert 4.0 <= min(psf) and max(psf) <= 8.0 and max(psf) - min(psf) > 2.0
    assert 1.5 <= min(thickness) and max(thickness) <= 5.0 and len(set(thickness)) >= 3
    assert 2.0 <= min(pet_xy) and max(pet_xy) <= 5.5 and max(pet_xy) - min(pet_xy) > 1.5
    assert {True, False} <= {f["contrast"] for f in facts}
    assert any(f["dental_metal"] for f in facts) and not all(f["dental_metal"] for f in facts)
    assert any(np.linalg.norm(f["pet_ct_shift_mm"]) > 0 for f in facts)


def test_dental_metal_makes_streaks():
    """Streaks radiate from the metal: around it the HU vary with the angle, far away they fade."""
    grid = Grid((3, 201, 201), (1.0, 1.0, 2.0), (-100.0, -100.0, 0.0))
    canvas = Canvas(grid, 0.0, 0.0)
    canvas.tissue[...] = Tissue.SOFT
    hu = np.zeros(grid.shape, dtype=np.float32)
    _add_streaks(hu, canvas, [(0.0, 0.0, 2.0)], np.random.default_rng(0))
    angles = np.linspace(0, 2 * np.pi, 360, endpoint=False)

    def ring(r):
        return hu[1, np.round(100 + r * np.sin(angles)).astype(int), np.round(100 + r * np.cos(angles)).astype(int)]

    assert ring(15).std() > 100.0  # bright and dark streaks near the metal
    assert ring(95).std() < 0.3 * ring(15).std()  # fading with distance
    assert 0 < np.abs(hu[0]).max() < np.abs(hu[1]).max()  # weaker in the next slice, still there
    phantom = next(p for p in (make_phantom(s, fov="hecktor") for s in range(60, 70)) if p.facts()["dental_metal"])
    assert (phantom.ct.array >= 3071).any()  # the metal itself saturates the HU scale


@pytest.mark.slow
def test_necrotic_primary_is_labelled_as_tumour():
    for seed in range(100, 140):
        phantom = make_phantom(seed, stratum="large", n_nodes=0, fov="hecktor")
        pet = resample_pet_to_ct(phantom.pet, phantom.ct).array
        gtvp = phantom.label.array == 1
        if np.percentile(pet[gtvp], 5) < 0.25 * pet[gtvp].max():  # a cold core inside the label
            hu = phantom.ct.array
            assert np.median(hu[gtvp & (pet < 0.25 * pet[gtvp].max())]) < np.median(hu[gtvp])
            return
    pytest.fail("no necrotic primary among 40 large ones (expected about 40 %)")


def test_fov_with_a_fixed_grid_is_refused():
    with pytest.raises(ConfigError, match="fov"):
        make_phantom(0, fov="hecktor", shape=(48, 168, 168))
    with pytest.raises(ConfigError, match="fov"):
        make_phantom(0, fov="pelvis")


@pytest.mark.slow
def test_whole_body_scan_has_hot_excretion_and_no_tumour_below_the_neck():
    """A whole-body PET/CT: the bladder (excreted FDG, SUV 5-80) is the hottest structure of the pelvis and is not
    labelled; the tumours stay in the head and neck, in the upper part of the scan."""
    phantom = make_phantom(5, fov="whole_body")
    assert _extent_z(phantom) > 700.0
    pet = resample_pet_to_ct(phantom.pet, phantom.ct).array
    label = phantom.label.array
    pelvis = pet[: int(0.4 * pet.shape[0])]  # the bottom of the scan
    hottest = np.unravel_index(np.argmax(pelvis), pelvis.shape)
    assert label[hottest] == 0 and pelvis[hottest] > 4.0
    assert phantom.ct.array[hottest] < 30  # urine: water on CT
    tumour_slices = np.flatnonzero(label.any(axis=(1, 2)))
    assert tumour_slices.min() > 0.6 * pet.shape[0]


def test_some_scans_are_cropped_through_the_body_around_the_lesions():
    """Seed 25 draws the in-plane crop: the lesions stay whole, the body is cut at the image edge (tissue, not air,
    on the border), the PET still covers the CT and the facts record the margins."""
    phantom = make_phantom(25)
    margins = phantom.scan["crop_margins_mm"]
    assert margins is not None and all(15.0 <= m <= 60.0 for m in margins)
    label, ct = np.asarray(phantom.label.array), np.asarray(phantom.ct.array)
    voxel_cm3 = float(np.prod(phantom.ct.spacing)) / 1000.0
    assert np.count_nonzero(label == 1) * voxel_cm3 == pytest.approx(phantom.gtvp_cm3)
    assert np.count_nonzero(label == 2) * voxel_cm3 == pytest.approx(phantom.gtvn_cm3)
    border = np.concatenate([ct[:, 0, :], ct[:, -1, :], ct[:, :, 0], ct[:, :, -1]], axis=1)
    assert (border > -200).mean() > 0.2  # much of the image edge runs through the patient
    pet_box, ct_box = phantom.pet.physical_extent(), phantom.ct.physical_extent()
    assert (pet_box[:, 0] <= ct_box[:, 0]).all() and (pet_box[:, 1] >= ct_box[:, 1]).all()
    assert pet_box[0, 1] - pet_box[0, 0] < ct_box[0, 1] - ct_box[0, 0] + 4 * phantom.pet.spacing[0]  # cropped too
    assert make_phantom(21, fov="hecktor").scan["crop_margins_mm"] is None
