"""``maos completion SHELL`` prints a script that completes ``maos`` commands in that shell."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
from click.testing import CliRunner

from maos_cli.main import cli


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_the_script_names_maos(shell: str) -> None:
    result = CliRunner().invoke(cli, ["completion", shell])
    assert result.exit_code == 0, result.output
    assert "_MAOS_COMPLETE" in result.stdout and f"{shell}_complete" in result.stdout


def test_an_unknown_shell_is_a_usage_error() -> None:
    result = CliRunner().invoke(cli, ["completion", "tcsh"])
    assert result.exit_code == 2 and "'tcsh' is not one of" in result.output


def test_bash_completes_commands_through_the_script() -> None:
    bash = shutil.which("bash")
    assert bash is not None
    script = CliRunner().invoke(cli, ["completion", "bash"]).stdout
    maos = f"{sys.executable} -c 'from maos_cli.main import main; main()'"
    # The script calls `maos`; a function stands in for the installed entry point.
    program = (
        f'maos() {{ {maos} "$@"; }}\n{script}\n'
        "COMP_WORDS=(maos task canc); COMP_CWORD=2; _maos_completion maos; printf '%s\\n' \"${COMPREPLY[@]}\""
    )
    done = subprocess.run(
        [bash, "-c", program],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["cancel"]
