"""Fixtures of the module tests: a Slicer stand-in on slicer-core (see slicer_harness.py) and phantom inputs."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from slicer_harness import addVolume, startSlicer, stopSlicer

PHANTOM_SHAPE = (40, 110, 110)
PHANTOM_SPACING = (2.0, 2.0, 3.0)


def rotation(degrees_z: float, degrees_x: float) -> np.ndarray:
    a, b = np.radians(degrees_z), np.radians(degrees_x)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    return rz @ rx


def rotated(volume, matrix: np.ndarray):
    """The same voxels with the whole physical space rotated (direction and origin), so relative geometry holds."""
    direction = matrix @ np.reshape(volume.direction, (3, 3))
    return dataclasses.replace(volume, origin=matrix @ np.asarray(volume.origin), direction=direction.reshape(-1))


@pytest.fixture(scope="session")
def phantom():
    """A phantom with oblique direction, off-centre origin, anisotropic CT spacing and a coarser PET grid."""
    from DualDINOv3Lib.phantoms import make_phantom

    case = make_phantom(5, shape=PHANTOM_SHAPE, spacing=PHANTOM_SPACING)
    matrix = rotation(25.0, 10.0)
    return dataclasses.replace(
        case, ct=rotated(case.ct, matrix), pet=rotated(case.pet, matrix), label=rotated(case.label, matrix)
    )


@pytest.fixture
def slicerApp():
    standIn = startSlicer()
    yield standIn
    stopSlicer(standIn)


@pytest.fixture
def phantomNodes(slicerApp, phantom):
    ct = addVolume(slicerApp.scene, phantom.ct, "Phantom CT")
    pet = addVolume(slicerApp.scene, phantom.pet, "Phantom PET")
    return ct, pet
