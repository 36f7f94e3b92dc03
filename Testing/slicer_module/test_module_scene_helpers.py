"""Input pre-selection, sample data and the dependency installer (with injected ask/install functions)."""

from __future__ import annotations

import numpy as np
import pytest
import slicer
from DualDINOv3SegmentLib import Dependencies
from DualDINOv3SegmentLib.Inputs import guessInputs
from DualDINOv3SegmentLib.SampleData import loadPhantom


def _volume(scene, name, className="vtkMRMLScalarVolumeNode"):
    node = scene.AddNewNodeByClass(className, name)
    slicer.util.updateVolumeFromArray(node, np.zeros((2, 2, 2), np.float32))
    return node


def test_inputs_are_preselected_by_dicom_modality_then_by_name(slicerApp):
    scene = slicerApp.scene
    assert guessInputs(scene) == (None, None)
    _volume(scene, "Abdomen")
    named_pet = _volume(scene, "patient7_PET_AC")
    named_ct = _volume(scene, "CT chest")
    _volume(scene, "CT labels", "vtkMRMLLabelMapVolumeNode")
    assert guessInputs(scene) == (named_ct, named_pet)
    dicom_ct = _volume(scene, "3: Helical 2.5mm")
    dicom_pet = _volume(scene, "4: WB 3D MAC")
    shNode = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    for node, modality in ((dicom_ct, "CT"), (dicom_pet, "PT")):
        # the application's subject hierarchy plugins make an item per data node; the DICOM plugins set Modality
        item = shNode.GetItemByDataNode(node) or shNode.CreateItem(shNode.GetSceneItemID(), node)
        shNode.SetItemAttribute(item, "DICOM.Modality", modality)
    assert guessInputs(scene) == (dicom_ct, dicom_pet)


def test_sample_phantom_is_generated_locally(slicerApp):
    ct, pet, truth = loadPhantom(slicerApp.scene, withTruth=True)
    assert ct.GetName() == "DualDINOv3 phantom CT" and pet.GetName() == "DualDINOv3 phantom PET"
    assert truth.IsA("vtkMRMLLabelMapVolumeNode")
    assert set(np.unique(slicer.util.arrayFromVolume(truth))) <= {0, 1, 2}
    assert slicer.util.arrayFromVolume(ct).min() < -500  # HU: air
    assert 0 <= slicer.util.arrayFromVolume(pet).min() and slicer.util.arrayFromVolume(pet).max() < 100  # SUV
    assert guessInputs(slicerApp.scene) == (ct, pet)


def test_dependencies_are_installed_only_with_consent():
    installed = {"numpy"}
    find = lambda name: object() if name in installed else None  # noqa: E731
    asked, pip = [], []

    def pipInstall(requirements):
        pip.append(requirements)
        installed.update(r.split(">=")[0] for r in requirements.split())

    assert Dependencies.missingPackages(find) == ["torch", "SimpleITK", "safetensors"]
    assert not Dependencies.ensureDependencies(lambda text: asked.append(text) or False, pipInstall, find=find)
    assert pip == [] and "torch>=2.1" in asked[0]

    def installTorch():
        installed.add("torch")
        return True

    assert Dependencies.ensureDependencies(lambda text: True, pipInstall, installTorch, find=find)
    assert pip == ["SimpleITK>=2.3 safetensors>=0.4"]  # torch came from the PyTorch extension
    assert Dependencies.ensureDependencies(lambda text: pytest.fail("asked again"), pipInstall, find=find)


def test_importing_the_module_package_loads_no_torch():
    import subprocess
    import sys

    from slicer_harness import MODULE_DIR

    code = (
        f"import sys; sys.path.insert(0, {str(MODULE_DIR)!r});"
        " import DualDINOv3SegmentLib, DualDINOv3SegmentLib.Parameters;"
        " import DualDINOv3SegmentLib.SampleData, DualDINOv3SegmentLib.Dependencies;"
        " print('torch' in sys.modules, 'SimpleITK' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[-2:] == ["False", "False"]
