"""controlplane.home: MAOS_HOME private, links left alone, what changed logged."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import pytest

from controlplane.home import create_private_file, open_private, private_dir, secure_home, write_private


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_secure_home_tightens_everything_but_what_links_point_to(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    home, outside = tmp_path / "home", tmp_path / "outside.txt"
    (home / "logs").mkdir(parents=True)
    for path in (home / "maos.db", home / "logs" / "a.log", outside):
        path.write_text("x")
        path.chmod(0o644)
    (home / "script").write_text("#!/bin/sh\n")
    (home / "script").chmod(0o755)
    home.chmod(0o755)
    (home / "logs").chmod(0o775)
    (home / "link").symlink_to(outside)
    with caplog.at_level(logging.WARNING, logger="controlplane.home"):
        changed = secure_home(home)
    assert sorted(str(p.relative_to(home)) if p != home else "." for p in changed) == [
        ".",
        "logs",
        "logs/a.log",
        "maos.db",
        "script",
    ]
    assert (mode(home), mode(home / "logs"), mode(home / "maos.db"), mode(home / "script")) == (
        0o700,
        0o700,
        0o600,
        0o700,
    )
    assert mode(outside) == 0o644  # a link is not followed
    assert "tightened permissions in" in caplog.text and "maos.db" in caplog.text
    caplog.clear()
    assert secure_home(home) == [] and caplog.text == ""  # nothing left to say


def test_files_are_created_private_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        folder = private_dir(tmp_path / "a" / "b")
        write_private(folder / "config.yml", "x: 1\n")
        with open_private(folder / "agent.log") as log:
            log.write(b"line\n")
        create_private_file(folder / "maos.db")
    finally:
        os.umask(old)
    assert mode(tmp_path / "a") == mode(folder) == 0o700
    assert {mode(folder / n) for n in ("config.yml", "agent.log", "maos.db")} == {0o600}
