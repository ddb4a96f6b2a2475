"""``maos plugins``: what this installation's plugin manager loads (no server needed)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import click

from maos_cli._errors import CliError, handle_errors
from maos_cli._options import output_option
from maos_cli._output import emit, key_values


def _source(name: str, plugin: Any, dists: dict[int, Any], builtins: tuple[str, ...]) -> dict[str, str]:
    dist = dists.get(id(plugin))
    if dist is not None:
        project = getattr(dist, "project_name", "") or dist.metadata["name"]
        return {"source": "entry point", "distribution": project, "version": dist.version}
    source = "built-in" if name in builtins else "registered at runtime"
    return {"source": source, "distribution": "", "version": ""}


def _provided(
    pm: Any, plugin: Any, others: list[Any], settings: Any, problems: list[str], name: str
) -> tuple[dict[str, list[str]], list[Any]]:
    """What one plugin's own implementations return (the hooks called on it alone), and its agent types."""
    from controlplane.custom_agents import is_custom

    def call(hook: str, **kwargs: Any) -> list[Any]:
        try:
            groups = pm.subset_hook_caller(hook, remove_plugins=others)(**kwargs)
        except Exception as exc:  # noqa: BLE001  (a broken plugin is listed with its error)
            problems.append(f"plugin {name}: {hook} failed: {type(exc).__name__}: {exc}")
            return []
        return [item for group in groups for item in group or []]

    types = [s for s in call("register_agent_types", settings=settings) if not is_custom(s, settings)]
    group = click.Group("maos")  # a plugin may add its commands to the group it is given, or return them
    commands = {getattr(c, "name", "") for c in call("register_commands", cli=group)} | set(group.commands)
    return {
        "agent_types": sorted({s.name for s in types}),
        "planners": [
            getattr(p, "name", type(p).__name__) for p in call("register_planners", settings=settings)
        ],
        "storage_backends": [getattr(f, "name", type(f).__name__) for f in call("register_storage_backends")],
        "commands": sorted(filter(None, commands)),
    }, types


def inspect_plugins(pm: Any, settings: Any) -> dict[str, Any]:
    """Every registered plugin (source, hooks, what it provides), the custom agent types and problems."""
    from controlplane.config import settings_by_plugin
    from controlplane.custom_agents import load_custom_agent_types
    from controlplane.plugins import DEFAULT_PLUGINS
    from controlplane.pool import type_warnings, unavailable

    dists = {id(plugin): dist for plugin, dist in pm.list_plugin_distinfo()}
    registered = [(name, plugin) for name, plugin in pm.list_name_plugin() if plugin is not None]
    problems: list[str] = list(getattr(pm, "problems", []))  # plugins skipped while loading
    settings_keys = settings_by_plugin(pm)
    plugins = []
    types_by_plugin: dict[int, list[Any]] = {}
    for name, plugin in registered:
        others = [p for _, p in registered if p is not plugin]
        provided, types_by_plugin[id(plugin)] = _provided(pm, plugin, others, settings, problems, name)
        # Settings and commands are listed only for the plugins that have some.
        extra = {"settings": settings_keys.get(name, []), "commands": provided.pop("commands")}
        plugins.append(
            {
                "name": name,
                **_source(name, plugin, dists, DEFAULT_PLUGINS),
                "module": getattr(
                    plugin, "__name__", type(plugin).__module__ + "." + type(plugin).__qualname__
                ),
                "hooks": sorted({caller.name for caller in pm.get_hookcallers(plugin) or []}),
                **provided,
                **{key: value for key, value in extra.items() if value},
            }
        )
    # Built-ins last, as they are called (trylast); then by name.
    plugins.sort(key=lambda p: (p["source"] == "built-in", p["name"]))
    # The types custom ones may specialise, first name winning in the order pluggy calls the plugins
    # (gathered per plugin, so one broken plugin does not hide the custom types).
    known: dict[str, Any] = {}
    for impl in reversed(pm.hook.register_agent_types.get_hookimpls()):
        for spec in types_by_plugin.pop(id(impl.plugin), []):
            known.setdefault(spec.name, spec)
    custom = load_custom_agent_types(settings, known, log_problems=False)
    problems.extend(str(problem) for problem in custom.problems)
    problems.extend(getattr(settings, "warnings", []))  # config.yml's unknown settings and sections
    problems.extend(p for p in getattr(pm, "problems", []) if p not in problems)  # hooks that failed just now
    return {
        "plugins": plugins,
        "custom_agent_types": {
            "directory": str(custom.directory),
            # Checking a type may start its MCP servers to list their tools (once per definition).
            "types": [
                {
                    "name": s.name,
                    "base_type": s.base_type,
                    "capabilities": list(s.capabilities),
                    "file": s.source,
                    "unavailable": unavailable(s),
                    "warnings": type_warnings(s),
                }
                for s in custom.specs
            ],
        },
        "problems": problems,
    }


def _text(data: dict[str, Any]) -> str:
    blocks = []
    for p in data["plugins"]:
        origin = p["source"] if not p["distribution"] else f"{p['distribution']} {p['version']}, entry point"
        pairs = [
            ("Module", p["module"] if p["module"] != p["name"] else ""),
            ("Hooks", ", ".join(p["hooks"])),
            ("Agent types", ", ".join(p["agent_types"])),
            ("Planners", ", ".join(p["planners"])),
            ("Storage", ", ".join(p["storage_backends"])),
            ("Settings", ", ".join(p.get("settings", []))),
            ("Commands", ", ".join(p.get("commands", []))),
        ]
        body = key_values(pairs)
        blocks.append(f"{p['name']} ({origin})" + ("\n" + _indent(body) if body else ""))
    custom = data["custom_agent_types"]
    if custom["types"]:
        lines = []
        for t in custom["types"]:
            lines.append(f"{t['name']} (base {t['base_type']}): {t['file']}")
            lines.extend(f"  cannot run here: {why}" for why in [t["unavailable"]] if why)
            lines.extend(f"  warning: {warning}" for warning in t["warnings"])
        blocks.append(f"Custom agent types ({custom['directory']})\n" + _indent("\n".join(lines)))
    else:
        blocks.append(f"Custom agent types ({custom['directory']}): none")
    if data["problems"]:
        blocks.append("Problems\n" + _indent("\n".join(data["problems"])))
    return "\n\n".join(blocks)


def _indent(text: str) -> str:
    return "\n".join("  " + line if line else line for line in text.splitlines())


@click.group()
def plugins() -> None:
    """Inspect the plugins this installation loads (no server needed)."""


@plugins.command("list")
@output_option
@handle_errors
def list_() -> None:
    """List plugins: where each comes from, its hooks and what it provides.

    Also lists the custom agent types of $MAOS_HOME/agents/*.yml, and the
    problems found: plugins skipped (an import error, a misspelt hook), hooks
    that failed, custom type files skipped, unknown settings of config.yml.
    """
    from controlplane.config import load_settings
    from controlplane.plugins import get_plugin_manager

    with _quiet("controlplane.custom_agents"), _quiet("controlplane.plugins"):  # listed as "problems" below
        try:
            pm = get_plugin_manager()  # a broken installed plugin is skipped and listed
        except Exception as exc:  # noqa: BLE001  (a built-in that fails: nothing to list)
            raise CliError(f"cannot load the plugins: {type(exc).__name__}: {exc}") from None
        settings = load_settings(pm=pm)
        data = inspect_plugins(pm, settings)
    emit(data, lambda: _text(data))


@contextlib.contextmanager
def _quiet(name: str) -> Iterator[None]:
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)
