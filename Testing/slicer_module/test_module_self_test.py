"""The module file's Slicer self-test (DualDINOv3SegmentTest), run on the slicer-core harness.

Only for this test, small stand-ins of the application layer the self-test class itself uses are installed:
``slicer.ScriptedLoadableModule`` (base classes; delayDisplay logs) and ``slicer.modules.segmentations``
(for ``slicer.util.arrayFromSegmentBinaryLabelmap``). The module's logic never uses either.
"""

from __future__ import annotations

import importlib
import logging
import sys
import types
import unittest

import pytest
import slicer
from slicer_harness import jobLeftovers


def _scriptedLoadableModuleStandIn():
    module = types.ModuleType("slicer.ScriptedLoadableModule")

    class ScriptedLoadableModule:
        def __init__(self, parent):
            self.parent = parent

    class ScriptedLoadableModuleWidget:
        def __init__(self, parent=None):
            self.parent = parent

    class ScriptedLoadableModuleTest(unittest.TestCase):
        def delayDisplay(self, message, msec=0):
            logging.getLogger("selftest").info("%s", message)

    module.ScriptedLoadableModule = ScriptedLoadableModule
    module.ScriptedLoadableModuleWidget = ScriptedLoadableModuleWidget
    module.ScriptedLoadableModuleTest = ScriptedLoadableModuleTest
    return module


@pytest.fixture
def applicationLayer(slicerApp, monkeypatch):
    monkeypatch.setitem(sys.modules, "slicer.ScriptedLoadableModule", _scriptedLoadableModuleStandIn())
    segmentations = types.SimpleNamespace(logic=lambda: slicerApp.segmentationsLogic)
    monkeypatch.setattr(slicer, "modules", types.SimpleNamespace(segmentations=segmentations), raising=False)
    sys.modules.pop("DualDINOv3Segment", None)
    yield importlib.import_module("DualDINOv3Segment")
    sys.modules.pop("DualDINOv3Segment", None)


@pytest.mark.slow
def test_the_slicer_self_test_passes(applicationLayer, tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # the job's temporary folder goes here
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    module = applicationLayer
    assert module.DualDINOv3SegmentLogic.__module__ == "DualDINOv3SegmentLib.SegmentationLogic"
    test = module.DualDINOv3SegmentTest()
    test.runTest()
    names = [slicer.mrmlScene.GetNthNode(i).GetName() for i in range(slicer.mrmlScene.GetNumberOfNodes())]
    assert "DualDINOv3 phantom CT" in names and any("DualDINOv3" in n for n in names)
    assert jobLeftovers(tmp_path) == []
