"""Exceptions with messages meant for the user: each names the problem and how to fix it."""

from __future__ import annotations


class DualDINOv3Error(Exception):
    """Base class of the errors this package raises on bad input."""


class CheckpointError(DualDINOv3Error, ValueError):
    """A weights file is unreadable, of the wrong kind, or does not match the architecture."""


class ConfigError(DualDINOv3Error, ValueError):
    """A model or training configuration is invalid."""


class DataError(DualDINOv3Error, ValueError):
    """An image file, DICOM folder or volume is missing, unreadable, or unusable (2D, 4D, constant, NaN...)."""


class OutputExistsError(DualDINOv3Error, FileExistsError):
    """Writing would replace an existing file and the caller did not ask to overwrite it."""


class WriteError(DualDINOv3Error, OSError):
    """A file could not be written completely (full disk, permissions, the writer failed); nothing was
    replaced: an existing file with that name is intact and no partial file is left."""

    def __init__(self, message: str, path=None) -> None:
        super().__init__(message)
        self.path = path
