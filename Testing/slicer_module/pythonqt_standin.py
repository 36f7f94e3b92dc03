"""Just enough of Slicer's Qt layer, on PySide6, to drive the module's Widget in a test.

Slicer's scripts use PythonQt, where Qt properties read and write as attributes (``button.enabled = False``);
:class:`Wrapped` gives PySide6 widgets that behaviour. ``qMRMLNodeComboBox`` is a stand-in over a real MRML
scene (nodes of its ``nodeTypes``, ``currentNode()``/``setCurrentNode()``, ``currentNodeChanged``).
Differences from PythonQt remain (e.g. enum access); this checks the Widget's wiring, not Slicer itself.
"""

from __future__ import annotations

import types

from PySide6 import QtCore, QtUiTools, QtWidgets

Property, Signal = QtCore.Property, QtCore.Signal


def _property(kind, name, default):
    def getter(self):
        return getattr(self, "_" + name, default)

    def setter(self, value):
        setattr(self, "_" + name, value)

    return Property(kind, getter, setter)


class Wrapped:
    """A Qt object whose Qt properties are attributes, as in PythonQt."""

    def __init__(self, obj):
        object.__setattr__(self, "_obj", obj)

    def _isProperty(self, name):
        return self._obj.metaObject().indexOfProperty(name) >= 0

    def __getattr__(self, name):
        if self._isProperty(name):
            return self._obj.property(name)
        return getattr(self._obj, name)

    def __setattr__(self, name, value):
        if self._isProperty(name):
            if not self._obj.setProperty(name, value):
                raise AttributeError(f"cannot set {name} = {value!r} on {self._obj.objectName()}")
        else:
            setattr(self._obj, name, value)


class qMRMLWidget(QtWidgets.QWidget):
    def setMRMLScene(self, scene):
        for combo in self.findChildren(qMRMLNodeComboBox):
            combo.setMRMLScene(scene)


class ctkCollapsibleButton(QtWidgets.QGroupBox):
    def _setText(self, text):
        self.setTitle(text)

    text = Property(str, QtWidgets.QGroupBox.title, _setText)
    collapsed = _property(bool, "collapsed", False)


class qMRMLNodeComboBox(QtWidgets.QComboBox):
    currentNodeChanged = Signal(object)
    nodeTypes = _property("QStringList", "nodeTypes", [])
    noneEnabled = _property(bool, "noneEnabled", False)
    addEnabled = _property(bool, "addEnabled", True)
    removeEnabled = _property(bool, "removeEnabled", True)
    renameEnabled = _property(bool, "renameEnabled", False)
    showChildNodeTypes = _property(bool, "showChildNodeTypes", True)
    baseName = _property(str, "baseName", "")

    def __init__(self, parent=None):
        super().__init__(parent)
        self.scene, self._current = None, None

    def setMRMLScene(self, scene):
        self.scene = scene
        self.clear()
        self.addItem("None")
        for node in self.nodes():
            self.addItem(node.GetName())

    def nodes(self):
        if self.scene is None:
            return []
        found = []
        for cls in self.nodeTypes:
            for node in self.scene.GetNodesByClass(cls):
                if self.showChildNodeTypes or node.GetClassName() == cls:
                    found.append(node)
        return found

    def currentNode(self):
        return self._current

    def setCurrentNode(self, node):
        if node is not self._current:
            self._current = node
            self.currentNodeChanged.emit(node)


class ctkPathLineEdit(QtWidgets.QLineEdit):
    Files = 2
    currentPathChanged = Signal(str)
    filters = _property(int, "filters", 0)
    nameFilters = _property("QStringList", "nameFilters", [])

    def _path(self):
        return self.text()

    def _setPath(self, path):
        self.setText(path)
        self.currentPathChanged.emit(path)

    currentPath = Property(str, _path, _setPath)


STAND_INS = (qMRMLWidget, ctkCollapsibleButton, qMRMLNodeComboBox, ctkPathLineEdit)


def loadUI(path):
    loader = QtUiTools.QUiLoader()
    for cls in STAND_INS:
        loader.registerCustomWidget(cls)
    file = QtCore.QFile(str(path))
    file.open(QtCore.QFile.ReadOnly)
    widget = loader.load(file)
    file.close()
    return widget


def childWidgetVariables(widget):
    names = {}
    for child in widget.findChildren(QtCore.QObject):
        if child.objectName():
            names[child.objectName()] = Wrapped(child)
    return types.SimpleNamespace(**names)


class _QtModule(types.ModuleType):
    """``import qt``: PySide6's widgets and core classes under PythonQt's module name."""

    def __getattr__(self, name):
        for module in (QtWidgets, QtCore):
            if hasattr(module, name):
                return getattr(module, name)
        raise AttributeError(name)


def qtModule():
    return _QtModule("qt")
