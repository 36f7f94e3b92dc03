"""Offscreen slice views through Slicer's own pipeline: ``vtkMRMLSliceLogic`` blends the background and
foreground volume layers, and the slice-view displayable managers (segmentations included) draw on top, in a
VTK render window (EGL offscreen on these machines). What a user would see in Slicer's Red/Green/Yellow views.
"""

from __future__ import annotations

import os

os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")

import numpy as np
import slicer
import vtk
from vtk.util.numpy_support import vtk_to_numpy

LAYOUT_NAMES = {"Axial": "Red", "Sagittal": "Yellow", "Coronal": "Green"}
MANAGERS = ("vtkMRMLSegmentationsDisplayableManager2D",)


class _ImageLayer:
    """The slice image as a background 2D actor (the role CTK's light-box renderer manager has in Slicer;
    this slicer-core has no ``vtkMRMLLightBoxRendererManagerProxy`` to subclass, and one view needs none)."""

    def __init__(self, renderer):
        self.renderer = renderer
        self.mapper = vtk.vtkImageMapper()
        self.mapper.SetColorWindow(255)  # the slice logic's output is already RGBA 0-255
        self.mapper.SetColorLevel(127.5)
        self.actor = vtk.vtkActor2D()
        self.actor.SetMapper(self.mapper)
        self.actor.GetProperty().SetDisplayLocationToBackground()
        renderer.AddViewProp(self.actor)

    def connect(self, connection):
        self.mapper.SetInputConnection(connection)


class OffscreenSliceView:
    """One slice view of ``orientation`` (Axial, Coronal, Sagittal), ``size`` pixels square."""

    def __init__(self, scene, applicationLogic, orientation: str = "Axial", size: int = 320) -> None:
        self.size = size
        self.renderer = vtk.vtkRenderer()
        self.renderer.GetActiveCamera().ParallelProjectionOn()
        self.window = vtk.vtkRenderWindow()
        self.window.SetOffScreenRendering(1)
        self.window.SetMultiSamples(0)
        self.window.SetSize(size, size)
        self.window.AddRenderer(self.renderer)
        self.interactor = vtk.vtkRenderWindowInteractor()
        self.interactor.SetRenderWindow(self.window)
        self.interactor.Initialize()
        self.layer = _ImageLayer(self.renderer)

        factory = slicer.vtkMRMLSliceViewDisplayableManagerFactory.GetInstance()
        factory.SetMRMLApplicationLogic(applicationLogic)
        for manager in MANAGERS:
            if not factory.IsDisplayableManagerRegistered(manager):
                factory.RegisterDisplayableManager(manager)
        self.managers = slicer.vtkMRMLDisplayableManagerGroup()
        self.managers.SetRenderer(self.renderer)
        self.managers.Initialize(factory, self.renderer)

        self.logic = slicer.vtkMRMLSliceLogic()
        self.logic.SetMRMLApplicationLogic(applicationLogic)
        if applicationLogic.GetSliceLogics() is None:  # the application makes this collection for its views
            applicationLogic.SetSliceLogics(vtk.vtkCollection())
        applicationLogic.GetSliceLogics().AddItem(self.logic)
        self.logic.SetMRMLScene(scene)
        self.sliceNode = self.logic.AddSliceNode(LAYOUT_NAMES[orientation])
        self.sliceNode.SetOrientation(orientation)
        self.managers.SetMRMLDisplayableNode(self.sliceNode)
        self.logic.ResizeSliceNode(size, size)

    @property
    def compositeNode(self):
        return self.logic.GetSliceCompositeNode()

    def show(self, rasPoint=None) -> None:
        """Fit the view to the background volume; centre the slice on ``rasPoint`` (mm) if given."""
        self.logic.ResizeSliceNode(self.size, self.size)
        self.logic.FitSliceToBackground()
        if rasPoint is not None:
            self.sliceNode.JumpSliceByOffsetting(*rasPoint)
        self.layer.connect(self.logic.GetImageDataConnection())

    def render(self) -> np.ndarray:
        """The view as a (H, W, 3) uint8 array, row 0 at the top (as in the PNG)."""
        self.logic.UpdateImageData()
        self.window.Render()
        grab = vtk.vtkWindowToImageFilter()
        grab.SetInput(self.window)
        grab.SetInputBufferTypeToRGB()
        grab.ReadFrontBufferOff()
        grab.Update()
        image = grab.GetOutput()
        width, height, _ = image.GetDimensions()
        pixels = vtk_to_numpy(image.GetPointData().GetScalars()).reshape(height, width, -1)[..., :3]
        return np.ascontiguousarray(pixels[::-1])

    def save(self, path) -> np.ndarray:
        pixels = self.render()
        writeRgbPng(pixels, path)
        return pixels

    def rasToPixel(self, ras) -> tuple[float, float]:
        """Where a RAS point (mm) falls in the rendered image: (row from the top, column)."""
        xyToRas = vtk.vtkMatrix4x4()
        xyToRas.DeepCopy(self.sliceNode.GetXYToRAS())
        xyToRas.Invert()
        x, y, _, _ = xyToRas.MultiplyPoint([*ras, 1.0])
        return self.size - 1 - y, x

    def close(self) -> None:
        self.managers.SetMRMLDisplayableNode(None)
        self.window.Finalize()


def writeRgbPng(pixels: np.ndarray, path) -> None:
    image = vtk.vtkImageData()
    height, width, _ = pixels.shape
    image.SetDimensions(width, height, 1)
    from vtk.util.numpy_support import numpy_to_vtk

    scalars = numpy_to_vtk(np.ascontiguousarray(pixels[::-1]).reshape(-1, 3), deep=True)
    scalars.SetNumberOfComponents(3)
    image.GetPointData().SetScalars(scalars)
    writer = vtk.vtkPNGWriter()
    writer.SetFileName(str(path))
    writer.SetInputData(image)
    writer.Write()
