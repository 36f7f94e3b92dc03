"""The package's shape: the layer order stated in ``DualDINOv3Lib/__init__.py`` holds for every import, the
light layers import no torch (Slicer imports them at start-up), and no file outgrows one concern."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

import DualDINOv3Lib

PACKAGE = Path(DualDINOv3Lib.__file__).resolve().parent
NAME = "DualDINOv3Lib"

LAYERS: list[set[str]] = [
    {"_lazy", "version", "errors"},
    {"domain", "files", "progress", "machine"},
    {"data"},
    {"preprocessing", "phantoms", "evaluation", "rendering", "runtime", "distributed"},
    {"models"},
    {"inference", "finetune", "pretraining"},
    {"workflows"},
    {"cli"},
]
"""Bottom to top. A module may import from its own component and from lower layers only."""

LIGHT = {
    "_lazy",
    "version",
    "errors",
    "domain",
    "files",
    "progress",
    "machine",
    "data",
    "phantoms",
    "evaluation",
    "rendering",
}
"""Components that need neither torch nor anything outside the standard library, numpy and SimpleITK."""
LIGHT_MODULES = {
    "preprocessing.body",
    "preprocessing.spec",
    "pretraining.slices",
    "pretraining.store",
    "pretraining.store_writer",
}
"""Modules of heavier components that are light too (the body rule, the spec a segmenter stores, the
pretraining slice curation and stores)."""
PACKAGES_ONLY = {"models", "inference", "finetune", "pretraining", "preprocessing", "workflows", "cli"}
"""Packages whose ``__init__`` must import nothing heavy, even though their modules use torch."""

MAX_LINES = 400


def layer_of(component: str) -> int:
    for i, layer in enumerate(LAYERS):
        if component in layer:
            return i
    raise AssertionError(f"{component!r} is in no layer; add it to LAYERS and to the package docstring")


def sources() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join([NAME, *parts])


def imported_modules(path: Path, *, top_level_only: bool = False) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in ``path``, relative ones resolved, lazy export
    targets (``_EXPORTS = {"name": ".module"}`` in package ``__init__`` files) included."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    this = module_name(path)
    package = this if path.name == "__init__.py" else this.rsplit(".", 1)[0]

    def resolve(module: str | None, level: int) -> str:
        if level == 0:
            return module or ""
        base = package.split(".")
        base = base[: len(base) - (level - 1)]
        return ".".join(base + ([module] if module else []))

    found = []
    for node in tree.body if top_level_only else ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            target = resolve(node.module, node.level)
            if node.module is None:  # from . import x
                found += [(node.lineno, f"{target}.{alias.name}") for alias in node.names]
            else:
                found.append((node.lineno, target))
        elif isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "_EXPORTS" for t in node.targets):
            for value in node.value.values:
                found.append(
                    (value.lineno, resolve(value.value.lstrip("."), len(value.value) - len(value.value.lstrip("."))))
                )
    return found


def component(module: str) -> str:
    return module.split(".")[1]


def test_the_docstring_states_the_layers_the_test_enforces():
    doc = DualDINOv3Lib.__doc__
    stated = []
    for match in re.finditer(r"^(\d)\. (.*?)(?=^\d\. |\Z)", doc, re.S | re.M):
        stated.append({name for name in re.findall(r"``(\w+)``", match[2]) if name in set().union(*LAYERS)})
    assert stated == [layer - {"_lazy"} for layer in LAYERS]


def test_every_import_runs_down_the_layers():
    problems = []
    for path in sources():
        own = component(module_name(path)) if module_name(path) != NAME else None
        for line, target in imported_modules(path):
            if not target.startswith(NAME + ".") or own is None:
                continue
            other = component(target)
            if other == own:
                continue
            if layer_of(other) >= layer_of(own):
                problems.append(f"{path.relative_to(PACKAGE)}:{line} ({own}, layer {layer_of(own)}) imports {target} "
                                f"(layer {layer_of(other)})")  # fmt: skip
    assert not problems, "imports that run up or across the layers:\n" + "\n".join(problems)


def test_light_modules_import_only_the_standard_library_numpy_and_simpleitk():
    allowed = {"numpy", "SimpleITK"}
    problems = []
    for path in sources():
        name = module_name(path)
        relative = name.removeprefix(NAME + ".")
        is_light = name == NAME or component(name) in LIGHT or relative in LIGHT_MODULES
        is_package_init = path.name == "__init__.py"
        if not (is_light or is_package_init):
            continue
        for line, target in imported_modules(path, top_level_only=not is_light):
            top = target.split(".")[0]
            if top == NAME:
                if is_light and not is_package_init:
                    other = target.removeprefix(NAME + ".")
                    if component(target) not in LIGHT and other not in LIGHT_MODULES:
                        problems.append(f"{path.relative_to(PACKAGE)}:{line} imports the heavy {target}")
                continue
            if top not in sys.stdlib_module_names and top not in allowed and top != "__future__":
                problems.append(f"{path.relative_to(PACKAGE)}:{line} imports {target}")
            if is_package_init and top != "__future__" and top not in sys.stdlib_module_names:
                problems.append(f"{path.relative_to(PACKAGE)}:{line}: a package __init__ imports {target} eagerly")
    assert not problems, "\n".join(problems)


def test_importing_the_light_parts_loads_no_torch_in_a_fresh_process():
    light = sorted(
        module_name(p)
        for p in sources()
        if module_name(p) == NAME
        or (component(module_name(p)) in LIGHT | PACKAGES_ONLY and p.name == "__init__.py")
        or component(module_name(p)) in LIGHT
        or module_name(p).removeprefix(NAME + ".") in LIGHT_MODULES
    )
    code = (
        "import importlib, sys\n"
        f"for name in {light!r}: importlib.import_module(name)\n"
        f"import {NAME}; {NAME}.Volume; {NAME}.read_volume; {NAME}.DataError\n"
        "heavy = sorted(m for m in ('torch', 'safetensors', 'matplotlib', 'yaml') if m in sys.modules)\n"
        "print(','.join(heavy))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", f"importing {len(light)} light modules loaded {result.stdout.strip()}"
    assert "DualDINOv3Lib.data.io" in light and "DualDINOv3Lib.evaluation.metrics" in light


def test_a_public_name_loads_its_module_when_first_used():
    code = (
        "import sys, DualDINOv3Lib\n"
        "assert 'torch' not in sys.modules\n"
        "from DualDINOv3Lib import segment_volume, Cancelled\n"
        "from DualDINOv3Lib.inference import Cancelled as again\n"
        "assert again is Cancelled and 'torch' in sys.modules and callable(segment_volume)\n"
        "assert 'segment_volume' in dir(DualDINOv3Lib)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    with pytest.raises(AttributeError, match="has no attribute 'no_such_name'"):
        DualDINOv3Lib.no_such_name  # noqa: B018


def test_every_exported_name_exists():
    import importlib

    for path in sources():
        if path.name != "__init__.py":
            continue
        package = importlib.import_module(module_name(path))
        for name in getattr(package, "__all__", []):
            assert getattr(package, name) is not None, f"{module_name(path)}.{name}"


def test_no_library_file_is_longer_than_one_concern():
    long = [
        f"{p.relative_to(PACKAGE)} ({n} lines)" for p in sources() if (n := len(p.read_text().splitlines())) > MAX_LINES
    ]
    assert not long, f"files over {MAX_LINES} lines; split them by concern: {long}"
