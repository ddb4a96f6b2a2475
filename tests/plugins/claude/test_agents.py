"""Claude agents driven directly through ``handle(ctx)`` / ``vote(ballot)`` against the fake Messages API."""

from __future__ import annotations

import asyncio
import socket
import time
from dataclasses import replace

import pytest

from agent_sdk.context import Ballot, Candidate
from agent_sdk.errors import PermanentError, RetryableError
from maos_plugins.claude.agents import (
    AGENT_CLASSES,
    ClaudeAgent,
    CoordinatorAgent,
    ResearcherAgent,
    agent_type_specs,
)
from maos_plugins.claude.config import DEFAULT_MODEL, ClaudeConfig
from maos_plugins.claude.pricing import cost_micros
from tests.harness.messages_api import MessagesAPIServer, RawReply
from tests.harness.server import wait_for
from tests.plugins.claude.conftest import API_KEY, assignment, context, params

GUIDE_TABLE = {
    "researcher": ("web_search", "data_analysis", "synthesis"),
    "coder": ("programming", "testing", "debugging"),
    "analyst": ("data_analysis", "visualization", "statistics"),
    "tester": ("test_generation", "validation", "qa"),
    "coordinator": ("orchestration", "consensus", "planning", "synthesis"),
}


# --- types and factory --------------------------------------------------------------


def test_the_five_types_have_the_guides_capabilities_and_role_prompts() -> None:
    specs = {s.name: s for s in agent_type_specs(settings={})}
    assert set(specs) == set(GUIDE_TABLE)
    for name, caps in GUIDE_TABLE.items():
        assert specs[name].capabilities == caps
        assert specs[name].source == "maos_plugins.claude"
    prompts = {cls.role_prompt for cls in AGENT_CLASSES}
    assert len(prompts) == 5 and all(prompts)


def test_factory_reads_parameters_over_settings(api: MessagesAPIServer) -> None:
    settings = {"claude.api_key": "from-settings", "claude.model": "claude-opus-4-6", "claude.base_url": ""}
    spec = next(s for s in agent_type_specs(settings) if s.name == "coder")
    agent = spec.factory(params(api, model="claude-haiku-4-5", max_tokens=123, temperature=0.4))
    assert isinstance(agent, ClaudeAgent)
    assert agent.config.api_key == API_KEY
    assert agent.config.model == "claude-haiku-4-5"
    assert agent.config.max_tokens == 123 and agent.config.temperature == 0.4
    assert agent.config.base_url == api.base_url
    plain = spec.factory({})
    assert plain.config.api_key == "from-settings" and plain.config.model == "claude-opus-4-6"
    assert plain.config.max_tokens == 8192  # the coder's default
    assert not api.requests  # building an agent makes no call


def test_factory_without_settings_uses_load_settings(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("MAOS_HOME", str(tmp_path))
    monkeypatch.setenv("CLAUDE_API_KEY", "from-env")
    agent = ResearcherAgent()
    assert agent.config.api_key == "from-env"
    assert agent.config.model == DEFAULT_MODEL


# --- a subtask ------------------------------------------------------------------------


async def test_execute_subtask_records_usage_cost_and_caches_the_shared_context(
    api: MessagesAPIServer,
) -> None:
    api.push_text(
        "Trend one. Trend two. Trend three.",
        usage={
            "input_tokens": 40,
            "output_tokens": 12,
            "cache_read_input_tokens": 1500,
            "cache_creation_input_tokens": 300,
        },
    )
    agent = ResearcherAgent(params(api))
    ctx, sink = context(assignment(inputs={"s9": "earlier finding"}))
    result = await agent.handle(ctx)

    assert result.output == "Trend one. Trend two. Trend three."
    u = result.usage
    assert (u.input_tokens, u.output_tokens, u.cache_read_input_tokens, u.cache_creation_input_tokens) == (
        40,
        12,
        1500,
        300,
    )
    assert u.model_calls == 1
    # Sonnet: $3 in, $15 out, $3.75 cache write, $0.30 cache read per million tokens
    assert (
        u.cost_micros == cost_micros(DEFAULT_MODEL, 40, 12, 300, 1500) == 40 * 3 + 12 * 15 + 300 * 3.75 + 450
    )
    assert sink.progress and sink.progress[0] == 0.0

    (request,) = api.requests
    assert "anthropic-version" in request.headers
    body = request.body
    assert body["model"] == DEFAULT_MODEL and body["stream"] is True
    assert body["max_tokens"] == 4096
    assert "temperature" not in body
    role, shared = body["system"]
    assert "researcher" in role["text"].lower() and "cache_control" not in role
    assert shared["cache_control"] == {"type": "ephemeral"}
    for text in ("Research the top 3 cloud computing trends in 2025", "healthcare application", "HIPAA"):
        assert text in shared["text"]
    (message,) = body["messages"]
    assert message["role"] == "user"
    assert "List the top 3 cloud computing trends of 2025." in message["content"]
    assert "earlier finding" in message["content"]


async def test_siblings_send_the_same_cached_prefix(api: MessagesAPIServer) -> None:
    agent = ResearcherAgent(params(api))
    await agent.handle(context(assignment(subtask="s0", instructions="part one"))[0])
    await agent.handle(context(assignment(subtask="s1", instructions="part two"))[0])
    first, second = (r.body for r in api.requests)
    assert first["system"] == second["system"]
    assert first["messages"] != second["messages"]


async def test_streamed_chunks_are_forwarded_in_order(api: MessagesAPIServer) -> None:
    text = "alpha beta gamma delta epsilon"
    api.push_text(text)
    ctx, sink = context()
    result = await ResearcherAgent(params(api)).handle(ctx)
    assert len(sink.outputs) == 5
    assert "".join(sink.outputs) == text == result.output
    assert sink.sequences == list(range(5))


async def test_synthesis_step_gets_the_parts_to_combine(api: MessagesAPIServer) -> None:
    ctx, _ = context(assignment(kind=2, instructions="Combine", inputs={"s0": "PART-A", "s1": "PART-B"}))
    await CoordinatorAgent(params(api)).handle(ctx)
    content = api.requests[0].body["messages"][0]["content"]
    assert "combine" in content.lower()
    assert content.index("PART-A") < content.index("PART-B")


async def test_temperature_and_model_parameters_are_sent(api: MessagesAPIServer) -> None:
    await ResearcherAgent(params(api, temperature=0.3, model="claude-haiku-4-5", max_tokens=50)).handle(
        context()[0]
    )
    body = api.requests[0].body
    assert body["temperature"] == 0.3 and body["model"] == "claude-haiku-4-5" and body["max_tokens"] == 50


# --- errors ---------------------------------------------------------------------------


async def test_rate_limit_then_success_is_retried_by_the_sdk(api: MessagesAPIServer) -> None:
    api.push_error(429, retry_after=0.2)
    api.push_text("done")
    start = time.monotonic()
    result = await ResearcherAgent(params(api)).handle(context()[0])
    assert result.output == "done"
    assert len(api.requests) == 2
    assert time.monotonic() - start >= 0.2  # the server's retry-after was honoured


async def test_rate_limit_beyond_the_retries_is_retryable_with_retry_after(api: MessagesAPIServer) -> None:
    for _ in range(3):
        api.push_error(429, retry_after=0.05)
    with pytest.raises(RetryableError) as info:
        await ResearcherAgent(params(api, max_retries=2)).handle(context()[0])
    assert info.value.retry_after == pytest.approx(0.05)
    assert info.value.error_type == "RateLimited"
    assert len(api.requests) == 3


async def test_a_long_retry_after_goes_back_to_the_control_plane(api: MessagesAPIServer) -> None:
    api.push_error(429, retry_after=30)
    start = time.monotonic()
    with pytest.raises(RetryableError) as info:
        await ResearcherAgent(params(api)).handle(context()[0])
    assert time.monotonic() - start < 5
    assert info.value.retry_after == pytest.approx(30)
    assert len(api.requests) == 1


async def test_overloaded_is_retryable(api: MessagesAPIServer) -> None:
    api.push_error(529, retry_after=1.5)
    with pytest.raises(RetryableError) as info:
        await ResearcherAgent(params(api, max_retries=0)).handle(context()[0])
    assert info.value.error_type == "Overloaded"
    assert info.value.retry_after == pytest.approx(1.5)


@pytest.mark.parametrize("status", [400, 403, 404])
async def test_client_errors_are_permanent(api: MessagesAPIServer, status: int) -> None:
    api.push_error(status, "prompt is malformed in a scripted way")
    with pytest.raises(PermanentError) as info:
        await ResearcherAgent(params(api)).handle(context()[0])
    assert "prompt is malformed in a scripted way" in str(info.value)
    assert len(api.requests) == 1  # not retried


async def test_a_wrong_key_is_permanent(api: MessagesAPIServer) -> None:
    with pytest.raises(PermanentError, match="401"):
        await ResearcherAgent(params(api, api_key="sk-wrong")).handle(context()[0])


async def test_connection_errors_are_retryable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    agent = ResearcherAgent(
        config=ClaudeConfig(api_key=API_KEY, base_url=f"http://127.0.0.1:{port}", max_retries=0, timeout=5)
    )
    with pytest.raises(RetryableError):
        await agent.handle(context()[0])


async def test_a_connection_dropped_mid_stream_is_retryable() -> None:
    server = MessagesAPIServer().start()
    try:
        server.push_text(" ".join(f"w{i}" for i in range(200)), chunk_delay=0.05)
        ctx, sink = context()
        agent = ResearcherAgent(config=ClaudeConfig(api_key=API_KEY, base_url=server.base_url, max_retries=0))
        task = asyncio.get_running_loop().create_task(agent.handle(ctx))
        await wait_for(lambda: sink.outputs, 10, message="streamed output")
    finally:
        await asyncio.to_thread(server.stop)
    with pytest.raises(RetryableError, match="connection"):
        await task


SSE_START = (
    b'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_1","type":"message",'
    b'"role":"assistant","model":"m","content":[],"stop_reason":null,"stop_sequence":null,'
    b'"usage":{"input_tokens":1,"output_tokens":1}}}\n\n'
)


async def test_a_truncated_stream_is_retryable(api: MessagesAPIServer) -> None:
    api.push(RawReply(SSE_START, content_type="text/event-stream"))
    with pytest.raises(RetryableError, match="ended before"):
        await ResearcherAgent(params(api)).handle(context()[0])


async def test_an_error_event_mid_stream_is_translated(api: MessagesAPIServer) -> None:
    error = (
        b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}\n\n'
    )
    api.push(RawReply(SSE_START + error, content_type="text/event-stream"))
    with pytest.raises(RetryableError) as info:
        await ResearcherAgent(params(api)).handle(context()[0])
    assert info.value.error_type == "Overloaded"


async def test_no_api_key_is_permanent_without_a_call(api: MessagesAPIServer) -> None:
    agent = ResearcherAgent(config=ClaudeConfig(api_key="", base_url=api.base_url))
    with pytest.raises(PermanentError, match="API key"):
        await agent.handle(context()[0])
    assert not api.requests


# --- budget ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fields",
    [
        {"remaining_tokens": -1},
        {"remaining_cost_micros": -5},
        {"remaining_tokens": 10},  # less than the prompt itself
        {"remaining_cost_micros": 50},  # $0.00005 does not pay for the prompt
    ],
)
async def test_exhausted_budget_is_permanent_without_a_call(api: MessagesAPIServer, fields: dict) -> None:
    with pytest.raises(PermanentError, match="budget exhausted") as info:
        await ResearcherAgent(params(api)).handle(context(assignment(**fields))[0])
    assert info.value.error_type == "BudgetExhausted"
    assert not api.requests


async def test_max_tokens_is_capped_by_the_remaining_budget(api: MessagesAPIServer) -> None:
    await ResearcherAgent(params(api)).handle(context(assignment(remaining_tokens=1000))[0])
    capped = api.requests[0].body["max_tokens"]
    assert 1 <= capped < 1000
    await ResearcherAgent(params(api)).handle(context(assignment(remaining_tokens=10**9))[0])
    assert api.requests[1].body["max_tokens"] == 4096


# --- cancellation ---------------------------------------------------------------------


async def test_cancellation_closes_the_http_request(api: MessagesAPIServer) -> None:
    api.push_text("too late", delay=30)
    task = asyncio.get_running_loop().create_task(ResearcherAgent(params(api)).handle(context()[0]))
    await asyncio.to_thread(api.wait_for_requests, 1)
    start = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - start < 1.0
    await asyncio.to_thread(api.wait_until, lambda reqs: reqs[0].disconnected, 5.0)


async def test_cancellation_mid_stream_closes_the_stream(api: MessagesAPIServer) -> None:
    api.push_text(" ".join(f"w{i}" for i in range(200)), chunk_delay=0.05)
    ctx, sink = context()
    task = asyncio.get_running_loop().create_task(ResearcherAgent(params(api)).handle(ctx))
    await wait_for(lambda: sink.outputs, 10, message="streamed output")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.to_thread(api.wait_until, lambda reqs: reqs[0].disconnected, 5.0)
    assert len(sink.outputs) < 200


# --- voting ---------------------------------------------------------------------------


def ballot() -> Ballot:
    return Ballot(
        proposal="p1",
        task="t1",
        question="Which summary is best?",
        round=1,
        candidates=[
            Candidate("c1", "agents/a1", "Short and wrong."),
            Candidate("c2", "agents/a2", "Complete and right."),
        ],
    )


async def test_vote_through_tool_use(api: MessagesAPIServer) -> None:
    api.push_tool_use(
        "cast_vote",
        {"candidate_id": "c2", "confidence": 0.8, "rationale": "It is complete."},
        usage={"input_tokens": 100, "output_tokens": 20},
    )
    agent = CoordinatorAgent(params(api))
    choice = await agent.vote(ballot())
    assert (choice.candidate_id, choice.confidence, choice.rationale) == ("c2", 0.8, "It is complete.")
    body = api.requests[0].body
    assert body["tool_choice"] == {"type": "tool", "name": "cast_vote"}
    assert body["tools"][0]["input_schema"]["properties"]["candidate_id"]["enum"] == ["c1", "c2"]
    assert "Complete and right." in body["messages"][0]["content"]
    assert agent.vote_usage.model_calls == 1 and agent.vote_usage.input_tokens == 100
    assert (choice.usage.model_calls, choice.usage.input_tokens, choice.usage.output_tokens) == (1, 100, 20)


async def test_voters_see_the_tasks_context_and_constraints(api: MessagesAPIServer) -> None:
    api.push_tool_use("cast_vote", {"candidate_id": "c2", "confidence": 0.8, "rationale": "fits"})
    await CoordinatorAgent(params(api)).vote(
        replace(ballot(), context="For a hospital", constraints="HIPAA only")
    )
    prompt = api.requests[0].body["messages"][0]["content"]
    assert "<context>\nFor a hospital\n</context>" in prompt
    assert "<constraints>\nHIPAA only\n</constraints>" in prompt


@pytest.mark.parametrize("script", ["text", "unknown", "bad_confidence", "not_json"])
async def test_an_unusable_vote_abstains(api: MessagesAPIServer, script: str) -> None:
    if script == "text":
        api.push_text("I think c2 is best.")
    elif script == "unknown":
        api.push_tool_use("cast_vote", {"candidate_id": "c9", "confidence": 0.9, "rationale": "?"})
    elif script == "bad_confidence":
        api.push_tool_use("cast_vote", {"candidate_id": "c2", "confidence": "very", "rationale": "?"})
    else:
        api.push_malformed("{not json")
    choice = await CoordinatorAgent(params(api)).vote(ballot())
    assert choice.abstain and choice.candidate_id == "" and choice.confidence == 0.0
    assert choice.rationale.startswith("no usable judgement")


async def test_vote_clamps_confidence(api: MessagesAPIServer) -> None:
    api.push_tool_use("cast_vote", {"candidate_id": "c1", "confidence": 3, "rationale": "sure"})
    choice = await CoordinatorAgent(params(api)).vote(ballot())
    assert choice.candidate_id == "c1" and choice.confidence == 1.0


async def test_vote_api_failure_is_an_agent_error(api: MessagesAPIServer) -> None:
    api.push_error(400, "bad vote request")
    with pytest.raises(PermanentError):
        await CoordinatorAgent(params(api)).vote(ballot())
