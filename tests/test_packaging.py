"""What `pip install` puts into a user's environment: our own top-level names, every package.

The folders ``cli/`` and ``plugins/`` install as ``maos_cli`` and ``maos_plugins`` (top-level
``cli`` and ``plugins`` are names other distributions use too), so pyproject.toml lists the
packages explicitly; these tests keep that list whole and build the wheel a user would get.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RENAMED = {"cli": "maos_cli", "plugins": "maos_plugins"}
TOP_LEVEL = {"controlplane", "agent_sdk", "maos_common", "maos_mcp", *RENAMED.values()}


def _installed_name(folder: Path) -> str:
    parts = folder.relative_to(ROOT).parts
    return ".".join((RENAMED.get(parts[0], parts[0]), *parts[1:]))


def _folders() -> set[str]:
    roots = ["controlplane", "agent_sdk", "maos_common", "maos_mcp", *RENAMED]
    return {
        _installed_name(init.parent)
        for root in roots
        for init in (ROOT / root).rglob("__init__.py")
        if "__pycache__" not in init.parts
    }


def test_every_package_folder_is_listed_under_its_installed_name() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert set(config["packages"]) == _folders()
    assert config["package-dir"] == {ours: folder for folder, ours in RENAMED.items()}


def test_entry_points_name_installed_modules() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    targets = [*project["scripts"].values()]
    targets += [v for group in project["entry-points"].values() for v in group.values()]
    assert {t.split(":")[0].split(".")[0] for t in targets} <= TOP_LEVEL


@pytest.mark.slow
def test_the_wheel_holds_our_names_only(tmp_path: Path) -> None:
    # Built from a copy, so that setuptools' build/ folder is not left in the checkout.
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for folder in ("controlplane", "agent_sdk", "maos_common", "maos_mcp", *RENAMED):
        shutil.copytree(ROOT / folder, source / folder, ignore=ignore)
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr
    [wheel] = tmp_path.glob("maos-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/", 1)[0] for n in names if not n.split("/", 1)[0].endswith((".dist-info", ".data"))}
    assert tops == TOP_LEVEL
    assert "maos_cli/main.py" in names and "maos_plugins/claude/plugin.py" in names
    assert "controlplane/dashboard/static/index.html" in names  # package data travels too
