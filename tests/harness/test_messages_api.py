"""Tests of the fake Messages API, driven through the real ``anthropic`` SDK."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import anthropic
import pytest
from anthropic.types import Message, TextBlock, ToolUseBlock

from tests.harness.messages_api import MessageReply, MessagesAPIServer

pytestmark = pytest.mark.timeout(30)

MODEL = "claude-test-model"
USER = [{"role": "user", "content": "Say hello"}]


@pytest.fixture
def server() -> Iterator[MessagesAPIServer]:
    with MessagesAPIServer() as srv:
        yield srv


def make_client(
    server: MessagesAPIServer, *, max_retries: int = 0, api_key: str = "test-key"
) -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key=api_key, base_url=server.base_url, max_retries=max_retries, timeout=10)


def make_async_client(server: MessagesAPIServer, *, max_retries: int = 0) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(
        api_key="test-key", base_url=server.base_url, max_retries=max_retries, timeout=10
    )


def raw_post(
    server: MessagesAPIServer, path: str, body: Any, headers: dict[str, str]
) -> tuple[int, dict[str, Any]]:
    """POSTs without the SDK; returns (status, parsed JSON body)."""
    req = urllib.request.Request(
        server.base_url + path,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"content-type": "application/json", **headers},
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


USAGE = {
    "input_tokens": 11,
    "output_tokens": 3,
    "cache_creation_input_tokens": 5,
    "cache_read_input_tokens": 7,
}


def test_text_reply_sync_with_usage_and_recorded_request(server: MessagesAPIServer) -> None:
    server.push_text("hello world", usage=USAGE)
    system = [{"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral"}}]
    with make_client(server) as client:
        message = client.messages.create(model=MODEL, max_tokens=64, system=system, messages=USER)

    assert message.id.startswith("msg_") and message.type == "message" and message.role == "assistant"
    assert message.model == MODEL
    assert message.stop_reason == "end_turn"
    assert [(type(b), b.text) for b in message.content] == [(TextBlock, "hello world")]
    assert message.usage.input_tokens == 11 and message.usage.output_tokens == 3
    assert message.usage.cache_creation_input_tokens == 5 and message.usage.cache_read_input_tokens == 7
    assert message._request_id and message._request_id.startswith("req_")

    [req] = server.requests
    assert (req.method, req.path) == ("POST", "/v1/messages")
    assert req.headers["anthropic-version"]
    assert req.headers["authorization"] == "Bearer test-key"
    assert req.body["system"] == system  # cache_control block arrives intact
    assert req.body["messages"] == USER and req.body["max_tokens"] == 64


@pytest.mark.asyncio
async def test_text_reply_async_with_computed_usage(server: MessagesAPIServer) -> None:
    server.push_text("one two three", stop_reason="max_tokens")
    async with make_async_client(server) as client:
        message = await client.messages.create(model=MODEL, max_tokens=3, messages=USER)

    assert isinstance(message.content[0], TextBlock) and message.content[0].text == "one two three"
    assert message.stop_reason == "max_tokens"
    # Without overrides usage is computed: words in / words out, zero cache.
    assert (message.usage.input_tokens, message.usage.output_tokens) == (2, 3)
    assert (message.usage.cache_creation_input_tokens, message.usage.cache_read_input_tokens) == (0, 0)
    assert server.requests[0].headers["x-stainless-async"].startswith("async:")


def test_tool_use_reply_parsed_into_tool_use_block(server: MessagesAPIServer) -> None:
    tool = {"name": "get_weather", "description": "Weather", "input_schema": {"type": "object"}}
    server.push_tool_use("get_weather", {"city": "Paris", "days": [1, 2]}, text="Checking.")
    with make_client(server) as client:
        message = client.messages.create(model=MODEL, max_tokens=64, messages=USER, tools=[tool])

    assert message.stop_reason == "tool_use"
    text, call = message.content
    assert isinstance(text, TextBlock) and text.text == "Checking."
    assert isinstance(call, ToolUseBlock)
    assert call.id.startswith("toolu_") and call.name == "get_weather"
    assert call.input == {"city": "Paris", "days": [1, 2]}
    assert server.requests[0].body["tools"] == [tool]


def test_streaming_text_deltas_in_order_and_final_usage(server: MessagesAPIServer) -> None:
    server.push_text("The quick brown fox", usage={"cache_read_input_tokens": 4, "output_tokens": 9})
    with (
        make_client(server) as client,
        client.messages.stream(model=MODEL, max_tokens=64, messages=USER) as stream,
    ):
        chunks = list(stream.text_stream)
        final = stream.get_final_message()

    assert chunks == ["The ", "quick ", "brown ", "fox"]
    assert final.content[0].text == "".join(chunks)
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == 9 and final.usage.cache_read_input_tokens == 4
    assert server.requests[0].body["stream"] is True


@pytest.mark.parametrize("stream", [False, True])
def test_stop_sequence_reported(server: MessagesAPIServer, stream: bool) -> None:
    server.push_text("partial", stop_reason="stop_sequence", stop_sequence="###")
    with make_client(server) as client:
        if stream:
            with client.messages.stream(
                model=MODEL, max_tokens=64, messages=USER, stop_sequences=["###"]
            ) as s:
                message = s.get_final_message()
        else:
            message = client.messages.create(
                model=MODEL, max_tokens=64, messages=USER, stop_sequences=["###"]
            )
    assert (message.stop_reason, message.stop_sequence) == ("stop_sequence", "###")


def test_streaming_raw_event_sequence_for_tool_use(server: MessagesAPIServer) -> None:
    server.push_tool_use("lookup", {"query": "a fairly long query string", "limit": 10})
    with make_client(server) as client:
        events = list(client.messages.create(model=MODEL, max_tokens=64, messages=USER, stream=True))

    types = [e.type for e in events]
    assert types[:2] == ["message_start", "content_block_start"]
    assert types[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    deltas = [e.delta for e in events if e.type == "content_block_delta"]
    assert len(deltas) > 1 and all(d.type == "input_json_delta" for d in deltas)
    assert json.loads("".join(d.partial_json for d in deltas)) == {
        "query": "a fairly long query string",
        "limit": 10,
    }
    message_delta = events[-2]
    assert message_delta.delta.stop_reason == "tool_use" and message_delta.usage.output_tokens > 1


@pytest.mark.asyncio
async def test_async_stream_helper_accumulates_tool_input(server: MessagesAPIServer) -> None:
    server.push_tool_use("lookup", {"query": "x" * 40})
    async with (
        make_async_client(server) as client,
        client.messages.stream(model=MODEL, max_tokens=64, messages=USER) as stream,
    ):
        final = await stream.get_final_message()
    [block] = final.content
    assert isinstance(block, ToolUseBlock) and block.input == {"query": "x" * 40}
    assert final.stop_reason == "tool_use"


def test_429_with_retry_after_is_retried_quickly_by_sdk(server: MessagesAPIServer) -> None:
    server.push_error(429, retry_after=0.01)
    server.push_text("after retry")
    with make_client(server, max_retries=2) as client:
        start = time.monotonic()
        message = client.messages.create(model=MODEL, max_tokens=64, messages=USER)
        elapsed = time.monotonic() - start

    assert message.content[0].text == "after retry"
    assert [r.headers["x-stainless-retry-count"] for r in server.requests] == ["0", "1"]
    # The SDK's own backoff is >= 0.375s; finishing well below proves retry-after-ms was honoured.
    assert elapsed < 0.3


def test_429_without_retries_raises_rate_limit_error_with_headers(server: MessagesAPIServer) -> None:
    server.push_error(429, "slow down", retry_after=1.5)
    with make_client(server) as client, pytest.raises(anthropic.RateLimitError) as info:
        client.messages.create(model=MODEL, max_tokens=64, messages=USER)
    assert info.value.status_code == 429
    assert info.value.body == {"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}}
    assert info.value.response.headers["retry-after-ms"] == "1500"
    assert info.value.response.headers["retry-after"] == "2"


def test_529_overloaded_raises_overloaded_error(server: MessagesAPIServer) -> None:
    server.push_error(529)
    with make_client(server, max_retries=0) as client, pytest.raises(anthropic.OverloadedError) as info:
        client.messages.create(model=MODEL, max_tokens=64, messages=USER)
    assert isinstance(info.value, anthropic.InternalServerError)
    assert info.value.status_code == 529
    assert info.value.body["error"]["type"] == "overloaded_error"
    assert len(server.requests) == 1


def test_500_retries_exhausted_raises_internal_server_error(server: MessagesAPIServer) -> None:
    for _ in range(3):
        server.push_error(500, retry_after=0.001)
    server.push_text("never reached")
    with make_client(server, max_retries=2) as client, pytest.raises(anthropic.InternalServerError) as info:
        client.messages.create(model=MODEL, max_tokens=64, messages=USER)
    assert info.value.status_code == 500 and info.value.body["error"]["type"] == "api_error"
    assert len(server.requests) == 3 and server.pending == 1


def test_missing_max_tokens_is_400_and_consumes_no_scripted_reply(server: MessagesAPIServer) -> None:
    server.push_text("kept for later")
    with make_client(server) as client:
        with pytest.raises(anthropic.BadRequestError) as info:
            client.post("/v1/messages", body={"model": MODEL, "messages": USER}, cast_to=Message)
        assert info.value.status_code == 400
        assert info.value.body["error"] == {
            "type": "invalid_request_error",
            "message": "max_tokens: Field required",
        }
        assert server.pending == 1
        assert (
            client.messages.create(model=MODEL, max_tokens=8, messages=USER).content[0].text
            == "kept for later"
        )


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"max_tokens": 5, "messages": USER}, "model"),
        ({"model": MODEL, "max_tokens": 5, "messages": []}, "messages"),
        ({"model": MODEL, "max_tokens": 0, "messages": USER}, "max_tokens"),
        ({"model": MODEL, "max_tokens": 5, "messages": [{"role": "bot", "content": "x"}]}, "role"),
    ],
)
def test_invalid_bodies_rejected(server: MessagesAPIServer, body: dict[str, Any], fragment: str) -> None:
    with make_client(server) as client, pytest.raises(anthropic.BadRequestError) as info:
        client.post("/v1/messages", body=body, cast_to=Message)
    assert fragment in info.value.body["error"]["message"]


def test_wrong_api_key_raises_authentication_error(server: MessagesAPIServer) -> None:
    server.api_key = "right-key"
    with (
        make_client(server, api_key="wrong-key") as client,
        pytest.raises(anthropic.AuthenticationError) as info,
    ):
        client.messages.create(model=MODEL, max_tokens=64, messages=USER)
    assert info.value.status_code == 401
    assert info.value.body["error"]["type"] == "authentication_error"
    with make_client(server, api_key="right-key") as client:
        assert (
            client.messages.create(model=MODEL, max_tokens=64, messages=USER).content[0].text == "Say hello"
        )


def test_missing_api_key_header_is_401_and_x_api_key_accepted(server: MessagesAPIServer) -> None:
    body = {"model": MODEL, "max_tokens": 5, "messages": USER}
    status, error = raw_post(server, "/v1/messages", body, {"anthropic-version": "2023-06-01"})
    assert status == 401
    assert error["type"] == "error"
    assert error["error"] == {"type": "authentication_error", "message": "x-api-key header is required"}

    status, message = raw_post(
        server, "/v1/messages", body, {"anthropic-version": "2023-06-01", "x-api-key": "k"}
    )
    assert status == 200 and message["content"] == [{"type": "text", "text": "Say hello"}]


@pytest.mark.asyncio
async def test_cancellation_mid_call_leaves_server_usable(server: MessagesAPIServer) -> None:
    server.push_text("too late", delay=30)
    async with make_async_client(server) as client:
        task = asyncio.create_task(client.messages.create(model=MODEL, max_tokens=64, messages=USER))
        await asyncio.to_thread(server.wait_for_requests, 1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # The server notices the client hanging up instead of sleeping out the delay.
        await asyncio.to_thread(server.wait_until, lambda reqs: reqs[0].disconnected, 5.0)

        server.push_text("fresh")
        message = await asyncio.wait_for(client.messages.create(model=MODEL, max_tokens=64, messages=USER), 5)
    assert message.content[0].text == "fresh"


def test_stop_interrupts_pending_delay_and_joins_threads() -> None:
    before = set(threading.enumerate())
    server = MessagesAPIServer().start()
    idle = make_client(server)  # leaves an idle keep-alive connection open across stop()
    assert idle.messages.create(model=MODEL, max_tokens=8, messages=USER).content[0].text == "Say hello"
    server.push_text("never sent", delay=30)
    errors: list[BaseException] = []

    def call() -> None:
        with make_client(server) as client:
            try:
                client.messages.create(model=MODEL, max_tokens=64, messages=USER)
            except anthropic.APIConnectionError as err:
                errors.append(err)

    caller = threading.Thread(target=call)
    caller.start()
    server.wait_for_requests(2)
    httpd = server._httpd
    start = time.monotonic()
    server.stop()
    assert time.monotonic() - start < 2
    idle.close()
    caller.join(5)
    assert not caller.is_alive() and len(errors) == 1
    # Only this server's threads are checked: servers of other tests may still
    # be answering late retries of their own clients.
    mine = [
        t
        for t in threading.enumerate()
        if getattr(getattr(t, "_target", None), "__self__", None) is httpd and t not in before
    ]
    assert mine == []


def test_default_echo_and_custom_responder(server: MessagesAPIServer) -> None:
    with make_client(server) as client:
        messages = [*USER, {"role": "assistant", "content": "ok"}, {"role": "user", "content": "second turn"}]
        assert (
            client.messages.create(model=MODEL, max_tokens=8, messages=messages).content[0].text
            == "second turn"
        )

        def responder(request: dict[str, Any]) -> MessageReply | str:
            if request.get("tools"):
                return MessageReply(
                    [{"type": "tool_use", "id": "toolu_1", "name": "t", "input": {}}], "tool_use"
                )
            return f"model={request['model']}"

        server.responder = responder
        assert (
            client.messages.create(model=MODEL, max_tokens=8, messages=USER).content[0].text
            == f"model={MODEL}"
        )
        tool = {"name": "t", "input_schema": {"type": "object"}}
        reply = client.messages.create(model=MODEL, max_tokens=8, messages=USER, tools=[tool])
        assert reply.stop_reason == "tool_use" and reply.content[0].id == "toolu_1"


def test_malformed_replies_reach_the_caller(server: MessagesAPIServer) -> None:
    server.push_malformed("{not json")
    server.push_tool_use("search", "not-an-object")
    server.push_malformed({"type": "message", "content": "not a list"})
    with make_client(server) as client:
        with pytest.raises(ValueError):
            client.messages.create(model=MODEL, max_tokens=8, messages=USER)
        call = client.messages.create(model=MODEL, max_tokens=8, messages=USER).content[0]
        assert isinstance(call, ToolUseBlock) and call.input == "not-an-object"
    strict = anthropic.Anthropic(
        api_key="k", base_url=server.base_url, max_retries=0, _strict_response_validation=True
    )
    with strict, pytest.raises(anthropic.APIResponseValidationError):
        strict.messages.create(model=MODEL, max_tokens=8, messages=USER)


def test_count_tokens_and_models(server: MessagesAPIServer) -> None:
    with make_client(server) as client:
        count = client.messages.count_tokens(model=MODEL, system="be brief", messages=USER)
        models = client.models.list()
    assert count.input_tokens == 4  # "be brief" + "Say hello"
    assert [m.id for m in models.data] and all(m.type == "model" for m in models.data)
    assert [r.path for r in server.requests] == ["/v1/messages/count_tokens", "/v1/models"]


def test_an_overload_storm_answers_every_call_until_it_ends(server: MessagesAPIServer) -> None:
    server.rate_limit_headers = {
        "anthropic-ratelimit-requests-limit": "50",
        "anthropic-ratelimit-requests-remaining": "49",
    }
    server.push_text("after the storm")
    server.overload(0.3, status=529, retry_after=0.25)
    with make_client(server) as client:
        for _ in range(2):
            with pytest.raises(anthropic.OverloadedError) as info:
                client.messages.create(model=MODEL, max_tokens=8, messages=USER)
            headers = info.value.response.headers
            assert headers["retry-after-ms"] == "250" and headers["retry-after"] == "1"
            assert headers["anthropic-ratelimit-requests-limit"] == "50"
        assert server.storming and len(server.storm_answers) == 2
        deadline = time.monotonic() + 5
        while server.storming and time.monotonic() < deadline:
            time.sleep(0.02)
        raw = client.messages.with_raw_response.create(model=MODEL, max_tokens=8, messages=USER)
        assert raw.headers["anthropic-ratelimit-requests-remaining"] == "49"
        assert raw.parse().content[0].text == "after the storm"  # the scripted reply waited
    assert len(server.storm_answers) == 2


def test_scripted_review_verdicts_answer_only_review_requests(server: MessagesAPIServer) -> None:
    from tests.harness.messages_api import ReviewScript

    tool = {"name": "submit_review", "input_schema": {"type": "object"}}
    client = make_client(server)
    server.push_review(False, ["add a source"], summary="close")
    pushed = client.messages.create(
        model="m", max_tokens=64, messages=[{"role": "user", "content": "grade"}], tools=[tool]
    )
    (block,) = pushed.content
    assert isinstance(block, ToolUseBlock) and block.name == "submit_review"
    assert block.input == {"approved": False, "changes": ["add a source"], "summary": "close"}

    server.responder = ReviewScript([["shorter"], True])
    work = client.messages.create(
        model="m", max_tokens=64, messages=[{"role": "user", "content": "draft it"}]
    )
    assert isinstance(work.content[0], TextBlock) and work.content[0].text == "draft it"  # echoed
    verdicts = [
        client.messages.create(
            model="m", max_tokens=64, tools=[tool], messages=[{"role": "user", "content": "grade"}]
        )
        .content[0]
        .input
        for _ in range(3)
    ]
    assert [(v["approved"], v["changes"]) for v in verdicts] == [(False, ["shorter"]), (True, []), (True, [])]
    assert server.responder.reviews == 3
