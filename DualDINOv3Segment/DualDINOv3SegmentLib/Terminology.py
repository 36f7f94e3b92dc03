"""Segment names, standard codes and colours of the labels, read from the module's ``.term.json`` file.

The file (``Resources/Terminology/SegmentationCategoryTypeModifier-DualDINOv3.term.json``) is a Slicer
terminology context: category *Morphologically Altered Structure* (SCT 49755003) with the types
*Neoplasm, Primary* (SCT 86049000, label GTVp) and *Neoplasm, Secondary* (SCT 14799000, label GTVn), the codes
of Slicer's DICOM master terminology, each with its display colour. The type whose ``3dSlicerLabel`` is a label
name (``DualDINOv3Lib.domain``) describes that label. It is parsed by Slicer's own terminologies logic.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import slicer

MODULE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TERMINOLOGY_FILE = os.path.join(
    MODULE_DIR, "Resources", "Terminology", "SegmentationCategoryTypeModifier-DualDINOv3.term.json"
)


@dataclass(frozen=True)
class SegmentDescription:
    """What one label value becomes: segment name, serialized terminology entry, colour (0-1 RGB)."""

    labelValue: int
    name: str
    terminology: str
    color: tuple[float, float, float]
    typeCode: str
    typeMeaning: str


def loadTerminology(terminologiesLogic=None, path: str = TERMINOLOGY_FILE):
    """``(logic, context name)``: the file loaded into ``terminologiesLogic`` (a new, scene-less one if None)."""
    logic = terminologiesLogic or slicer.vtkSlicerTerminologiesModuleLogic()
    contextName = logic.LoadTerminologyFromFile(path)
    if not contextName:
        raise RuntimeError(f"the terminology file {path} could not be loaded; reinstall the DualDINOv3 extension")
    return logic, contextName


def segmentDescriptions(labelNames: dict[int, str], terminologiesLogic=None) -> dict[int, SegmentDescription]:
    """``{label value: SegmentDescription}`` for the foreground labels (value > 0) of ``labelNames``."""
    logic, context = loadTerminology(terminologiesLogic)
    types = {}
    for c in range(logic.GetNumberOfCategoriesInTerminology(context)):
        category = slicer.vtkSlicerTerminologyCategory()
        logic.GetNthCategoryInTerminology(context, c, category)
        for t in range(logic.GetNumberOfTypesInTerminologyCategory(context, category)):
            termType = slicer.vtkSlicerTerminologyType()
            logic.GetNthTypeInTerminologyCategory(context, category, t, termType)
            types[termType.GetSlicerLabel()] = (category, termType)
    descriptions = {}
    for value, name in labelNames.items():
        if value == 0:
            continue
        if name not in types:
            raise RuntimeError(f"the terminology file {TERMINOLOGY_FILE} describes no label named {name!r}")
        category, termType = types[name]
        entry = slicer.vtkSlicerTerminologyEntry()
        entry.SetTerminologyContextName(context)
        entry.GetCategoryObject().Copy(category)
        entry.GetTypeObject().Copy(termType)
        rgb = tuple(channel / 255.0 for channel in termType.GetRecommendedDisplayRGBValue())
        descriptions[value] = SegmentDescription(
            labelValue=int(value),
            name=name,
            terminology=logic.SerializeTerminologyEntry(entry),
            color=rgb,
            typeCode=f"{termType.GetCodingSchemeDesignator()}^{termType.GetCodeValue()}",
            typeMeaning=termType.GetCodeMeaning(),
        )
    return descriptions
