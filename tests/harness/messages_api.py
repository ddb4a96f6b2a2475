"""A local, scriptable fake of the Anthropic Messages API.

Speaks enough of the real wire protocol (JSON bodies, error shapes, retry headers,
server-sent events) for the official ``anthropic`` SDK to be exercised offline through
its real code path: retries, error mapping, streaming accumulation and token usage.

Example::

    with MessagesAPIServer() as server:
        server.push_error(429, retry_after=0.01)
        server.push_text("hello", usage={"cache_read_input_tokens": 7})
        client = anthropic.Anthropic(api_key="test", base_url=server.base_url)
        client.messages.create(model="m", max_tokens=16, messages=[...])
        assert len(server.requests) == 2

Replies come from a FIFO queue filled by the ``push_*`` methods, else from
:attr:`MessagesAPIServer.responder` (default: echo the last user message).

Tools: ``push_tool_use`` scripts a client tool call (stop reason ``tool_use``); the next
request must answer every ``tool_use`` with a ``tool_result`` in its last user message, as the
real API requires (else 400). Server tools are scripted with the block helpers
(:func:`server_tool_use`, :func:`web_search_result`, :func:`web_fetch_result`,
:func:`cited_text`) in a :class:`MessageReply`, with ``stop_reason="pause_turn"`` for a paused
turn and ``usage={"server_tool_use": {"web_search_requests": 1}}`` for its billing; citations
stream as ``citations_delta`` events.
Requests failing authentication or validation get an error without consuming
a scripted reply. The installed SDK sends its key as ``Authorization: Bearer``
rather than ``x-api-key``; both are accepted.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import re
import select
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

ERROR_TYPES: dict[int, str] = {  # the real API's error ``type`` per HTTP status
    400: "invalid_request_error", 401: "authentication_error", 402: "billing_error", 403: "permission_error",
    404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error", 500: "api_error",
    504: "timeout_error", 529: "overloaded_error",
}  # fmt: skip

MODELS: list[dict[str, str]] = [  # served by GET /v1/models
    {
        "type": "model",
        "id": f"claude-{m}",
        "display_name": f"Claude {m}",
        "created_at": "2025-10-01T00:00:00Z",
    }
    for m in ("opus-4-1", "sonnet-4-5", "haiku-4-5")
]


@dataclass
class MessageReply:
    """A successful Message response.

    Attributes:
        content: Content blocks in API shape (``text`` / ``tool_use`` dicts).
        usage: Overrides merged over computed usage (word counts, zero cache).
        delay: Seconds to wait before responding (interrupted by ``stop()``).
        chunk_delay: Seconds to wait between SSE events when streaming.
    """

    content: list[dict[str, Any]]
    stop_reason: str = "end_turn"
    usage: dict[str, int] = field(default_factory=dict)
    delay: float = 0.0
    chunk_delay: float = 0.0
    stop_sequence: str | None = None


@dataclass
class ErrorReply:
    """An error with the real ``{"type": "error", "error": {...}}`` body; see :meth:`MessagesAPIServer.push_error`."""

    status: int
    error_type: str | None = None
    message: str = "scripted error"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass
class RawReply:
    """Bytes sent verbatim (``content_type`` may be ``text/event-stream`` for raw SSE)."""

    body: bytes
    status: int = 200
    content_type: str = "application/json"
    delay: float = 0.0


Reply = MessageReply | ErrorReply | RawReply
Responder = Callable[[dict[str, Any]], Reply | str]


@dataclass
class RecordedRequest:
    """One HTTP request as received by the server.

    Attributes:
        path: Request path without query string.
        headers: Headers with lower-cased names.
        body: Parsed JSON body, or ``None`` if absent or unparsable.
        disconnected: True if the client went away before the reply was sent.
    """

    method: str
    path: str
    headers: dict[str, str]
    body: Any
    raw_body: bytes
    disconnected: bool = False


def _text_of(value: Any) -> str:
    """Concatenates the text found in a system prompt, message or block list."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return " ".join(_text_of(item) for item in value)
    if not isinstance(value, dict):
        return ""
    if isinstance(value.get("text"), str):
        return value["text"]
    return json.dumps(value["input"]) if "input" in value else _text_of(value.get("content", ""))


def count_input_tokens(request: Mapping[str, Any]) -> int:
    """Approximates input tokens as the word count of system prompt and messages."""
    text = _text_of(request.get("system", "")) + " " + _text_of(request.get("messages", []))
    return max(1, len(text.split()))


def echo_responder(request: dict[str, Any]) -> Reply:
    """Default responder: replies with the text of the last user message."""
    users = [m for m in request.get("messages", []) if isinstance(m, dict) and m.get("role") == "user"]
    return MessageReply(content=[{"type": "text", "text": _text_of(users[-1]) if users else ""}])


def offers_tool(request: Mapping[str, Any], name: str) -> bool:
    """Whether a request offers the tool ``name`` (``submit_review``, ``cast_vote``, ``submit_plan``)."""
    return any(isinstance(t, dict) and t.get("name") == name for t in request.get("tools") or [])


class ReviewScript:
    """A responder that answers review requests (those offering ``submit_review``) with scripted verdicts.

    Each verdict is ``True`` (approve) or a list of changes; once they run out, reviews approve. Every other
    request goes to ``fallback`` (default: :func:`echo_responder`), so work, synthesis and revision steps of
    several agents may interleave with the reviews in any order.
    """

    def __init__(self, verdicts: list[bool | list[str]], fallback: Responder | None = None) -> None:
        self.verdicts: deque[bool | list[str]] = deque(verdicts)
        self.fallback: Responder = fallback or echo_responder
        self.reviews = 0
        self._lock = threading.Lock()

    def __call__(self, request: dict[str, Any]) -> Reply | str:
        if not offers_tool(request, "submit_review"):
            return self.fallback(request)
        with self._lock:
            self.reviews += 1
            verdict = self.verdicts.popleft() if self.verdicts else True
        approved = verdict is True
        changes = [] if approved else list(verdict)  # type: ignore[arg-type]
        block = {
            "type": "tool_use",
            "id": f"toolu_{uuid.uuid4().hex[:24]}",
            "name": "submit_review",
            "input": {
                "approved": approved,
                "changes": changes,
                "summary": "good as it is" if approved else "needs changes",
            },
        }
        return MessageReply([block], stop_reason="tool_use")


def _validate(body: Any) -> str | None:
    """Returns an ``invalid_request_error`` message, or None if the body is acceptable."""
    if not isinstance(body, dict):
        return "There was an error parsing the body of your request"
    missing = [name for name in ("model", "max_tokens", "messages") if name not in body]
    if missing:
        return f"{missing[0]}: Field required"
    if not isinstance(body["model"], str) or not body["model"]:
        return "model: Input should be a valid string"
    if type(body["max_tokens"]) is not int or body["max_tokens"] < 1:
        return "max_tokens: Input should be a valid integer greater than or equal to 1"
    if not isinstance(body["messages"], list) or not body["messages"]:
        return "messages: at least one message is required"
    for i, msg in enumerate(body["messages"]):
        if not isinstance(msg, dict) or msg.get("role") not in ("user", "assistant"):
            return f"messages.{i}.role: Input should be 'user' or 'assistant'"
        if not isinstance(msg.get("content"), (str, list)):
            return f"messages.{i}.content: Field required"
    if "system" in body and not isinstance(body["system"], (str, list)):
        return "system: Input should be a valid string or list of text blocks"
    return _tool_pairing(body["messages"])


def _tool_pairing(messages: list[dict[str, Any]]) -> str | None:
    """The real API's rule: each ``tool_use`` is answered by a ``tool_result`` in the very next message."""
    for i, msg in enumerate(messages):
        blocks = msg["content"] if isinstance(msg["content"], list) else []
        if msg["role"] == "assistant":
            asked = [b.get("id") for b in blocks if isinstance(b, dict) and b.get("type") == "tool_use"]
            if not asked or i + 1 == len(messages):
                continue
            following = messages[i + 1]["content"]
            answered = (
                {
                    b.get("tool_use_id")
                    for b in following
                    if isinstance(b, dict) and b.get("type") == "tool_result"
                }
                if isinstance(following, list)
                else set()
            )
            missing = [tid for tid in asked if tid not in answered]
            if missing:
                return (
                    f"messages.{i + 1}: `tool_use` ids were found without `tool_result` blocks immediately "
                    f"after: {', '.join(missing)}"
                )
        else:
            previous = messages[i - 1]["content"] if i else []
            asked_before = (
                {b.get("id") for b in previous if isinstance(b, dict) and b.get("type") == "tool_use"}
                if isinstance(previous, list)
                else set()
            )
            for b in blocks:
                if (
                    isinstance(b, dict)
                    and b.get("type") == "tool_result"
                    and b.get("tool_use_id") not in asked_before
                ):
                    return (
                        f"messages.{i}.content: unexpected `tool_use_id` found in `tool_result` blocks: "
                        f"{b.get('tool_use_id')}"
                    )
    return None


# --- content blocks of server tools, for scripted replies ----------------------------------------


def server_tool_use(name: str, input: Any, id: str = "") -> dict[str, Any]:
    """A ``server_tool_use`` block (``web_search``, ``web_fetch``, ``code_execution``...)."""
    return {
        "type": "server_tool_use",
        "id": id or f"srvtoolu_{uuid.uuid4().hex[:24]}",
        "name": name,
        "input": input,
    }


def web_search_result(tool_use_id: str, results: list[tuple[str, str]]) -> dict[str, Any]:
    """A ``web_search_tool_result`` block listing ``(url, title)`` hits."""
    return {
        "type": "web_search_tool_result",
        "tool_use_id": tool_use_id,
        "content": [
            {
                "type": "web_search_result",
                "url": url,
                "title": title,
                "encrypted_content": "enc",
                "page_age": None,
            }
            for url, title in results
        ],
    }


def web_search_error(tool_use_id: str, code: str = "max_uses_exceeded") -> dict[str, Any]:
    """A ``web_search_tool_result`` block carrying an error."""
    return {
        "type": "web_search_tool_result",
        "tool_use_id": tool_use_id,
        "content": {"type": "web_search_tool_result_error", "error_code": code},
    }


def web_fetch_result(tool_use_id: str, url: str, title: str, text: str) -> dict[str, Any]:
    """A ``web_fetch_tool_result`` block: the page at ``url`` as a plain-text document."""
    return {
        "type": "web_fetch_tool_result",
        "tool_use_id": tool_use_id,
        "content": {
            "type": "web_fetch_result",
            "url": url,
            "retrieved_at": "2026-01-01T00:00:00Z",
            "content": {
                "type": "document",
                "title": title,
                "citations": {"enabled": True},
                "source": {"type": "text", "media_type": "text/plain", "data": text},
            },
        },
    }


def cited_text(text: str, citations: list[tuple[str, str, str]]) -> dict[str, Any]:
    """A ``text`` block citing ``(url, title, cited_text)`` web search results."""
    return {
        "type": "text",
        "text": text,
        "citations": [
            {
                "type": "web_search_result_location",
                "url": url,
                "title": title,
                "cited_text": cited,
                "encrypted_index": "idx",
            }
            for url, title, cited in citations
        ],
    }


def _sse_events(message: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yields ``(event, data)`` pairs in the order the real API streams a message."""
    start = {**message, "content": [], "stop_reason": None, "stop_sequence": None}
    start["usage"] = {**message["usage"], "output_tokens": 1}
    yield "message_start", {"type": "message_start", "message": start}
    yield "ping", {"type": "ping"}
    for index, block in enumerate(message["content"]):
        if block.get("type") in ("tool_use", "server_tool_use"):
            raw = json.dumps(block.get("input"))
            deltas = [
                {"type": "input_json_delta", "partial_json": raw[i : i + 16]} for i in range(0, len(raw), 16)
            ]
            first = {**block, "input": {}}
        elif block.get("type") == "text":
            deltas = [{"type": "text_delta", "text": t} for t in re.findall(r"\s*\S+\s*|\s+", block["text"])]
            # citations arrive as deltas of their own, after the text they cite (as the real API sends them)
            deltas += [{"type": "citations_delta", "citation": c} for c in block.get("citations") or ()]
            first = {k: v for k, v in block.items() if k != "citations"} | {"text": ""}
        else:
            deltas, first = [], block
        yield "content_block_start", {"type": "content_block_start", "index": index, "content_block": first}
        for delta in deltas:
            yield "content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}
        yield "content_block_stop", {"type": "content_block_stop", "index": index}
    delta, usage = (
        {k: message[k] for k in ("stop_reason", "stop_sequence")},
        message["usage"]["output_tokens"],
    )
    yield "message_delta", {"type": "message_delta", "delta": delta, "usage": {"output_tokens": usage}}
    yield "message_stop", {"type": "message_stop"}


class _HTTPServer(ThreadingHTTPServer):
    """Threading server that joins its handler threads and can sever live connections."""

    daemon_threads = False  # so server_close() joins handler threads (block_on_close defaults to True)

    def __init__(self, api: MessagesAPIServer) -> None:
        self.api = api
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._conns_lock:
            self._conns.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._conns_lock:
            self._conns.discard(request)
        super().shutdown_request(request)

    def sever_connections(self) -> None:
        """Shuts down every open client socket, waking handlers blocked on reads."""
        with self._conns_lock:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    """Request handler; all state lives on the owning :class:`MessagesAPIServer`."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are separate writes
    timeout = 10.0  # idle keep-alive safety net; stop() severs connections anyway
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        """Silences the default stderr access log."""

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        """Serves ``GET /v1/models``."""
        self._record()
        if not self._authenticate():
            return
        if self.path.split("?")[0] != "/v1/models":
            return self._send_error(ErrorReply(404, message=f"Not found: {self.path}"))
        page = {"data": MODELS, "has_more": False, "first_id": MODELS[0]["id"], "last_id": MODELS[-1]["id"]}
        self._send_json(200, page)

    def do_POST(self) -> None:  # noqa: N802 - stdlib naming
        """Serves ``POST /v1/messages`` and ``POST /v1/messages/count_tokens``."""
        record = self._record()
        if not self._authenticate():
            return
        if record.path not in ("/v1/messages", "/v1/messages/count_tokens"):
            return self._send_error(ErrorReply(404, message=f"Not found: {record.path}"))
        counting = record.path.endswith("/count_tokens")  # same schema, minus max_tokens
        if "anthropic-version" not in record.headers:
            problem: str | None = "anthropic-version: header is required"
        else:
            body = (
                {"max_tokens": 1, **record.body}
                if counting and isinstance(record.body, dict)
                else record.body
            )
            problem = _validate(body)
        if problem:
            return self._send_error(ErrorReply(400, message=problem))
        if counting:
            return self._send_json(200, {"input_tokens": count_input_tokens(record.body)})
        reply = self.server.api._next_reply(record.body)
        if reply.delay > 0 and not self._wait(reply.delay, record):
            return
        try:
            if isinstance(reply, ErrorReply):
                self._send_error(reply)
            elif isinstance(reply, RawReply):
                self._send(reply.status, reply.body, reply.content_type)
            else:
                message = self.server.api._build_message(reply, record.body)
                if record.body.get("stream"):
                    self._send_stream(message, reply.chunk_delay, record)
                else:
                    self._send_json(200, message)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
            self.server.api._mark_disconnected(record)

    def _record(self) -> RecordedRequest:
        raw = self.rfile.read(int(self.headers.get("content-length") or 0))
        body = None
        with contextlib.suppress(ValueError):
            body = json.loads(raw) if raw else None
        headers = {k.lower(): v for k, v in self.headers.items()}
        record = RecordedRequest(self.command, self.path.split("?")[0], headers, body, raw)
        self.server.api._add_request(record)
        return record

    def _authenticate(self) -> bool:
        auth = self.headers.get("authorization") or ""
        key = self.headers.get("x-api-key") or (
            auth[7:].strip() if auth.lower().startswith("bearer ") else ""
        )
        expected = self.server.api.api_key
        if key and (expected is None or key == expected):
            return True
        self._send_error(
            ErrorReply(401, message="invalid x-api-key" if key else "x-api-key header is required")
        )
        return False

    def _client_gone(self) -> bool:
        try:
            return bool(select.select([self.connection], [], [], 0)[0]) and not self.connection.recv(
                1, socket.MSG_PEEK
            )
        except OSError:
            return True

    def _wait(self, seconds: float, record: RecordedRequest) -> bool:
        """Waits ``seconds``; returns False (and closes) on server stop or client disconnect."""
        deadline = time.monotonic() + seconds
        stop = self.server.api._stop_event
        while (remaining := deadline - time.monotonic()) > 0:
            if stop.wait(min(remaining, 0.02)) or self._client_gone():
                self.close_connection = True
                if not stop.is_set():
                    self.server.api._mark_disconnected(record)
                return False
        return True

    def _start(self, status: int, headers: Mapping[str, str]) -> None:
        self.send_response(status)
        extra = self.server.api.rate_limit_headers
        for name, value in {"request-id": f"req_{uuid.uuid4().hex[:24]}", **extra, **headers}.items():
            self.send_header(name, value)
        self.end_headers()

    def _send(
        self, status: int, body: bytes, content_type: str, headers: Mapping[str, str] | None = None
    ) -> None:
        self._start(
            status, {"content-type": content_type, "content-length": str(len(body)), **(headers or {})}
        )
        self.wfile.write(body)

    def _send_json(self, status: int, obj: Any, headers: Mapping[str, str] | None = None) -> None:
        self._send(status, json.dumps(obj).encode(), "application/json", headers)

    def _send_error(self, reply: ErrorReply) -> None:
        error_type = reply.error_type or ERROR_TYPES.get(reply.status, "api_error")
        body = {"type": "error", "error": {"type": error_type, "message": reply.message}}
        self._send_json(reply.status, body, reply.headers)

    def _send_stream(self, message: dict[str, Any], chunk_delay: float, record: RecordedRequest) -> None:
        sse = "text/event-stream; charset=utf-8"
        self._start(200, {"content-type": sse, "cache-control": "no-cache", "transfer-encoding": "chunked"})
        for i, (event, data) in enumerate(_sse_events(message)):
            if i and chunk_delay > 0 and not self._wait(chunk_delay, record):
                return
            payload = f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(payload), payload))
        self.wfile.write(b"0\r\n\r\n")


class MessagesAPIServer:
    """Scriptable fake Messages API on ``127.0.0.1`` at an ephemeral port; thread-safe.

    Attributes:
        api_key: If set, the only key accepted; otherwise any non-empty key is.
        responder: Called with the request JSON when the queue is empty; returns a reply
            or a plain string (a text reply). Defaults to :func:`echo_responder`.
    """

    def __init__(self, *, api_key: str | None = None, responder: Responder | None = None) -> None:
        self.api_key = api_key
        self.responder: Responder = responder or echo_responder
        self._queue: deque[Reply] = deque()
        self._requests: list[RecordedRequest] = []
        self._cond = threading.Condition()
        self._stop_event = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        #: Headers every answer carries, e.g. ``anthropic-ratelimit-requests-limit`` (see :meth:`overload`).
        self.rate_limit_headers: dict[str, str] = {}
        self._storm: tuple[float, int, float] | None = None  # (until, status, retry_after)
        self._storm_trigger: tuple[Callable[[dict[str, Any]], bool], float, int, float] | None = None
        #: Answers given by the storm of :meth:`overload` (arrival times, monotonic).
        self.storm_answers: list[float] = []

    def start(self) -> MessagesAPIServer:
        """Binds an ephemeral port and serves in a background thread; returns ``self``."""
        if self._httpd is not None:
            raise RuntimeError("server already started")
        self._stop_event.clear()
        self._httpd = _HTTPServer(self)
        serve = functools.partial(self._httpd.serve_forever, poll_interval=0.05)
        self._thread = threading.Thread(target=serve, name="fake-messages-api", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stops serving, interrupts delayed replies, closes connections and joins all threads."""
        httpd, thread = self._httpd, self._thread
        if httpd is None or thread is None:
            return
        self._stop_event.set()
        httpd.shutdown()
        httpd.sever_connections()
        httpd.server_close()  # joins handler threads (daemon_threads=False)
        thread.join()
        self._httpd = self._thread = None

    def __enter__(self) -> MessagesAPIServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """Root URL to pass as the SDK's ``base_url``, e.g. ``http://127.0.0.1:54321``."""
        if self._httpd is None:
            raise RuntimeError("server not started")
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def push(self, reply: Reply) -> None:
        """Appends a reply object to the queue."""
        with self._cond:
            self._queue.append(reply)

    def push_text(self, text: str, **kwargs: Any) -> None:
        """Queues a text reply, streamed as one ``text_delta`` per word.

        ``kwargs`` are other :class:`MessageReply` fields: ``usage`` (e.g.
        ``{"cache_read_input_tokens": 5}``), ``stop_reason``, ``delay``, ``chunk_delay``...
        """
        self.push(MessageReply([{"type": "text", "text": text}], **kwargs))

    def push_tool_use(self, name: str, input: Any, *, text: str = "", id: str = "", **kwargs: Any) -> None:
        """Queues a ``tool_use`` reply (stop reason ``tool_use``), optionally preceded by ``text``.

        ``input`` need not match the tool's schema (malformed-input tests); ``id`` defaults to
        a fresh ``toolu_...``; ``kwargs`` are other :class:`MessageReply` fields.
        """
        block = {
            "type": "tool_use",
            "id": id or f"toolu_{uuid.uuid4().hex[:24]}",
            "name": name,
            "input": input,
        }
        content = ([{"type": "text", "text": text}] if text else []) + [block]
        kwargs.setdefault("stop_reason", "tool_use")
        self.push(MessageReply(content, **kwargs))

    def push_review(
        self, approved: bool, changes: list[str] | tuple[str, ...] = (), summary: str = "", **kwargs: Any
    ) -> None:
        """Queues a reviewer's verdict: a ``submit_review`` tool call approving or listing ``changes``."""
        self.push_tool_use(
            "submit_review", {"approved": approved, "changes": list(changes), "summary": summary}, **kwargs
        )

    def push_error(
        self, status: int, message: str | None = None, *, error_type: str | None = None,
        retry_after: float | None = None, headers: Mapping[str, str] | None = None, delay: float = 0.0,
    ) -> None:  # fmt: skip
        """Queues an error reply in the real error-body shape.

        Args:
            status: HTTP status, e.g. 429, 500, 529; ``error_type`` defaults from :data:`ERROR_TYPES`.
            message: Error message; a default is derived from the type.
            retry_after: Seconds; sets ``retry-after-ms`` (precise, preferred by the SDK) and
                ``retry-after`` (whole seconds, as the real API does).
            headers: Extra response headers, e.g. ``{"x-should-retry": "false"}``.
        """
        all_headers = dict(headers or {})
        if retry_after is not None:
            all_headers["retry-after-ms"] = str(int(retry_after * 1000))
            all_headers["retry-after"] = str(max(1, math.ceil(retry_after)))
        error_type = error_type or ERROR_TYPES.get(status, "api_error")
        self.push(ErrorReply(status, error_type, message or f"{error_type} (scripted)", all_headers, delay))

    def push_malformed(
        self,
        body: str | bytes | Mapping[str, Any],
        *,
        status: int = 200,
        content_type: str = "application/json",
    ) -> None:
        """Queues a verbatim body: raw text/bytes (e.g. invalid JSON) or a mapping dumped unchecked.

        For a well-formed ``tool_use`` whose input is wrong, use :meth:`push_tool_use`.
        """
        raw = json.dumps(body).encode() if isinstance(body, Mapping) else body
        self.push(RawReply(raw.encode() if isinstance(raw, str) else raw, status, content_type))

    @property
    def pending(self) -> int:
        """Number of scripted replies not yet consumed."""
        with self._cond:
            return len(self._queue)

    @property
    def requests(self) -> list[RecordedRequest]:
        """Snapshot of all requests received so far, in arrival order."""
        with self._cond:
            return list(self._requests)

    def wait_until(self, predicate: Callable[[list[RecordedRequest]], bool], timeout: float = 5.0) -> None:
        """Blocks until ``predicate(requests)`` holds, re-checking on every request or disconnect.

        Raises:
            TimeoutError: If the predicate does not become true within ``timeout`` seconds.
        """
        with self._cond:
            if not self._cond.wait_for(lambda: predicate(list(self._requests)), timeout):
                raise TimeoutError(
                    f"condition not met within {timeout}s; {len(self._requests)} requests seen"
                )

    def wait_for_requests(self, count: int, timeout: float = 5.0) -> list[RecordedRequest]:
        """Blocks until at least ``count`` requests were received and returns them."""
        self.wait_until(lambda reqs: len(reqs) >= count, timeout)
        return self.requests

    def reset(self) -> None:
        """Clears the reply queue and the request log."""
        with self._cond:
            self._queue.clear()
            self._requests.clear()

    def _add_request(self, record: RecordedRequest) -> None:
        with self._cond:
            self._requests.append(record)
            self._cond.notify_all()

    def _mark_disconnected(self, record: RecordedRequest) -> None:
        with self._cond:
            record.disconnected = True
            self._cond.notify_all()

    def overload(self, seconds: float, *, status: int = 529, retry_after: float = 1.0) -> None:
        """For the next ``seconds``, answer every Messages request with ``status`` and ``retry-after``.

        A storm as the real API has them (529 overloaded, or 429 rate limited), scripted replies and the
        responder wait until it ends; :attr:`storm_answers` records when each storm answer was given.
        """
        with self._cond:
            self._storm = (time.monotonic() + seconds, status, retry_after)

    def overload_when(
        self,
        trigger: Callable[[dict[str, Any]], bool],
        seconds: float,
        *,
        status: int = 529,
        retry_after: float = 1.0,
    ) -> None:
        """Start an :meth:`overload` storm at the first Messages request for which ``trigger(body)`` holds
        (that request gets the storm's first answer)."""
        with self._cond:
            self._storm_trigger = (trigger, seconds, status, retry_after)

    @property
    def storming(self) -> bool:
        """Whether a storm of :meth:`overload` is on now."""
        with self._cond:
            return self._storm is not None and time.monotonic() < self._storm[0]

    def _next_reply(self, request: dict[str, Any]) -> Reply:
        with self._cond:
            if self._storm_trigger is not None and self._storm_trigger[0](request):
                _, seconds, status, retry_after = self._storm_trigger
                self._storm, self._storm_trigger = (time.monotonic() + seconds, status, retry_after), None
            if self._storm is not None and time.monotonic() < self._storm[0]:
                _, status, retry_after = self._storm
                self.storm_answers.append(time.monotonic())
                return ErrorReply(
                    status,
                    None,
                    "scripted storm",
                    {
                        "retry-after-ms": str(int(retry_after * 1000)),
                        "retry-after": str(max(1, math.ceil(retry_after))),
                    },
                )
            if self._queue:
                return self._queue.popleft()
        reply = self.responder(request)
        return MessageReply([{"type": "text", "text": reply}]) if isinstance(reply, str) else reply

    def _build_message(self, reply: MessageReply, request: dict[str, Any]) -> dict[str, Any]:
        output_tokens = max(1, len(_text_of(reply.content).split()))
        usage = {"input_tokens": count_input_tokens(request), "output_tokens": output_tokens,
                 "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, **reply.usage}  # fmt: skip
        return {"id": f"msg_{uuid.uuid4().hex[:24]}", "type": "message", "role": "assistant", "model": request["model"],
                "content": reply.content, "stop_reason": reply.stop_reason, "stop_sequence": reply.stop_sequence,
                "usage": usage}  # fmt: skip
