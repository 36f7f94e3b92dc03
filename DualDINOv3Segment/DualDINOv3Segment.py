"""DualDINOv3 Segment: 3D Slicer module for PET/CT head-and-neck tumour (GTVp/GTVn) segmentation.

The thin module shell: metadata, the widget and logic classes from DualDINOv3SegmentLib, and the self-test.
Importing it loads neither torch nor the model code: inference runs in a separate process, and the Python
packages it needs are installed on first use, with the user's consent.
"""

import os

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
        slicer.app.connect("startupCompleted()", self.onStartupCompleted)

    def onStartupCompleted(self):
        from DualDINOv3SegmentLib import SampleData, Terminology

        Terminology.loadTerminology(slicer.modules.terminologies.logic())  # the Segment Editor shows our codes
        icon = os.path.join(os.path.dirname(__file__), "Resources", "Icons", "DualDINOv3Segment.png")
        SampleData.registerSampleData(icon)


class DualDINOv3SegmentWidget(ScriptedLoadableModuleWidget):
    """The module panel: DualDINOv3SegmentLib.Widget over the logic."""

    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        self.widget = None

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        from DualDINOv3SegmentLib.Widget import Widget

        self.widget = Widget()
        self.layout.addWidget(self.widget)
        self.layout.addStretch(1)

    def cleanup(self):
        if self.widget is not None:
            self.widget.cleanup()


class DualDINOv3SegmentTest(ScriptedLoadableModuleTest):
    """Self-test, run by Slicer's "Reload and Test" and by the ctest registered in CMakeLists.txt."""

    def setUp(self):
        slicer.mrmlScene.Clear(0)

    def runTest(self):
        self.setUp()
        self.test_segmentSamplePhantom()

    def test_segmentSamplePhantom(self):
        import numpy as np
        from DualDINOv3SegmentLib.SampleData import loadPhantom

        self.delayDisplay("Loading the DualDINOv3 PET/CT phantom")
        ct, pet, truth = loadPhantom(slicer.mrmlScene, withTruth=True)
        self.delayDisplay("Segmenting with the bundled demo model")
        segmentation = DualDINOv3SegmentLogic().segment(ct, pet)
        seg = segmentation.GetSegmentation()
        self.assertEqual([seg.GetNthSegment(i).GetName() for i in range(seg.GetNumberOfSegments())], ["GTVp", "GTVn"])
        gtvp = seg.GetSegment(seg.GetSegmentIdBySegmentName("GTVp"))
        self.assertEqual(gtvp.GetLabelValue(), 1)
        self.assertIn("86049000", gtvp.GetTerminology())
        mask = slicer.util.arrayFromSegmentBinaryLabelmap(segmentation, seg.GetSegmentIdBySegmentName("GTVp"), ct) > 0
        reference = slicer.util.arrayFromVolume(truth) == 1
        dice = 2.0 * np.count_nonzero(mask & reference) / (np.count_nonzero(mask) + np.count_nonzero(reference))
        self.assertGreater(dice, 0.4)  # the demo model: GTVp micro Dice 0.45 on held-out phantoms (README)
        self.delayDisplay(f"Self-test passed: GTVp Dice {dice:.3f}")
