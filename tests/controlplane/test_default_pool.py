"""The default pool follows the API key, sized to system.max_agents; Claude types need a key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from controlplane.config import DEFAULT_CONFIG_YML, config_with_pool, load_settings
from controlplane.errors import FailedPrecondition
from controlplane.plugins import get_plugin_manager
from controlplane.pool import check_pool, default_pool, the_pool


@pytest.fixture(autouse=True)
def _no_key(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ANTHROPIC_API_KEY", "CLAUDE_API_KEY"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize(
    ("max_agents", "expected"),
    [
        (10, {"researcher": 2, "coordinator": 1, "coder": 1, "analyst": 1, "tester": 1}),
        (3, {"researcher": 1, "coordinator": 1, "coder": 1}),
        (1, {"researcher": 1}),
    ],
)
def test_with_a_key_the_default_pool_is_claude_sized_to_max_agents(
    tmp_path: Path, max_agents: int, expected: dict[str, int]
) -> None:
    settings = load_settings(
        home=tmp_path,
        environ={},
        overrides={"claude.api_key": "sk-ant-test", "system.max_agents": max_agents},
    )
    assert default_pool(get_plugin_manager(), settings) == expected
    assert the_pool(get_plugin_manager(), settings) == expected


def test_the_key_may_come_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLAUDE_API_KEY", "sk-ant-test")
    settings = load_settings(home=tmp_path, environ={})
    assert "researcher" in default_pool(get_plugin_manager(), settings)


def test_without_a_key_the_offline_pool_stays_and_claude_types_are_refused(tmp_path: Path) -> None:
    settings = load_settings(home=tmp_path, environ={})
    pm = get_plugin_manager()
    assert default_pool(pm, settings) == {"echo": 2}
    with pytest.raises(FailedPrecondition) as refused:
        check_pool(pm, settings, {"echo": 1, "coordinator": 1})
    assert refused.value.reason == "ERROR_REASON_AGENT_TYPE_UNAVAILABLE"
    assert "ANTHROPIC_API_KEY" in refused.value.message and "claude.api_key" in refused.value.message
    check_pool(pm, settings, {"echo": 2, "coordinator": 0})  # a count of 0 launches nothing: fine


def test_a_set_pool_wins(tmp_path: Path) -> None:
    settings = load_settings(
        home=tmp_path, environ={}, overrides={"claude.api_key": "k", "agents.pool": "echo=1"}
    )
    assert the_pool(get_plugin_manager(), settings) == {"echo": 1}


def test_init_writes_the_pool_into_config_yml() -> None:
    text = config_with_pool(DEFAULT_CONFIG_YML, {"researcher": 2, "coordinator": 1})
    assert yaml.safe_load(text)["agents"]["pool"] == {"researcher": 2, "coordinator": 1}
    assert yaml.safe_load(config_with_pool(DEFAULT_CONFIG_YML, {"echo": 2}))["agents"]["pool"] == {"echo": 2}
