"""The Python packages inference needs, and their installation on first use with the user's consent.

Never at import time: the widget calls :func:`ensureDependencies` before the first job. torch comes from the
PyTorch extension's utilities when present (it picks the build that fits the GPU), the rest with Slicer's pip
helper. The functions that ask and install are injected, so this runs (and is tested) without Slicer.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable

REQUIREMENTS = {
    "torch": "torch>=2.1",
    "numpy": "numpy>=1.24",
    "SimpleITK": "SimpleITK>=2.3",
    "safetensors": "safetensors>=0.4",
}
"""import name -> pip requirement: DualDINOv3Lib's own dependencies (pyproject.toml)."""


def missingPackages(find=importlib.util.find_spec) -> list[str]:
    """Import names of the requirements that are not installed."""
    return [name for name in REQUIREMENTS if find(name) is None]


def ensureDependencies(
    confirm: Callable[[str], bool],
    pipInstall: Callable[[str], None],
    installTorch: Callable[[], bool] | None = None,
    find=importlib.util.find_spec,
) -> bool:
    """True when everything is installed (after installing it if the user agrees); False if the user declined.

    ``confirm(text)`` asks the user; ``pipInstall(requirements)`` installs (Slicer: ``slicer.util.pip_install``);
    ``installTorch()`` installs torch (Slicer: the PyTorch extension's ``PyTorchUtilsLogic().installTorch``),
    returning False when it could not, in which case ``pipInstall`` is used for torch too.
    """
    missing = missingPackages(find)
    if not missing:
        return True
    text = (
        "DualDINOv3 needs these Python packages, which are not installed: "
        + ", ".join(REQUIREMENTS[name] for name in missing)
        + ". Install them now? (This can take several minutes; torch is large.)"
    )
    if not confirm(text):
        return False
    if "torch" in missing and installTorch is not None and installTorch():
        missing.remove("torch")
    if missing:
        pipInstall(" ".join(REQUIREMENTS[name] for name in missing))
    still = missingPackages(find)
    if still:
        raise RuntimeError(f"installing {', '.join(still)} failed; see the Python console for pip's messages")
    return True
