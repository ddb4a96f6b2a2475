"""The tool loop of a model-backed agent: call the model, run the tools it asks for, call it again.

One *turn* is one streamed Messages API call. After each turn:

* ``tool_use`` (the model called client tools): every call runs (concurrently, each in its own
  task; a tool that raises or times out answers with an error ``tool_result``, never failing the
  step), the results go back as one user message, and the loop goes on;
* ``pause_turn`` (a server tool, such as web search, paused a long turn): the assistant content
  is sent back as it is and the model continues;
* anything else ends the loop: the text of the final answer (every turn since the last tool
  results) is the output.

Limits: at most ``max_turns`` turns (a loop still asking for tools then fails with
``ToolLoopLimit``, naming the limit), ``max_seconds`` of wall time and the assignment's deadline
(``ToolLoopTimeout``), and the assignment's share of the task's budget: each turn's
``max_tokens`` fits what is left, and :class:`~agent_sdk.errors.BudgetExhausted` stops the loop
when nothing is. Every turn is recorded with ``ctx.spend`` as it ends (a cancelled or failed loop
still charges what it used, the partial turn included).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from agent_sdk.context import Context, Source, ToolCall, Usage
from agent_sdk.errors import PermanentError, RetryableError
from agent_sdk.pacing import Permit
from maos_plugins.claude.client import paced_call, report_success, request_options, translate_error
from maos_plugins.claude.tools.base import ClientTool, ToolOutput

if TYPE_CHECKING:
    from maos_plugins.claude.agents import ClaudeAgent

#: Most characters of one tool result sent back to the model (a longer one is cut with a note).
MAX_RESULT_CHARS = 100_000
#: Client tool calls of one turn run at once.
PARALLEL_CALLS = 4
#: Most tool-call records and sources a result carries (the control plane keeps as many).
MAX_RECORDS = 200
MAX_SOURCES = 100
SUMMARY_CHARS = 200
_PROGRESS_INTERVAL = 1.0


def _one_line(value: Any, limit: int = SUMMARY_CHARS) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _chars(value: Any) -> int:
    """Characters of the text in a message or block (what the model reads), for budget estimates."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, list):
        return sum(map(_chars, value))
    if not isinstance(value, dict):
        return 0
    if isinstance(value.get("text"), str):
        return len(value["text"])
    if "input" in value:
        return len(json.dumps(value["input"], default=str))
    return _chars(value.get("content", ""))


def _block_dict(block: Any) -> dict[str, Any]:
    """A response content block as a request block (what the API sent, minus the SDK's own fields)."""
    data = block.to_dict(exclude_none=True) if hasattr(block, "to_dict") else dict(block)
    data.pop("parsed_output", None)
    return data


@dataclass
class LoopResult:
    """What a finished loop produced."""

    text: str
    usage: Usage
    tool_calls: list[ToolCall]
    sources: list[Source]
    stop_reason: str
    turns: int


@dataclass
class _Turn:
    """The bookkeeping of one loop."""

    usage: Usage = field(default_factory=Usage)
    records: list[ToolCall] = field(default_factory=list)
    sources: dict[str, Source] = field(default_factory=dict)
    #: url of each fetched document, by its title (to resolve citations of fetched pages).
    fetched: dict[str, str] = field(default_factory=dict)


class ToolLoop:
    """Run one assignment's conversation with the model until it ends or a limit is reached.

    Args:
        agent: The agent (its client, configuration, budget arithmetic and usage figures).
        ctx: The assignment's context (progress, output, spend).
        system: The system blocks.
        prompt: The first user message.
        server_tools: Server tool definitions sent with every turn.
        client_tools: Tools the agent runs itself.
        max_turns: Most model calls.
        max_seconds: Longest wall time (the assignment's deadline also applies).
        extra_headers: Headers of every request (``anthropic-beta`` for server tools).
        describe_call: Optional one-line description of a client call for progress (default: its input).
    """

    def __init__(
        self,
        agent: ClaudeAgent,
        ctx: Context,
        *,
        system: list[dict[str, Any]],
        prompt: str,
        server_tools: Sequence[dict[str, Any]] = (),
        client_tools: Sequence[ClientTool] = (),
        max_turns: int = 20,
        max_seconds: float = 900.0,
        extra_headers: dict[str, str] | None = None,
        describe_call: Callable[[str, Any], str] | None = None,
    ):
        self.agent = agent
        self.ctx = ctx
        self.system = system
        self.messages: list[dict[str, Any]] = [{"role": "user", "content": prompt}]
        self.client_tools = {t.name: t for t in client_tools}
        self.tools: list[dict[str, Any]] = [
            *server_tools,
            *(
                {"name": t.name, "description": t.description, "input_schema": t.input_schema}
                for t in client_tools
            ),
        ]
        self.max_turns = max(1, max_turns)
        self.max_seconds = max_seconds
        self.extra_headers = extra_headers or {}
        self.describe_call = describe_call or (lambda name, arguments: _one_line(arguments, 80))
        self._state = _Turn()
        self._fraction = 0.0
        self._last_report = 0.0

    # --- the loop --------------------------------------------------------------------------

    async def run(self) -> LoopResult:
        """Loop until the model ends its turn; raise the agent error that stopped it otherwise."""
        a = self.ctx.assignment
        started = time.monotonic()
        limit = started + self.max_seconds
        if a.deadline is not None:
            limit = min(limit, started + max(0.0, a.deadline - time.time()))
        answer: list[str] = []
        container: str | None = None
        stop_reason = ""
        for turn in range(1, self.max_turns + 1):
            left = limit - time.monotonic()
            if left <= 0:
                raise PermanentError(
                    f"the tool loop ran out of time after {turn - 1} model turns ({self.max_seconds:g} s, "
                    f"claude.tools.max_seconds, or the task's deadline)",
                    error_type="ToolLoopTimeout",
                )
            max_tokens = self._max_tokens()
            self._fraction = min(0.95, 0.9 * (turn - 1) / self.max_turns)
            self.ctx.progress(self._fraction, f"turn {turn}: asking {self.agent.config.model}")
            turn_start = time.monotonic()
            try:
                message = await asyncio.wait_for(self._call(max_tokens, container), left)
            except TimeoutError:
                raise PermanentError(
                    f"the tool loop ran out of time in model turn {turn} ({self.max_seconds:g} s, "
                    f"claude.tools.max_seconds, or the task's deadline)",
                    error_type="ToolLoopTimeout",
                ) from None
            turn_seconds = time.monotonic() - turn_start
            usage = self.agent.usage_of(message)
            self._state.usage = _plus(self._state.usage, usage)
            self.ctx.spend(usage)
            container = getattr(getattr(message, "container", None), "id", None) or container
            stop_reason = message.stop_reason or ""
            if message.stop_reason is None:  # the stream ended without message_delta/message_stop
                raise RetryableError(
                    "the Messages API stream ended before the answer was complete", error_type="ApiTruncated"
                )
            if message.stop_reason == "refusal":
                raise PermanentError(
                    f"{self.agent.config.model} declined the subtask (stop reason refusal)",
                    error_type="Refused",
                )
            self._read_server_blocks(message.content, turn, turn_seconds)
            answer.extend(b.text for b in message.content if getattr(b, "type", "") == "text")
            self.messages.append({"role": "assistant", "content": [_block_dict(b) for b in message.content]})
            if message.stop_reason == "pause_turn":
                continue  # the same turn, continued: the answer so far stays
            calls = [b for b in message.content if getattr(b, "type", "") == "tool_use"]
            if message.stop_reason != "tool_use" or not calls:
                if message.stop_reason == "max_tokens":
                    self.ctx.log.warning(
                        "subtask %s: the answer was cut at max_tokens=%d", a.subtask, max_tokens
                    )
                break
            if turn == self.max_turns:
                break  # no turn left to read the results: the calls are not run
            results = await self._run_calls(calls, turn, limit)
            self.messages.append({"role": "user", "content": results})
            answer = []  # the final answer comes after the last tool results
        if stop_reason in ("tool_use", "pause_turn") and turn == self.max_turns:
            asked = sorted(self._last_asked())
            raise PermanentError(
                f"the tool loop stopped at its limit of {self.max_turns} model turns (claude.tools.max_turns or "
                f"parameters.max_turns) with the model still calling tools ({', '.join(asked) or 'server tools'}); "
                "raise the limit or narrow the subtask",
                error_type="ToolLoopLimit",
            )
        self._state.usage.tool_calls = len(self._state.records)
        return LoopResult(
            text="".join(answer),
            usage=self._state.usage,
            tool_calls=self._state.records[:MAX_RECORDS],
            sources=list(self._state.sources.values())[:MAX_SOURCES],
            stop_reason=stop_reason,
            turns=turn,
        )

    def _last_asked(self) -> set[str]:
        last = self.messages[-1]  # the last assistant turn
        content = last.get("content")
        if not isinstance(content, list):
            content = []
        return {b.get("name", "?") for b in content if b.get("type") in ("tool_use", "server_tool_use")}

    def _max_tokens(self) -> int:
        """This turn's ``max_tokens``: the configured one, within what the budget still allows."""
        a = self.ctx.assignment
        spent = self._state.usage
        tokens = a.remaining_tokens
        if tokens > 0:
            tokens = tokens - (
                spent.input_tokens
                + spent.output_tokens
                + spent.cache_read_input_tokens
                + spent.cache_creation_input_tokens
            )
            tokens = tokens if tokens > 0 else -1
        cost = a.remaining_cost_micros
        if cost > 0:
            cost = cost - spent.cost_micros
            cost = cost if cost > 0 else -1
        prompt_chars = (
            sum(len(b.get("text", "")) for b in self.system)
            + sum(map(_chars, self.messages))
            + (len(json.dumps(self.tools)) if self.tools else 0)
        )
        return self.agent.budgeted_max_tokens(tokens, cost, prompt_chars, self.agent.config.max_tokens)

    async def _call(self, max_tokens: int, container: str | None) -> Any:
        """One streamed turn; text is forwarded as it arrives, a partial turn is charged if it fails."""
        options = request_options(self.agent.config)
        if container:
            options["extra_body"] = {**options.get("extra_body", {}), "container": container}
        extra: dict[str, Any] = {"tools": self.tools} if self.tools else {}
        if self.extra_headers:
            extra["extra_headers"] = self.extra_headers
        stream: Any = None
        received = 0

        async def attempt(permit: Permit) -> Any:
            nonlocal stream
            async with (
                self.agent.calls() as client,
                client.messages.stream(
                    model=self.agent.config.model,
                    max_tokens=max_tokens,
                    system=self.system,
                    messages=self.messages,
                    **extra,
                    **options,
                ) as stream,
            ):
                nonlocal received
                async for event in stream:
                    kind = getattr(event, "type", "")
                    if kind == "text" and event.text:
                        self.ctx.output(event.text)
                        received += len(event.text)
                        self._report_tokens(received, max_tokens)
                    elif kind == "content_block_stop":
                        block = getattr(event, "content_block", None)
                        if block is not None and getattr(block, "type", "") == "server_tool_use":
                            self.ctx.progress(
                                self._fraction, f"{block.name}: {_one_line(getattr(block, 'input', {}), 80)}"
                            )
                answer = await stream.get_final_message()
            report_success(permit, stream.response.headers, answer)
            return answer

        try:
            # Under a permit of the control plane's pacer; retried (with a new permit) only while nothing streamed.
            return await paced_call(
                self.agent.pacer,
                self.agent.config,
                self._prompt_tokens(),
                max_tokens,
                attempt,
                may_retry=lambda: stream is None,
            )
        except BaseException as exc:  # cancelled or failed mid-stream: what was delivered is still charged
            self.ctx.spend(self.agent.partial_usage(stream, received))
            if isinstance(exc, Exception):
                raise translate_error(exc) from exc
            raise

    def _prompt_tokens(self) -> int:
        """The (estimated) input tokens of the next turn, for the pacer's token rates."""
        chars = (
            sum(len(b.get("text", "")) for b in self.system)
            + sum(map(_chars, self.messages))
            + (len(json.dumps(self.tools)) if self.tools else 0)
        )
        return int(chars / 3.5) + 1

    def _report_tokens(self, received: int, max_tokens: int) -> None:
        now = time.monotonic()
        if now - self._last_report >= _PROGRESS_INTERVAL:
            self._last_report = now
            tokens = received / 3.5
            self.ctx.progress(self._fraction, f"~{int(tokens)} tokens of at most {max_tokens}")

    # --- client tools ----------------------------------------------------------------------

    async def _run_calls(self, calls: list[Any], turn: int, limit: float) -> list[dict[str, Any]]:
        """Run the turn's client tool calls (at most :data:`PARALLEL_CALLS` at once); their tool_result blocks."""
        gate = asyncio.Semaphore(PARALLEL_CALLS)

        async def one(call: Any) -> dict[str, Any]:
            async with gate:
                started = time.monotonic()
                output = await self._call_tool(call.name, call.input, max(0.1, limit - started))
                seconds = time.monotonic() - started
            summary = self.describe_call(call.name, call.input)
            if output.is_error:
                summary = f"{summary} -> {_one_line(output.content, 120)}"
            self._state.records.append(
                ToolCall(
                    name=call.name,
                    duration=seconds,
                    is_error=output.is_error,
                    summary=_one_line(summary),
                    turn=turn,
                )
            )
            outcome = "failed" if output.is_error else "done"
            self.ctx.progress(
                self._fraction, f"{call.name} {outcome} in {seconds:.2f} s: {_one_line(summary, 80)}"
            )
            self.ctx.log.info(
                "tool %s %s in %.3f s (turn %d): %s", call.name, outcome, seconds, turn, summary
            )
            content = output.content
            if len(content) > MAX_RESULT_CHARS:
                content = content[:MAX_RESULT_CHARS] + f"\n[cut: {len(content)} characters in all]"
            block: dict[str, Any] = {"type": "tool_result", "tool_use_id": call.id, "content": content}
            if output.is_error:
                block["is_error"] = True
            return block

        return list(await asyncio.gather(*(one(call) for call in calls)))

    async def _call_tool(self, name: str, arguments: Any, seconds: float) -> ToolOutput:
        tool = self.client_tools.get(name)
        if tool is None:
            known = ", ".join(sorted(self.client_tools)) or "none"
            return ToolOutput(f"no tool named {name!r} (tools: {known})", is_error=True)
        if not isinstance(arguments, dict):
            return ToolOutput(f"the input of {name} must be a JSON object", is_error=True)
        try:
            return await asyncio.wait_for(tool.call(arguments), seconds)
        except TimeoutError:
            return ToolOutput(f"{name} did not finish before the step's time limit", is_error=True)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a failing tool is the model's problem to handle, not the step's
            return ToolOutput(f"{name} failed: {type(exc).__name__}: {exc}", is_error=True)

    # --- server tools and citations --------------------------------------------------------

    def _read_server_blocks(self, content: Sequence[Any], turn: int, seconds: float) -> None:
        """Record the turn's server tool calls and the sources its text cites."""
        results = {
            getattr(b, "tool_use_id", ""): b
            for b in content
            if getattr(b, "type", "").endswith("_tool_result")
        }
        for block in content:
            kind = getattr(block, "type", "")
            if kind == "server_tool_use":
                result = results.get(block.id)
                error = _result_error(result)
                summary = _one_line(getattr(block, "input", {}), 120)
                if error:
                    summary = f"{summary} -> {error}"
                self._state.records.append(
                    ToolCall(
                        name=block.name,
                        duration=seconds,
                        is_error=bool(error),
                        summary=_one_line(summary),
                        server=True,
                        turn=turn,
                    )
                )
            elif kind == "web_fetch_tool_result":
                inner = getattr(block, "content", None)
                url = getattr(inner, "url", "") or ""
                document = getattr(inner, "content", None)
                title = getattr(document, "title", "") or ""
                if url:
                    self._state.fetched[title or url] = url
                    self._add_source(Source(url=url, title=title))
        for block in content:
            if getattr(block, "type", "") != "text":
                continue
            for citation in getattr(block, "citations", None) or ():
                url = getattr(citation, "url", "") or self._state.fetched.get(
                    getattr(citation, "document_title", "") or "", ""
                )
                if url:
                    self._add_source(
                        Source(
                            url=url,
                            title=getattr(citation, "title", None)
                            or getattr(citation, "document_title", None)
                            or "",
                            cited_text=getattr(citation, "cited_text", "") or "",
                        )
                    )

    def _add_source(self, source: Source) -> None:
        known = self._state.sources.get(source.url)
        if known is None:
            self._state.sources[source.url] = Source(
                url=source.url[:2048], title=source.title[:500], cited_text=source.cited_text[:1000]
            )
        elif not known.cited_text and source.cited_text:
            known.cited_text = source.cited_text[:1000]
            known.title = known.title or source.title[:500]


def _result_error(result: Any) -> str:
    """The error code of a server tool result, or "" when it succeeded."""
    if result is None:
        return ""
    inner = getattr(result, "content", None)
    kind = getattr(inner, "type", "") if inner is not None and not isinstance(inner, list) else ""
    if kind.endswith("_error"):
        return str(getattr(inner, "error_code", "") or "error")
    return ""


def _plus(a: Usage, b: Usage) -> Usage:
    return Usage(**{name: getattr(a, name) + getattr(b, name) for name in vars(a)})
