"""Every setting (MAOS's own and the first-party plugins') has a row in the README's Configuration table.

A row's first cell names one or more keys in backticks: a full key
(``scheduler.lease_ttl``), a shorthand that replaces the last part of the key
before it (``scheduler.lease_ttl`` / ``heartbeat_interval``), or a whole group
(``server.tls.*``).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from controlplane.config import CORE_SECTIONS, OPTIONS, Option, plugin_settings
from controlplane.plugins import get_plugin_manager
from maos_plugins.claude import plugin as claude_plugin

README = Path(__file__).resolve().parents[2] / "README.md"


def documented_keys(text: str) -> tuple[set[str], list[str]]:
    """The keys the Configuration table names, and the prefixes of its ``section.*`` rows."""
    table = text[text.index("### Configuration") : text.index("#### Limits")]
    keys: set[str] = set()
    groups: list[str] = []
    for line in table.splitlines():
        if not line.startswith("| `"):
            continue
        previous = ""
        for name in re.findall(r"`([^`]+)`", line.split("|")[1]):
            full = (
                name
                if name.split(".", 1)[0] in SECTIONS or not previous
                else (previous.rsplit(".", 1)[0] + "." + name)
            )
            if full.endswith(".*"):
                groups.append(full[:-1])
            else:
                keys.add(full)
            previous = full
    return keys, groups


def first_party_settings() -> dict[str, Option]:
    """MAOS's settings and those of the plugins shipped with it."""
    pm = get_plugin_manager(load_entrypoints=False)
    pm.register(claude_plugin, name="claude")
    return {**OPTIONS, **plugin_settings(pm)}


SECTIONS = CORE_SECTIONS | {key.split(".", 1)[0] for key in first_party_settings()}


@pytest.mark.parametrize("key", sorted(first_party_settings()))
def test_every_setting_has_a_row_in_the_configuration_table(key: str) -> None:
    keys, groups = documented_keys(README.read_text())
    assert key in keys or any(key.startswith(group) for group in groups), (
        f"the setting {key} is not documented: add a row to the Configuration table of README.md "
        f"(its description: {first_party_settings()[key].description!r})"
    )


def test_the_table_names_no_setting_that_does_not_exist() -> None:
    keys, groups = documented_keys(README.read_text())
    known = first_party_settings()
    assert sorted(keys - set(known)) == []
    assert [group for group in groups if not any(key.startswith(group) for key in known)] == []


def test_the_claude_plugin_registers_its_section() -> None:
    assert {key for key in first_party_settings() if key.startswith("claude.")} == {
        "claude.api_key",
        "claude.model",
        "claude.base_url",
        "claude.tools.max_turns",
        "claude.tools.max_seconds",
        "claude.web_search.enabled",
        "claude.web_search.max_uses",
        "claude.web_fetch.enabled",
        "claude.web_fetch.max_uses",
        "claude.web.allowed_domains",
        "claude.web.blocked_domains",
        "claude.code_execution.enabled",
    }
    assert "claude" not in CORE_SECTIONS
