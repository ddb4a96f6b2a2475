"""A real HTTP endpoint on 127.0.0.1 that records webhook deliveries (``http.server`` in a thread).

It answers each POST with the next status of ``statuses`` (then ``default``),
records the headers, the raw body and the status it answered, and checks
nothing itself: tests verify signatures with the secret they chose.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


@dataclass
class Received:
    """One request as the receiver saw it."""

    headers: dict[str, str]
    body: bytes
    answered: int
    path: str

    @property
    def event(self) -> dict[str, Any]:
        """The JSON body."""
        return json.loads(self.body)

    @property
    def delivery(self) -> str:
        """The ``MAOS-Delivery`` header."""
        return self.headers.get("MAOS-Delivery", "")


@dataclass
class Receiver:
    """The endpoint's state: what to answer and what came in."""

    port: int = 0
    default: int = 200
    statuses: list[int] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        """The URL to register (path /hook)."""
        return f"http://127.0.0.1:{self.port}/hook"

    def snapshot(self) -> list[Received]:
        """The requests so far."""
        with self.lock:
            return list(self.received)

    def of(self, event: str) -> list[Received]:
        """The requests of one event name (the ``MAOS-Event`` header)."""
        return [r for r in self.snapshot() if r.headers.get("MAOS-Event") == event]


def handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    """The request handler class of a server that answers and records for ``receiver``."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with receiver.lock:
                status = receiver.statuses.pop(0) if receiver.statuses else receiver.default
                receiver.received.append(Received(dict(self.headers.items()), body, status, self.path))
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A running receiver; stopped at the end of the test."""
    state = Receiver()
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler(state))
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
