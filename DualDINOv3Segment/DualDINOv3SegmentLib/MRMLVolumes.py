"""Volume nodes <-> :class:`DualDINOv3Lib.data.Volume`: voxels and physical geometry, RAS <-> LPS.

MRML stores IJK-to-RAS; the library (like SimpleITK and DICOM) stores spacing, origin and direction in LPS.
``IJKToRAS = diag(-1, -1, 1) @ [direction @ diag(spacing) | origin]``. Only slicer (MRML) and numpy; the
library's Volume is imported when a conversion runs, so importing this module loads neither torch nor SimpleITK.
"""

from __future__ import annotations

import numpy as np
import slicer
import vtk

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


def ijkToRasMatrix(node) -> np.ndarray:
    """The node's 4x4 IJK-to-RAS matrix as numpy."""
    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    return slicer.util.arrayFromVTKMatrix(matrix)


def geometryFromNode(node) -> dict:
    """``{"spacing", "origin", "direction"}`` of a volume node in the library's LPS convention (x, y, z order)."""
    matrix = ijkToRasMatrix(node)[:3]
    spacing = np.linalg.norm(matrix[:, :3], axis=0)
    direction = LPS_TO_RAS @ (matrix[:, :3] / spacing)
    origin = LPS_TO_RAS @ matrix[:, 3]
    return {
        "spacing": tuple(float(s) for s in spacing),
        "origin": tuple(float(o) for o in origin),
        "direction": tuple(float(d) for d in direction.reshape(-1)),
    }


def volumeFromNode(node, *, units=None, modality=None):
    """A library ``Volume`` (float32 copy of the voxels, (Z, Y, X)) with the node's geometry."""
    from DualDINOv3Lib import Volume

    array = np.array(slicer.util.arrayFromVolume(node), dtype=np.float32, copy=True)
    return Volume(array, units=units, modality=modality, **geometryFromNode(node))


def ijkToRasFromGeometry(spacing, origin, direction) -> np.ndarray:
    """The 4x4 IJK-to-RAS matrix of an LPS geometry (the inverse of :func:`geometryFromNode`)."""
    matrix = np.eye(4)
    matrix[:3, :3] = LPS_TO_RAS @ np.reshape(direction, (3, 3)) @ np.diag(spacing)
    matrix[:3, 3] = LPS_TO_RAS @ np.asarray(origin, dtype=float)
    return matrix


def setGeometry(node, spacing, origin, direction) -> None:
    """Give ``node`` the LPS geometry (spacing, origin, direction) as its IJK-to-RAS matrix."""
    node.SetIJKToRASMatrix(slicer.util.vtkMatrixFromArray(ijkToRasFromGeometry(spacing, origin, direction)))


def copyGeometry(source, target) -> None:
    """``target`` gets exactly ``source``'s IJK-to-RAS matrix."""
    matrix = vtk.vtkMatrix4x4()
    source.GetIJKToRASMatrix(matrix)
    target.SetIJKToRASMatrix(matrix)


def addVolumeNode(scene, array: np.ndarray, referenceNode, name: str, className: str = "vtkMRMLScalarVolumeNode"):
    """A new volume node in ``scene`` holding ``array`` ((Z, Y, X) or (Z, Y, X, C)) on ``referenceNode``'s grid."""
    node = scene.AddNewNodeByClass(className, scene.GenerateUniqueName(name))
    copyGeometry(referenceNode, node)
    slicer.util.updateVolumeFromArray(node, np.ascontiguousarray(array))
    node.CreateDefaultDisplayNodes()
    return node


def setVolumeFromLibraryVolume(node, volume) -> None:
    """Fill ``node`` with a library ``Volume`` (voxels and geometry): for tests, sample data and the console."""
    slicer.util.updateVolumeFromArray(node, np.ascontiguousarray(volume.array))
    setGeometry(node, volume.spacing, volume.origin, volume.direction)
