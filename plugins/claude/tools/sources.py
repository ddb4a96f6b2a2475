"""The tools a Claude type's parameters declare: its MCP servers and its ``specialized_tools`` allow-list.

* :func:`tool_sources_from_params`: the :class:`~maos_plugins.claude.tools.mcp.McpToolSource` of each
  ``mcp_servers`` entry, filtered by ``specialized_tools`` (an agent opens them when it warms up).
* :func:`check_parameters`: both settings checked when a custom type's file is loaded (a bad entry
  skips the file, with the reason).
* :func:`tools_unavailable` and :func:`tool_warnings`: what ``maos agent types`` and
  ``maos plugins list`` report about a type: a server that cannot start makes the type unavailable
  (a task addressed to it fails with that reason), and a ``specialized_tools`` name that no built-in
  tool or server of the type offers is a warning (its agents run with the tools they have).

Both need the servers' tool lists, so each server is *probed*: started (or connected to), listed and
stopped, in a thread of its own. A probe's answer is kept per server definition (command, environment,
directory or URL, timeouts): a working server is not started again until its definition changes; a
failing one is tried again after :data:`FAILED_PROBE_TTL` seconds. On an event loop nothing waits
for a probe (a server's start must not stall the control plane): until it answers the type counts
as available, and its agents' own start reports a failure anyway.
"""

from __future__ import annotations

import asyncio
import collections
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from maos_plugins.claude.tools.mcp import (
    MCP_MISSING,
    McpServerSpec,
    McpToolSource,
    McpUnavailable,
    parse_servers,
)

#: The built-in tools' names (server tools and workspace tools); a ``specialized_tools`` entry may name them.
BUILTIN_TOOL_NAMES = frozenset(
    {
        "web_search",
        "web_fetch",
        "code_execution",
        "list_files",
        "read_file",
        "write_file",
        "run_command",
    }
)
#: Most names ``specialized_tools`` may hold, and the longest name.
MAX_ALLOWED_TOOLS = 128
MAX_TOOL_NAME_CHARS = 128
#: Seconds a failed probe's answer is kept before the server is tried again.
FAILED_PROBE_TTL = 30.0
#: Most probe answers kept (least recently used ones go first).
MAX_PROBES = 256
#: Seconds a caller off the event loop waits for a type's probes (a client's call has a deadline: 10 s by
#: default); a server that takes longer is reported as still being checked, and its answer shown next time.
PROBE_WAIT = 4.0


def specialized_tools(params: Mapping[str, Any]) -> list[str] | None:
    """The ``specialized_tools`` allow-list (None: not given, every tool is offered).

    Raises:
        ValueError: It is not a list of names.
    """
    value = params.get("specialized_tools")
    if value is None:
        return None
    if isinstance(value, str | bytes) or not isinstance(value, list):
        raise ValueError("`specialized_tools` must be a list of tool names")
    if len(value) > MAX_ALLOWED_TOOLS:
        raise ValueError(f"`specialized_tools` holds {len(value)} names; the limit is {MAX_ALLOWED_TOOLS}")
    names: list[str] = []
    for index, name in enumerate(value):
        if not isinstance(name, str) or not name.strip() or len(name) > MAX_TOOL_NAME_CHARS:
            raise ValueError(
                f"`specialized_tools[{index}]` must be a tool name (1 to {MAX_TOOL_NAME_CHARS} "
                f"characters), not {str(name)[:64]!r}"
            )
        names.append(name.strip())
    return names


def server_specs(params: Mapping[str, Any], base_dir: Path | None = None) -> list[McpServerSpec]:
    """The type's ``mcp_servers`` (a relative ``cwd`` is taken from ``base_dir``).

    Raises:
        ValueError: What is wrong with which entry.
    """
    return parse_servers(params.get("mcp_servers"), base_dir)


def check_parameters(params: Mapping[str, Any]) -> None:
    """Check ``mcp_servers`` and ``specialized_tools`` (cheap: nothing is started).

    Raises:
        ValueError: What is wrong, naming the entry and field.
    """
    server_specs(params)
    specialized_tools(params)


def tool_sources_from_params(params: Mapping[str, Any], base_dir: Path | None = None) -> list[McpToolSource]:
    """One tool source per ``mcp_servers`` entry, offering the tools ``specialized_tools`` allows.

    Raises:
        ValueError: The parameters are invalid (see :func:`check_parameters`).
    """
    allowed = specialized_tools(params)
    return [McpToolSource(spec, allowed) for spec in server_specs(params, base_dir)]


def unknown_tools(allowed: Iterable[str] | None, offered: Iterable[str]) -> list[str]:
    """The allow-listed names that nothing offers, in the allow-list's order."""
    have = set(offered) | BUILTIN_TOOL_NAMES
    return [name for name in allowed or () if name not in have]


def unknown_tools_message(names: list[str]) -> str:
    """The warning for ``specialized_tools`` names that nothing offers."""
    shown = ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
    return (
        f"specialized_tools: no built-in tool or MCP server of this type offers {shown}; "
        "its agents run without them"
    )


def offered_names(sources: Iterable[McpToolSource]) -> set[str]:
    """Every name (the server's own and the exposed one) of the tools open sources listed."""
    return {name for source in sources for tool in source.listed for name in (tool.name, tool.remote_name)}


# --- probes at load ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Probe:
    """What starting a server and listing its tools found."""

    #: Names of its tools (the server's own and the exposed ones).
    tools: frozenset[str] = frozenset()
    #: Why it cannot be used ("" when it worked).
    error: str = ""
    at: float = 0.0


class Probes:
    """Probe answers by server definition; a probe runs in a thread of its own, once at a time per server."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._answers: collections.OrderedDict[McpServerSpec, Probe] = collections.OrderedDict()
        self._running: dict[McpServerSpec, threading.Event] = {}
        #: How many probes were started (for tests of the cache).
        self.started = 0

    def get(self, spec: McpServerSpec, *, wait: float) -> Probe | None:
        """The server's probe answer, waiting up to ``wait`` seconds for a running probe; None while the first
        one runs (a failure being checked again stays the answer until the new probe has one)."""
        with self._lock:
            answer = self._answers.get(spec)
            if answer is not None and (not answer.error or time.monotonic() - answer.at < FAILED_PROBE_TTL):
                self._answers.move_to_end(spec)
                return answer
            done = self._running.get(spec)
            if done is None:
                done = self._running[spec] = threading.Event()
                self.started += 1
                threading.Thread(
                    target=self._probe, args=(spec, done), name=f"mcp-probe-{spec.name}", daemon=True
                ).start()
        if wait > 0:
            done.wait(wait)
        with self._lock:
            return self._answers.get(spec)

    def answers(self, specs: list[McpServerSpec], *, wait: float) -> list[Probe | None]:
        """The answers for several servers, probed at once, waiting up to ``wait`` seconds in all."""
        for spec in specs:
            self.get(spec, wait=0)
        deadline = time.monotonic() + wait
        return [self.get(spec, wait=max(0.0, deadline - time.monotonic())) for spec in specs]

    def clear(self) -> None:
        """Forget every answer (running probes still record theirs)."""
        with self._lock:
            self._answers.clear()

    def _probe(self, spec: McpServerSpec, done: threading.Event) -> None:
        try:
            answer = asyncio.run(_probe(spec))
        except Exception as exc:  # noqa: BLE001 - any failure of the probe is the server's problem
            answer = Probe(
                error=f"MCP server {spec.name!r} could not be checked: {type(exc).__name__}: {exc}"
            )
        answer = Probe(answer.tools, answer.error, time.monotonic())
        with self._lock:
            self._answers[spec] = answer
            self._answers.move_to_end(spec)
            while len(self._answers) > MAX_PROBES:
                self._answers.popitem(last=False)
            self._running.pop(spec, None)
        done.set()


async def _probe(spec: McpServerSpec) -> Probe:
    source = McpToolSource(spec, client_name="maos-probe")
    try:
        await source.open()
    except McpUnavailable as exc:
        return Probe(error=str(exc))
    try:
        return Probe(tools=frozenset(offered_names([source])))
    finally:
        await source.close()


#: The probes of this process.
PROBES = Probes()


def _on_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _mcp_missing() -> str:
    """Why MCP servers cannot be used here ("" when the package is installed; it is not imported here,
    which would hold up an event loop for a second)."""
    import importlib.util

    if importlib.util.find_spec("mcp") is None:
        return MCP_MISSING
    return ""


def tools_unavailable(params: Mapping[str, Any], base_dir: Path | None = None) -> str:
    """Why agents with these parameters cannot have their tools ("" when they can, or while unknown).

    Off an event loop this waits for the servers' probes (each bounded by its ``startup_timeout``).
    """
    if not params.get("mcp_servers"):
        return ""
    try:
        specs = server_specs(params, base_dir)
    except ValueError as exc:
        return f"invalid parameters: {exc}"
    missing = _mcp_missing()
    if missing:
        return missing
    for answer in PROBES.answers(specs, wait=_wait()):
        if answer is not None and answer.error:
            return answer.error
    return ""


def _wait() -> float:
    """How long this caller may wait for probes: never on an event loop."""
    return 0.0 if _on_event_loop() else PROBE_WAIT


def tool_warnings(params: Mapping[str, Any], base_dir: Path | None = None) -> list[str]:
    """Notes about the declared tools that do not stop the type: servers still being checked, and
    allow-listed names nothing offers.

    Names are checked once every server's tools are known (off an event loop this waits a little for
    them); with a server that cannot start, its failure is what is reported (:func:`tools_unavailable`).
    """
    try:
        allowed = specialized_tools(params)
        specs = server_specs(params, base_dir)
    except ValueError:
        return []  # reported as the file's problem
    if specs and _mcp_missing():
        return []
    answers = PROBES.answers(specs, wait=_wait()) if specs else []
    pending = [spec.name for spec, answer in zip(specs, answers, strict=True) if answer is None]
    if pending:
        return [
            f"MCP server(s) {', '.join(pending)} still being checked (starting and listing the tools "
            f"takes longer than {PROBE_WAIT:g} s); ask again to see the outcome"
        ]
    if not allowed or any(answer is not None and answer.error for answer in answers):
        return []
    offered = {name for answer in answers if answer is not None for name in answer.tools}
    missing = unknown_tools(allowed, offered)
    return [unknown_tools_message(missing)] if missing else []


# --- an agent's tools ----------------------------------------------------------------------------


def agents_folder(settings: Any) -> Path:
    """``MAOS_HOME/agents`` (where custom types live): relative ``cwd`` of stdio servers start there."""
    home = getattr(settings, "home", None)
    if home is None:
        from controlplane.config import default_home

        home = default_home()
    return Path(home) / "agents"


class AgentTools:
    """The tool sources of one agent: opened once (at warm-up, else on the first assignment), checked
    before each assignment, closed when the agent stops.

    Args:
        params: The agent type's parameters (``mcp_servers``, ``specialized_tools``).
        base_dir: What relative ``cwd`` of stdio servers are relative to.

    Raises:
        ValueError: The parameters are invalid.
    """

    def __init__(self, params: Mapping[str, Any], base_dir: Path | None = None):
        self.allowed = specialized_tools(params)
        self.sources: list[McpToolSource] = tool_sources_from_params(params, base_dir)
        #: Why the sources could not all be opened the last time they were tried ("" when they were).
        self.problem = ""
        self._lock = asyncio.Lock()

    def unknown(self) -> list[str]:
        """Allow-listed names that no built-in tool and no open source offers."""
        return unknown_tools(self.allowed, offered_names(self.sources))

    async def open(self) -> None:
        """Open every source that is not open yet (all of them, or none stay open).

        Raises:
            PermanentError: A source cannot be opened; the message says which and why.
        """
        from agent_sdk.errors import PermanentError

        async with self._lock:
            if all(source.is_open for source in self.sources):
                return
            try:
                for source in self.sources:
                    if not source.is_open:
                        await source.close()  # a source that died: end what is left of it first
                        await source.open()
            except McpUnavailable as exc:
                for source in self.sources:
                    await source.close()
                self.problem = str(exc)
                raise PermanentError(
                    f"the agent's tools are unavailable: {exc}", error_type="ToolSourceUnavailable"
                ) from None
            self.problem = ""

    async def ready(self, log: Any) -> None:
        """Before an assignment: the sources are open (tried again if they were not), and allow-listed
        names nothing offers are logged as a warning of the assignment.

        Raises:
            PermanentError: A source cannot be opened.
        """
        await self.open()
        missing = self.unknown()
        if missing:
            log.warning("%s", unknown_tools_message(missing))

    async def close(self) -> None:
        """Close every source (a stdio server's process is gone when this returns)."""
        async with self._lock:
            for source in self.sources:
                await source.close()
