"""Claude-backed agents: researcher, coder, analyst, tester and coordinator.

Each assignment runs a tool loop (:mod:`maos_plugins.claude.tools.loop`) of streamed Messages API
calls; its first request is:

* ``system``: the type's role prompt, then a block holding the task's shared
  context (description, context, constraints, and the final results of the
  tasks it depends on) marked ``cache_control: {"type": "ephemeral"}``, so the
  subtasks of one task reuse the cached prefix (prompts shorter than the
  model's minimum cacheable length are simply not cached);
* one user message: the subtask's instructions and the outputs of the steps
  it depends on, directly or through others (for a synthesis step: the plan
  and the parts to combine).

and the tools of the agent's role: Anthropic's server-side web search and
fetch for a researcher, server-side code execution for a coder or tester
(plus a local workspace per task when ``agents.allow_exec`` is on), and the
tools of its :attr:`ClaudeAgent.tool_sources`. The loop runs the calls the
model makes and stops at the step's limits (see :mod:`maos_plugins.claude.tools`).

Text deltas are forwarded with ``ctx.output`` as they arrive; the result
carries the tool calls, the sources the answer cites, the files the step
wrote in its workspace (as artifacts), the token usage (input, output, cache reads and writes), the number of
model calls and the cost. Cancelling ``handle`` closes the HTTP stream; what
the stream delivered until then is recorded with ``ctx.spend`` so it is still
charged. ``max_tokens`` stays within the share of the task's budget the
assignment carries.

Every call (work and votes) is made under a permit of the control plane's pacer
(``self.pacer``, set by the worker: :func:`maos_plugins.claude.client.paced_call`), so the pool
shares the model's rate limits and a 429/529 holds everyone's calls rather than each agent
retrying on its own.

Agents are warm: :meth:`ClaudeAgent.warm_up` (run by the worker before it
registers) imports ``anthropic`` and builds the client every call reuses, so
the first assignment does not pay for them. The types are model-backed
(``AgentBacking.MODEL``) and cannot start without an API key (their
:attr:`~agent_sdk.AgentTypeSpec.precondition` says which settings to set).
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import math
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

from agent_sdk.agent import Agent
from agent_sdk.context import Assignment, Ballot, Context, Result, Usage, VoteChoice
from agent_sdk.errors import BudgetExhausted, PermanentError
from agent_sdk.pacing import Permit
from agent_sdk.types import AgentBacking, AgentTypeSpec, SubtaskKind, verdict_json
from maos_plugins.claude.client import (
    NO_KEY_MESSAGE,
    make_client,
    paced_call,
    report_success,
    request_options,
    translate_error,
)
from maos_plugins.claude.config import AGENT_ENVIRONMENT, ClaudeConfig, load_plugin_settings, resolve_config
from maos_plugins.claude.pricing import WEB_SEARCH_MICROS, cost_micros, price_for, usage_cost_micros
from maos_plugins.claude.tools.base import ClientTool, ToolSource
from maos_plugins.claude.tools.loop import ToolLoop
from maos_plugins.claude.tools.server import beta_header, server_tools
from maos_plugins.claude.tools.settings import (
    CODE_EXECUTION,
    WEB_FETCH,
    WEB_SEARCH,
    WORKSPACE,
    ToolSettings,
    resolve_tool_settings,
)
from maos_plugins.claude.tools.sources import (
    AgentTools,
    agents_folder,
    check_parameters,
    tool_warnings,
    tools_unavailable,
)
from maos_plugins.claude.tools.workspace import Workspace, sweep, workspaces_root

log = logging.getLogger(__name__)

SOURCE = "maos_plugins.claude"
SYNTHESIS_KIND = SubtaskKind.SYNTHESIS
#: Most output tokens of a vote (a tool call naming a candidate, a confidence and a short rationale).
VOTE_MAX_TOKENS = 1024
#: Rough characters per token, to estimate a prompt's size against a token budget before sending it.
CHARS_PER_TOKEN = 3.5

_COMMON = (
    "You are one agent of MAOS, a system that splits a task into parts that several agents work on in "
    "parallel. You receive one part (a subtask) of a larger task, the shared context of that task, and the "
    "results of the parts yours depends on. Do exactly your part, completely and concretely; do not redo "
    "other parts. Answer with the result itself (no preamble about being an AI or about the process). If "
    "something essential is missing, state your assumption in one line and go on."
)

ROLE_PROMPTS: dict[str, str] = {
    "researcher": (
        "Role: researcher. You find, check and summarise information: market and competitive research, "
        "literature and fact gathering. Separate facts from estimates, say how sure you are, name the "
        "sources a reader should check, and note when your knowledge may be out of date. When you have web "
        "search and fetch tools, use them to check facts that change (figures, prices, releases, news) and "
        "cite what you found; without them, say that you could not check."
    ),
    "coder": (
        "Role: software engineer. You write, fix and explain code. Produce complete, runnable code with the "
        "imports it needs, in the language and style the task implies; handle errors and edge cases; add "
        "short comments only where the intent is not obvious; mention how to run or test it."
    ),
    "analyst": (
        "Role: data analyst. You process data and derive insights: descriptive and inferential statistics, "
        "trends, comparisons and the charts that would show them. Show the method and the key numbers, state "
        "assumptions and limitations, and end with the conclusions that matter for a decision."
    ),
    "tester": (
        "Role: quality engineer. You design and write tests and validate results: unit, integration and "
        "property tests, edge cases, failure modes and acceptance criteria. Be concrete (test names, inputs, "
        "expected outputs) and say what is not covered."
    ),
    "coordinator": (
        "Role: coordinator. You plan, orchestrate and synthesise: break work down, reconcile the results of "
        "other agents into one coherent answer, resolve contradictions (say which source you trust and why), "
        "remove duplication, and judge between candidate answers when asked."
    ),
}


#: What the system prompt says about each built-in tool the agent offers.
TOOL_PROMPTS: dict[str, str] = {
    WEB_SEARCH: "You can search the web with the web_search tool.",
    WEB_FETCH: "You can read a web page or PDF whose URL you were given or found with the web_fetch tool.",
    CODE_EXECUTION: (
        "You can run code in a sandbox with the code_execution tool: use it to check that code works "
        "and to compute rather than estimate."
    ),
    WORKSPACE: (
        "You have a workspace folder for this task, shared with its other steps: list_files, read_file, "
        "write_file and run_command work in it (paths are relative to it). Write the files the task asks "
        "for there (they are returned to the user with the result) and run them or their tests with "
        "run_command."
    ),
}


def _section(tag: str, text: str) -> str:
    return f"<{tag}>\n{text.strip()}\n</{tag}>"


def shared_context_text(a: Assignment) -> str:
    """The task-wide text every subtask of the task shares (the cached system block)."""
    parts = ["The task all parts share:", _section("task", a.task_description or a.instructions)]
    if a.context.strip():
        parts.append(_section("context", a.context))
    if a.constraints.strip():
        parts.append(_section("constraints", a.constraints))
        parts.append("Respect every constraint above.")
    if a.dependency_results:
        body = "\n".join(
            f'<dependency task="{d.task}" description="{_attr(d.description)}">\n{d.output.strip()}\n</dependency>'
            for d in a.dependency_results
        )
        parts.append(f"This task builds on the final results of the tasks it depends on:\n{body}")
    return "\n\n".join(parts)


def _attr(text: str, limit: int = 200) -> str:
    """Text fit for an XML-like attribute: one line, no quotes, at most ``limit`` characters."""
    flat = " ".join(text.split()).replace('"', "'")
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def user_message_text(a: Assignment) -> str:
    """The subtask's own instructions, plus the results of the steps it depends on."""
    synthesis = a.kind == SYNTHESIS_KIND
    parts = []
    if synthesis:
        parts.append(
            "Your part: combine the results of the other parts (below) into one complete, coherent answer to "
            "the task. Keep what is right and specific, resolve contradictions, remove repetition, and do not "
            "mention the parts or the agents."
        )
    if a.plan.strip() and synthesis:
        parts.append(_section("plan", a.plan))
    title = f' title="{a.title}"' if a.title else ""
    parts.append(f"<subtask{title}>\n{a.instructions.strip()}\n</subtask>")
    if a.inputs:
        label, tag = (
            ("The parts to combine", "part")
            if synthesis
            else ("Results of the steps yours depends on (directly or through other steps)", "input")
        )
        body = "\n".join(
            f'<{tag} key="{key}">\n{a.inputs[key].strip()}\n</{tag}>' for key in sorted(a.inputs)
        )
        parts.append(f"{label}:\n{body}")
    return "\n\n".join(parts)


class ClaudeAgent(Agent):
    """An agent whose work is one Claude call per assignment.

    Args:
        params: The agent type's parameters: ``model``, ``max_tokens``, ``temperature``, ``base_url``,
            ``api_key``, ``max_retries``, ``max_retry_wait``, ``timeout`` (each optional).
        settings: MAOS settings for ``claude.*``; by default ``controlplane.config.load_settings()``.
        config: A complete configuration (skips resolution; for tests and embedding).
    """

    agent_type: ClassVar[str] = "claude"
    capabilities: ClassVar[list[str]] = []
    max_concurrency: ClassVar[int] = 4
    backing: ClassVar[AgentBacking] = AgentBacking.MODEL
    description: ClassVar[str] = "A Claude-backed agent."
    #: Agents of the type in the default pool when an API key is set.
    pool_share: ClassVar[int] = 1
    role_prompt: ClassVar[str] = ""
    default_max_tokens: ClassVar[int] = 4096
    #: None: the model's default sampling (the installed SDK no longer names ``temperature``).
    default_temperature: ClassVar[float | None] = None
    #: The built-in tools the role uses (each on or off by settings and the type's parameters).
    role_tools: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        params: Mapping[str, Any] | None = None,
        *,
        settings: Any = None,
        config: ClaudeConfig | None = None,
    ):
        if config is None:
            if settings is None:
                settings = load_plugin_settings()
            defaults: dict[str, Any] = {"max_tokens": self.default_max_tokens}
            if self.default_temperature is not None:
                defaults["temperature"] = self.default_temperature
            config = resolve_config(settings, params or {}, defaults=defaults)
        self.config = config
        #: The built-in tools this agent offers and the limits of its tool loop.
        self.tools: ToolSettings = resolve_tool_settings(settings, params, self.role_tools)
        #: Where task workspaces live (``$MAOS_HOME``).
        self.home = _home(settings)
        #: Sources of client tools: the type's MCP servers (``mcp_servers``, filtered by ``specialized_tools``;
        #: opened by :meth:`warm_up`, else by the first assignment) and any other source added here (opened by
        #: :meth:`warm_up`); closed by :meth:`close`, their tools offered to the model on every assignment.
        self.mcp = AgentTools(params or {}, agents_folder(settings))
        self.tool_sources: list[ToolSource] = list(self.mcp.sources)
        self._opened_sources: list[ToolSource] = []
        #: Usage of all the calls made by :meth:`vote` (each VoteChoice carries its own).
        self.vote_usage = Usage()
        #: The client every call reuses, built by :meth:`warm_up` (None: each call builds its own).
        self._client: Any = None

    # --- start-up -------------------------------------------------------------

    async def warm_up(self) -> None:
        """Import ``anthropic``, build the client and open the tool sources, before the first assignment."""
        if self._client is None and self.config.api_key:
            self._client = make_client(self.config)
            # The SDK builds its resources and the streaming helpers lazily: pay for them now too.
            _ = self._client.messages
            importlib.import_module("anthropic.lib.streaming")
        await self.mcp.open()  # a PermanentError saying which MCP server cannot start (tried again per task)
        await self.open_tool_sources()

    async def open_tool_sources(self) -> None:
        """Open the tool sources not open yet, other than the MCP servers (an error says which source failed)."""
        for source in self.tool_sources:
            if source not in self.mcp.sources and source not in self._opened_sources:
                await source.open()
                self._opened_sources.append(source)

    async def close(self) -> None:
        """Close the tool sources (MCP server processes end) and the shared client."""
        opened, self._opened_sources = self._opened_sources, []
        for source in reversed(opened):
            try:
                await source.close()
            except Exception as exc:  # noqa: BLE001 - one source's failure must not keep the others open
                log.warning("claude: closing tool source %s failed: %s", source.name, exc)
        await self.mcp.close()
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    def calls(self) -> contextlib.AbstractAsyncContextManager[Any]:
        """The client for one call: the warm one, else a new one closed afterwards."""
        return self._calls()

    @contextlib.asynccontextmanager
    async def _calls(self) -> AsyncIterator[Any]:
        """The client for one call: the warm one, else a new one closed afterwards."""
        if self._client is not None:
            yield self._client
            return
        async with make_client(self.config) as client:
            yield client

    # --- work -----------------------------------------------------------------

    def system_blocks(self, a: Assignment) -> list[dict[str, Any]]:
        """The role prompt (with what its tools are for), then the task's shared context as a cached block."""
        role = f"{_COMMON}\n\n{self.role_prompt}".strip()
        tools = " ".join(
            TOOL_PROMPTS[t]
            for t in (WEB_SEARCH, WEB_FETCH, CODE_EXECUTION, WORKSPACE)
            if self.tools.offers(t)
        )
        if tools:
            role = f"{role}\n\n{tools}"
        return [
            {"type": "text", "text": role},
            {"type": "text", "text": shared_context_text(a), "cache_control": {"type": "ephemeral"}},
        ]

    def max_tokens_for(self, a: Assignment, prompt_chars: int) -> int:
        """``max_tokens`` within the assignment's share of the task's budget; BudgetExhausted if it cannot fit.

        ``remaining_tokens`` / ``remaining_cost_micros``: 0 means no limit, a negative value means the
        budget is spent. A positive budget must cover the (estimated) prompt plus at least one output token.
        """
        return self.budgeted_max_tokens(
            a.remaining_tokens, a.remaining_cost_micros, prompt_chars, self.config.max_tokens
        )

    def budgeted_max_tokens(self, tokens: int, cost_micros: int, prompt_chars: int, wanted: int) -> int:
        """At most ``wanted`` output tokens that, with the (estimated) prompt, fit ``tokens`` and ``cost_micros``."""
        if tokens < 0 or cost_micros < 0:
            raise BudgetExhausted("budget exhausted: the task has no tokens or cost left")
        max_tokens = wanted
        prompt_tokens = int(prompt_chars / CHARS_PER_TOKEN) + 1
        if tokens > 0:
            left = tokens - prompt_tokens
            if left < 1:
                raise BudgetExhausted(
                    f"budget exhausted: {tokens} tokens left for this step, the prompt alone needs "
                    f"about {prompt_tokens}"
                )
            max_tokens = min(max_tokens, left)
        if cost_micros > 0:
            price = price_for(self.config.model)
            if price is not None and price.output > 0:
                # a first call writes the shared context to the cache (priced above plain input)
                left_micros = cost_micros - prompt_tokens * max(price.input, price.cache_write)
                affordable = int(left_micros / price.output)
                if affordable < 1:
                    raise BudgetExhausted(
                        f"budget exhausted: ${cost_micros / 1e6:.6f} left for this step does not "
                        f"cover a call to {self.config.model}"
                    )
                max_tokens = min(max_tokens, affordable)
        return max_tokens

    async def handle(self, ctx: Context) -> Result:
        """Run the assignment's tool loop; the final answer, with its tool calls, sources and files."""
        await self.mcp.ready(ctx.log)
        a = ctx.assignment
        if a.kind == SubtaskKind.REVIEW:
            return await self.review(ctx)
        system = self.system_blocks(a)
        prompt = user_message_text(a)
        # Fail early, before any tool runs, when the budget cannot cover even the first call.
        self.max_tokens_for(a, sum(len(b["text"]) for b in system) + len(prompt))
        workspace = self.workspace_for(a) if self.tools.offers(WORKSPACE) else None
        before = workspace.snapshot() if workspace is not None else {}
        client_tools: list[ClientTool] = [*(workspace.tools() if workspace is not None else ())]
        for source in self.tool_sources:
            if source in self.mcp.sources or source in self._opened_sources:
                client_tools.extend(source.tools())
        offered = server_tools(self.tools)
        loop = ToolLoop(
            self,
            ctx,
            system=system,
            prompt=prompt,
            server_tools=offered,
            client_tools=client_tools,
            max_turns=self.tools.max_turns,
            max_seconds=self.tools.max_seconds,
            extra_headers=beta_header(offered),
        )
        try:
            done = await loop.run()
        finally:
            artifacts, skipped = workspace.changed_since(before) if workspace is not None else ([], [])
            if skipped:
                ctx.log.warning(
                    "subtask %s: files left out of the result (over agents.workspace.max_artifact_bytes "
                    "or unreadable): %s",
                    a.subtask,
                    ", ".join(skipped[:20]),
                )
        return Result(
            output=done.text,
            usage=done.usage,
            artifacts=artifacts,
            tool_calls=done.tool_calls,
            sources=done.sources,
        )

    def workspace_for(self, a: Assignment) -> Workspace:
        """The task's workspace on this machine (workspaces unused past their retention are deleted first)."""
        sweep(workspaces_root(self.home), self.tools.workspace.retention)
        return Workspace.for_task(self.home, a.task, self.tools.workspace)

    def partial_usage(self, stream: Any, received_chars: int) -> Usage:
        """What a stream that ended early cost (see :meth:`_partial_usage`)."""
        return self._partial_usage(stream, received_chars)

    def usage_of(self, message: Any) -> Usage:
        """The usage of one model call: tokens, server tool requests (web searches are billed) and cost."""
        usage = self._usage(message)
        server = getattr(message.usage, "server_tool_use", None)
        searches = int(getattr(server, "web_search_requests", 0) or 0)
        usage.web_search_requests = searches
        usage.web_fetch_requests = int(getattr(server, "web_fetch_requests", 0) or 0)
        usage.cost_micros += searches * WEB_SEARCH_MICROS
        return usage

    def _partial_usage(self, stream: Any, received_chars: int) -> Usage:
        """What a stream that ended early cost: its reported input, and the output delivered so far.

        Nothing is counted when the request never started streaming (no tokens were delivered).
        """
        try:
            snapshot = stream.current_message_snapshot if stream is not None else None
        except AssertionError:  # no message_start yet
            snapshot = None
        u = getattr(snapshot, "usage", None)
        if u is None:
            return Usage()
        figures = {
            "input_tokens": int(u.input_tokens or 0),
            "output_tokens": max(int(u.output_tokens or 0), math.ceil(received_chars / CHARS_PER_TOKEN)),
            "cache_read_input_tokens": int(u.cache_read_input_tokens or 0),
            "cache_creation_input_tokens": int(u.cache_creation_input_tokens or 0),
        }
        return Usage(
            **figures,
            model_calls=1,
            cost_micros=cost_micros(
                self.config.model,
                figures["input_tokens"],
                figures["output_tokens"],
                figures["cache_creation_input_tokens"],
                figures["cache_read_input_tokens"],
            ),
        )

    def _usage(self, message: Any) -> Usage:
        u = message.usage
        model = self.config.model
        return Usage(
            input_tokens=int(u.input_tokens or 0),
            output_tokens=int(u.output_tokens or 0),
            cache_read_input_tokens=int(u.cache_read_input_tokens or 0),
            cache_creation_input_tokens=int(u.cache_creation_input_tokens or 0),
            cost_micros=usage_cost_micros(model, u),
            model_calls=1,
        )

    # --- consensus ------------------------------------------------------------

    async def vote(self, ballot: Ballot) -> VoteChoice:
        """Ask the model to pick the best candidate (tool ``cast_vote``).

        The voter sees the task's context and constraints. Output that does not name a candidate is an
        abstention (not counted: a round where every vote abstains reaches no consensus); API failures raise
        RetryableError / PermanentError like :meth:`handle` (the worker then abstains). The choice carries
        the call's usage, which the control plane charges to the task.
        """
        if not ballot.candidates:
            raise PermanentError("the ballot has no candidates", error_type="EmptyBallot")
        ids = [c.id for c in ballot.candidates]
        candidates = "\n".join(
            f'<candidate id="{c.id}">\n{c.content.strip()}\n</candidate>' for c in ballot.candidates
        )
        earlier = ""
        if ballot.previous_votes:
            lines = "\n".join(
                f"- {voter} chose {cand} (confidence {conf:.2f}): {why}"
                if cand
                else f"- {voter} abstained: {why}"
                for voter, cand, conf, why in ballot.previous_votes
            )
            earlier = f"\n\nVotes of the previous round (no agreement was reached):\n{lines}"
        task_rules = ""
        if ballot.context.strip():
            task_rules += f"\n\n{_section('context', ballot.context)}"
        if ballot.constraints.strip():
            task_rules += f"\n\n{_section('constraints', ballot.constraints)}\nThe answer must respect every constraint."
        prompt = (
            f"Question put to the vote (round {ballot.round}):\n{ballot.question.strip()}{task_rules}\n\n"
            f"Candidate answers:\n{candidates}{earlier}\n\n"
            "Judge which candidate answers the question best (correct, complete, specific) and cast your "
            "vote with the cast_vote tool."
        )
        tool = {
            "name": "cast_vote",
            "description": "Cast a vote for the best candidate answer.",
            "input_schema": {
                "type": "object",
                "properties": {
                    "candidate_id": {
                        "type": "string",
                        "enum": ids,
                        "description": "The chosen candidate's id.",
                    },
                    "confidence": {
                        "type": "number",
                        "minimum": 0,
                        "maximum": 1,
                        "description": "How sure you are, 0 to 1.",
                    },
                    "rationale": {"type": "string", "description": "Why, in one or two sentences."},
                },
                "required": ["candidate_id", "confidence", "rationale"],
            },
        }
        timeout = self.config.timeout
        if ballot.deadline is not None:  # answer before the round closes
            timeout = max(1.0, min(timeout, ballot.deadline - time.time()))
        system = f"{_COMMON}\n\n{self.role_prompt}\n\nYou are now a voter in a consensus round."
        try:  # within the vote's share of the task's budget
            max_tokens = self.budgeted_max_tokens(
                ballot.remaining_tokens,
                ballot.remaining_cost_micros,
                len(system) + len(prompt) + len(str(tool)),
                VOTE_MAX_TOKENS,
            )
        except BudgetExhausted as exc:
            return _abstention(str(exc))

        async def attempt(permit: Permit) -> Any:
            async with self._calls() as client:
                raw = await client.messages.with_raw_response.create(
                    model=self.config.model,
                    max_tokens=max_tokens,
                    system=system,
                    messages=[{"role": "user", "content": prompt}],
                    tools=[tool],
                    tool_choice={"type": "tool", "name": "cast_vote"},
                    timeout=timeout,
                    **request_options(self.config),
                )
                answer = await raw.parse()
            report_success(permit, raw.headers, answer)
            return answer

        prompt_tokens = int((len(system) + len(prompt) + len(str(tool))) / CHARS_PER_TOKEN) + 1
        try:
            message = await paced_call(self.pacer, self.config, prompt_tokens, max_tokens, attempt)
        except Exception as exc:
            error = translate_error(exc)
            if error.error_type == "ApiBadResponse":
                return _abstention(f"the model's reply could not be read ({exc})")
            raise error from exc
        usage = self._usage(message)
        self.vote_usage.input_tokens += usage.input_tokens
        self.vote_usage.output_tokens += usage.output_tokens
        self.vote_usage.cache_read_input_tokens += usage.cache_read_input_tokens
        self.vote_usage.cache_creation_input_tokens += usage.cache_creation_input_tokens
        self.vote_usage.cost_micros += usage.cost_micros
        self.vote_usage.model_calls += 1
        choice = parse_vote(message, ids)
        return replace(choice, usage=usage)

    # --- review (evaluator-optimizer) ------------------------------------------

    async def review(self, ctx: Context) -> Result:
        """Grade the task's answer (input ``answer``) through the tool ``submit_review`` (a fixed schema).

        The reviewer sees the task's description, context and constraints (the cached system block). The
        result's output is the verdict as JSON (``maos.v1.ReviewVerdict``); a reply without the tool call is
        returned as text, which the control plane counts as an approval with a note. API failures raise like
        :meth:`handle`.
        """
        a = ctx.assignment
        system = self.system_blocks(a)
        system[0] = {
            "type": "text",
            "text": f"{system[0]['text']}\n\nYou are now the reviewer of the task's answer.",
        }
        prompt = (
            f"{_section('answer', a.inputs.get('answer', ''))}\n\n"
            "Grade the answer above against the task (its description, context and constraints): is it "
            "correct, complete and specific, and does it respect every constraint? Give your verdict with "
            "the submit_review tool: approve it as it is, or list each change it needs, concretely."
        )
        prompt_chars = sum(len(b["text"]) for b in system) + len(prompt) + len(str(REVIEW_TOOL))
        max_tokens = self.max_tokens_for(a, prompt_chars)
        max_tokens = min(max_tokens, REVIEW_MAX_TOKENS)
        ctx.progress(0.0, f"reviewing with {self.config.model}")

        async def attempt(permit: Permit) -> Any:
            async with self._calls() as client:
                raw = await client.messages.with_raw_response.create(
                    model=self.config.model,
                    max_tokens=max_tokens,
                    system=system,
                    messages=[{"role": "user", "content": prompt}],
                    tools=[REVIEW_TOOL],
                    tool_choice={"type": "tool", "name": REVIEW_TOOL["name"]},
                    **request_options(self.config),
                )
                answer = await raw.parse()
            report_success(permit, raw.headers, answer)
            return answer

        try:  # under a permit of the control plane's pacer, like every model call
            message = await paced_call(
                self.pacer, self.config, int(prompt_chars / CHARS_PER_TOKEN) + 1, max_tokens, attempt
            )
        except Exception as exc:
            raise translate_error(exc) from exc
        return Result(output=parse_review(message), usage=self._usage(message))


#: Most output tokens of a review (a verdict and a list of changes).
REVIEW_MAX_TOKENS = 2048
#: The tool a reviewer answers through (its input is a ``maos.v1.ReviewVerdict``).
REVIEW_TOOL: dict[str, Any] = {
    "name": "submit_review",
    "description": "Give your verdict on the answer: approve it, or list the changes it needs.",
    "input_schema": {
        "type": "object",
        "properties": {
            "approved": {"type": "boolean", "description": "True when the answer meets the task as it is."},
            "changes": {
                "type": "array",
                "items": {"type": "string"},
                "description": "Each change the answer needs (empty when approved).",
            },
            "summary": {
                "type": "string",
                "description": "Your judgement of the answer in one or two sentences.",
            },
        },
        "required": ["approved", "changes", "summary"],
    },
}


def parse_review(message: Any) -> str:
    """The verdict of a ``submit_review`` tool call as JSON, or the reply's text when there is none."""
    blocks = getattr(message, "content", None) or []
    call = next(
        (
            b
            for b in blocks
            if getattr(b, "type", "") == "tool_use" and getattr(b, "name", "") == REVIEW_TOOL["name"]
        ),
        None,
    )
    data = getattr(call, "input", None)
    if not isinstance(data, Mapping) or not isinstance(data.get("approved"), bool):
        return "".join(getattr(b, "text", "") for b in blocks if getattr(b, "type", "") == "text")
    changes = data.get("changes")
    return verdict_json(
        data["approved"],
        [c for c in changes if isinstance(c, str)] if isinstance(changes, list) else [],
        data["summary"] if isinstance(data.get("summary"), str) else "",
    )


def _abstention(why: str) -> VoteChoice:
    log.warning("claude vote: %s; abstaining", why)
    return VoteChoice.abstention(f"no usable judgement: {why}")


def parse_vote(message: Any, ids: list[str]) -> VoteChoice:
    """The VoteChoice in a ``cast_vote`` tool call, or an abstention saying what was wrong."""
    call = next(
        (
            b
            for b in getattr(message, "content", None) or []
            if getattr(b, "type", "") == "tool_use" and getattr(b, "name", "") == "cast_vote"
        ),
        None,
    )
    if call is None:
        return _abstention("the model did not call cast_vote")
    data = call.input
    if not isinstance(data, Mapping):
        return _abstention("cast_vote input is not an object")
    candidate = data.get("candidate_id")
    if not isinstance(candidate, str) or candidate not in ids:
        return _abstention(f"cast_vote named an unknown candidate {candidate!r}")
    confidence = data.get("confidence")
    if isinstance(confidence, bool) or not isinstance(confidence, int | float) or math.isnan(confidence):
        return _abstention(f"cast_vote confidence {confidence!r} is not a number")
    rationale = data.get("rationale")
    return VoteChoice(
        candidate,
        confidence=min(1.0, max(0.0, float(confidence))),
        rationale=rationale.strip() if isinstance(rationale, str) else "",
    )


# --- the five types ---------------------------------------------------------------


class ResearcherAgent(ClaudeAgent):
    """Market research, competitive analysis."""

    agent_type = "researcher"
    capabilities: ClassVar[list[str]] = ["web_search", "data_analysis", "synthesis"]
    description = (
        "Claude-backed researcher: web_search, data_analysis, synthesis (market and competitive research)."
    )
    role_prompt = ROLE_PROMPTS["researcher"]
    pool_share = 2
    role_tools = (WEB_SEARCH, WEB_FETCH)


class CoderAgent(ClaudeAgent):
    """Software development, automation."""

    agent_type = "coder"
    capabilities: ClassVar[list[str]] = ["programming", "testing", "debugging"]
    description = "Claude-backed coder: programming, testing, debugging (software development, automation)."
    role_prompt = ROLE_PROMPTS["coder"]
    default_max_tokens = 8192
    role_tools = (CODE_EXECUTION, WORKSPACE)


class AnalystAgent(ClaudeAgent):
    """Data processing, insights."""

    agent_type = "analyst"
    capabilities: ClassVar[list[str]] = ["data_analysis", "visualization", "statistics"]
    description = (
        "Claude-backed analyst: data_analysis, visualization, statistics (data processing, insights)."
    )
    role_prompt = ROLE_PROMPTS["analyst"]


class TesterAgent(ClaudeAgent):
    """Quality assurance, testing."""

    agent_type = "tester"
    capabilities: ClassVar[list[str]] = ["test_generation", "validation", "qa"]
    description = "Claude-backed tester: test_generation, validation, qa (quality assurance, testing)."
    role_prompt = ROLE_PROMPTS["tester"]
    default_max_tokens = 8192
    role_tools = (CODE_EXECUTION, WORKSPACE)


class CoordinatorAgent(ClaudeAgent):
    """Complex workflows, coordination; synthesizes the parts of a task."""

    agent_type = "coordinator"
    capabilities: ClassVar[list[str]] = ["orchestration", "consensus", "planning", "synthesis"]
    description = (
        "Claude-backed coordinator: orchestration, consensus, planning, synthesis "
        "(complex workflows, combining the parts)."
    )
    role_prompt = ROLE_PROMPTS["coordinator"]
    default_max_tokens = 8192


#: In the order the default pool fills: with a small ``system.max_agents`` the first ones come first.
AGENT_CLASSES: tuple[type[ClaudeAgent], ...] = (
    ResearcherAgent,
    CoordinatorAgent,
    CoderAgent,
    AnalystAgent,
    TesterAgent,
)


def _home(settings: Any) -> Path:
    """``settings.home`` when the settings carry one, else ``$MAOS_HOME`` (or ``~/.maos``)."""
    home = getattr(settings, "home", None)
    if home is not None:
        return Path(home)
    from controlplane.config import default_home

    return default_home()


def cannot_run(settings: Any, params: Mapping[str, Any]) -> str:
    """Why a Claude type with these parameters cannot run: no API key, an MCP server that cannot start (both
    are said, so that one listing shows everything to fix)."""
    return "; ".join(
        why
        for why in (needs_key(settings, params), tools_unavailable(params, agents_folder(settings)))
        if why
    )


def needs_key(settings: Any, params: Mapping[str, Any]) -> str:
    """Why a Claude type with these parameters cannot run: no API key anywhere ("" when one is set)."""
    if settings is None:
        settings = load_plugin_settings()
    try:
        config = resolve_config(settings, params)
    except ValueError as exc:  # bad parameters: the type's own problem, reported when it is built
        return f"invalid parameters: {exc}"
    return "" if config.api_key else NO_KEY_MESSAGE


def agent_type_specs(settings: Any = None) -> list[AgentTypeSpec]:
    """The five Claude agent types (building one makes no network call).

    Also the ``claude`` catalog of the ``maos.agents`` entry points, through which ``maos-agent``
    finds these types (see :mod:`agent_sdk.installed`).

    ``settings`` (the hook's) are used for ``claude.*``; without them the factory reads
    ``controlplane.config.load_settings()`` when it builds the agent.
    """

    def spec(cls: type[ClaudeAgent]) -> AgentTypeSpec:
        def factory(params: Mapping[str, Any]) -> Agent:
            return cls(params, settings=settings)

        return AgentTypeSpec(
            name=cls.agent_type,
            capabilities=tuple(cls.capabilities),
            description=cls.description,
            factory=factory,
            max_concurrency=cls.max_concurrency,
            source=SOURCE,
            backing=AgentBacking.MODEL,
            precondition=lambda params: cannot_run(settings, params),
            pool_share=cls.pool_share,
            environment=AGENT_ENVIRONMENT,
            validate=check_parameters,
            advisory=lambda params: tool_warnings(params, agents_folder(settings)),
        )

    return [spec(cls) for cls in AGENT_CLASSES]
