"""What the Slicer application would provide, on the ``slicer-core`` package: a scene with Slicer's default
colours (PET-Heat included), ``slicer.mrmlScene``, and an application logic with the colours, volumes,
segmentations and terminologies module logics registered. The module's logic then runs unchanged.

This folder is deliberately not called ``slicer/``: ``import slicer`` (slicer-core's meta-package) imports
every module of every ``slicer`` folder found on ``sys.path``, and pytest puts ``Testing/`` on it.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")

import slicer

REPO_ROOT = Path(__file__).resolve().parents[2]
MODULE_DIR = REPO_ROOT / "DualDINOv3Segment"
if str(MODULE_DIR) not in sys.path:
    sys.path.insert(0, str(MODULE_DIR))


@dataclass
class SlicerStandIn:
    scene: object
    applicationLogic: object
    colorLogic: object
    volumesLogic: object
    segmentationsLogic: object
    terminologiesLogic: object


def startSlicer() -> SlicerStandIn:
    """A new scene wired as the application wires it, set as ``slicer.mrmlScene``."""
    scene = slicer.vtkMRMLScene()
    applicationLogic = slicer.vtkSlicerApplicationLogic()
    applicationLogic.SetMRMLScene(scene)
    colorLogic = slicer.vtkMRMLColorLogic()
    colorLogic.SetMRMLScene(scene)
    colorLogic.AddDefaultColorNodes()
    applicationLogic.SetColorLogic(colorLogic)
    volumesLogic = slicer.vtkSlicerVolumesLogic()
    segmentationsLogic = slicer.vtkSlicerSegmentationsModuleLogic()
    terminologiesLogic = slicer.vtkSlicerTerminologiesModuleLogic()
    for name, logic in (
        ("Volumes", volumesLogic),
        ("Segmentations", segmentationsLogic),
        ("Terminologies", terminologiesLogic),
    ):
        logic.SetMRMLApplicationLogic(applicationLogic)
        applicationLogic.SetModuleLogic(name, logic)
    volumesLogic.SetMRMLScene(scene)
    segmentationsLogic.SetMRMLScene(scene)
    slicer.mrmlScene = scene
    return SlicerStandIn(scene, applicationLogic, colorLogic, volumesLogic, segmentationsLogic, terminologiesLogic)


def stopSlicer(standIn: SlicerStandIn) -> None:
    standIn.scene.Clear(1)
    if getattr(slicer, "mrmlScene", None) is standIn.scene:
        del slicer.mrmlScene


def addVolume(scene, volume, name: str, className: str = "vtkMRMLScalarVolumeNode"):
    """A library ``Volume`` as a new volume node (voxels and geometry)."""
    from DualDINOv3SegmentLib.MRMLVolumes import setVolumeFromLibraryVolume

    node = scene.AddNewNodeByClass(className, name)
    setVolumeFromLibraryVolume(node, volume)
    node.CreateDefaultDisplayNodes()
    return node


def sceneSummary(scene) -> list[tuple[str, str, int]]:
    """(ID, name, modified time) of every node: equal before and after means the scene was not touched."""
    nodes = [scene.GetNthNode(i) for i in range(scene.GetNumberOfNodes())]
    return [(n.GetID(), n.GetName(), n.GetMTime()) for n in nodes]


def segmentArray(segmentationNode, segmentName: str, referenceNode):
    """The segment as a (Z, Y, X) uint8 array on ``referenceNode``'s grid.

    ``slicer.util.arrayFromSegmentBinaryLabelmap`` needs ``slicer.modules`` (the application), so this calls
    the segmentations logic's static export directly.
    """
    import vtk

    segmentId = segmentationNode.GetSegmentation().GetSegmentIdBySegmentName(segmentName)
    ids = vtk.vtkStringArray()
    ids.InsertNextValue(segmentId)
    scene = segmentationNode.GetScene()
    existing = {scene.GetNthNode(i).GetID() for i in range(scene.GetNumberOfNodes())}
    labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "__export__")
    try:
        ok = slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(
            segmentationNode, ids, labelmap, referenceNode, slicer.vtkSegmentation.EXTENT_REFERENCE_GEOMETRY
        )
        assert ok, f"export of {segmentName} failed"
        return slicer.util.arrayFromVolume(labelmap).copy()
    finally:  # the export also made a display node and a colour table: remove all it added
        added = [scene.GetNthNode(i) for i in range(scene.GetNumberOfNodes())]
        for node in [n for n in added if n.GetID() not in existing]:
            scene.RemoveNode(node)


def jobLeftovers(folder) -> list:
    """What the module's jobs left in ``folder`` (their temporary folders), not counting the feature-map cache
    that Segment keeps on purpose for Show feature maps."""
    from DualDINOv3SegmentLib.SegmentationLogic import FEATURE_MAP_CACHE_FOLDER

    return [p for p in Path(folder).iterdir() if p.name != FEATURE_MAP_CACHE_FOLDER]
