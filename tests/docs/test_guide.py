"""docs/guide.md cannot drift: every shell block of the user guide runs, in order, against a real server.

The blocks run as one bash script (``set -euo pipefail``), so variables set by one block
(``ID=$(maos task submit ...)``) serve the next, exactly as a reader typing them would
have them. ``HOME`` is a fresh folder, so ``~/.maos`` is too; the control plane listens
on free local ports and has no Anthropic key. A block the guide cannot run here says so
on the line before its fence: ``<!-- not run: REASON -->`` (Claude-backed examples,
installing packages); every such marker must give its reason, and they stay few.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.harness.server import free_port

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "guide.md"
FENCE = re.compile(r"^```(?P<lang>\S*)\n(?P<body>.*?)^```$", re.MULTILINE | re.DOTALL)
NOT_RUN = re.compile(r"<!-- not run: (?P<reason>[^>]*?) -->\s*$")
#: At most this share of the shell blocks may be marked as not run.
MOST_NOT_RUN = 0.2

pytestmark = pytest.mark.slow


@dataclass
class Block:
    """One shell block of the guide."""

    line: int
    body: str
    not_run: str | None


def blocks() -> list[Block]:
    """The guide's ```bash blocks, in order, with their not-run reasons."""
    text = GUIDE.read_text()
    found = []
    for match in FENCE.finditer(text):
        if match["lang"] not in ("bash", "sh", "shell"):
            continue
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        marker = NOT_RUN.search(before)
        found.append(
            Block(
                text.count("\n", 0, match.start()) + 1,
                match["body"],
                marker["reason"].strip() if marker else None,
            )
        )
    return found


def test_the_guide_has_few_blocks_it_does_not_run_and_says_why() -> None:
    found = blocks()
    assert len(found) >= 15, "the guide lost its examples"
    skipped = [b for b in found if b.not_run is not None]
    assert all(b.not_run for b in skipped), "a <!-- not run: --> marker without a reason"
    assert len(skipped) <= MOST_NOT_RUN * len(found), [b.line for b in skipped]


@pytest.mark.timeout(360)  # every block of the guide runs as a user would: a long, real session
def test_every_block_of_the_guide_runs(tmp_path: Path) -> None:
    maos = shutil.which(
        "maos", path=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
    )
    assert maos, "the maos command is not installed (pip install -e .)"
    home = tmp_path / "home"
    home.mkdir()
    script = ["set -euo pipefail", 'cd "$HOME"']
    for block in blocks():
        if block.not_run is None:
            script += [f"echo '::: guide.md line {block.line}' >&2", block.body]
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("MAOS_") and key not in ("ANTHROPIC_API_KEY", "CLAUDE_API_KEY", "NO_COLOR")
    }
    env.update(
        {
            "HOME": str(home),
            "NO_COLOR": "1",
            "PATH": os.path.dirname(maos) + os.pathsep + env.get("PATH", ""),
            "MAOS_SERVER_ADDRESS": f"127.0.0.1:{free_port()}",
            "MAOS_SERVER_METRICS_PORT": str(free_port()),
            "MAOS_SERVER_HTTP_PORT": str(free_port()),
            "MAOS_SERVER_DASHBOARD_PORT": str(free_port()),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(GUIDE.parents[1]), env.get("PYTHONPATH", "")])),
        }
    )
    try:
        done = subprocess.run(
            ["bash", "-c", "\n".join(script)],
            cwd=home,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            stdin=subprocess.DEVNULL,
        )
    finally:
        subprocess.run([maos, "stop"], env=env, capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
    where = [line for line in done.stderr.splitlines() if line.startswith("::: ")]
    assert done.returncode == 0, (
        f"the guide's block at {where[-1][4:] if where else '?'} failed (exit {done.returncode}):\n"
        f"--- stdout (end)\n{done.stdout[-3000:]}\n--- stderr (end)\n{done.stderr[-3000:]}"
    )


def test_the_cli_reference_is_generated_from_the_commands() -> None:
    from maos_cli.reference import render

    reference = GUIDE.parent / "cli-reference.md"
    assert reference.read_text() == render(), (
        "docs/cli-reference.md is stale: run `python -m maos_cli.reference > docs/cli-reference.md`"
    )
