"""``maos-agent`` finds agent types through the ``maos.agents`` entry points (agent_sdk.installed)."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent_sdk.installed import AGENTS_GROUP, UnknownAgentType, agent_types, find_agent_type

CATALOG = """
from agent_sdk.builtin import EchoAgent
from agent_sdk.types import AgentTypeSpec


def catalog():
    return [AgentTypeSpec(name="greeter", capabilities=("greet",), description="Greets.", factory=lambda p: EchoAgent())]
"""


@pytest.fixture
def installed_catalog(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A distribution on sys.path whose ``maos.agents`` entry point offers the type ``greeter``."""
    (tmp_path / "greeter_agents.py").write_text(CATALOG)
    dist = tmp_path / "greeter_agents-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: greeter-agents\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(f"[{AGENTS_GROUP}]\ngreeters = greeter_agents:catalog\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    yield "greeter"
    sys.modules.pop("greeter_agents", None)


def test_a_package_of_agents_is_found_by_its_entry_point(installed_catalog: str) -> None:
    spec = find_agent_type(installed_catalog)
    assert spec.capabilities == ("greet",)
    assert spec.build().agent_type == "echo"


def test_an_unknown_type_names_the_known_ones(installed_catalog: str) -> None:
    with pytest.raises(UnknownAgentType) as unknown:
        find_agent_type("nobody")
    assert "unknown agent type 'nobody'" in unknown.value.message
    assert installed_catalog in unknown.value.message and "echo" in unknown.value.message


def test_the_sdk_built_ins_are_known_without_any_catalog(monkeypatch: pytest.MonkeyPatch) -> None:
    import agent_sdk.installed as installed

    monkeypatch.setattr(installed, "_entry_points", lambda group: [])
    assert {"echo", "noop", "sleep", "shell", "python"} <= set(agent_types())
    assert installed.installed_settings()["server.address"] == "127.0.0.1:7100"


def test_a_broken_catalog_is_skipped_with_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, installed_catalog: str
) -> None:
    """A package whose entry point names a missing function does not hide the other packages' types."""
    (tmp_path / "broken_agents-1.0.dist-info").mkdir()
    (tmp_path / "broken_agents-1.0.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: broken-agents\nVersion: 1.0\n"
    )
    (tmp_path / "broken_agents-1.0.dist-info" / "entry_points.txt").write_text(
        f"[{AGENTS_GROUP}]\nbroken = greeter_agents:no_such_catalog\n"
    )
    importlib.invalidate_caches()
    with caplog.at_level("WARNING", logger="agent_sdk.installed"):
        known = agent_types()
    assert installed_catalog in known and "echo" in known
    assert any("skipped the agent types of broken" in r.getMessage() for r in caplog.records)
