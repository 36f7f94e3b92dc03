"""Shared fixtures. Tests run on CPU with small models; nothing here needs a GPU or a network."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    yield


def randomize_(module: torch.nn.Module, std: float = 0.02) -> torch.nn.Module:
    """Adds noise to every parameter, so a load that silently does nothing cannot pass a test."""
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn_like(p) * std)
    return module
