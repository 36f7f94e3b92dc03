"""The panel's .ui loads with PySide6's QUiLoader (offscreen), with stand-ins for Slicer's custom widget classes;
every widget name the Python code uses exists; a picture of the panel is rendered.

Set DUALDINOV3_WRITE_SCREENSHOTS=1 to (re)write the README's picture in docs/screenshots/.
"""

from __future__ import annotations

import os
import re

import pytest
from slicer_harness import MODULE_DIR, REPO_ROOT

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
from PySide6 import QtCore, QtUiTools, QtWidgets  # the test extra installs PySide6: missing must fail
from pythonqt_standin import STAND_INS, ctkPathLineEdit, qMRMLNodeComboBox

UI_FILE = MODULE_DIR / "Resources" / "UI" / "DualDINOv3Segment.ui"
CODE_FILES = [MODULE_DIR / "DualDINOv3Segment.py", MODULE_DIR / "DualDINOv3SegmentLib" / "Widget.py"]
SCREENSHOT = REPO_ROOT / "docs" / "screenshots" / "panel.png"


@pytest.fixture(scope="module")
def app():
    return QtWidgets.QApplication.instance() or QtWidgets.QApplication([])


@pytest.fixture
def panel(app):
    loader = QtUiTools.QUiLoader()
    for cls in STAND_INS:
        loader.registerCustomWidget(cls)
    file = QtCore.QFile(str(UI_FILE))
    assert file.open(QtCore.QFile.ReadOnly)
    widget = loader.load(file)
    file.close()
    assert widget is not None, loader.errorString()
    yield widget
    widget.deleteLater()


def test_every_widget_name_the_code_uses_exists_with_its_slicer_class(panel):
    used = set()
    for path in CODE_FILES:
        used |= set(re.findall(r"\bui\.(\w+)", path.read_text()))
    assert used, "the code uses no ui names?"
    missing = sorted(name for name in used if panel.findChild(QtCore.QObject, name) is None)
    assert not missing, f"not in {UI_FILE.name}: {missing}"
    for name in ("ctVolumeSelector", "petVolumeSelector", "outputSegmentationSelector"):
        selector = panel.findChild(QtCore.QObject, name)
        assert isinstance(selector, qMRMLNodeComboBox), name
        assert selector.noneEnabled and not selector.removeEnabled
    assert panel.findChild(QtCore.QObject, "ctVolumeSelector").nodeTypes == ["vtkMRMLScalarVolumeNode"]
    assert panel.findChild(QtCore.QObject, "outputSegmentationSelector").nodeTypes == ["vtkMRMLSegmentationNode"]
    assert isinstance(panel.findChild(QtCore.QObject, "modelPathLineEdit"), ctkPathLineEdit)
    assert panel.findChild(QtCore.QObject, "inputsCollapsibleButton").title() == "Inputs"
    threads = panel.findChild(QtWidgets.QSpinBox, "threadsSpinBox")  # 0 = automatic, shown as its own text
    assert threads.minimum() == threads.value() == 0 and threads.specialValueText().startswith("auto")
    for name in ("segmentButton", "featureMapsButton", "cancelButton"):
        assert not panel.findChild(QtCore.QObject, name).isEnabled()  # enabled by the code once inputs are valid


def test_panel_picture(panel, tmp_path):
    find = lambda name: panel.findChild(QtCore.QObject, name)  # noqa: E731
    find("ctVolumeSelector").addItem("DualDINOv3 phantom CT")
    find("petVolumeSelector").addItem("DualDINOv3 phantom PET")
    find("outputSegmentationSelector").addItem("Create new segmentation")
    find("modelSelector").addItems(["Demo model (synthetic phantoms only)", "Local segmenter file"])
    find("modelDescription").setText(
        "Dual CT + PET ViT trained on synthetic head-and-neck phantoms. NOT for patient data."
    )
    find("modelPathLineEdit").setEnabled(False)
    find("deviceSelector").addItems(["auto", "cpu", "cuda", "mps"])
    find("segmentButton").setEnabled(False)
    find("cancelButton").setEnabled(True)
    progress = find("progressBar")
    progress.setVisible(True)
    progress.setValue(40)
    find("statusLabel").setText("segmented 12/30 slices")
    panel.resize(400, 640)
    panel.show()
    QtWidgets.QApplication.processEvents()
    image = panel.grab()
    assert image.width() >= 380 and image.height() >= 400
    paths = [tmp_path / "panel.png"]
    if os.environ.get("DUALDINOV3_WRITE_SCREENSHOTS"):
        paths.append(SCREENSHOT)
    for path in paths:
        assert image.save(str(path))
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
