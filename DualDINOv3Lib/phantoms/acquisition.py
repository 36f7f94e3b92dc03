"""What varies between scanners, sites and scans, drawn per phantom (domain randomisation).

A model trained on phantoms meets real scans from many scanners; like SynthSeg (Billot et al., Medical Image
Analysis 2023) the phantoms draw everything that is not anatomy or disease from wide ranges, so the model
cannot rely on any one of them. The ranges and why:

====================================  ===============================  =========================================
what                                  range                            why
====================================  ===============================  =========================================
field of view along z                 HECKTOR 144 mm crop (30 %),      HECKTOR 2020 crops 144 mm around the
                                      full head and neck from the      oropharynx; clinical head-and-neck scans
                                      upper thorax to the skull or     run from the aortic arch to the skull
                                      vertex (35 %), scans that start  base or vertex; many start in the brain;
                                      in the brain (20 %), whole body  users also load whole-body PET/CT, whose
                                      from the thighs (15 %)           bladder, kidneys and bowel are hot
CT slice thickness                    1.5-5 mm                         clinical H&N protocols (1-5 mm)
CT in-plane voxel                     0.8-2.3 mm, FOV 144-600 mm       512^2 over 250-600 mm, or crops
PET voxel in-plane / along z          2.0-5.5 mm / 2.0-4.0 mm          128^2-400^2 matrices, 2-4 mm slices
PET resolution (PSF FWHM)             4-8 mm                           PSF/TOF scanners to older BGO systems
                                                                       and smoothing filters
PET noise (variance / SUV)            0.005-0.08, correlated over      dose, frame time and body size; the
                                      1-2 voxels                       reconstruction correlates the noise
SUV calibration                       x 0.85-1.15                      weight, dose and cross-calibration errors
physiological uptake                  x 0.7-1.35                       blood glucose, uptake time (45-90 min)
PET/CT misregistration                0-4 mm                           patient motion between CT and PET
CT noise                              6-35 HU                          low-dose attenuation CT to diagnostic CT
CT kernel                             smooth (blur 0.3-0.9 mm) or      soft-tissue and bone kernels
                                      sharp (edge gain 0.3-1.0)
HU calibration                        +- 8 HU                          scanner-to-scanner offsets
iodinated contrast                    35 % of scans                    diagnostic contrast-enhanced CT
scanner table                         75 % of scans, 5-35 mm gap       table and head rest vary
patient position                      in-plane shift +- 20 mm          positioning, off-centre reconstruction
in-plane crop around the lesions      15 % of scans, 15-60 mm margin   datasets that keep a box around the
                                      per side (``phantom.py``)        tumour cut the body at the image edge
====================================  ===============================  =========================================
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .anatomy import Anatomy

FOV_MODES = ("hecktor", "head_neck", "brain", "whole_body")
_FOV_P = (0.3, 0.35, 0.2, 0.15)
_THICKNESS_MM = (1.5, 2.0, 2.5, 3.0, 3.27, 4.0, 5.0)
MAX_SLICES = 160
MAX_SLICES_WHOLE_BODY = 240
MAX_IN_PLANE = 256
FIXED_SHAPE = (48, 168, 168)
"""CT grid (z, y, x) when only ``spacing`` is given: 48 slices of 168 x 168 pixels."""
FIXED_SPACING = (1.25, 1.25, 3.0)
"""CT voxel size (x, y, z) in mm when only ``shape`` is given (a 210 x 210 x 144 mm field of view)."""


@dataclass(frozen=True)
class Acquisition:
    """The scan: CT grid window (``w_start``, ``shape`` (z, y, x), ``spacing`` (x, y, z) mm), PET grid and
    physics, CT physics; every field drawn by :func:`draw_acquisition` unless given."""

    fov: str
    w_start: float
    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    pet_spacing: tuple[float, float, float]
    psf_fwhm_mm: float
    pet_noise: float  # variance per SUV
    noise_correlation: float  # voxels
    suv_calibration: float
    uptake_scale: float
    misregistration_mm: tuple[float, float, float]
    ct_noise_hu: float
    ct_blur_mm: float  # > 0: smooth kernel
    ct_sharpen: float  # > 0: sharp kernel (unsharp-mask gain)
    hu_offset: float
    contrast: bool
    couch_gap_mm: float | None
    shift_mm: tuple[float, float]


def draw_acquisition(
    rng: np.random.Generator,
    an: Anatomy,
    *,
    fov: str | None = None,
    shape: tuple[int, int, int] | None = None,
    spacing: tuple[float, float, float] | None = None,
    pet_spacing: tuple[float, float, float] | None = None,
) -> Acquisition:
    """A random scan of patient ``an``. A given ``shape``/``spacing`` fixes the CT grid (its window then
    centred on the oropharynx, like a HECKTOR crop); otherwise the field of view follows ``fov`` (drawn
    when None) and the voxel sizes are drawn."""
    fov = str(rng.choice(FOV_MODES, p=_FOV_P)) if fov is None else fov
    if shape is None and spacing is None:
        low, high = _z_range(rng, an, fov)
        thickness = float(rng.choice(_THICKNESS_MM))
        max_slices = MAX_SLICES_WHOLE_BODY if fov == "whole_body" else MAX_SLICES
        thickness = max(thickness, (high - low) / max_slices)
        nz = round((high - low) / thickness) + 1
        fov_xy = {"hecktor": (144, 220), "whole_body": (450, 600)}.get(fov, (240, 410))
        fov_xy = rng.uniform(*fov_xy)
        pixel = max(rng.uniform(0.8, 1.6), fov_xy / MAX_IN_PLANE)
        n = round(fov_xy / pixel)
        shape, spacing, w_start = (nz, n, n), (pixel, pixel, thickness), low
    else:
        shape = tuple(int(k) for k in (shape or FIXED_SHAPE))
        spacing = tuple(float(k) for k in (spacing or FIXED_SPACING))
        extent = (shape[0] - 1) * spacing[2]
        w_start = an.w_oropharynx - 0.55 * extent + rng.uniform(-0.05, 0.05) * extent
    if pet_spacing is None:
        xy = rng.uniform(2.0, 5.5)
        pet_spacing = (xy, xy, rng.uniform(2.0, 4.0))
    misregistration = rng.normal(0.0, 1.2, size=3) if rng.random() < 0.5 else np.zeros(3)
    sharp = rng.random() < 0.4
    return Acquisition(
        fov=fov,
        w_start=float(w_start),
        shape=tuple(int(k) for k in shape),
        spacing=tuple(float(k) for k in spacing),
        pet_spacing=tuple(float(k) for k in pet_spacing),
        psf_fwhm_mm=float(rng.uniform(4.0, 8.0)),
        pet_noise=float(np.exp(rng.uniform(np.log(0.005), np.log(0.08)))),
        noise_correlation=float(rng.uniform(1.0, 2.0)),
        suv_calibration=float(rng.uniform(0.85, 1.15)),
        uptake_scale=float(rng.uniform(0.7, 1.35)),
        misregistration_mm=tuple(float(np.clip(m, -4, 4)) for m in misregistration),
        ct_noise_hu=float(rng.uniform(6, 35)),
        ct_blur_mm=0.0 if sharp else float(rng.uniform(0.3, 0.9)),
        ct_sharpen=float(rng.uniform(0.3, 1.0)) if sharp else 0.0,
        hu_offset=float(rng.uniform(-8, 8)),
        contrast=bool(rng.random() < 0.35),
        couch_gap_mm=float(rng.uniform(5, 35)) if rng.random() < 0.75 else None,
        shift_mm=(float(rng.uniform(-20, 20)), float(rng.uniform(-20, 20))),
    )


def _z_range(rng: np.random.Generator, an: Anatomy, fov: str) -> tuple[float, float]:
    """Heights (w, mm) of the first and last CT slice for a field-of-view mode."""
    if fov == "hecktor":
        centre = an.w_oropharynx - rng.uniform(0, 25)
        return centre - 72.0, centre + 72.0
    if fov == "head_neck":
        low = rng.uniform(an.w_heart - 30.0, an.w_clavicle - 25.0)
        high = rng.uniform(an.w_skull + 10.0, an.vertex + 5.0)
        return low, high
    if fov == "brain":
        return rng.uniform(an.w_clavicle - 10.0, an.w_larynx), rng.uniform(an.vertex - 40.0, an.vertex + 5.0)
    if fov == "whole_body":  # from the thighs: a whole-body PET/CT that includes the head and neck
        low = an.w_heart - rng.uniform(600.0, 800.0)
        return low, rng.uniform(an.w_skull + 10.0, an.vertex + 5.0)
    raise ValueError(f"unknown field of view {fov!r}; expected one of {', '.join(FOV_MODES)}")
