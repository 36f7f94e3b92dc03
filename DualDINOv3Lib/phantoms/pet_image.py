"""The FDG-PET of a phantom, in SUV on its own grid: physiological uptake per tissue (drawn per patient,
including the hot structures that are not tumour: brain, cerebellum, Waldeyer's ring, glands, phonating vocal
cords, active muscles, brown fat, myocardium, attenuation-correction artefacts at dental metal; in whole-body
scans kidneys, urine in the renal pelvis and bladder, bowel, liver), tumour uptake,
then the scanner: activity averaged onto a ~2.5 mm grid, a Gaussian PSF, the PET grid (with PET/CT
misregistration), SUV calibration and correlated noise whose variance grows with the signal."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from ..data.volume import Volume
from .acquisition import Acquisition
from .canvas import GTVN_TISSUES, Canvas, Grid, Tissue
from .lesions import Lesion, texture

_FWHM_TO_SIGMA = 1.0 / (2.0 * np.sqrt(2.0 * np.log(2.0)))
_ACTIVITY_VOXEL_MM = 2.5  # in-plane voxel of the grid the PET activity is averaged onto before the PSF
INHOMOGENEITY_SIGMA = (0.1, 0.3)
INHOMOGENEITY_MM = (10.0, 30.0)
"""Physiological uptake is not uniform within a tissue: muscles, glands and fat vary by tens of percent over a
few centimetres (perfusion, recent activity, partial volume). A smooth log-normal factor (standard deviation of
log 0.1-0.3, correlation length 10-30 mm) on all physiological uptake teaches a model that a mild, broad rise in
muscle is background, not a node (real limb muscle at SUV 1-2.3 was being called GTVn)."""
FAINT_NODE_CONTRAST = (2.0, 3.0)
"""A faint node's uptake over the median of the tissue around it (before the PSF). Faint nodes that a physician
contours stand out from the muscle and fat beside them; uptake barely above its surroundings taught the model to
call ordinary muscle a node on real scans."""

_SUV = {  # tissue: (low, high) of the per-patient physiological SUV at rest
    Tissue.FAT: (0.2, 0.5),
    Tissue.SOFT: (0.5, 1.0),
    Tissue.CORTICAL: (0.2, 0.5),
    Tissue.CANCELLOUS: (0.8, 2.2),
    Tissue.GREY_MATTER: (6.0, 14.0),
    Tissue.CORD: (0.8, 1.5),
    Tissue.DISC: (0.4, 0.7),
    Tissue.TONSIL: (1.5, 6.0),
    Tissue.PAROTID: (1.0, 3.0),
    Tissue.SUBMANDIBULAR: (1.2, 3.5),
    Tissue.MUSCLE: (0.6, 1.1),
    Tissue.TONGUE: (1.0, 2.5),
    Tissue.VOCAL_CORDS: (1.0, 2.2),
    Tissue.CARTILAGE: (0.4, 0.8),
    Tissue.THYROID: (0.8, 2.0),
    Tissue.VESSEL: (1.2, 2.2),
    Tissue.LUNG: (0.2, 0.6),
    Tissue.TOOTH: (0.2, 0.4),
    Tissue.METAL: (1.5, 4.0),  # attenuation correction with the metal's HU over-corrects around it
    Tissue.EYE: (0.3, 0.7),
    Tissue.NECROSIS: (0.3, 1.5),
    Tissue.NODE_CYST: (0.3, 1.2),
    Tissue.KIDNEY: (2.0, 4.0),
    Tissue.URINE: (5.0, 80.0),  # excreted FDG: the hottest thing in a whole-body scan
    Tissue.LIVER: (1.5, 3.0),
    Tissue.SPLEEN: (1.2, 2.5),
    Tissue.BOWEL: (0.8, 5.0),
}
_ACTIVE = {  # tissue: (probability per patient, SUV range when active)
    Tissue.MUSCLE: (0.25, (2.0, 6.0)),  # tense neck muscles
    Tissue.TONGUE: (0.15, (3.0, 5.0)),  # speaking or swallowing during uptake
    Tissue.VOCAL_CORDS: (0.3, (3.0, 7.0)),  # phonation
    Tissue.THYROID: (0.08, (3.0, 8.0)),  # thyroiditis
    Tissue.BROWN_FAT: (0.15, (2.5, 12.0)),  # cold exposure
}


def pet_image(
    canvas: Canvas, primary: Lesion, nodes: list[Lesion], acq: Acquisition, rng: np.random.Generator
) -> tuple[Volume, dict]:
    """The PET in SUV on its own grid (covering the CT's field of view with a margin, origin shifted), and the
    per-patient physiology drawn (JSON-ready facts)."""
    lut = np.zeros(len(Tissue), dtype=np.float32)
    for tissue, (low, high) in _SUV.items():
        lut[tissue] = np.exp(rng.uniform(np.log(low), np.log(high)))
    grey = lut[Tissue.GREY_MATTER]
    lut[Tissue.WHITE_MATTER] = grey * rng.uniform(0.3, 0.4)
    lut[Tissue.CEREBELLUM] = grey * rng.uniform(0.7, 0.95)
    lut[Tissue.BRAINSTEM] = grey * rng.uniform(0.4, 0.55)
    lut[Tissue.BLOOD] = lut[Tissue.VESSEL]
    lut[Tissue.BROWN_FAT] = lut[Tissue.FAT]
    hot_heart = rng.random() < 0.5  # myocardial FDG uptake depends on fasting: cold or very hot
    lut[Tissue.MYOCARDIUM] = rng.uniform(4.0, 15.0) if hot_heart else rng.uniform(1.5, 3.5)
    active = []
    for tissue, (p, (low, high)) in _ACTIVE.items():
        if rng.random() < p:
            lut[tissue] = rng.uniform(low, high)
            active.append(tissue.name.lower())
    lut *= np.float32(acq.uptake_scale)
    activity = lut[canvas.tissue] * _inhomogeneity(canvas.grid, rng)

    # SUVmax 5-25, higher in larger primaries (as SUVmax and tumour volume correlate in HNSCC)
    size_factor = float(np.clip((primary.cm3 / 10.0) ** 0.15, 0.75, 1.25))
    suvmax = float(np.clip(np.exp(rng.uniform(np.log(5.0), np.log(25.0))) * size_factor, 5.0, 25.0))
    strength = rng.uniform(0.1, 0.4)
    _paint_uptake(activity, canvas, primary, Tissue.GTVP, suvmax * texture(primary, strength) / (1.0 + strength))
    for node in nodes:
        faint = rng.random() < (0.4 if node.cm3 < 1.5 else 0.15)
        if faint:  # faint, yet a reader sees it: at least FAINT_NODE_CONTRAST times the tissue around it
            low, high = FAINT_NODE_CONTRAST
            level = max(rng.uniform(1.6, 3.5), _surroundings(activity, canvas, node) * rng.uniform(low, high))
        else:
            level = float(np.exp(rng.uniform(np.log(2.5), np.log(14.0))))
        _paint_uptake(activity, canvas, node, Tissue.GTVN, level * texture(node, rng.uniform(0.05, 0.25)))

    psf = acq.psf_fwhm_mm
    fine = _average_in_plane(activity, canvas.grid, z_margin_mm=2.0 * acq.pet_spacing[2] + psf)
    fine.SetOrigin(tuple(o + m for o, m in zip(fine.GetOrigin(), acq.misregistration_mm, strict=True)))
    sigma = psf * _FWHM_TO_SIGMA
    blurred = sitk.DiscreteGaussian(fine, variance=[sigma**2] * 3, maximumKernelWidth=64, useImageSpacing=True)
    pet = _resample_to_pet_grid(blurred, canvas.grid, acq.pet_spacing, rng)

    suv = pet.array.astype(np.float32) * np.float32(acq.suv_calibration)
    noise = rng.standard_normal(size=suv.shape, dtype=np.float32)
    image = sitk.DiscreteGaussian(sitk.GetImageFromArray(noise), variance=[acq.noise_correlation**2] * 3)
    noise = sitk.GetArrayFromImage(image)
    noise /= max(float(noise.std()), 1e-6)
    variance = acq.pet_noise * suv + 0.02**2  # counting noise: variance proportional to the signal
    suv = suv + noise * np.sqrt(variance).astype(np.float32)
    facts = {"suvmax_target": round(suvmax, 2), "hot_heart": hot_heart, "active": active}
    return pet.with_array(np.clip(suv, 0.0, None).astype(np.float32)), facts


def _inhomogeneity(grid: Grid, rng: np.random.Generator) -> np.ndarray:
    """A smooth random factor on the physiological uptake (``(Z, Y, X)``, median 1): log-normal with a standard
    deviation of log drawn from :data:`INHOMOGENEITY_SIGMA` and a correlation length from
    :data:`INHOMOGENEITY_MM`."""
    sigma = rng.uniform(*INHOMOGENEITY_SIGMA)
    step = rng.uniform(*INHOMOGENEITY_MM)  # one coarse voxel per correlation length
    extent = [(n - 1) * s for n, s in zip(grid.shape[::-1], grid.spacing, strict=True)]  # x, y, z
    size = [int(np.ceil(e / step)) + 4 for e in extent]
    coarse = sitk.GetImageFromArray(rng.standard_normal(size=size[::-1]).astype(np.float32))
    coarse.SetSpacing((step,) * 3)
    coarse.SetOrigin(tuple(o - 2 * step for o in grid.origin))
    coarse = sitk.SmoothingRecursiveGaussian(coarse, step)
    target = sitk.Image(list(grid.shape[::-1]), sitk.sitkFloat32)
    target.SetSpacing(tuple(float(s) for s in grid.spacing))
    target.SetOrigin(tuple(float(o) for o in grid.origin))
    field = sitk.GetArrayFromImage(sitk.Resample(coarse, target, sitk.Transform(), sitk.sitkLinear, 0.0))
    field /= max(float(field.std()), 1e-6)
    return np.exp(np.float32(sigma) * field).astype(np.float32)


def _surroundings(activity: np.ndarray, canvas: Canvas, lesion: Lesion) -> float:
    """Median physiological SUV of the tissue around ``lesion`` (its block outside any GTV)."""
    tissue = canvas.tissue[lesion.block.index]
    around = ~lesion.mask & ~np.isin(tissue, (Tissue.GTVP, Tissue.NECROSIS, *GTVN_TISSUES))
    return float(np.median(activity[lesion.block.index][around])) if around.any() else 1.0


def _paint_uptake(activity: np.ndarray, canvas: Canvas, lesion: Lesion, tissue: Tissue, values: np.ndarray) -> None:
    """Sets the lesion's viable voxels (those still of ``tissue``, not a necrotic or cystic core) to ``values``
    (1D, in the lesion mask's order)."""
    view = activity[lesion.block.index]
    viable = canvas.tissue[lesion.block.index][lesion.mask] == tissue
    current = view[lesion.mask]
    current[viable] = values[viable]
    view[lesion.mask] = current


def _resample_to_pet_grid(blurred: sitk.Image, ct_grid: Grid, pet_spacing, rng: np.random.Generator) -> Volume:
    extent = np.array([(ct_grid.shape[2 - i] - 1) * ct_grid.spacing[i] for i in range(3)])
    size = [int(np.ceil(extent[i] / pet_spacing[i])) + (5 if i < 2 else 3) for i in range(3)]
    centre = np.asarray(ct_grid.origin) + extent / 2
    shift = rng.uniform(-0.5, 0.5, size=3) * np.asarray(pet_spacing)
    origin = centre - (np.asarray(size) - 1) / 2 * np.asarray(pet_spacing) + shift
    resampler = sitk.ResampleImageFilter()
    resampler.SetSize(size)
    resampler.SetOutputSpacing(tuple(float(s) for s in pet_spacing))
    resampler.SetOutputOrigin(tuple(round(float(o), 3) for o in origin))
    resampler.SetInterpolator(sitk.sitkLinear)
    resampler.SetDefaultPixelValue(0.0)
    return Volume.from_sitk(resampler.Execute(blurred), units="SUV", modality="PT")


def _average_in_plane(activity: np.ndarray, grid: Grid, z_margin_mm: float) -> sitk.Image:
    """``activity`` averaged over f x f in-plane blocks (f chosen for ~2.5 mm voxels), as a SimpleITK image
    whose voxel centres are the blocks' centres (zero-padded in-plane to a multiple of f).

    The anatomy goes on beyond the CT's first and last slices: the end slices are repeated over
    ``z_margin_mm``, so that the PET (whose field of view is longer) is not dimmed near the CT's ends.
    """
    f = max(1, round(_ACTIVITY_VOXEL_MM / max(grid.spacing[0], grid.spacing[1])))
    _, ny, nx = activity.shape
    pz = int(np.ceil(z_margin_mm / grid.spacing[2]))
    py, px = (-ny) % f, (-nx) % f
    activity = np.pad(activity, ((pz, pz), (0, 0), (0, 0)), mode="edge")
    if py or px:
        activity = np.pad(activity, ((0, 0), (0, py), (0, px)))
    fine = sum(activity[:, i::f, j::f] for i in range(f) for j in range(f)) * np.float32(1.0 / (f * f))
    image = sitk.GetImageFromArray(fine)
    image.SetSpacing((grid.spacing[0] * f, grid.spacing[1] * f, grid.spacing[2]))
    image.SetOrigin(
        (
            grid.origin[0] + (f - 1) / 2 * grid.spacing[0],
            grid.origin[1] + (f - 1) / 2 * grid.spacing[1],
            grid.origin[2] - pz * grid.spacing[2],
        )
    )
    return image
