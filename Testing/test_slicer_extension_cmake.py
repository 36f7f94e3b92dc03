"""Checks the Slicer extension build files without a Slicer SDK.

The extension (CMakeLists.txt, DualDINOv3.cmake, DualDINOv3Segment/CMakeLists.txt) is configured against
the stand-in Slicer package in Testing/cmake/SlicerStandIn. The stand-in fails the configure on unknown
macro arguments or nonexistent listed files, and records every macro call (with the source, build and
install path of each file it copies) and the EXTENSION_* metadata in <build>/SlicerStandInRecord.json.
"""

from __future__ import annotations

import ast
import filecmp
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
STAND_IN_DIR = REPO_ROOT / "Testing" / "cmake" / "SlicerStandIn"
RECORD_NAME = "SlicerStandInRecord.json"
MODULE = "DualDINOv3Segment"
LIB = "DualDINOv3Lib"
RAW_URL_PREFIX = "https://raw.githubusercontent.com/dualdinov3/SlicerDualDINOv3/main/"
# the test extra installs cmake into the environment (the PyPI wheel); a system cmake serves too
CMAKE = shutil.which("cmake", path=str(Path(sys.executable).parent)) or shutil.which("cmake")


@pytest.fixture(scope="module", autouse=True)
def _cmake_is_there():
    assert CMAKE is not None, 'cmake is missing: install the test extra (pip install -e ".[test]")'


# --- Which files the extension must list -------------------------------------------------------------


def _is_ignored(relative: Path) -> bool:
    return relative.suffix == ".pyc" or any(p == "__pycache__" or p.startswith(".") for p in relative.parts)


def _files_under(root: Path, folder: str, pattern: str = "*") -> set[str]:
    """Repo-relative POSIX paths of the files under root/folder matching pattern (recursively)."""
    found = set()
    for path in (root / folder).rglob(pattern):
        relative = path.relative_to(root)
        if path.is_file() and not _is_ignored(relative):
            found.add(relative.as_posix())
    return found


def files_that_must_be_listed(root: Path) -> set[str]:
    """The module's scripts (outside Testing/ folders), all module resources, and all of DualDINOv3Lib."""
    module_scripts = {f for f in _files_under(root, MODULE, "*.py") if "Testing" not in Path(f).parts}
    return module_scripts | _files_under(root, f"{MODULE}/Resources") | _files_under(root, LIB, "*.py")


def calls_of(record: dict, command: str) -> list[dict]:
    return [call for call in record["calls"] if call["command"] == command]


def listed_files(record: dict, root: Path) -> dict[str, str]:
    """Repo-relative source path -> install path of every file that a ctkMacroCompilePythonScript copies."""
    listed = {}
    for call in calls_of(record, "ctkMacroCompilePythonScript"):
        for entry in call["files"]:
            relative = Path(os.path.relpath(entry["source"], root.resolve())).as_posix()
            listed[relative] = entry["install_path"]
    return listed


def unlisted_files(root: Path, record: dict) -> list[str]:
    return sorted(files_that_must_be_listed(root) - set(listed_files(record, root)))


def missing_listed_files(root: Path, record: dict) -> list[str]:
    return sorted(path for path in listed_files(record, root) if not (root / path).is_file())


def problem_report(title: str, paths: list[str]) -> str:
    return f"{title} ({len(paths)}):\n  " + "\n  ".join(paths)


# --- Configuring ---------------------------------------------------------------------------------------


def configure(source: Path, build: Path) -> subprocess.CompletedProcess[str]:
    command = [CMAKE, "-S", str(source), "-B", str(build), f"-DSlicer_DIR={STAND_IN_DIR}"]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def configure_and_read_record(source: Path, build: Path) -> dict:
    result = configure(source, build)
    assert result.returncode == 0, f"configure failed:\n{result.stdout}\n{result.stderr}"
    return json.loads((build / RECORD_NAME).read_text())


def copy_extension_sources(destination: Path) -> Path:
    """A throw-away copy of everything the extension's CMake files read."""
    destination.mkdir(parents=True, exist_ok=True)
    for name in ("CMakeLists.txt", "DualDINOv3.cmake"):
        shutil.copy2(REPO_ROOT / name, destination / name)
    for folder in (MODULE, LIB):
        shutil.copytree(REPO_ROOT / folder, destination / folder, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return destination


def one_line(text: str) -> str:
    """CMake may wrap long error messages; compare them with whitespace collapsed."""
    return " ".join(text.split())


@pytest.fixture(scope="module")
def configured(tmp_path_factory) -> tuple[Path, dict]:
    build = tmp_path_factory.mktemp("extension-build")
    return build, configure_and_read_record(REPO_ROOT, build)


# --- The repository's extension --------------------------------------------------------------------------


def test_extension_metadata(configured):
    _, record = configured
    extension = record["extension"]
    assert extension["EXTENSION_NAME"] == "DualDINOv3"
    assert extension["EXTENSION_CATEGORY"] == "Segmentation"
    assert "PyTorch" in re.split(r"[;\s]+", extension["EXTENSION_DEPENDS"])
    assert extension["EXTENSION_HOMEPAGE"] == "https://github.com/dualdinov3/SlicerDualDINOv3"
    assert extension["EXTENSION_BUILD_SUBDIRECTORY"] == "."
    assert extension["EXTENSION_STATUS"]
    assert "DINOv3" in extension["EXTENSION_DESCRIPTION"]
    icon_url = extension["EXTENSION_ICONURL"]
    assert icon_url.startswith(RAW_URL_PREFIX), icon_url
    assert (REPO_ROOT / icon_url.removeprefix(RAW_URL_PREFIX)).is_file(), f"icon not in the repo: {icon_url}"
    for url in extension["EXTENSION_SCREENSHOTURLS"].split():
        assert (REPO_ROOT / url.removeprefix(RAW_URL_PREFIX)).is_file(), f"screenshot not in the repo: {url}"
    assert record["cpack_included"] is True


def test_every_listed_file_exists(configured):
    _, record = configured
    missing = missing_listed_files(REPO_ROOT, record)
    assert not missing, problem_report("Listed in CMake but missing on disk", missing)


def test_every_shipped_file_is_listed(configured):
    _, record = configured
    unlisted = unlisted_files(REPO_ROOT, record)
    assert not unlisted, problem_report(
        "Not listed in DualDINOv3Segment/CMakeLists.txt (MODULE_PYTHON_SCRIPTS, MODULE_PYTHON_RESOURCES"
        " or DUALDINOV3LIB_PYTHON_SCRIPTS)",
        unlisted,
    )


def test_lib_is_installed_as_a_package_beside_the_module(configured):
    build, record = configured
    scripted_dir = record["slicer"]["Slicer_QTSCRIPTEDMODULES_LIB_DIR"]
    install_dir = record["slicer"]["Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR"]
    (lib_call,) = [c for c in calls_of(record, "ctkMacroCompilePythonScript") if c["TARGET_NAME"] == LIB]

    assert Path(lib_call["SOURCE_DIR"]).resolve() == REPO_ROOT
    assert Path(lib_call["DESTINATION_DIR"]).resolve() == (build / scripted_dir).resolve()
    assert lib_call["INSTALL_DIR"] == install_dir
    assert lib_call["NO_INSTALL_SUBDIR"] is True
    assert lib_call["SCRIPTS"] == sorted(lib_call["SCRIPTS"]), "keep DUALDINOV3LIB_PYTHON_SCRIPTS sorted"
    assert f"{LIB}/__init__.py" in lib_call["SCRIPTS"]
    for entry in lib_call["files"]:
        relative = Path(entry["source"]).relative_to(REPO_ROOT).as_posix()
        assert relative.startswith(f"{LIB}/"), relative
        assert entry["install_path"] == f"{install_dir}/{relative}"

    # The module script lands in the same folder, which Slicer puts on sys.path: `import DualDINOv3Lib` works.
    assert listed_files(record, REPO_ROOT)[f"{MODULE}/{MODULE}.py"] == f"{install_dir}/{MODULE}.py"


def test_module_and_self_test_are_registered(configured):
    _, record = configured
    (module_call,) = calls_of(record, "slicerMacroBuildScriptedModule")
    assert module_call["NAME"] == MODULE
    assert module_call["WITH_GENERIC_TESTS"] is True
    (unittest_call,) = calls_of(record, "slicer_add_python_unittest")
    script = Path(unittest_call["current_source_dir"]) / unittest_call["SCRIPT"]
    classes = {node.name for node in ast.parse(script.read_text()).body if isinstance(node, ast.ClassDef)}
    assert f"{MODULE}Test" in classes, f"{script} has no {MODULE}Test class for slicer.testing.runUnitTest"


def test_build_and_install_layout(configured, tmp_path):
    build, record = configured
    for step in ([CMAKE, "--build", str(build)], [CMAKE, "--install", str(build), "--prefix", str(tmp_path)]):
        result = subprocess.run(step, capture_output=True, text=True, timeout=120, check=False)
        assert result.returncode == 0, f"{' '.join(step)} failed:\n{result.stdout}\n{result.stderr}"
    for source, install_path in listed_files(record, REPO_ROOT).items():
        installed = tmp_path / install_path
        assert installed.is_file(), f"{source} was not installed at {install_path}"
        assert filecmp.cmp(REPO_ROOT / source, installed, shallow=False), source
    install_dir = record["slicer"]["Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR"]
    assert (tmp_path / install_dir / LIB / "__init__.py").is_file()
    # the library's data files (the bundled demo model) are installed where the package looks for them
    for data in (REPO_ROOT / LIB / "resources").glob("*.safetensors"):
        installed = tmp_path / install_dir / LIB / "resources" / data.name
        assert installed.is_file() and filecmp.cmp(data, installed, shallow=False), data.name


def test_module_script_is_light_and_matches_its_ui():
    module_source = (REPO_ROOT / MODULE / f"{MODULE}.py").read_text()
    top_level_imports = set()
    for node in ast.parse(module_source).body:
        if isinstance(node, ast.Import):
            top_level_imports |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            top_level_imports.add(node.module.split(".")[0])
    assert not top_level_imports & {"torch", "numpy", LIB}, "heavy imports belong inside methods"

    ui = ET.parse(REPO_ROOT / MODULE / "Resources" / "UI" / f"{MODULE}.ui").getroot()
    widget_names = {widget.get("name") for widget in ui.iter("widget")}
    used_names = set(re.findall(r"\bui\.(\w+)", module_source))
    assert used_names <= widget_names, f"not in the .ui file: {sorted(used_names - widget_names)}"

    png = (REPO_ROOT / MODULE / "Resources" / "Icons" / f"{MODULE}.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and png[12:16] == b"IHDR"
    assert struct.unpack(">II", png[16:24]) == (128, 128)


# --- The checks catch problems ---------------------------------------------------------------------------


def test_check_reports_unlisted_files(configured, tmp_path):
    already_unlisted = set(unlisted_files(REPO_ROOT, configured[1]))  # reported by the test above
    source = copy_extension_sources(tmp_path / "src")
    (source / LIB / "extra.py").write_text('"""Not listed in CMake."""\n')
    (source / MODULE / "Resources" / "UI" / "Extra.ui").write_text("<ui/>\n")
    (source / MODULE / "Testing" / "Python").mkdir(parents=True)
    (source / MODULE / "Testing" / "Python" / "ExtraTest.py").write_text("")  # Testing/ is exempt

    record = configure_and_read_record(source, tmp_path / "build")

    unlisted = [path for path in unlisted_files(source, record) if path not in already_unlisted]
    assert unlisted == [f"{LIB}/extra.py", f"{MODULE}/Resources/UI/Extra.ui"]
    assert f"{LIB}/extra.py" in problem_report("Not listed", unlisted)


@pytest.mark.parametrize("deleted", [f"{LIB}/__init__.py", f"{MODULE}/Resources/UI/{MODULE}.ui"])
def test_configure_fails_naming_a_deleted_listed_file(tmp_path, deleted):
    source = copy_extension_sources(tmp_path / "src")
    (source / deleted).unlink()

    result = configure(source, tmp_path / "build")

    assert result.returncode != 0, f"configure passed without {deleted}"
    as_listed = deleted.removeprefix(f"{MODULE}/")  # module files are listed relative to the module folder
    assert as_listed in one_line(result.stderr), result.stderr


def test_stand_in_rejects_unknown_macro_arguments(tmp_path):
    source = copy_extension_sources(tmp_path / "src")
    module_cmake = source / MODULE / "CMakeLists.txt"
    text = module_cmake.read_text()
    assert "  WITH_GENERIC_TESTS\n" in text
    module_cmake.write_text(text.replace("  WITH_GENERIC_TESTS\n", "  WITH_GENERIC_TESTS\n  WITH_TYPO\n"))

    result = configure(source, tmp_path / "build")

    assert result.returncode != 0
    assert "slicerMacroBuildScriptedModule() given unknown arguments" in one_line(result.stderr)
    assert "WITH_TYPO" in result.stderr
