"""Which tools a Claude agent offers, and the limits of its tool loop.

Resolution (first match wins): the agent type's parameters (``agents/*.yml``) > the settings
(``claude.tools.*``, ``claude.web_search.*``, ``claude.web_fetch.*``, ``claude.web.*``,
``claude.code_execution.*``, ``agents.allow_exec``, ``agents.workspace.*``) > the defaults below.
Each type names the built-in tools its role uses (a researcher: web search and fetch; a coder or
tester: code execution and, when ``agents.allow_exec`` is on, a local workspace); a parameter set
to ``false`` turns one off for a custom type, never on beyond what the settings allow for
``workspace`` (``agents.allow_exec`` alone can let an agent run commands on this machine).

Parameters of a custom type (each optional): ``web_search``, ``web_fetch``, ``code_execution``,
``workspace`` (true/false), ``web_search_max_uses``, ``web_fetch_max_uses`` (integers),
``allowed_domains``, ``blocked_domains`` (lists), ``max_turns`` (integer), ``max_seconds``
(seconds).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

DEFAULT_MAX_TURNS = 20
DEFAULT_MAX_SECONDS = 900.0
DEFAULT_MAX_USES = 5

#: The built-in tools, by the name a type lists them under.
WEB_SEARCH = "web_search"
WEB_FETCH = "web_fetch"
CODE_EXECUTION = "code_execution"
WORKSPACE = "workspace"
BUILT_IN = (WEB_SEARCH, WEB_FETCH, CODE_EXECUTION, WORKSPACE)

#: The parameters of an agent type read here (other modules read the rest).
PARAMETERS = frozenset(
    {
        *BUILT_IN,
        "web_search_max_uses",
        "web_fetch_max_uses",
        "allowed_domains",
        "blocked_domains",
        "max_turns",
        "max_seconds",
    }
)


@dataclass(frozen=True)
class WorkspaceLimits:
    """Limits of a local workspace's tools."""

    command_timeout: float = 60.0
    max_output_bytes: int = 64 * 1024
    max_file_bytes: int = 1024 * 1024
    max_artifact_bytes: int = 1024 * 1024
    retention: float = 86400.0


@dataclass(frozen=True)
class ToolSettings:
    """The built-in tools one agent offers and the limits of its loop."""

    enabled: frozenset[str] = frozenset()
    web_search_max_uses: int = DEFAULT_MAX_USES
    web_fetch_max_uses: int = DEFAULT_MAX_USES
    allowed_domains: tuple[str, ...] = ()
    blocked_domains: tuple[str, ...] = ()
    max_turns: int = DEFAULT_MAX_TURNS
    max_seconds: float = DEFAULT_MAX_SECONDS
    workspace: WorkspaceLimits = field(default_factory=WorkspaceLimits)

    def offers(self, tool: str) -> bool:
        """Whether the built-in ``tool`` is on."""
        return tool in self.enabled


def _get(settings: Any, key: str, default: Any) -> Any:
    if settings is None:
        return default
    try:
        value = settings[key]
    except (KeyError, TypeError):
        return default
    return default if value is None else value


def _flag(params: Mapping[str, Any], name: str) -> bool | None:
    if name not in params or params[name] is None:
        return None
    value = params[name]
    if not isinstance(value, bool):
        raise ValueError(f"parameters.{name} must be true or false, not {value!r}")
    return value


def _count(params: Mapping[str, Any], name: str, default: int) -> int:
    value = params.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"parameters.{name} must be a positive integer, not {value!r}")
    return value


def _names(params: Mapping[str, Any], name: str, default: Sequence[str]) -> tuple[str, ...]:
    value = params.get(name)
    if value is None:
        return tuple(default)
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"parameters.{name} must be a list of domain names")
    return tuple(v.strip().lower() for v in value if v.strip())


def resolve_tool_settings(
    settings: Any, params: Mapping[str, Any] | None, role_tools: Sequence[str]
) -> ToolSettings:
    """The tools of an agent whose role uses ``role_tools``, from settings and its type's parameters.

    Raises:
        ValueError: A parameter has the wrong type (reported when the type is built).
    """
    params = params or {}
    on = {
        WEB_SEARCH: bool(_get(settings, "claude.web_search.enabled", True)),
        WEB_FETCH: bool(_get(settings, "claude.web_fetch.enabled", True)),
        CODE_EXECUTION: bool(_get(settings, "claude.code_execution.enabled", True)),
        WORKSPACE: bool(_get(settings, "agents.allow_exec", False)),
    }
    enabled = set()
    for tool in role_tools:
        wanted = _flag(params, tool)
        if on.get(tool, False) and wanted is not False:
            enabled.add(tool)
    max_seconds = params.get("max_seconds")
    if max_seconds is not None and (
        isinstance(max_seconds, bool) or not isinstance(max_seconds, int | float) or max_seconds <= 0
    ):
        raise ValueError(f"parameters.max_seconds must be a positive number of seconds, not {max_seconds!r}")
    return ToolSettings(
        enabled=frozenset(enabled),
        web_search_max_uses=_count(
            params, "web_search_max_uses", int(_get(settings, "claude.web_search.max_uses", DEFAULT_MAX_USES))
        ),
        web_fetch_max_uses=_count(
            params, "web_fetch_max_uses", int(_get(settings, "claude.web_fetch.max_uses", DEFAULT_MAX_USES))
        ),
        allowed_domains=_names(params, "allowed_domains", _get(settings, "claude.web.allowed_domains", [])),
        blocked_domains=_names(params, "blocked_domains", _get(settings, "claude.web.blocked_domains", [])),
        max_turns=_count(
            params, "max_turns", int(_get(settings, "claude.tools.max_turns", DEFAULT_MAX_TURNS))
        ),
        max_seconds=float(
            max_seconds
            if max_seconds is not None
            else _get(settings, "claude.tools.max_seconds", DEFAULT_MAX_SECONDS)
        ),
        workspace=WorkspaceLimits(
            command_timeout=float(_get(settings, "agents.workspace.command_timeout", 60.0)),
            max_output_bytes=int(_get(settings, "agents.workspace.max_output_bytes", 64 * 1024)),
            max_file_bytes=int(_get(settings, "agents.workspace.max_file_bytes", 1024 * 1024)),
            max_artifact_bytes=int(_get(settings, "agents.workspace.max_artifact_bytes", 1024 * 1024)),
            retention=float(_get(settings, "agents.workspace.retention", 86400.0)),
        ),
    )
