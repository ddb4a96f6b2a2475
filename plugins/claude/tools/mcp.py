"""MCP servers as tool sources: a custom type's ``mcp_servers`` entries, and the client that runs them.

A custom agent type names its servers in its YAML (``$MAOS_HOME/agents/*.yml``)::

    mcp_servers:
      - name: facts                                  # letters, digits, '_' or '-'
        command: ["python", "facts_server.py"]       # stdio: the program and its arguments
        env: {FACTS_DB: "facts.sqlite"}              # optional, added to a minimal environment
        cwd: "."                                     # optional; relative to MAOS_HOME/agents
        startup_timeout: 20                          # optional: seconds to start and list tools
        call_timeout: 60                             # optional: seconds one tool call may take
      - name: search
        url: "http://127.0.0.1:8123/mcp"             # streamable HTTP

:class:`McpToolSource` starts (stdio) or connects to (HTTP) one server with the official ``mcp``
client, lists its tools, and offers each as a :class:`~maos_plugins.claude.tools.base.ClientTool`
whose name is valid for the Messages API (``<server>_<tool>``, sanitised; the mapping back to the
server's own name is kept). Its session lives in one task of its own, so opening and closing may
happen in different tasks, and closing a stdio server ends its process (stdin closed, then SIGTERM,
then SIGKILL of its process group: no orphans).

Bounds: at most :data:`MAX_SERVERS` servers per type and :data:`MAX_TOOLS` tools per server;
descriptions and input schemas of bounded size; a result is cut at :data:`MAX_RESULT_CHARS`.
A stdio server gets only a minimal environment (``PATH``, ``HOME``, ``USER``...) plus its ``env``:
never the agent's model key.
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import contextlib
import hashlib
import json
import logging
import os
import re
import signal
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from maos_plugins.claude.tools.base import ToolOutput

log = logging.getLogger(__name__)

#: The rule for a server's name (it prefixes its tools' names).
SERVER_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_\-]{0,31}")
#: The Messages API's rule for a tool's name.
TOOL_NAME = re.compile(r"[A-Za-z0-9_\-]{1,64}")
FIELDS = ("name", "command", "env", "cwd", "url", "startup_timeout", "call_timeout")
#: Most servers one type may name.
MAX_SERVERS = 8
#: Most tools offered from one server (the rest are left out, with a warning in the log).
MAX_TOOLS = 64
#: Most arguments of ``command`` and entries of ``env``.
MAX_ARGS = 64
MAX_ENV = 64
#: Longest argument, environment value, path or URL.
MAX_VALUE_CHARS = 4096
#: Longest tool description offered to the model (longer ones are cut).
MAX_DESCRIPTION_CHARS = 2048
#: Largest input schema (JSON bytes); a tool with a larger one is left out.
MAX_SCHEMA_BYTES = 32 * 1024
#: Longest tool result handed to the model (longer ones are cut, saying so).
MAX_RESULT_CHARS = 64 * 1024
DEFAULT_STARTUP_TIMEOUT = 20.0
DEFAULT_CALL_TIMEOUT = 60.0
MAX_TIMEOUT = 3600.0
#: Bytes of a stdio server's stderr kept to explain why it failed.
STDERR_TAIL_BYTES = 4096
#: JSON-RPC error codes of the ``mcp`` client: the connection closed, a request timed out.
CONNECTION_CLOSED = -32000
REQUEST_TIMEOUT = -32001
#: Seconds :meth:`McpToolSource.close` waits for the session to wind down (the stdio transport's own
#: shutdown is bounded at about 6 s: stdin closed, SIGTERM, SIGKILL) before cancelling it.
CLOSE_TIMEOUT = 15.0


#: Why MCP servers cannot be used without the ``mcp`` package.
MCP_MISSING = "MCP servers need the mcp package: pip install 'maos[mcp]'"


class McpUnavailable(Exception):
    """An MCP server could not be started, reached or listed; the message says why."""


@dataclass(frozen=True)
class McpServerSpec:
    """One entry of a type's ``mcp_servers``: a stdio command or a streamable HTTP URL.

    Attributes:
        name: The server's name in the type (prefixes its tools' names).
        command: The program and its arguments (stdio); empty for a URL server.
        env: Extra environment variables of a stdio server, as sorted pairs.
        cwd: Working directory of a stdio server (relative ones are taken from the base directory given
            when parsing, which is also the default when it exists; "": the agent's own).
        url: The streamable HTTP endpoint; empty for a stdio server.
        startup_timeout: Seconds to start or connect, initialise and list the tools.
        call_timeout: Seconds one tool call may take.
    """

    name: str
    command: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    cwd: str = ""
    url: str = ""
    startup_timeout: float = DEFAULT_STARTUP_TIMEOUT
    call_timeout: float = DEFAULT_CALL_TIMEOUT

    @property
    def transport(self) -> str:
        """``stdio`` or ``http``."""
        return "http" if self.url else "stdio"

    def describe(self) -> str:
        """What the server is, for messages: its command line or URL."""
        return self.url if self.url else " ".join(self.command)


def _text(where: str, value: Any, *, allow_empty: bool = False) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"{where} must be a string, not {type(value).__name__}")
    text = str(value)
    if not text.strip() and not allow_empty:
        raise ValueError(f"{where} must not be empty")
    if len(text) > MAX_VALUE_CHARS:
        raise ValueError(f"{where} is {len(text)} characters; the limit is {MAX_VALUE_CHARS}")
    if "\0" in text:
        raise ValueError(f"{where} must not hold a NUL character")
    return text


def _seconds(where: str, value: Any, default: float) -> float:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{where} must be a number of seconds, not {value!r}")
    if not 0.1 <= float(value) <= MAX_TIMEOUT:
        raise ValueError(f"{where} must be between 0.1 and {MAX_TIMEOUT:g} seconds, not {value!r}")
    return float(value)


def parse_server(entry: Any, where: str, base_dir: Path | None = None) -> McpServerSpec:
    """One ``mcp_servers`` entry, checked.

    Args:
        entry: The YAML mapping.
        where: How messages name the entry (``mcp_servers[0]``).
        base_dir: What a relative ``cwd`` is relative to (and the default ``cwd``).

    Raises:
        ValueError: What is wrong, naming the entry and the field.
    """
    if not isinstance(entry, Mapping):
        raise ValueError(
            f"{where} must be a mapping with `name` and `command` or `url`, not {type(entry).__name__}"
        )
    unknown = sorted(str(k)[:64] for k in entry if k not in FIELDS)
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {', '.join(unknown[:5])}; allowed: {', '.join(FIELDS)}")
    name = entry.get("name")
    if not isinstance(name, str) or not SERVER_NAME.fullmatch(name):
        raise ValueError(
            f"{where}: `name` must start with a letter and hold only letters, digits, '_' or '-' "
            f"(max 32), not {str(name)[:64]!r}"
        )
    where = f"{where} ({name})"
    command, url = entry.get("command"), entry.get("url")
    if (command is None) == (url is None):
        raise ValueError(
            f"{where}: give either `command` (a stdio server) or `url` (streamable HTTP)"
            + (", not both" if command is not None else "")
        )
    startup_timeout = _seconds(
        f"{where}: `startup_timeout`", entry.get("startup_timeout"), DEFAULT_STARTUP_TIMEOUT
    )
    call_timeout = _seconds(f"{where}: `call_timeout`", entry.get("call_timeout"), DEFAULT_CALL_TIMEOUT)
    if url is not None:
        for key in ("env", "cwd"):
            if entry.get(key) is not None:
                raise ValueError(f"{where}: `{key}` applies to a `command` server only")
        address = _text(f"{where}: `url`", url)
        parts = urlsplit(address)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(
                f"{where}: `url` must be an http:// or https:// URL with a host, not {address[:64]!r}"
            )
        return McpServerSpec(
            name=name, url=address, startup_timeout=startup_timeout, call_timeout=call_timeout
        )
    if isinstance(command, str) or not isinstance(command, list) or not command:
        raise ValueError(
            f"{where}: `command` must be a non-empty list: the program and its arguments, "
            'for example ["python", "server.py"]'
        )
    if len(command) > MAX_ARGS:
        raise ValueError(f"{where}: `command` has {len(command)} items; the limit is {MAX_ARGS}")
    args = tuple(_text(f"{where}: `command[{i}]`", arg, allow_empty=i > 0) for i, arg in enumerate(command))
    env = entry.get("env") or {}
    if not isinstance(env, Mapping):
        raise ValueError(f"{where}: `env` must be a mapping of variable names to values")
    if len(env) > MAX_ENV:
        raise ValueError(f"{where}: `env` has {len(env)} variables; the limit is {MAX_ENV}")
    pairs = []
    for key, value in env.items():
        if not isinstance(key, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,127}", key):
            raise ValueError(f"{where}: `env` name {str(key)[:64]!r} is not a valid variable name")
        pairs.append((key, _text(f"{where}: `env.{key}`", value, allow_empty=True)))
    cwd = entry.get("cwd")
    folder = _text(f"{where}: `cwd`", cwd) if cwd is not None else ""
    if base_dir is not None and folder:
        folder = str(base_dir / folder)
    elif base_dir is not None and base_dir.is_dir():
        folder = str(base_dir)
    return McpServerSpec(
        name=name,
        command=args,
        env=tuple(sorted(pairs)),
        cwd=folder,
        startup_timeout=startup_timeout,
        call_timeout=call_timeout,
    )


def parse_servers(value: Any, base_dir: Path | None = None) -> list[McpServerSpec]:
    """A type's ``mcp_servers`` (None or empty: none).

    Raises:
        ValueError: What is wrong, naming the entry (``mcp_servers[1] (facts): ...``).
    """
    if value is None:
        return []
    if isinstance(value, str | bytes) or not isinstance(value, list):
        raise ValueError("`mcp_servers` must be a list of servers, each with `name` and `command` or `url`")
    if len(value) > MAX_SERVERS:
        raise ValueError(f"`mcp_servers` names {len(value)} servers; the limit is {MAX_SERVERS}")
    specs: list[McpServerSpec] = []
    for index, entry in enumerate(value):
        spec = parse_server(entry, f"mcp_servers[{index}]", base_dir)
        if any(s.name == spec.name for s in specs):
            raise ValueError(f"mcp_servers[{index}]: the name {spec.name!r} is used twice")
        specs.append(spec)
    return specs


# --- names and results --------------------------------------------------------------------------


def exposed_name(server: str, tool: str, taken: Iterable[str] = ()) -> str:
    """The name the model sees for ``server``'s tool ``tool``: ``<server>_<tool>`` made valid and unique.

    Characters the Messages API does not allow become ``_``; a name too long or already taken ends in a
    short hash of the original pair instead.
    """
    name = re.sub(r"[^A-Za-z0-9_\-]", "_", f"{server}_{tool}")
    if len(name) > 64 or name in set(taken):
        digest = hashlib.sha256(f"{server}\0{tool}".encode()).hexdigest()[:8]
        name = f"{name[:55]}_{digest}"
    return name


def result_output(server: str, result: Any) -> ToolOutput:
    """A ``CallToolResult`` as the text of a ``tool_result`` (bounded), with its error flag."""
    parts: list[str] = []
    for block in getattr(result, "content", None) or []:
        kind = getattr(block, "type", "")
        if kind == "text":
            parts.append(block.text)
        elif kind in ("image", "audio"):
            parts.append(f"[{kind} ({block.mime_type}), not shown]")
        elif kind == "resource":
            resource = block.resource
            text = getattr(resource, "text", None)
            parts.append(
                text
                if isinstance(text, str)
                else f"[resource {resource.uri} ({resource.mime_type or 'binary'}), not shown]"
            )
        elif kind == "resource_link":
            parts.append(f"[resource {block.uri}: {block.name}]")
    structured = getattr(result, "structured_content", None)
    if not parts and structured is not None:
        parts.append(json.dumps(structured, ensure_ascii=False, default=str))
    text = "\n".join(parts)
    if len(text) > MAX_RESULT_CHARS:
        text = (
            text[:MAX_RESULT_CHARS]
            + f"\n[cut: the result of MCP server {server!r} was {len(text)} characters; "
            f"the first {MAX_RESULT_CHARS} are shown]"
        )
    is_error = bool(getattr(result, "is_error", False))
    return ToolOutput(
        text or ("(the tool failed without a message)" if is_error else "(no output)"), is_error
    )


# --- the tools and their source -----------------------------------------------------------------


@dataclass(frozen=True)
class McpTool:
    """One tool of an MCP server, as the model sees it; :meth:`call` runs it on the server."""

    name: str
    description: str
    input_schema: dict[str, Any]
    #: The tool's own name on its server.
    remote_name: str
    source: McpToolSource = field(repr=False, compare=False)

    async def call(self, arguments: dict[str, Any]) -> ToolOutput:
        """Run the tool; a failure (error reply, timeout, server gone) is an error result, never raised."""
        return await self.source.call(self.remote_name, arguments)


class _StderrTail:
    """A pipe for a stdio server's stderr: lines are logged (debug) and the last bytes kept for messages."""

    def __init__(self, server: str):
        self.server = server
        self._tail: collections.deque[bytes] = collections.deque()
        self._size = 0
        self._lock = threading.Lock()
        read_fd, write_fd = os.pipe()
        self._inode = os.fstat(read_fd).st_ino
        self.writer = os.fdopen(write_fd, "w")
        self._reader = os.fdopen(read_fd, "rb")
        self._thread = threading.Thread(target=self._pump, name=f"mcp-stderr-{server}", daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        with self._reader:
            for line in self._reader:
                log.debug("MCP server %s: %s", self.server, line.decode(errors="replace").rstrip())
                with self._lock:
                    self._tail.append(line)
                    self._size += len(line)
                    while self._size > STDERR_TAIL_BYTES and len(self._tail) > 1:
                        self._size -= len(self._tail.popleft())

    def holders(self) -> list[int]:
        """Other processes holding the pipe (the server and whatever inherited its stderr); Linux only."""
        target = f"pipe:[{self._inode}]"
        found = []
        for entry in Path("/proc").glob("[0-9]*"):
            if entry.name == str(os.getpid()):
                continue
            try:
                if any(os.readlink(fd) == target for fd in (entry / "fd").iterdir()):
                    found.append(int(entry.name))
            except OSError:  # gone, or not ours
                continue
        return found

    def release_writer(self) -> None:
        """Close this process's end of the pipe (the server holds its own): EOF once the server exits."""
        with contextlib.suppress(OSError):
            self.writer.close()

    def text(self, wait: float = 0.0) -> str:
        """The last lines the server wrote, on one line (waiting up to ``wait`` s for it to finish writing)."""
        if wait:
            self._thread.join(wait)
        with self._lock:
            raw = b"".join(self._tail)[-STDERR_TAIL_BYTES:]
        return " | ".join(line.strip() for line in raw.decode(errors="replace").splitlines() if line.strip())


class McpToolSource:
    """The tools of one MCP server, for an agent's lifetime (a :class:`~maos_plugins.claude.tools.base.ToolSource`).

    Args:
        spec: The server.
        allowed: Tool names to offer (the server's own or the exposed ones); None offers every tool.
        client_name: How the client introduces itself to the server.
    """

    def __init__(
        self, spec: McpServerSpec, allowed: Iterable[str] | None = None, *, client_name: str = "maos"
    ):
        self.spec = spec
        self.allowed = None if allowed is None else frozenset(allowed)
        self.client_name = client_name
        #: Every tool the server listed (within the bounds), allowed or not.
        self.listed: list[McpTool] = []
        #: Why the server stopped answering after it was open ("" while it runs).
        self.failure = ""
        self._session: Any = None
        self._runner: asyncio.Task[None] | None = None
        self._closing: asyncio.Event | None = None
        self._stderr: _StderrTail | None = None
        self._group = 0

    @property
    def name(self) -> str:
        """The server's name."""
        return self.spec.name

    def tools(self) -> list[McpTool]:
        """The listed tools the allow-list lets through (all of them without one)."""
        if self.allowed is None:
            return list(self.listed)
        return [t for t in self.listed if t.remote_name in self.allowed or t.name in self.allowed]

    @property
    def is_open(self) -> bool:
        """Whether the session is up (as far as is known: a server that exited is noticed at the next call)."""
        return self._session is not None and not self.failure

    async def open(self) -> None:
        """Start or connect, initialise and list the tools, within ``startup_timeout``.

        Raises:
            McpUnavailable: Why the server cannot be used (not found, exited, timed out, refused...).
        """
        if self._runner is not None:
            return
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()
        self._closing = asyncio.Event()
        self.failure = ""
        self._runner = loop.create_task(self._run(ready), name=f"mcp-server-{self.name}")
        try:
            # The runner bounds the start itself; this outer bound only guards against a wedged transport.
            await asyncio.wait_for(asyncio.shield(ready), self.spec.startup_timeout + CLOSE_TIMEOUT)
        except BaseException as exc:
            await self.close()
            if ready.done() and not ready.cancelled():
                ready.exception()  # retrieved: no "exception was never retrieved" once the caller gave up
            if isinstance(exc, McpUnavailable | asyncio.CancelledError):
                raise
            if isinstance(exc, TimeoutError):
                raise McpUnavailable(
                    self._why(f"did not start within {self.spec.startup_timeout:g} s")
                ) from None
            raise McpUnavailable(self._why(_describe(exc))) from exc

    async def _run(self, ready: asyncio.Future[None]) -> None:
        """Own the transport and the session: enter them, report ready, wait for close, leave them."""
        try:
            import anyio
            from mcp import ClientSession
            from mcp_types import Implementation

            async with contextlib.AsyncExitStack() as stack:
                read, write = await stack.enter_async_context(self._transport())
                session = await stack.enter_async_context(
                    ClientSession(read, write, client_info=Implementation(name=self.client_name, version="1"))
                )
                with anyio.fail_after(self.spec.startup_timeout):  # around no task group: scopes nest
                    await session.initialize()
                    self.listed = await self._list(session)
                self._session = session
                ready.set_result(None)
                await self._closing.wait()  # type: ignore[union-attr]
        except BaseException as exc:  # noqa: BLE001 - reported through `ready` or kept in `failure`
            if not ready.done():
                if isinstance(exc, asyncio.CancelledError):
                    ready.cancel()
                    raise
                if isinstance(_innermost(exc), TimeoutError):
                    why = (
                        f"did not start and list its tools within {self.spec.startup_timeout:g} s "
                        "(startup_timeout)"
                    )
                else:
                    why = _describe(exc)
                ready.set_exception(McpUnavailable(self._why(why)))
            elif not isinstance(exc, asyncio.CancelledError):
                self.failure = self._why(_describe(exc))
                log.warning("%s", self.failure)
            else:
                raise
        finally:
            self._session = None
            if self._stderr is not None:
                self._stderr.release_writer()

    def _transport(self) -> contextlib.AbstractAsyncContextManager[Any]:
        if self.spec.url:
            from mcp.client.streamable_http import streamable_http_client

            return streamable_http_client(self.spec.url)
        from mcp import StdioServerParameters, stdio_client

        self._stderr = _StderrTail(self.name)
        params = StdioServerParameters(
            command=self.spec.command[0],
            args=list(self.spec.command[1:]),
            env=dict(self.spec.env) or None,
            cwd=self.spec.cwd or None,
        )

        @contextlib.asynccontextmanager
        async def stdio() -> Any:
            assert self._stderr is not None
            try:
                async with stdio_client(params, errlog=self._stderr.writer) as streams:
                    # The server leads its own process group (started in a new session): remember it, to end
                    # what the server leaves behind once it is gone.
                    self._group = _group_of(self._stderr.holders())
                    if self._group:
                        _LIVE_GROUPS.add(self._group)
                    self._stderr.release_writer()  # the server has its copy; ours would hide its exit
                    yield streams
            finally:
                self._stderr.release_writer()
                if self._group:
                    await _end_group(self._group, self.name)
                    _LIVE_GROUPS.discard(self._group)
                self._group = 0

        return stdio()

    async def _list(self, session: Any) -> list[McpTool]:
        from mcp_types import PaginatedRequestParams

        tools: list[Any] = []
        cursor = None
        for _ in range(MAX_TOOLS):  # pages
            page = await session.list_tools(params=PaginatedRequestParams(cursor=cursor) if cursor else None)
            tools.extend(page.tools)
            cursor = page.next_cursor
            if not cursor or len(tools) >= MAX_TOOLS:
                break
        if len(tools) > MAX_TOOLS:
            log.warning(
                "MCP server %s lists %d tools; only the first %d are offered",
                self.name,
                len(tools),
                MAX_TOOLS,
            )
        listed: list[McpTool] = []
        for tool in tools[:MAX_TOOLS]:
            schema = dict(tool.input_schema or {"type": "object"})
            if len(json.dumps(schema, default=str)) > MAX_SCHEMA_BYTES:
                log.warning(
                    "MCP server %s: tool %r left out: its input schema is over %d bytes",
                    self.name,
                    tool.name,
                    MAX_SCHEMA_BYTES,
                )
                continue
            schema.setdefault("type", "object")
            description = (tool.description or tool.title or tool.name).strip()
            if len(description) > MAX_DESCRIPTION_CHARS:
                description = description[: MAX_DESCRIPTION_CHARS - 1] + "…"
            name = exposed_name(self.name, tool.name, (t.name for t in listed))
            listed.append(
                McpTool(
                    name=name,
                    description=f"{description} (tool {tool.name!r} of MCP server {self.name!r})",
                    input_schema=schema,
                    remote_name=tool.name,
                    source=self,
                )
            )
        return listed

    async def call(self, remote_name: str, arguments: dict[str, Any]) -> ToolOutput:
        """Call the server's tool ``remote_name``; every failure is an error result saying what happened."""
        session = self._session
        if session is None or self.failure:
            why = self.failure or f"MCP server {self.name!r} is not running"
            return ToolOutput(why, is_error=True)
        timeout = self.spec.call_timeout
        late = ToolOutput(
            f"tool {remote_name!r} of MCP server {self.name!r} did not answer within {timeout:g} s "
            "(call_timeout)",
            is_error=True,
        )
        try:
            async with asyncio.timeout(timeout + 5):  # the session's own timeout comes first
                result = await session.call_tool(remote_name, arguments, read_timeout_seconds=timeout)
        except TimeoutError:
            return late
        except Exception as exc:  # noqa: BLE001 - the model gets an error result, the subtask goes on
            code = getattr(exc, "code", None)
            if type(exc).__name__ == "MCPError" and code == REQUEST_TIMEOUT:
                return late
            if type(exc).__name__ == "MCPError" and code == CONNECTION_CLOSED:
                self.failure = self._why(_describe(exc))
                log.warning("%s", self.failure)
                if self._closing is not None:
                    self._closing.set()  # end what is left of the session; the next open starts it again
                return ToolOutput(self.failure, is_error=True)
            return ToolOutput(
                f"tool {remote_name!r} of MCP server {self.name!r} {_describe(exc)}", is_error=True
            )
        return result_output(self.name, result)

    async def close(self) -> None:
        """End the session; a stdio server's process (and its children) is gone when this returns."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        if self._closing is not None:
            self._closing.set()
        try:
            await asyncio.wait_for(asyncio.shield(runner), CLOSE_TIMEOUT)
        except TimeoutError:
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await runner
        except asyncio.CancelledError:
            if not runner.done():
                raise  # our caller was cancelled; the runner goes on closing by itself
        except Exception:  # noqa: BLE001, S110 - the runner reported its failure already
            pass
        self._session = None

    def _why(self, what: str) -> str:
        stderr = self._stderr.text(wait=0.5) if self._stderr is not None and not self.spec.url else ""
        message = f"MCP server {self.name!r} ({clip(self.spec.describe(), 120)}) {what}"
        return message + (f"; its stderr: {clip(stderr, 600)}" if stderr else "")


#: Process groups of the stdio servers this process runs: ended if it exits without closing them (a
#: command that exits while a probe still waits for a server, an agent that stops on a fatal error).
_LIVE_GROUPS: set[int] = set()


@atexit.register
def _end_live_groups() -> None:
    for group in list(_LIVE_GROUPS):
        with contextlib.suppress(OSError):
            os.killpg(group, signal.SIGKILL)


def _group_of(pids: list[int]) -> int:
    """The process group the server leads (its pid), among the processes holding its stderr."""
    for pid in pids:
        with contextlib.suppress(OSError):
            if os.getpgid(pid) == pid and os.getsid(pid) == pid:
                return pid
    return 0


async def _end_group(group: int, server: str, grace: float = 2.0) -> None:
    """End the processes left in a stdio server's group after it stopped: SIGTERM, then SIGKILL."""
    if not _group_alive(group):
        return
    log.info("MCP server %s left processes behind; ending them", server)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(OSError):
            os.killpg(group, sig)
        deadline = time.monotonic() + grace
        while _group_alive(group):
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.02)
        else:
            return


def _group_alive(group: int) -> bool:
    """Whether a process of the group runs (zombies waiting to be reaped do not count)."""
    try:
        os.killpg(group, 0)
    except OSError:
        return False
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == group and fields[0] not in ("Z", "X"):
            return True
    return False


def clip(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters (the end kept for stderr would lose the start of a command)."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _innermost(exc: BaseException) -> BaseException:
    """The first exception inside (nested) exception groups."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _describe(exc: BaseException) -> str:
    """A failure in a phrase: the innermost useful exception of a group, its type when it has no message."""
    exc = _innermost(exc)
    if isinstance(exc, ModuleNotFoundError) and (exc.name or "").split(".")[0] in ("mcp", "mcp_types"):
        return f"cannot be used: {MCP_MISSING}"
    if isinstance(exc, FileNotFoundError):
        return f"cannot be started: {exc.strerror or 'not found'}: {exc.filename or ''}".rstrip(": ")
    if isinstance(exc, PermissionError):
        return f"cannot be started: permission denied: {exc.filename or ''}".rstrip(": ")
    message = getattr(exc, "message", "") or str(exc)
    if type(exc).__name__ == "MCPError" and "closed" in message.lower():
        return f"exited or closed the connection ({message})"
    return f"failed: {type(exc).__name__}: {message}" if message else f"failed: {type(exc).__name__}"
