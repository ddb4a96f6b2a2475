"""The deploy tests read manifests and parse their commands with the real CLI: nothing from the shell leaks in."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _no_maos_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("MAOS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("MAOS_HOME", str(tmp_path / "maos-home"))
