"""Tumours of the synthetic phantoms: an irregular primary tumour (GTVp) in the oropharynx (tonsil, base of
tongue, posterior wall) or a neighbouring site (soft palate, supraglottic larynx), and up to three lymph nodes
(GTVn) at nodal levels II-IV along the jugular chain, each sized to a target volume measured on the CT grid.
Large primaries may have a necrotic core, some nodes a cystic centre: still labelled as tumour.

A lesion is a union of randomly oriented ellipsoids roughened by a few low-frequency waves; scaling that
shape by ``s`` scales its volume by about ``s**3``, so a bisection on ``s`` hits a target volume. The lesion
only replaces tissues of :data:`~.canvas.LESION_HOST` (never bone, discs, cord or brain), and
what it finally covers is exactly the label of the case.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..domain import stratum_of
from ..errors import DualDINOv3Error
from .anatomy import Anatomy
from .canvas import LESION_HOST, Block, Canvas, Tissue

STRATUM_TARGETS_CM3 = {"small": (1.0, 4.3), "medium": (6.0, 13.5), "large": (17.0, 42.0)}
"""Target GTVp volumes drawn (log-uniformly) per stratum, kept away from the 5 and 15 cm3 boundaries."""
NODE_TARGET_CM3 = (0.6, 7.0)
FAT_RIM_PROBABILITY = 0.75
"""Share of nodes wrapped in 1.5-3 mm of fat where they would border soft tissue or muscle: cervical nodes lie in
the fat of the neck's compartments, and CT shows them as oval soft tissue within fat. The rest have lost their fat
planes (extranodal extension, matted nodes) and must be told apart by PET alone."""
_RIM_HOST = (Tissue.SOFT, Tissue.MUSCLE)
_BISECTION_STEPS = 14
_VOLUME_TOLERANCE = 0.04


@dataclass(frozen=True)
class Lesion:
    """A painted lesion: the block it lies in, its voxel mask there (Z, Y, X bool), its volume in cm3,
    its centre (u, v, w) in mm (patient frame) and the parameters of its uptake heterogeneity."""

    block: Block
    mask: np.ndarray
    cm3: float
    centre: tuple[float, float, float]
    scale: float
    waves: np.ndarray  # (n, 4): wave vector (1/mm, u v w) and phase, for the uptake texture

    def core(self, fraction: float) -> np.ndarray:
        """The lesion's voxels (block mask) within ``fraction`` of its equivalent radius from its centre."""
        block = self.block
        d2 = (block.u - self.centre[0]) ** 2 + (block.v - self.centre[1]) ** 2 + (block.w - self.centre[2]) ** 2
        return self.mask & (d2 <= (fraction * _equivalent_radius(self.cm3)) ** 2)


class _Shape:
    """A random irregular blob of unit size around the origin (mm): ellipsoids and surface waves."""

    def __init__(self, rng: np.random.Generator, n_lobes: int, elongation: float) -> None:
        self.rotations = [_random_rotation(rng) for _ in range(n_lobes)]
        main = np.array([1.0, 1.0, elongation]) * rng.uniform(0.8, 1.2, size=3)
        self.axes = [main] + [rng.uniform(0.45, 0.85, size=3) for _ in range(n_lobes - 1)]
        self.offsets = [np.zeros(3)] + [rng.normal(0.0, 0.45, size=3) for _ in range(n_lobes - 1)]
        self.waves = np.concatenate(
            [_random_directions(rng, 4) * rng.uniform(1.5, 4.0, size=(4, 1)), rng.uniform(0, 2 * np.pi, (4, 1))],
            axis=1,
        )
        self.roughness = rng.uniform(0.05, 0.15)
        reach = max(
            np.linalg.norm(o) + (1.0 + self.roughness) * a.max() for o, a in zip(self.offsets, self.axes, strict=True)
        )
        # volume (unit**3) and bounding box of the unit-size blob, measured on a 32**3 grid
        t = np.linspace(-reach, reach, 32)
        inside = self.field(t[:, None, None], t[None, :, None], t[None, None, :], 1.0) > 0
        step = t[1] - t[0]
        self.unit_volume = float(np.count_nonzero(inside)) * step**3
        rows = [np.flatnonzero(inside.any(axis=tuple(j for j in range(3) if j != i))) for i in range(3)]
        self.box = np.array([[t[r[0]] - step, t[r[-1]] + step] for r in rows])  # (3, 2): u v w, min max

    def field(self, du: np.ndarray, dv: np.ndarray, dw: np.ndarray, scale: float) -> np.ndarray:
        """> 0 inside the blob scaled by ``scale`` (mm per unit); ``du, dv, dw``: broadcastable offsets (mm)."""
        p = (du / scale, dv / scale, dw / scale)
        inside = None
        for rot, axes, off in zip(self.rotations, self.axes, self.offsets, strict=True):
            q = [p[0] - off[0], p[1] - off[1], p[2] - off[2]]
            r2 = sum(((rot[i, 0] * q[0] + rot[i, 1] * q[1] + rot[i, 2] * q[2]) / axes[i]) ** 2 for i in range(3))
            lobe = 1.0 - np.sqrt(r2)
            inside = lobe if inside is None else np.maximum(inside, lobe)
        waves = sum(np.cos(k[0] * p[0] + k[1] * p[1] + k[2] * p[2] + k[3]) for k in self.waves)
        return inside + self.roughness * waves / len(self.waves)


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    return q * np.sign(np.diag(r))


def _random_directions(rng: np.random.Generator, n: int) -> np.ndarray:
    d = rng.normal(size=(n, 3))
    return d / np.linalg.norm(d, axis=1, keepdims=True)


def _size_lesion(
    canvas: Canvas, shape: _Shape, centre, target_cm3: float, allowed: tuple[Tissue, ...]
) -> tuple[Block, np.ndarray, float, float]:
    """Bisects the scale so the lesion, restricted to ``allowed`` tissues, covers ``target_cm3``."""
    voxel = canvas.grid.voxel_cm3
    scale = (target_cm3 * 1000.0 / shape.unit_volume) ** (1.0 / 3.0)  # mm per unit, ignoring the host tissues
    lo, hi = 0.85 * scale, 1.5 * scale  # a lesion clipped by bone or air must grow to reach its target
    block = canvas.block(*[(c + hi * b[0], c + hi * b[1]) for c, b in zip(centre, shape.box, strict=True)])
    host = np.isin(canvas.tissue[block.index], np.asarray(allowed, dtype=np.uint8))
    du, dv, dw = block.u - centre[0], block.v - centre[1], block.w - centre[2]
    best = None
    for _ in range(_BISECTION_STEPS):
        scale = 0.5 * (lo + hi)
        mask = (shape.field(du, dv, dw, scale) > 0) & host
        cm3 = float(np.count_nonzero(mask)) * voxel
        if best is None or abs(cm3 - target_cm3) < abs(best[2] - target_cm3):
            best = (mask, scale, cm3)
        if abs(cm3 - target_cm3) <= _VOLUME_TOLERANCE * target_cm3:
            break
        lo, hi = (scale, hi) if cm3 < target_cm3 else (lo, scale)
    mask, scale, cm3 = best
    return block, mask, cm3, scale


def place_primary(
    canvas: Canvas, an: Anatomy, rng: np.random.Generator, stratum: str, w_window: tuple[float, float], tries: int = 8
) -> Lesion:
    """Paints the GTVp with a volume in ``stratum`` at an oropharyngeal or neighbouring site whose height lies
    in ``w_window``; large ones get a necrotic core (:data:`Tissue.NECROSIS`) in about 40 %."""
    low, high = STRATUM_TARGETS_CM3[stratum]
    for _ in range(tries):
        target = float(np.exp(rng.uniform(np.log(low), np.log(high))))
        site = rng.choice(5, p=(0.35, 0.3, 0.1, 0.12, 0.13))
        w = float(np.clip(an.w_oropharynx + rng.uniform(-6, 8), *w_window))
        v_air = float(an.airway_v(w))
        if site == 0:  # lateral wall: tonsil
            centre = (rng.choice((-1, 1)) * (an.oropharynx[0] + rng.uniform(2, 7)), v_air + rng.uniform(-3, 3), w)
        elif site == 1:  # base of tongue, in front of the airway
            centre = (rng.uniform(-6, 6), v_air - an.oropharynx[1] - rng.uniform(4, 9), w)
        elif site == 2:  # posterior pharyngeal wall, between airway and spine
            centre = (rng.uniform(-6, 6), v_air + an.oropharynx[1] + rng.uniform(1, 3), w)
        elif site == 3:  # soft palate, above the oropharynx
            w = float(np.clip(an.w_occlusal + rng.uniform(4, 12), *w_window))
            centre = (rng.uniform(-8, 8), float(an.airway_v(w)) - rng.uniform(2, 8), w)
        else:  # supraglottic larynx / hypopharynx, below it
            w = float(np.clip(an.w_cords + rng.uniform(6, 18), *w_window))
            centre = (rng.uniform(-10, 10), float(an.airway_v(w)) + rng.uniform(-4, 4), w)
        shape = _Shape(rng, n_lobes=int(rng.integers(2, 5)), elongation=rng.uniform(1.0, 1.5))
        block, mask, cm3, scale = _size_lesion(canvas, shape, centre, target, LESION_HOST)
        if stratum_of(cm3) == stratum:
            canvas.paint(block, mask, Tissue.GTVP)
            lesion = Lesion(block, mask, cm3, tuple(map(float, centre)), scale, shape.waves)
            if cm3 > 8.0 and rng.random() < 0.4:
                canvas.paint(block, lesion.core(rng.uniform(0.35, 0.6)), Tissue.NECROSIS)
            return lesion
    raise DualDINOv3Error(f"could not place a {stratum} primary tumour in {tries} tries; try another seed")


def place_nodes(
    canvas: Canvas,
    an: Anatomy,
    rng: np.random.Generator,
    n_nodes: int,
    primary: Lesion,
    w_window: tuple[float, float],
    tries: int = 100,
) -> list[Lesion]:
    """Paints ``n_nodes`` lymph nodes (GTVn) at levels II-IV (from the mandible down to the clavicle, beside
    the jugular chain) within ``w_window``, clear of the GTVp and of each other (at least 3 mm between their
    bounding spheres); most get a rim of fat (:data:`FAT_RIM_PROBABILITY`), about 20 % a cystic centre
    (:data:`Tissue.NODE_CYST`). Where space is short,
    later tries draw smaller nodes."""
    nodes: list[Lesion] = []
    occupied = [(np.asarray(primary.centre), _equivalent_radius(primary.cm3) * 1.3)]
    allowed = tuple(t for t in LESION_HOST if t != Tissue.AIRWAY)
    low, high = NODE_TARGET_CM3
    w_low = max(an.w_clavicle + 8.0, w_window[0])
    w_high = max(w_low + 5.0, min(an.w_mandible + 8.0, w_window[1]))
    for attempt in range(tries):
        if len(nodes) == n_nodes:
            break
        high_now = max(low * 1.5, high * (1.0 - 0.8 * attempt / tries))
        target = float(np.exp(rng.uniform(np.log(low), np.log(high_now))))
        radius = _equivalent_radius(target) * 1.4
        w = rng.uniform(w_low, w_high)
        u = rng.choice((-1, 1)) * rng.uniform(0.48, 0.62) * float(an.neck_half_width(w))
        centre = np.array([u, float(an.spine_v(w)) - rng.uniform(4, 16), w])
        if any(np.linalg.norm(centre - c) < radius + r + 3.0 for c, r in occupied):
            continue
        shape = _Shape(rng, n_lobes=int(rng.integers(1, 3)), elongation=rng.uniform(1.1, 1.6))
        block, mask, cm3, scale = _size_lesion(canvas, shape, tuple(centre), target, allowed)
        if cm3 < 0.5 * NODE_TARGET_CM3[0]:
            continue
        canvas.paint(block, mask, Tissue.GTVN)
        if rng.random() < FAT_RIM_PROBABILITY:  # the fat the node lies in, as CT shows it
            rim_scale = scale * (1.0 + rng.uniform(1.5, 3.0) / _equivalent_radius(cm3))
            du, dv, dw = block.u - centre[0], block.v - centre[1], block.w - centre[2]
            canvas.paint(block, (shape.field(du, dv, dw, rim_scale) > 0) & ~mask, Tissue.FAT, only=_RIM_HOST)
        occupied.append((centre, radius))
        node = Lesion(block, mask, cm3, tuple(map(float, centre)), scale, shape.waves)
        if cm3 > 1.5 and rng.random() < 0.2:
            canvas.paint(block, node.core(rng.uniform(0.4, 0.7)), Tissue.NODE_CYST)
        nodes.append(node)
    if len(nodes) != n_nodes:
        raise DualDINOv3Error(f"could place only {len(nodes)} of {n_nodes} lymph nodes; try another seed")
    return nodes


def _equivalent_radius(cm3: float) -> float:
    """Radius in mm of a sphere of ``cm3``."""
    return (3.0 * cm3 * 1000.0 / (4.0 * np.pi)) ** (1.0 / 3.0)


def texture(lesion: Lesion, strength: float) -> np.ndarray:
    """A smooth multiplicative uptake texture over the lesion's voxels, 1 +- ``strength`` (1D, mask order)."""
    block = lesion.block
    du = np.broadcast_to(block.u - lesion.centre[0], lesion.mask.shape)[lesion.mask]
    dv = np.broadcast_to(block.v - lesion.centre[1], lesion.mask.shape)[lesion.mask]
    dw = np.broadcast_to(block.w - lesion.centre[2], lesion.mask.shape)[lesion.mask]
    s = lesion.scale
    waves = sum(np.cos(k[0] * du / s + k[1] * dv / s + k[2] * dw / s + k[3] + 1.0) for k in lesion.waves)
    return 1.0 + strength * waves / len(lesion.waves)
