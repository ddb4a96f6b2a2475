"""The README's "Deploying" section: every ``maos`` command it runs in a container parses with the real CLI."""

from __future__ import annotations

import re
import shlex

from tests.deploy._common import ROOT, check_maos_command


def deploying_commands() -> list[list[str]]:
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Deploying\n", 1)[1].split("\n## ", 1)[0]
    section = section.replace("\\\n", " ")
    commands = []
    for found in re.finditer(
        r"(?:exec controlplane|exec\s+deploy/maos-controlplane --) (maos[^|)#\n]*)", section
    ):
        commands.append(shlex.split(found.group(1)))
    return commands


def test_the_deploying_section_s_commands_parse() -> None:
    commands = deploying_commands()
    assert len(commands) >= 6
    problems = [p for argv in commands for p in check_maos_command(argv, "README")]
    assert problems == []
