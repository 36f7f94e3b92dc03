"""DualDINOv3 Segment: 3D Slicer module for PET/CT head-and-neck tumour (GTVp/GTVn) segmentation.

This is the thin module shell: metadata, the input panel from Resources/UI/DualDINOv3Segment.ui and
input checks. The segmentation workflow (model, Apply, segments, PCA maps) is added with the inference
library; until then the panel only checks that the chosen volumes can be used.

Keep module load light: heavy dependencies (torch, the model code in DualDINOv3Lib) may only be
imported inside methods, so Slicer starts quickly even before the PyTorch extension installed torch.
"""

import slicer
from DualDINOv3SegmentLib import DualDINOv3SegmentLogic
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)

__all__ = ["DualDINOv3Segment", "DualDINOv3SegmentLogic", "DualDINOv3SegmentTest", "DualDINOv3SegmentWidget"]

HOMEPAGE = "https://github.com/dualdinov3/SlicerDualDINOv3"


class DualDINOv3Segment(ScriptedLoadableModule):
    """Module description shown in Slicer's module list and help panel."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "DualDINOv3 Segment"
        self.parent.categories = ["Segmentation"]
        self.parent.dependencies = []
        self.parent.contributors = ["DualDINOv3 developers"]
        self.parent.helpText = (
            "Segments head-and-neck tumours on PET/CT: the primary tumour (GTVp) and involved lymph"
            " nodes (GTVn). A CT and a PET DINOv3 vision transformer encode the two scans, their features"
            " are fused by cross-attention, and PCA maps of the encoder features can be shown for"
            f' inspection. See the <a href="{HOMEPAGE}">project page</a> for details.'
        )
        self.parent.acknowledgementText = (
            "Built on DINOv3 (Meta AI) vision transformers and the PyTorch extension of 3D Slicer."
            " Research use only; not for clinical decisions."
        )


class DualDINOv3SegmentWidget(ScriptedLoadableModuleWidget):
    """Module panel: CT and PET volume selectors, a Check inputs button and a status line."""

    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        self.logic = None
        self.ui = None

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/DualDINOv3Segment.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        # The node selectors receive the scene through the mrmlSceneChanged connections of the .ui file.
        uiWidget.setMRMLScene(slicer.mrmlScene)

        self.logic = DualDINOv3SegmentLogic()
        self.ui.ctVolumeSelector.currentNodeChanged.connect(self.updateCheckButtonState)
        self.ui.petVolumeSelector.currentNodeChanged.connect(self.updateCheckButtonState)
        self.ui.checkInputsButton.clicked.connect(self.onCheckInputsButton)
        self.updateCheckButtonState()

    def currentInputProblems(self):
        return self.logic.inputProblems(self.ui.ctVolumeSelector.currentNode(), self.ui.petVolumeSelector.currentNode())

    def updateCheckButtonState(self, _node=None):
        problems = self.currentInputProblems()
        self.ui.checkInputsButton.enabled = not problems
        self.ui.checkInputsButton.toolTip = (
            "\n".join(problems) if problems else "Check that the selected CT and PET volumes can be segmented."
        )

    def onCheckInputsButton(self):
        problems = self.currentInputProblems()
        if problems:
            self.ui.statusLabel.text = " ".join(problems)
            return
        ct, pet = self.ui.ctVolumeSelector.currentNode(), self.ui.petVolumeSelector.currentNode()
        self.ui.statusLabel.text = f"Inputs are valid: CT '{ct.GetName()}', PET '{pet.GetName()}'."


class DualDINOv3SegmentTest(ScriptedLoadableModuleTest):
    """Self-test, run by Slicer's "Reload and Test" and by the ctest registered in CMakeLists.txt."""

    def setUp(self):
        slicer.mrmlScene.Clear(0)

    def runTest(self):
        self.setUp()
        self.test_inputProblems()
        self.setUp()
        self.test_widgetPanel()

    @staticmethod
    def _addVolume(name):
        import vtk

        imageData = vtk.vtkImageData()
        imageData.SetDimensions(4, 4, 4)
        imageData.AllocateScalars(vtk.VTK_SHORT, 1)
        volumeNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
        volumeNode.SetAndObserveImageData(imageData)
        return volumeNode

    def test_inputProblems(self):
        self.delayDisplay("Checking input validation")
        logic = DualDINOv3SegmentLogic()
        ct = self._addVolume("CT")
        pet = self._addVolume("PET")
        empty = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "Empty")

        self.assertEqual(logic.inputProblems(ct, pet), [])
        self.assertEqual(len(logic.inputProblems(None, None)), 2)
        self.assertIn("PET", logic.inputProblems(ct, None)[0])
        self.assertIn("different", logic.inputProblems(ct, ct)[0])
        self.assertIn("no image data", logic.inputProblems(ct, empty)[0])
        self.delayDisplay("Input validation test passed")

    def test_widgetPanel(self):
        self.delayDisplay("Checking the module panel")
        widget = slicer.util.getModuleWidget("DualDINOv3Segment")
        widget.ui.ctVolumeSelector.setCurrentNode(None)
        widget.ui.petVolumeSelector.setCurrentNode(None)
        self.assertFalse(widget.ui.checkInputsButton.enabled)

        widget.ui.ctVolumeSelector.setCurrentNode(self._addVolume("CT"))
        widget.ui.petVolumeSelector.setCurrentNode(self._addVolume("PET"))
        self.assertTrue(widget.ui.checkInputsButton.enabled)
        widget.ui.checkInputsButton.click()
        self.assertIn("valid", widget.ui.statusLabel.text)
        self.delayDisplay("Module panel test passed")
