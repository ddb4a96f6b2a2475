"""Installed plugins for tests: packages with a ``*.dist-info`` in a directory of their own.

A directory made by :func:`install` is what ``pip install --target DIR`` leaves
(the modules, and a dist-info whose ``entry_points.txt`` names the ``maos``
entry points), written directly so that no build runs. Only processes that
have it on ``sys.path`` or ``PYTHONPATH`` see the plugins, so other tests and
concurrent runs never do.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def install(
    site: Path,
    distribution: str,
    entry_points: Mapping[str, str],
    modules: Mapping[str, str],
    version: str = "0.1.0",
) -> Path:
    """Write ``modules`` (``{"pkg/mod.py": source}``) and the dist-info of ``distribution`` into ``site``.

    Args:
        site: The directory (created if needed).
        distribution: The distribution's name (``maos-plugin-greeter``).
        entry_points: ``{name: "module"}`` of the ``maos`` group.
        modules: Source files by path relative to ``site``; sources are dedented.
        version: The distribution's version.

    Returns:
        ``site``.
    """
    for relative, source in modules.items():
        path = site / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))
    info = site / f"{distribution.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {distribution}\nVersion: {version}\n")
    lines = "".join(f"{name} = {module}\n" for name, module in entry_points.items())
    (info / "entry_points.txt").write_text(f"[maos]\n{lines}")
    return site


def environment(site: Path, home: Path, **extra: str) -> dict[str, str]:
    """The environment of a MAOS process that sees the plugins of ``site`` and uses ``home``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAOS_") and k != "NO_COLOR"}
    env.update(
        {
            "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)]),
            "MAOS_HOME": str(home),
            "NO_COLOR": "1",
            "MAOS_SERVER_METRICS_PORT": "0",
            "MAOS_SERVER_HTTP_PORT": "0",
            **extra,
        }
    )
    return env


def maos(
    site: Path, home: Path, *args: str, timeout: float = 90, **extra: str
) -> subprocess.CompletedProcess[str]:
    """``maos ARGS`` as a process that sees the plugins of ``site``."""
    return subprocess.run(
        [sys.executable, "-m", "maos_cli.main", *args],
        env=environment(site, home, **extra),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        cwd=site,
    )


GUIDE = ROOT / "docs" / "plugins.md"
_FILE_BLOCK = re.compile(r"<!-- file: (?P<name>[^ ]+) -->\n```python\n(?P<source>.*?)\n```", re.DOTALL)


def guide_files() -> dict[str, str]:
    """The files docs/plugins.md shows (``<!-- file: NAME -->`` before a python block), by name."""
    return {m["name"]: m["source"] + "\n" for m in _FILE_BLOCK.finditer(GUIDE.read_text())}
