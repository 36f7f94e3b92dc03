"""Comparing weights with a model before loading them, so that every loader (backbones, segmenter files,
training resume) reports a mismatch the same way: the first missing, unexpected and mis-shaped keys."""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor

SHOWN = 5
"""How many keys of each kind a report names."""


def _first(keys: list[str]) -> str:
    more = f" and {len(keys) - SHOWN} more" if len(keys) > SHOWN else ""
    return f"{keys[:SHOWN]}{more}"


def state_dict_mismatch(
    given: Mapping[str, Tensor], expected: Mapping[str, Tensor], *, may_lack: tuple[str, ...] = ()
) -> str | None:
    """``None`` when ``given`` has exactly the keys and shapes of ``expected``; else one line naming the first
    missing, unexpected and mis-shaped keys. Keys starting with a prefix in ``may_lack`` may be missing
    (e.g. frozen encoders that a training state does not store)."""
    missing = [k for k in expected if k not in given and not k.startswith(may_lack or ("\0",))]
    unexpected = [k for k in given if k not in expected]
    shapes = [
        f"{k}: {tuple(given[k].shape)} (expected {tuple(expected[k].shape)})"
        for k in given
        if k in expected and tuple(given[k].shape) != tuple(expected[k].shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing keys {_first(missing)}")
    if unexpected:
        problems.append(f"unexpected keys {_first(unexpected)}")
    if shapes:
        problems.append(f"wrong shapes {_first(shapes)}")
    return "; ".join(problems) or None
