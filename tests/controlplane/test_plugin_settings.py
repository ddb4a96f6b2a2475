"""Settings of plugins (``register_settings``): resolved like MAOS's own, owned by section, checked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from controlplane import hookimpl
from controlplane.config import (
    Option,
    load_settings,
    parse_duration,
    parse_positive_int,
    parse_text,
    plugin_settings,
    settings_by_plugin,
)
from controlplane.errors import InvalidArgument
from controlplane.plugins import MaosPluginManager, get_plugin_manager


class SettingsPlugin:
    """A plugin registering the given options."""

    def __init__(self, *options: Any):
        self.options = list(options)

    @hookimpl
    def register_settings(self) -> list[Any]:
        return self.options


def manager(**plugins: Any) -> MaosPluginManager:
    pm = get_plugin_manager(load_entrypoints=False)
    for name, plugin in plugins.items():
        pm.register(plugin, name=name)
    return pm


RELAY = SettingsPlugin(
    Option("relay.url", parse_text, "", "Where to relay events."),
    Option("relay.timeout", parse_duration, 10.0, "How long one relay may take."),
    Option("relay.batch", parse_positive_int, 50, "Events per relay call."),
)


def test_defaults_file_environment_and_overrides(tmp_path: Path) -> None:
    pm = manager(relay=RELAY)
    (tmp_path / "config.yml").write_text("relay:\n  url: ${RELAY_TARGET}\n  timeout: 1m\n")
    settings = load_settings(
        home=tmp_path, environ={"RELAY_TARGET": "https://relay.example", "MAOS_RELAY_BATCH": "7"}, pm=pm
    )
    assert (settings["relay.url"], settings.source("relay.url")) == ("https://relay.example", "file")
    assert settings["relay.timeout"] == 60.0
    assert (settings["relay.batch"], settings.source("relay.batch")) == (7, "env")
    assert settings.warnings == []
    overridden = settings.with_overrides({"relay.batch": "9"})
    assert (overridden["relay.batch"], overridden.source("relay.batch")) == (9, "override")
    assert [key for key, _ in settings.items()][-3:] == ["relay.url", "relay.timeout", "relay.batch"]


def test_with_plugins_resolves_settings_loaded_before_the_plugins_were_known(tmp_path: Path) -> None:
    (tmp_path / "config.yml").write_text("relay:\n  batch: 5\n")
    plain = load_settings(
        home=tmp_path,
        environ={},
        overrides={"system.max_agents": 3},
        pm=get_plugin_manager(load_entrypoints=False),
    )
    assert "relay.batch" not in plain.options and len(plain.warnings) == 1
    settings = plain.with_plugins(manager(relay=RELAY))
    assert settings["relay.batch"] == 5 and settings.warnings == []
    assert settings["system.max_agents"] == 3  # overrides given earlier are kept
    assert settings.with_plugins(manager(relay=RELAY)) is settings  # nothing new: the same settings


def test_a_bad_value_names_the_key(tmp_path: Path) -> None:
    (tmp_path / "config.yml").write_text("relay:\n  batch: 0\n")
    with pytest.raises(InvalidArgument, match="relay.batch: must be at least 1"):
        load_settings(home=tmp_path, environ={}, pm=manager(relay=RELAY))
    with pytest.raises(InvalidArgument, match="relay.timeout"):
        load_settings(home=tmp_path / "none", environ={"MAOS_RELAY_TIMEOUT": "soon"}, pm=manager(relay=RELAY))


def test_unknown_keys_and_sections_are_warnings(tmp_path: Path) -> None:
    (tmp_path / "config.yml").write_text("relay:\n  batchsize: 5\nrelya:\n  url: x\n")
    settings = load_settings(home=tmp_path, environ={}, pm=manager(relay=RELAY))
    first, second = settings.warnings
    assert "unknown setting 'relay.batchsize' ignored" in first and "no installed plugin" not in first
    assert (
        "unknown setting 'relya.url' ignored (did you mean 'relay.url'?): no installed plugin registers "
        "settings in the section 'relya'"
    ) in second


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        (
            [Option("server.colour", parse_text, "", "x")],
            "'server.colour' is in the section 'server', which is MAOS's own",
        ),
        ([Option("Relay.URL", parse_text, "", "x")], "is not a dotted lower-case key"),
        ([Option("relay", parse_text, "", "x")], "is not a dotted lower-case key"),
        ([Option("other.mode", parse_text, "", "x", runtime=True)], "is marked runtime"),
        (
            [Option("other.a", parse_text, "", "x"), Option("other.a", parse_text, "", "y")],
            "registered twice",
        ),
        (["other.a"], "must return a list of controlplane.config.Option"),
    ],
)
def test_settings_a_plugin_may_not_register_are_left_out_and_reported(
    options: list[Any], problem: str
) -> None:
    pm = manager(bad=SettingsPlugin(*options), relay=RELAY)
    assert set(plugin_settings(pm)) == {"relay.url", "relay.timeout", "relay.batch"}
    [reported] = pm.problems
    assert reported.startswith("plugin bad: its settings are left out: ") and problem in reported


def test_a_section_belongs_to_the_first_plugin_that_registers_it() -> None:
    intruder = SettingsPlugin(Option("relay.extra", parse_text, "", "x"))
    pm = manager(relay=RELAY, intruder=intruder)  # intruder registered last: called first
    assert "relay.extra" in plugin_settings(pm) and "relay.url" not in plugin_settings(pm)
    assert any("section 'relay' of the plugin intruder" in p for p in pm.problems)
    assert settings_by_plugin(pm) == {"intruder": ["relay.extra"]}


def test_a_register_settings_that_raises_is_reported() -> None:
    class Raising:
        @hookimpl
        def register_settings(self) -> list[Any]:
            raise RuntimeError("no settings today")

    pm = manager(raising=Raising(), relay=RELAY)
    assert set(plugin_settings(pm)) == {"relay.url", "relay.timeout", "relay.batch"}
    assert pm.problems == [
        "plugin raising: its settings are left out: register_settings failed "
        "(RuntimeError: no settings today)"
    ]
