"""The module's parameters: one typed object, saved in a ``vtkMRMLScriptedModuleNode`` (so in the scene file).

Slicer's ``parameterNodeWrapper`` needs the application; this small equivalent works on any MRML scene:
values are stored as text parameters, nodes as node references, and every value is checked when it is read
back (a scene saved by hand or by an older version gives the default, not a crash).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from DualDINOv3Lib.machine import DEFAULT_BATCH_SIZE, available_cpus

from .SegmentationLogic import DEVICES

MODULE_NAME = "DualDINOv3Segment"
NODE_ROLES = ("ctVolume", "petVolume", "outputSegmentation")
BATCH_SIZE_RANGE = (1, 64)
AUTOMATIC_THREADS = 0
"""``threads`` 0: the worker uses all physical cores but one (the user's other work keeps a core)."""


@dataclass
class SegmentParameters:
    """What the panel shows. ``model``: a catalogue id, or a segmenter file path when ``modelIsFile``."""

    ctVolume: object = None
    petVolume: object = None
    outputSegmentation: object = None
    model: str = "demo_dual_p8"
    modelIsFile: bool = False
    device: str = "auto"
    batchSize: int = DEFAULT_BATCH_SIZE
    threads: int = AUTOMATIC_THREADS
    skipEmptySlices: bool = True
    minComponentMm3: float = 0.0
    headNeckOnly: bool = True
    ctEncoder: bool = True
    petEncoder: bool = True

    def encoders(self) -> list[str]:
        return [name for name, on in (("ct", self.ctEncoder), ("pet", self.petEncoder)) if on]


def parameterNode(scene, create: bool = True):
    """The module's (singleton) parameter node in ``scene``."""
    node = scene.GetSingletonNode(MODULE_NAME, "vtkMRMLScriptedModuleNode")
    if node is None and create:
        node = scene.AddNewNodeByClass("vtkMRMLScriptedModuleNode", f"{MODULE_NAME} parameters")
        node.SetSingletonTag(MODULE_NAME)
        node.SetModuleName(MODULE_NAME)
    return node


def save(node, parameters: SegmentParameters) -> None:
    wasModifying = node.StartModify()
    for field in dataclasses.fields(SegmentParameters):
        value = getattr(parameters, field.name)
        if field.name in NODE_ROLES:
            node.SetNodeReferenceID(field.name, value.GetID() if value is not None else None)
        else:
            node.SetParameter(field.name, str(value))
    node.EndModify(wasModifying)


def load(node) -> SegmentParameters:
    """The parameters stored in ``node``; missing or invalid values are the defaults."""
    defaults = SegmentParameters()
    values = {}
    for field in dataclasses.fields(SegmentParameters):
        if field.name in NODE_ROLES:
            values[field.name] = node.GetNodeReference(field.name)
            continue
        text = node.GetParameter(field.name) if node.HasParameter(field.name) else ""
        values[field.name] = _parse(field.name, text, getattr(defaults, field.name))
    return SegmentParameters(**values)


def _parse(name: str, text: str, default):
    try:
        if isinstance(default, bool):
            if text not in ("True", "False"):
                return default
            return text == "True"
        if isinstance(default, int):
            value = int(text)
            low, high = (AUTOMATIC_THREADS, available_cpus()) if name == "threads" else BATCH_SIZE_RANGE
            return value if low <= value <= high else default  # e.g. a scene saved on a larger machine
        if isinstance(default, float):
            value = float(text)
            return value if math.isfinite(value) and value >= 0 else default
    except ValueError:
        return default
    if name == "device":
        return text if text in DEVICES or text.startswith("cuda:") else default
    return text or default
