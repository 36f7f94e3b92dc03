"""Sample data: "DualDINOv3 PET/CT phantom", generated locally by the library's phantom generator (no download).

:func:`loadPhantom` works on any scene (tests, console); :func:`registerSampleData` adds it to Slicer's
Sample Data module (application only; called once Slicer has started).
"""

from __future__ import annotations

SAMPLE_NAME = "DualDINOv3 PET/CT phantom"
PHANTOM_SEED = 5
PHANTOM_SHAPE = (40, 110, 110)
PHANTOM_SPACING = (2.0, 2.0, 3.0)


def loadPhantom(scene, seed: int = PHANTOM_SEED, withTruth: bool = False):
    """Adds the phantom's CT (HU) and PET (SUV) volume nodes (and the truth labels) to ``scene``.

    Returns ``[ct, pet]`` (``[ct, pet, truth]`` with ``withTruth``); the nodes are named "DualDINOv3 phantom CT", ...
    """
    from DualDINOv3Lib.phantoms import make_phantom

    from .MRMLVolumes import setVolumeFromLibraryVolume

    case = make_phantom(seed, shape=PHANTOM_SHAPE, spacing=PHANTOM_SPACING)
    items = [("CT", case.ct, "vtkMRMLScalarVolumeNode"), ("PET", case.pet, "vtkMRMLScalarVolumeNode")]
    if withTruth:
        items.append(("truth", case.label, "vtkMRMLLabelMapVolumeNode"))
    nodes = []
    for suffix, volume, className in items:
        node = scene.AddNewNodeByClass(className, scene.GenerateUniqueName(f"DualDINOv3 phantom {suffix}"))
        setVolumeFromLibraryVolume(node, volume)
        node.CreateDefaultDisplayNodes()
        nodes.append(node)
    return nodes


def registerSampleData(iconPath: str | None = None) -> None:
    """Register the phantom with Slicer's Sample Data module (needs the application)."""
    import SampleData
    import slicer

    def load(*_args, **_kwargs):
        return loadPhantom(slicer.mrmlScene)

    SampleData.SampleDataLogic.registerCustomSampleDataSource(
        category="DualDINOv3",
        sampleName=SAMPLE_NAME,
        thumbnailFileName=iconPath,
        uris=[],  # nothing to download (SampleDataSource needs lists of equal length, here empty)
        fileNames=[],
        nodeNames=[],
        customDownloader=load,
    )
