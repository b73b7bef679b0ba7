"""The wheel holds the whole package: pyproject's package list against the source tree, and a built wheel's files
against every module and data file (a hand-written list once left `oczss.pipeline.cass` out of the wheel)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOT_PACKAGED = {"tests", "bench", "docs", ".ci", ".git", ".venv", "build"}  # top-level folders that stay out


def _source_files() -> list[Path]:
    """Every file of the package's folders, relative to the root, without caches, build output or top-level
    project files (README.md, pyproject.toml)."""
    out = []
    for path in ROOT.rglob("*"):
        rel = path.relative_to(ROOT)
        if (not path.is_file() or rel.parts[0] in NOT_PACKAGED or rel.parts[0].endswith(".egg-info")
                or "__pycache__" in rel.parts or path.suffix == ".pyc" or rel.parts[0].startswith(".")):
            continue
        if len(rel.parts) == 1 and path.suffix != ".py":
            continue
        out.append(rel)
    return out


def test_every_package_folder_is_listed():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(("oczss", *rel.parent.parts)) for rel in _source_files() if rel.name == "__init__.py"}
    assert found - listed == set(), "pyproject.toml's [tool.setuptools] packages misses these"
    assert listed - found == set(), "pyproject.toml lists packages that do not exist"


def test_wheel_holds_every_module_and_data_file(tmp_path):
    # Build from a clean copy: a stale build/ in the checkout must not hide a missing file.
    src = tmp_path / "src"
    top_only = {".git", ".venv", "build", "runs", "data", "oczss-demo"}  # a user's outputs beside the code
    shutil.copytree(ROOT, src, ignore=lambda folder, names: {
        n for n in names if (Path(folder) == ROOT and n in top_only) or n == "__pycache__" or n.endswith(
            (".egg-info", ".zarr"))})
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", str(src),
                    "-w", str(tmp_path / "dist")], check=True, capture_output=True)
    (wheel,) = (tmp_path / "dist").glob("oczss-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {"oczss/" + rel.as_posix() for rel in _source_files()}
    assert expected - names == set(), "the wheel lacks these files of the source tree"
    assert any(n.startswith("oczss/pipeline/cass/") for n in names)
    assert not any(n.startswith(("oczss/tests/", "oczss/bench/")) for n in names)
