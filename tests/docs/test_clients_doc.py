"""docs/clients.md names, for every command of the CLI, the call it makes, and every call it names exists."""

from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path

import click

import agent_sdk.proto.maos.v1 as proto_package
from maos_cli.main import cli

DOC = Path(__file__).resolve().parents[2] / "docs" / "clients.md"
ROW = re.compile(r"^\| `(?P<command>maos[^`]*)` \| (?P<call>.*) \|$", re.MULTILINE)
RPC = re.compile(r"`(?P<service>[A-Z][A-Za-z]+)\.(?P<method>[A-Z][A-Za-z]+)`")


def commands(group: click.Group, path: str) -> set[str]:
    found: set[str] = set()
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            found |= commands(command, f"{path} {name}")
        else:
            found.add(f"{path} {name}")
    return found


def rpcs() -> set[str]:
    known = set()
    for info in pkgutil.iter_modules(proto_package.__path__):
        if info.name.endswith("_pb2"):
            module = importlib.import_module(f"{proto_package.__name__}.{info.name}")
            for service in module.DESCRIPTOR.services_by_name.values():
                known |= {f"{service.name}.{m.name}" for m in service.methods}
    return known


def test_every_command_has_a_row_and_every_named_call_exists() -> None:
    rows = {m["command"]: m["call"] for m in ROW.finditer(DOC.read_text())}
    assert set(rows) == commands(cli, "maos"), (
        f"missing: {sorted(commands(cli, 'maos') - set(rows))}; extra: {sorted(set(rows) - commands(cli, 'maos'))}"
    )
    known = rpcs()
    named = {f"{m['service']}.{m['method']}" for call in rows.values() for m in RPC.finditer(call)}
    named -= {"Health.Check"}  # the standard health service's
    assert named and named <= known, sorted(named - known)
