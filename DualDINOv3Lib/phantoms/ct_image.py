"""The CT of a phantom: HU per tissue (per-patient values, iodinated contrast in some scans), the scanner
table, streak artefacts from dental metal, the reconstruction kernel (smooth or sharp) and noise."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from .acquisition import Acquisition
from .canvas import Canvas, Tissue

_HU = {  # tissue: (low, high) of the per-patient HU without contrast
    Tissue.AIR: (-1005, -995),
    Tissue.FAT: (-115, -80),
    Tissue.SOFT: (30, 55),
    Tissue.CORTICAL: (700, 1400),
    Tissue.CANCELLOUS: (150, 350),
    Tissue.AIRWAY: (-1000, -950),
    Tissue.GREY_MATTER: (35, 45),
    Tissue.WHITE_MATTER: (24, 32),
    Tissue.CORD: (5, 25),
    Tissue.DISC: (70, 100),
    Tissue.TONSIL: (40, 60),
    Tissue.PAROTID: (-35, 15),
    Tissue.SUBMANDIBULAR: (30, 50),
    Tissue.MUSCLE: (40, 60),
    Tissue.TONGUE: (45, 65),
    Tissue.VOCAL_CORDS: (40, 60),
    Tissue.CARTILAGE: (80, 400),
    Tissue.THYROID: (80, 130),
    Tissue.VESSEL: (35, 50),
    Tissue.BROWN_FAT: (-95, -45),
    Tissue.LUNG: (-880, -780),
    Tissue.MYOCARDIUM: (40, 55),
    Tissue.BLOOD: (35, 50),
    Tissue.TOOTH: (1800, 3000),
    Tissue.METAL: (3071, 3071),
    Tissue.CEREBELLUM: (35, 45),
    Tissue.BRAINSTEM: (30, 40),
    Tissue.EYE: (0, 20),
    Tissue.NECROSIS: (10, 30),
    Tissue.NODE_CYST: (5, 25),
    Tissue.KIDNEY: (25, 40),
    Tissue.URINE: (0, 20),
    Tissue.LIVER: (50, 65),
    Tissue.SPLEEN: (40, 55),
    Tissue.BOWEL: (10, 50),
}
_CONTRAST_HU = {  # extra HU with iodinated contrast: (low, high)
    Tissue.VESSEL: (120, 300),
    Tissue.BLOOD: (150, 300),
    Tissue.MYOCARDIUM: (40, 90),
    Tissue.THYROID: (30, 80),
    Tissue.TONSIL: (15, 40),
    Tissue.TONGUE: (5, 20),
    Tissue.MUSCLE: (5, 15),
    Tissue.KIDNEY: (80, 150),
    Tissue.LIVER: (40, 60),
    Tissue.SPLEEN: (40, 80),
}


def ct_image(canvas: Canvas, acq: Acquisition, rng: np.random.Generator, metal) -> np.ndarray:
    """HU (float32, integer values in [-1024, 3071]) on the canvas grid."""
    lut = np.zeros(len(Tissue), dtype=np.float32)
    for tissue, (low, high) in _HU.items():
        lut[tissue] = rng.uniform(low, high)
    lut[Tissue.GTVP] = lut[Tissue.SOFT] + rng.uniform(5, 20)  # tumours are low-contrast soft tissue in CT
    lut[Tissue.GTVN] = lut[Tissue.SOFT] + rng.uniform(-10, 8)
    if acq.contrast:
        for tissue, (low, high) in _CONTRAST_HU.items():
            lut[tissue] += rng.uniform(low, high)
        lut[Tissue.GTVP] += rng.uniform(10, 40)  # enhancing tumour and node rims
        lut[Tissue.GTVN] += rng.uniform(10, 40)
    hu = lut[canvas.tissue]
    if acq.couch_gap_mm is not None:
        _add_couch(hu, canvas, acq.couch_gap_mm, rng)
    if metal:
        _add_streaks(hu, canvas, metal, rng)
    spacing = canvas.grid.spacing
    if acq.ct_blur_mm > 0 or acq.ct_sharpen > 0:
        sigma = [acq.ct_blur_mm if acq.ct_blur_mm > 0 else 0.6, acq.ct_blur_mm if acq.ct_blur_mm > 0 else 0.6, 1e-3]
        smooth = _blur_in_plane(hu, sigma, spacing)
        hu = smooth if acq.ct_blur_mm > 0 else hu + np.float32(acq.ct_sharpen) * (hu - smooth)
    noise = rng.standard_normal(size=hu.shape, dtype=np.float32)
    noise = _blur_in_plane(noise, [0.5 * spacing[0], 0.5 * spacing[1], 1e-3], spacing)
    noise *= np.float32(acq.ct_noise_hu / max(float(noise.std()), 1e-6))
    hu = hu + noise + np.float32(acq.hu_offset)
    return np.clip(np.round(hu), -1024, 3071).astype(np.float32)


def _blur_in_plane(a: np.ndarray, sigma_mm, spacing) -> np.ndarray:
    image = sitk.GetImageFromArray(a.astype(np.float32))
    image.SetSpacing(tuple(float(s) for s in spacing))
    variance = [float(s) ** 2 for s in sigma_mm]
    return sitk.GetArrayFromImage(sitk.DiscreteGaussian(image, variance=variance, useImageSpacing=True))


def _add_couch(hu: np.ndarray, canvas: Canvas, gap: float, rng: np.random.Generator) -> None:
    """A curved table below the patient's back: a dense shell around a foam core, outside the body."""
    tissue = canvas.tissue
    body_back = np.nonzero((tissue != Tissue.AIR).any(axis=(0, 2)))[0]
    if body_back.size == 0:
        return
    v = canvas.v[None, :, None]
    u = canvas.u[None, None, :]
    v0 = canvas.v[body_back[-1]] + gap
    curve = v0 + (u / 260.0) ** 2 * 40.0  # rises at the sides
    shell = (v >= curve) & (v <= curve + rng.uniform(3, 6))
    core = (v > curve + 6.0) & (v <= curve + rng.uniform(12, 25))
    outside = tissue == Tissue.AIR
    hu[np.broadcast_to(shell, hu.shape) & outside] = rng.uniform(150, 500)
    hu[np.broadcast_to(core & ~shell, hu.shape) & outside] = rng.uniform(-850, -600)


def _add_streaks(hu: np.ndarray, canvas: Canvas, metal, rng: np.random.Generator) -> None:
    """Beam-hardening and photon-starvation streaks radiating from dental metal in the slices that hold it:
    alternating bright and dark lines through each metal piece, fading with distance."""
    u = canvas.u[None, :].astype(np.float32)
    v = canvas.v[:, None].astype(np.float32)
    dz = canvas.grid.spacing[2]
    for mu, mv, mw in metal:
        slices = np.flatnonzero(np.abs(canvas.w - mw) <= 4.0 + dz / 2)
        if slices.size == 0:
            continue
        du, dv = u - np.float32(mu), v - np.float32(mv)
        r = np.sqrt(du**2 + dv**2) + np.float32(1.0)
        streaks = np.zeros_like(r)
        for k in range(int(rng.integers(5, 14))):
            angle = rng.uniform(0, np.pi)
            across = np.abs(-np.sin(angle) * du + np.cos(angle) * dv)
            amplitude = rng.uniform(300, 1200) * (1 if k % 2 else -1)
            streaks += np.float32(amplitude) * np.exp(-0.5 * (across / rng.uniform(0.8, 2.0)) ** 2, dtype=np.float32)
        streaks *= np.exp(-r / np.float32(rng.uniform(40, 90)), dtype=np.float32)
        for z in slices:
            weight = np.float32(max(0.0, 1.0 - abs(canvas.w[z] - mw) / (4.0 + dz)))
            hu[z] += weight * streaks * (canvas.tissue[z] != Tissue.AIR)
