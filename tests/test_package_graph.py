"""The package graph points one way; checked by reading every module's imports with ``ast``.

* ``agent_sdk`` (the SDK an agent author installs) never imports ``controlplane``,
  ``maos_cli`` (the folder ``cli/``), ``maos_plugins`` (``plugins/``) or ``maos_mcp``: ``maos-agent`` finds agent types through entry points
  (``agent_sdk/installed.py``).
* ``maos_common`` (helpers shared by the three parts) imports none of them.
* ``cli`` is a client of the server through ``agent_sdk``; it imports ``controlplane`` only in
  the modules that run or administer the control plane on this machine (:data:`SERVER_MODULES`),
  and there only inside the functions that need it, so that the client commands (tasks, agents,
  logs, ...) never load the server.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

FORBIDDEN = {
    "agent_sdk": ("controlplane", "maos_cli", "maos_plugins", "maos_mcp"),
    "maos_common": ("agent_sdk", "controlplane", "maos_cli", "maos_plugins", "maos_mcp"),
}

#: The CLI modules that may import the control plane (lazily), and why.
SERVER_MODULES = {
    # `maos start`/`maos serve` run the server in this process; `maos init` and `maos doctor`
    # prepare and check this machine's installation (database, admin key, pool).
    "cli/system.py",
    # `maos db migrate|revision`: the schema of the server's database.
    "cli/db.py",
    # `maos recover` and local checkpoint export/import: the server's storage, offline.
    "cli/checkpoints.py",
    # `maos config set`: config.yml, validated against the server's settings.
    "cli/config.py",
    # `maos plugins list`: the server's plugin manager and its problems.
    "cli/plugins.py",
    # The root command: config.yml's server.address and the register_commands hook of plugins.
    "cli/main.py",
    # Local credentials (`maos init`'s admin key file) and client.tls from config.yml.
    "cli/_options.py",
}


@dataclass(frozen=True)
class Import:
    module: str
    line: int
    lazy: bool  # inside a function: imported when that function runs, not with the module


def _imports(source: str) -> list[Import]:
    """Absolute imports of ``source`` (``if TYPE_CHECKING:`` blocks are not imports at run time)."""
    found: list[Import] = []

    def visit(node: ast.AST, lazy: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                for orelse in child.orelse:
                    visit(orelse, lazy)
                continue
            if isinstance(child, ast.Import):
                found.extend(Import(alias.name, child.lineno, lazy) for alias in child.names)
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                found.append(Import(child.module, child.lineno, lazy))
            visit(child, lazy or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda))

    visit(ast.parse(source), False)
    return found


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def violations(path: str, source: str) -> list[str]:
    """What breaks the rules in the module at ``path`` (relative to the repository) with ``source``."""
    top = path.split("/", 1)[0]
    problems = []
    for imp in _imports(source):
        for package in FORBIDDEN.get(top, ()):
            if _within(imp.module, package):
                problems.append(f"{path}:{imp.line}: {top} imports {imp.module}")
        if top == "cli" and _within(imp.module, "controlplane"):
            if path not in SERVER_MODULES:
                problems.append(f"{path}:{imp.line}: cli imports {imp.module} (go through agent_sdk)")
            elif not imp.lazy:
                problems.append(f"{path}:{imp.line}: {imp.module} imported with the module, not where needed")
    return problems


def _modules() -> list[Path]:
    files = [p for package in ("agent_sdk", "maos_common", "cli") for p in (ROOT / package).rglob("*.py")]
    return sorted(p for p in files if "proto" not in p.relative_to(ROOT).parts)  # generated stubs


def test_the_packages_import_one_way() -> None:
    problems = [v for p in _modules() for v in violations(p.relative_to(ROOT).as_posix(), p.read_text())]
    assert problems == []


def test_the_server_modules_of_the_cli_exist() -> None:
    assert all((ROOT / path).exists() for path in SERVER_MODULES)


@pytest.mark.parametrize(
    ("path", "source", "expected"),
    [
        ("agent_sdk/runner.py", "def f():\n    from controlplane.config import load_settings\n", 1),
        ("agent_sdk/x.py", "import maos_plugins.claude.agents\n", 1),
        ("agent_sdk/x.py", "from maos_cli import main\n", 1),
        ("maos_common/x.py", "from agent_sdk.tls import ClientTls\n", 1),
        ("cli/tasks.py", "from controlplane.domain.tasks import MAX_RETRIES\n", 1),
        ("cli/tasks.py", "def f():\n    import controlplane.app\n", 1),
        ("cli/system.py", "from controlplane.serve import serve\n", 1),  # a server module, but eager
        ("cli/system.py", "def start():\n    from controlplane.serve import serve\n", 0),
        ("cli/tasks.py", "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import controlplane\n", 0),
        (
            "cli/tasks.py",
            "from agent_sdk.client import Client\nfrom maos_common.limits import MAX_RETRIES\n",
            0,
        ),
        (
            "agent_sdk/x.py",
            "from agent_sdk.proto.maos.v1 import messages_pb2\nimport controlplane_extra\n",
            0,
        ),
    ],
)
def test_a_broken_rule_is_reported(path: str, source: str, expected: int) -> None:
    assert len(violations(path, source)) == expected
