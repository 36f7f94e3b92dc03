"""The module's Widget driven on PySide6 (pythonqt_standin.py) over the slicer-core harness: pre-selection,
buttons, a background Segment run polled by the Qt timer, Cancel, and errors shown with the library's wording."""

from __future__ import annotations

import contextlib
import os
import sys
import time

import pytest
import slicer
from slicer_harness import sceneSummary

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
import pythonqt_standin
from DualDINOv3SegmentLib import DualDINOv3SegmentLogic
from DualDINOv3SegmentLib.SampleData import loadPhantom
from PySide6 import QtWidgets


@pytest.fixture
def widgetFactory(slicerApp, monkeypatch, tmp_path):
    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication([])
    monkeypatch.setitem(sys.modules, "qt", pythonqt_standin.qtModule())
    sys.modules.pop("DualDINOv3SegmentLib.Widget", None)
    errors, asked = [], []
    util = slicer.util
    monkeypatch.setattr(util, "loadUI", pythonqt_standin.loadUI)
    monkeypatch.setattr(util, "childWidgetVariables", pythonqt_standin.childWidgetVariables)
    monkeypatch.setattr(util, "errorDisplay", lambda text, **kw: errors.append(text))
    monkeypatch.setattr(util, "confirmOkCancelDisplay", lambda text, **kw: asked.append(text) or False)
    monkeypatch.setattr(util, "pip_install", lambda requirements: pytest.fail("nothing is missing here"))
    monkeypatch.setattr(util, "tryWithErrorDisplay", lambda *a, **kw: contextlib.nullcontext())
    monkeypatch.setattr(util, "setSliceViewerLayers", lambda **kw: None)
    from DualDINOv3SegmentLib.Widget import Widget

    widgets = []

    def make():
        widget = Widget(logic=DualDINOv3SegmentLogic(tempDirectory=str(tmp_path)))
        widgets.append(widget)
        return widget

    yield make, errors, asked, app
    for widget in widgets:
        widget.cleanup()
        widget.deleteLater()
    sys.modules.pop("DualDINOv3SegmentLib.Widget", None)


def _waitForJob(widget, app, limit_s=300.0):
    end = time.monotonic() + limit_s
    while widget.job is not None and time.monotonic() < end:
        app.processEvents()  # the widget's QTimer polls the job
        time.sleep(0.02)
    assert widget.job is None, "the job did not finish"


def test_inputs_preselected_and_buttons_follow_them(widgetFactory, slicerApp):
    make, errors, asked, _app = widgetFactory
    assert make().ui.segmentButton.enabled is False  # empty scene
    ct, pet = loadPhantom(slicerApp.scene)
    widget = make()
    assert widget.ui.ctVolumeSelector.currentNode() is ct and widget.ui.petVolumeSelector.currentNode() is pet
    assert widget.ui.segmentButton.enabled and widget.ui.featureMapsButton.enabled
    assert not widget.ui.cancelButton.enabled and not widget.ui.modelPathLineEdit.enabled
    assert "NOT for patient data" in widget.ui.modelDescription.text
    widget.ui.petVolumeSelector.setCurrentNode(ct)
    assert not widget.ui.segmentButton.enabled and "different" in widget.ui.segmentButton.toolTip
    widget.ui.petVolumeSelector.setCurrentNode(pet)
    widget.ui.ctEncoderCheckBox.checked = False
    widget.ui.petEncoderCheckBox.checked = False
    assert not widget.ui.featureMapsButton.enabled and widget.ui.segmentButton.enabled
    widget.ui.modelSelector.setCurrentIndex(widget.ui.modelSelector.findData("__local_file__"))
    assert not widget.ui.segmentButton.enabled and widget.ui.modelPathLineEdit.enabled
    assert errors == [] and asked == []


@pytest.mark.slow
def test_segment_runs_in_the_background_and_the_result_is_selected(widgetFactory, slicerApp, monkeypatch):
    make, errors, _, app = widgetFactory
    ct, pet = loadPhantom(slicerApp.scene)
    widget = make()
    widget.ui.deviceSelector.setCurrentText("cpu")
    widget.ui.segmentButton.click()
    assert widget.job is not None and widget.ui.cancelButton.enabled and not widget.ui.segmentButton.enabled
    _waitForJob(widget, app)
    assert errors == []
    output = widget.ui.outputSegmentationSelector.currentNode()
    assert output is not None and output.GetSegmentation().GetSegmentIdBySegmentName("GTVp")
    assert "Segmented" in widget.ui.statusLabel.text
    assert widget.ui.segmentButton.enabled and not widget.ui.cancelButton.enabled
    from DualDINOv3SegmentLib import Parameters

    saved = Parameters.load(Parameters.parameterNode(slicerApp.scene))
    assert saved.device == "cpu" and saved.ctVolume is ct and saved.petVolume is pet

    # Show feature maps on the same inputs: the Segment run's maps, no second worker (no encoder pass)
    from DualDINOv3SegmentLib import Jobs

    started = []
    processJob = Jobs.ProcessJob
    monkeypatch.setattr(Jobs, "ProcessJob", lambda *a, **k: started.append(a) or processJob(*a, **k))
    widget.ui.featureMapsButton.click()
    _waitForJob(widget, app)
    assert started == [] and errors == [] and "Feature maps" in widget.ui.statusLabel.text
    assert widget.ui.featureMapsButton.enabled and widget.ui.segmentButton.enabled


def test_cancel_from_the_panel_and_errors_in_a_message_box(widgetFactory, slicerApp, tmp_path):
    make, errors, _, app = widgetFactory
    loadPhantom(slicerApp.scene)
    widget = make()
    before = sceneSummary(slicerApp.scene)
    widget.ui.deviceSelector.setCurrentText("cpu")
    widget.ui.batchSizeSpinBox.value = 1
    widget.ui.featureMapsButton.click()
    widget.ui.cancelButton.click()
    assert widget.job is None and "Cancelled" in widget.ui.statusLabel.text
    # no node added or removed (only the parameter node was written when the job started)
    assert [node_id for node_id, *_ in sceneSummary(slicerApp.scene)] == [node_id for node_id, *_ in before]
    assert errors == []

    bad = tmp_path / "broken.safetensors"
    bad.write_bytes(b"not a segmenter")
    widget.ui.modelSelector.setCurrentIndex(widget.ui.modelSelector.findData("__local_file__"))
    widget.ui.modelPathLineEdit.currentPath = str(bad)
    assert widget.ui.segmentButton.enabled
    widget.ui.segmentButton.click()
    _waitForJob(widget, app)
    assert len(errors) == 1 and "broken.safetensors" in errors[0]
    assert widget.ui.statusLabel.text == errors[0]


def test_the_threads_setting_reaches_the_parameters(widgetFactory, slicerApp):
    from DualDINOv3Lib.machine import available_cpus

    make, *_ = widgetFactory
    widget = make()
    assert widget.ui.threadsSpinBox.maximum == available_cpus() and widget.parametersFromGui().threads == 0
    widget.ui.threadsSpinBox.value = 1
    assert widget.parametersFromGui().threads == 1
