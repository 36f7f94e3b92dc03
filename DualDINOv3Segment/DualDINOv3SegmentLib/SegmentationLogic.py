"""``DualDINOv3SegmentLogic``: the module's console API. No Qt, no ``slicer.app``, no ``slicer.modules``.

It needs only an MRML scene (``slicer.mrmlScene`` by default): the same code runs in Slicer's Python console
and on the ``slicer-core`` package. Inference runs in a separate process (:mod:`.Jobs`); nodes are created only
when a job completes, so a failed or cancelled job leaves the scene exactly as it was.

>>> logic = DualDINOv3SegmentLogic()
>>> segmentation = logic.segment(ctNode, petNode)  # the bundled demo model, waits for the result
>>> job = logic.segment(ctNode, petNode, waitForCompletion=False)  # job.progress, job.cancel(), job.poll()
>>> maps = logic.featureMaps(ctNode, petNode)  # same inputs, model and device: loaded, no second encoder pass
"""

from __future__ import annotations

import json
import logging
import os
import tempfile

import numpy as np
import slicer

from DualDINOv3Lib.machine import DEFAULT_BATCH_SIZE

from . import Jobs
from .FeatureMapCache import PCA_LAYER, FeatureMapCache, featureMapKey
from .Inputs import checkInputs, nodeProblems
from .MRMLVolumes import addVolumeNode
from .Terminology import segmentDescriptions

log = logging.getLogger(__name__)

PET_COLOR_NODE_ID = "vtkMRMLPETProceduralColorNodePET-Heat"
DEVICES = ("auto", "cpu", "cuda", "mps")


FEATURE_MAP_CACHE_FOLDER = "DualDINOv3-feature-maps"
"""Folder (in the temporary directory) of the feature maps kept from Segment runs; every job's own temporary
folder is removed when the job ends."""


class DualDINOv3SegmentLogic:
    """Segment GTVp/GTVn and compute PCA feature maps on volume nodes of a scene.

    ``scene``: the MRML scene (default ``slicer.mrmlScene``). ``dicomDatabase``: Slicer's DICOM database
    (default ``slicer.dicomDatabase`` when it exists), used to convert a PET loaded from DICOM to SUV.
    ``tempDirectory``: where each job's temporary folder is made (default: the system's). ``catalog``: a
    :class:`~.ModelCatalog.ModelCatalog` that resolves model ids (default: the module's catalogue).
    ``featureMapCache``: where Segment keeps the feature maps it computes in the same encoder pass, for
    :meth:`featureMaps` on the same inputs (default: a :class:`~.FeatureMapCache.FeatureMapCache` of two entries
    in ``tempDirectory``); ``False`` = Segment computes labels only.
    """

    def __init__(
        self, scene=None, dicomDatabase=None, tempDirectory=None, catalog=None, python=None, featureMapCache=None
    ) -> None:
        self.scene = scene if scene is not None else slicer.mrmlScene
        self.dicomDatabase = dicomDatabase if dicomDatabase is not None else getattr(slicer, "dicomDatabase", None)
        self.tempDirectory = tempDirectory
        self.catalog = catalog
        self.python = python
        if featureMapCache is None:
            folder = os.path.join(tempDirectory or tempfile.gettempdir(), FEATURE_MAP_CACHE_FOLDER)
            featureMapCache = FeatureMapCache(folder)
        self.featureMapCache = featureMapCache or None
        self.lastNotes: list[str] = []
        self.lastWarnings: list[str] = []

    # --- inputs ------------------------------------------------------------------------------------------

    def inputProblems(self, ctVolumeNode, petVolumeNode) -> list[str]:
        """Why the nodes cannot be segmented (cheap checks, for enabling buttons); empty when they can."""
        return nodeProblems(ctVolumeNode, petVolumeNode)

    def resolveModel(self, model):
        """``None`` (the bundled demo model), a segmenter ``.safetensors`` path, or a catalogue model id."""
        if model is None:
            return None
        model = os.fspath(model)
        if os.path.isfile(model):
            return os.path.abspath(model)
        catalog = self.catalog
        if catalog is None:
            from .ModelCatalog import ModelCatalog

            catalog = self.catalog = ModelCatalog()
        if catalog.has(model):
            return catalog.modelPath(model)
        from DualDINOv3Lib.errors import CheckpointError

        raise CheckpointError(
            f"model {model!r} is neither a segmenter file nor a catalogue entry ({', '.join(catalog.ids())})"
        )

    def _check(self, ctVolumeNode, petVolumeNode, model, options: dict):
        """The checked inputs (library Volumes, PET in SUV), the model's path (None: bundled) and their cache key;
        ``options`` is normalised in place (the thread count checked)."""
        checked = checkInputs(ctVolumeNode, petVolumeNode, self.dicomDatabase)
        self.lastNotes, self.lastWarnings = list(checked.notes), list(checked.warnings)
        for note in checked.notes:
            log.info("%s", note)
        device = str(options.get("device", "auto"))
        if device not in DEVICES and not device.startswith("cuda:"):
            from DualDINOv3Lib.errors import ConfigError

            raise ConfigError(f"unknown device {device!r}; use one of {', '.join(DEVICES)}")
        if options.get("threads", 0) != 0:  # 0: automatic (InferenceWorker.SLICER_RESERVED_CORES)
            from DualDINOv3Lib.machine import check_threads

            options["threads"] = check_threads(options["threads"])  # a plain int, also for the job file
        modelPath = self.resolveModel(model)
        key = featureMapKey(checked.ct, checked.pet, modelPath, device) if self.featureMapCache else None
        return checked, modelPath, key

    def _prepare(self, checked, modelPath, task: str, options: dict):
        """Write the checked inputs and the job description into a new temporary folder."""
        from DualDINOv3Lib import write_volume

        folder = tempfile.mkdtemp(prefix="DualDINOv3-", dir=self.tempDirectory)
        try:
            job = {"task": task, "model": modelPath, "outputDir": folder, **options}
            job["ct"] = str(write_volume(checked.ct, os.path.join(folder, "ct.nrrd")))
            job["pet"] = str(write_volume(checked.pet, os.path.join(folder, "pet.nrrd")))
            jobFile = os.path.join(folder, "job.json")
            with open(jobFile, "w") as f:
                json.dump(job, f)
        except BaseException:
            import shutil

            shutil.rmtree(folder, ignore_errors=True)
            raise
        return folder, jobFile

    def _run(self, folder, jobFile, finalize, waitForCompletion, progress, completion):
        job = Jobs.ProcessJob(
            jobFile,
            folder,
            finalize,
            python=self.python,
            progressCallback=progress,
            completionCallback=completion,
        )
        return job.wait() if waitForCompletion else job

    # --- segmentation ----------------------------------------------------------------------------------

    def segment(
        self,
        ctVolumeNode,
        petVolumeNode,
        model=None,
        outputSegmentation=None,
        device="auto",
        waitForCompletion=True,
        batchSize=DEFAULT_BATCH_SIZE,
        skipEmptySlices=True,
        minComponentMm3=0.0,
        headNeckOnly=True,
        threads=0,
        progress=None,
        completion=None,
    ):
        """GTVp (label 1) and GTVn (label 2) segments on the CT geometry.

        With a feature-map cache (the default) the same worker pass also computes every encoder's PCA maps
        (``segment_with_feature_maps``: no extra encoder pass) and keeps them on disk, so :meth:`featureMaps` on
        the same inputs, model and device only loads them.

        Returns the segmentation node (``outputSegmentation``, whose segments of the same names are replaced,
        or a new node), or with ``waitForCompletion=False`` a :class:`~.Jobs.ProcessJob` whose ``result`` is
        that node. ``threads``: CPU threads of the worker (0: all physical cores but one, so Slicer stays
        responsive). ``headNeckOnly``: remove regions below the thorax, inside the skull, or of excreted tracer
        (see ``DualDINOv3Lib.inference.postprocess``). ``progress(fraction, message)`` and ``completion(job)`` are
        called on the polling thread. Raises ``DualDINOv3Error`` (with the library's wording) for bad inputs,
        before any work.
        """
        if outputSegmentation is not None and not outputSegmentation.IsA("vtkMRMLSegmentationNode"):
            from DualDINOv3Lib.errors import DataError

            raise DataError(f"the output '{outputSegmentation.GetName()}' is not a segmentation node")
        options = {
            "device": device,
            "batchSize": int(batchSize),
            "threads": threads,
            "skipEmptySlices": bool(skipEmptySlices),
            "minComponentMm3": float(minComponentMm3),
            "headNeckOnly": bool(headNeckOnly),
        }
        checked, modelPath, key = self._check(ctVolumeNode, petVolumeNode, model, options)
        if key is not None:
            options.update(featureMaps=True, featureMapLayer=PCA_LAYER)
        folder, jobFile = self._prepare(checked, modelPath, "segment", options)

        def finalize(outputs):
            labels = np.load(outputs["label"])
            if key is not None and outputs.get("featureMaps"):
                try:
                    self.featureMapCache.store(key, outputs["featureMaps"])
                except OSError as exc:  # the segmentation stands; the maps will be computed when asked for
                    log.warning("could not keep the feature maps for later: %s", exc)
            return self.segmentationFromLabels(labels, ctVolumeNode, outputSegmentation)

        return self._run(folder, jobFile, finalize, waitForCompletion, progress, completion)

    def segmentationFromLabels(self, labels: np.ndarray, ctVolumeNode, outputSegmentation=None, labelNames=None):
        """Put a (Z, Y, X) label array on the CT grid into segments named, coded and coloured by the .term.json."""
        from DualDINOv3Lib.domain import LABEL_VALUES

        descriptions = segmentDescriptions(labelNames or LABEL_VALUES)
        node = outputSegmentation
        if node is None:
            node = self.scene.AddNewNodeByClass(
                "vtkMRMLSegmentationNode", self.scene.GenerateUniqueName(f"{ctVolumeNode.GetName()} DualDINOv3")
            )
        node.CreateDefaultDisplayNodes()
        node.SetReferenceImageGeometryParameterFromVolumeNode(ctVolumeNode)
        segmentation = node.GetSegmentation()
        wasModifying = node.StartModify()
        try:
            for description in descriptions.values():
                old = segmentation.GetSegmentIdBySegmentName(description.name)
                if old:
                    segmentation.RemoveSegment(old)
            labelmap = slicer.vtkMRMLLabelMapVolumeNode()
            addVolumeNodeArray(labelmap, labels.astype(np.uint8), ctVolumeNode)
            importedIds = _importLabelmap(labelmap, node)
            for value, description in descriptions.items():
                segmentId = importedIds.get(value)
                if segmentId is None:  # the label is absent from the result: an empty segment
                    segmentId = segmentation.AddEmptySegment("", description.name)
                segment = segmentation.GetSegment(segmentId)
                segment.SetName(description.name)
                segment.SetColor(*description.color)
                segment.SetLabelValue(value)
                segment.SetTerminology(description.terminology)
                segment.SetTag("DualDINOv3.labelValue", str(value))
        finally:
            node.EndModify(wasModifying)
        display = node.GetDisplayNode()
        display.SetVisibility2DOutline(True)
        display.SetVisibility2DFill(True)
        display.SetOpacity2DFill(0.3)
        return node

    # --- feature maps ------------------------------------------------------------------------------------

    def featureMaps(
        self,
        ctVolumeNode,
        petVolumeNode,
        model=None,
        encoders=("ct", "pet"),
        device="auto",
        waitForCompletion=True,
        batchSize=DEFAULT_BATCH_SIZE,
        threads=0,
        progress=None,
        completion=None,
    ):
        """RGB PCA maps of what each encoder sees: ``{encoder: vtkMRMLVectorVolumeNode}`` on the CT geometry.

        ``encoders``: ``"ct"`` and/or ``"pet"`` (``"encoder"`` for a single-stream model; None = all).
        ``threads`` as in :meth:`segment`.
        With ``waitForCompletion=False`` a job whose ``result`` is that dict. After :meth:`segment` on the same
        inputs, model and device the maps that job computed are loaded (no worker, no encoder pass; the job is
        a :class:`~.Jobs.FinishedJob`).
        """
        if isinstance(encoders, str):
            encoders = [encoders]
        encoders = None if encoders is None else list(encoders)
        options = {"device": device, "batchSize": int(batchSize), "threads": threads, "encoders": encoders}

        def finalize(outputs):
            nodes = {}
            for name, path in outputs.items():
                rgb = np.load(path)
                title = f"{ctVolumeNode.GetName()} PCA {name.upper()}"
                nodes[name] = addVolumeNode(self.scene, rgb, ctVolumeNode, title, "vtkMRMLVectorVolumeNode")
            return nodes

        checked, modelPath, key = self._check(ctVolumeNode, petVolumeNode, model, options)
        cached = self.featureMapCache.load(key, encoders) if key is not None else None
        if cached is not None:
            log.info("feature maps from the Segment run on the same inputs (no encoder pass)")
            job = Jobs.FinishedJob(finalize(cached), progressCallback=progress, completionCallback=completion)
            return job.wait() if waitForCompletion else job
        folder, jobFile = self._prepare(checked, modelPath, "featureMaps", options)
        return self._run(folder, jobFile, finalize, waitForCompletion, progress, completion)

    # --- display -----------------------------------------------------------------------------------------

    def showResults(self, ctVolumeNode, petVolumeNode=None, segmentationNode=None, foregroundOpacity=0.5):
        """Every slice view: CT in the background, PET (PET-Heat colours) in the foreground, segments outlined.

        Changes display settings only (a CT still on automatic window/level gets a soft-tissue window).
        """
        ctVolumeNode.CreateDefaultDisplayNodes()
        ctDisplay = ctVolumeNode.GetVolumeDisplayNode()
        if ctDisplay.GetAutoWindowLevel():
            ctDisplay.SetAutoWindowLevel(False)
            ctDisplay.SetWindowLevel(400.0, 40.0)
        if petVolumeNode is not None:
            petVolumeNode.CreateDefaultDisplayNodes()
            colorNode = self.scene.GetNodeByID(PET_COLOR_NODE_ID)
            if colorNode is not None:
                display = petVolumeNode.GetVolumeDisplayNode()
                display.SetAndObserveColorNodeID(colorNode.GetID())
                display.SetAutoWindowLevel(False)
                high = float(np.percentile(slicer.util.arrayFromVolume(petVolumeNode), 99.9))
                display.SetWindowLevelMinMax(0.0, max(5.0, high))
        for composite in self.scene.GetNodesByClass("vtkMRMLSliceCompositeNode"):
            composite.SetBackgroundVolumeID(ctVolumeNode.GetID())
            composite.SetForegroundVolumeID(petVolumeNode.GetID() if petVolumeNode is not None else None)
            composite.SetForegroundOpacity(foregroundOpacity if petVolumeNode is not None else 0.0)
        if segmentationNode is not None:
            segmentationNode.CreateDefaultDisplayNodes()
            segmentationNode.GetDisplayNode().SetVisibility(True)


def addVolumeNodeArray(node, array, referenceNode) -> None:
    """Fill a node that is not in a scene with ``array`` on ``referenceNode``'s grid."""
    from .MRMLVolumes import copyGeometry

    copyGeometry(referenceNode, node)
    slicer.util.updateVolumeFromArray(node, np.ascontiguousarray(array))


def _importLabelmap(labelmapNode, segmentationNode) -> dict[int, str]:
    """Import the labelmap's non-zero values as segments; ``{label value: new segment id}``."""
    segmentation = segmentationNode.GetSegmentation()
    before = set(segmentation.GetSegmentIDs())
    logic = slicer.vtkSlicerSegmentationsModuleLogic
    if not logic.ImportLabelmapToSegmentationNode(labelmapNode, segmentationNode, ""):
        raise RuntimeError("Slicer could not import the label map into the segmentation")
    values = [int(v) for v in np.unique(slicer.util.arrayFromVolume(labelmapNode)) if v != 0]
    newIds = [sid for sid in segmentation.GetSegmentIDs() if sid not in before]
    return dict(zip(values, newIds, strict=True))
