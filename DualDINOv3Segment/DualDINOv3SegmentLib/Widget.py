"""The module panel: a thin Qt layer over :class:`~.SegmentationLogic.DualDINOv3SegmentLogic` (Slicer only).

The logic (and the model catalogue) are injected, so tests or other modules can drive the panel with their own.
Jobs run in a separate process; a timer polls them, so the GUI never freezes. Errors are shown in a message box
and the log with the library's wording.
"""

from __future__ import annotations

import logging
import os

import qt
import slicer

from . import Dependencies, Parameters
from .Inputs import guessInputs
from .Jobs import CANCELLED, COMPLETED

log = logging.getLogger(__name__)

MODULE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
UI_FILE = os.path.join(MODULE_DIR, "Resources", "UI", "DualDINOv3Segment.ui")
LOCAL_FILE = "__local_file__"
POLL_MS = 100


class Widget(qt.QWidget):
    def __init__(self, logic=None, catalog=None, parent=None) -> None:
        super().__init__(parent)
        from .ModelCatalog import ModelCatalog
        from .SegmentationLogic import DEVICES, DualDINOv3SegmentLogic

        self.catalog = catalog or ModelCatalog()
        self.logic = logic or DualDINOv3SegmentLogic(catalog=self.catalog)
        self.job = None
        self.jobInputs = None
        self.timer = qt.QTimer()
        self.timer.setInterval(POLL_MS)
        self.timer.timeout.connect(self.onPoll)

        layout = qt.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        uiWidget = slicer.util.loadUI(UI_FILE)
        layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)

        for entry in self.catalog.entries.values():
            self.ui.modelSelector.addItem(entry.title, entry.id)
        self.ui.modelSelector.addItem("Local segmenter file", LOCAL_FILE)
        for device in DEVICES:
            self.ui.deviceSelector.addItem(device)
        from DualDINOv3Lib.machine import available_cpus

        self.ui.threadsSpinBox.maximum = available_cpus()
        self.ui.modelPathLineEdit.filters = self.ui.modelPathLineEdit.Files
        self.ui.modelPathLineEdit.nameFilters = ["Segmenter (*.safetensors)"]

        self.parameterNode = Parameters.parameterNode(slicer.mrmlScene)
        self.setParametersToGui(Parameters.load(self.parameterNode))
        ct, pet = guessInputs(slicer.mrmlScene)
        if self.ui.ctVolumeSelector.currentNode() is None and ct is not None:
            self.ui.ctVolumeSelector.setCurrentNode(ct)
        if self.ui.petVolumeSelector.currentNode() is None and pet is not None:
            self.ui.petVolumeSelector.setCurrentNode(pet)

        for selector in (self.ui.ctVolumeSelector, self.ui.petVolumeSelector):
            selector.currentNodeChanged.connect(self.updateButtons)
        self.ui.modelSelector.currentIndexChanged.connect(self.updateButtons)
        self.ui.modelPathLineEdit.currentPathChanged.connect(self.updateButtons)
        self.ui.ctEncoderCheckBox.toggled.connect(self.updateButtons)
        self.ui.petEncoderCheckBox.toggled.connect(self.updateButtons)
        self.ui.segmentButton.clicked.connect(self.onSegment)
        self.ui.featureMapsButton.clicked.connect(self.onFeatureMaps)
        self.ui.cancelButton.clicked.connect(self.onCancel)
        self.updateButtons()

    # --- parameters <-> GUI -----------------------------------------------------------------------------

    def setParametersToGui(self, p) -> None:
        self.ui.ctVolumeSelector.setCurrentNode(p.ctVolume)
        self.ui.petVolumeSelector.setCurrentNode(p.petVolume)
        self.ui.outputSegmentationSelector.setCurrentNode(p.outputSegmentation)
        index = self.ui.modelSelector.findData(LOCAL_FILE if p.modelIsFile else p.model)
        self.ui.modelSelector.setCurrentIndex(max(index, 0))
        if p.modelIsFile:
            self.ui.modelPathLineEdit.currentPath = p.model
        self.ui.deviceSelector.setCurrentText(p.device)
        self.ui.batchSizeSpinBox.value = p.batchSize
        self.ui.threadsSpinBox.value = p.threads
        self.ui.skipEmptySlicesCheckBox.checked = p.skipEmptySlices
        self.ui.minComponentSpinBox.value = p.minComponentMm3
        self.ui.headNeckOnlyCheckBox.checked = p.headNeckOnly
        self.ui.ctEncoderCheckBox.checked = p.ctEncoder
        self.ui.petEncoderCheckBox.checked = p.petEncoder

    def parametersFromGui(self):
        modelId = self.ui.modelSelector.itemData(self.ui.modelSelector.currentIndex)
        isFile = modelId == LOCAL_FILE
        return Parameters.SegmentParameters(
            ctVolume=self.ui.ctVolumeSelector.currentNode(),
            petVolume=self.ui.petVolumeSelector.currentNode(),
            outputSegmentation=self.ui.outputSegmentationSelector.currentNode(),
            model=self.ui.modelPathLineEdit.currentPath if isFile else modelId,
            modelIsFile=isFile,
            device=self.ui.deviceSelector.currentText,
            batchSize=int(self.ui.batchSizeSpinBox.value),
            threads=int(self.ui.threadsSpinBox.value),
            skipEmptySlices=bool(self.ui.skipEmptySlicesCheckBox.checked),
            minComponentMm3=float(self.ui.minComponentSpinBox.value),
            headNeckOnly=bool(self.ui.headNeckOnlyCheckBox.checked),
            ctEncoder=bool(self.ui.ctEncoderCheckBox.checked),
            petEncoder=bool(self.ui.petEncoderCheckBox.checked),
        )

    def updateButtons(self, *_args) -> None:
        p = self.parametersFromGui()
        running = self.job is not None
        problems = self.logic.inputProblems(p.ctVolume, p.petVolume)
        if p.modelIsFile and not (p.model and os.path.isfile(p.model)):
            problems.append("Choose a segmenter file.")
        self.ui.modelPathLineEdit.enabled = p.modelIsFile and not running
        entry = self.catalog.entries.get(p.model) if not p.modelIsFile else None
        self.ui.modelDescription.text = entry.description if entry else "A segmenter you trained (.safetensors)."
        self.ui.segmentButton.enabled = not problems and not running
        self.ui.featureMapsButton.enabled = not problems and not running and bool(p.encoders())
        self.ui.segmentButton.toolTip = "\n".join(problems) or "Segment GTVp and GTVn with the chosen model."
        self.ui.cancelButton.enabled = running
        self.ui.progressBar.visible = running

    # --- running ------------------------------------------------------------------------------------------

    def _model(self, p):
        if p.modelIsFile:
            return p.model
        if self.catalog.isAvailable(p.model):
            return p.model if not self.catalog.entries[p.model].bundled else None
        dialog = slicer.util.createProgressDialog(labelText=f"Downloading {p.model}...", maximum=100)
        try:

            def progress(fraction, message):
                dialog.value = int(100 * fraction)
                slicer.app.processEvents()

            return self.catalog.modelPath(p.model, progress)
        finally:
            dialog.close()

    def _dependenciesReady(self) -> bool:
        def installTorch() -> bool:
            try:
                import PyTorchUtils
            except ImportError:
                return False
            logic = PyTorchUtils.PyTorchUtilsLogic()  # picks the torch build that fits this computer's GPU
            return logic.installTorch(askConfirmation=False, torchVersionRequirement=">=2.1") is not None

        failure = "Installing the Python packages DualDINOv3 needs failed."
        with slicer.util.tryWithErrorDisplay(failure, waitCursor=True):
            util = slicer.util
            return Dependencies.ensureDependencies(util.confirmOkCancelDisplay, util.pip_install, installTorch)
        return False

    def _start(self, task: str) -> None:
        p = self.parametersFromGui()
        Parameters.save(self.parameterNode, p)
        if not self._dependenciesReady():
            self.ui.statusLabel.text = "The Python packages DualDINOv3 needs are not installed."
            return
        try:
            model = self._model(p)
            common = {
                "model": model,
                "device": p.device,
                "waitForCompletion": False,
                "batchSize": p.batchSize,
                "threads": p.threads,
                "progress": self.onProgress,
                "completion": self.onCompletion,
            }
            if task == "segment":
                job = self.logic.segment(
                    p.ctVolume,
                    p.petVolume,
                    outputSegmentation=p.outputSegmentation,
                    skipEmptySlices=p.skipEmptySlices,
                    minComponentMm3=p.minComponentMm3,
                    headNeckOnly=p.headNeckOnly,
                    **common,
                )
            else:
                job = self.logic.featureMaps(p.ctVolume, p.petVolume, encoders=p.encoders(), **common)
        except Exception as exc:
            self.showError(exc)
            return
        self.job, self.jobInputs = job, (task, p)
        self.ui.progressBar.value = 0
        messages = self.logic.lastNotes + self.logic.lastWarnings
        self.ui.statusLabel.text = " ".join(messages) or "Starting..."
        self.timer.start()
        self.updateButtons()

    def onSegment(self) -> None:
        self._start("segment")

    def onFeatureMaps(self) -> None:
        self._start("featureMaps")

    def onCancel(self) -> None:
        if self.job is not None:
            self.job.cancel()

    def onPoll(self) -> None:
        if self.job is not None:
            self.job.poll()

    def onProgress(self, fraction: float, message: str) -> None:
        self.ui.progressBar.value = round(100 * fraction)
        self.ui.statusLabel.text = message

    def onCompletion(self, job) -> None:
        self.timer.stop()
        task, p = self.jobInputs
        self.job, self.jobInputs = None, None
        if job.state == COMPLETED:
            if task == "segment":
                self.ui.outputSegmentationSelector.setCurrentNode(job.result)
                self.logic.showResults(p.ctVolume, p.petVolume, job.result)
                self.ui.statusLabel.text = f"Segmented: '{job.result.GetName()}' (GTVp, GTVn)."
            else:
                first = next(iter(job.result.values()))
                slicer.util.setSliceViewerLayers(background=first, foreground=None, fit=False)
                names = ", ".join(node.GetName() for node in job.result.values())
                self.ui.statusLabel.text = f"Feature maps: {names} (shown: {first.GetName()})."
        elif job.state == CANCELLED:
            self.ui.statusLabel.text = "Cancelled; the scene is as it was."
        else:
            self.showError(job.error)
        self.updateButtons()

    def showError(self, error) -> None:
        text = str(error)
        log.error("DualDINOv3: %s", text)
        self.ui.statusLabel.text = text
        slicer.util.errorDisplay(text, windowTitle="DualDINOv3")

    def cleanup(self) -> None:
        self.timer.stop()
        if self.job is not None:
            self.job.cancel()
