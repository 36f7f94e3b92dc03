"""Exceptions with messages meant for the user: each names the problem and how to fix it."""

from __future__ import annotations


class DualDINOv3Error(Exception):
    """Base class of the errors this package raises on bad input."""


class CheckpointError(DualDINOv3Error, ValueError):
    """A weights file is unreadable, of the wrong kind, or does not match the architecture."""


class ConfigError(DualDINOv3Error, ValueError):
    """A model or training configuration is invalid."""
