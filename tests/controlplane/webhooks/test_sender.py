"""One delivery attempt over real sockets: TLS verified, timeouts, refusals and odd answers."""

from __future__ import annotations

import asyncio
import ipaddress
import ssl
import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from typing import Any

import pytest

from controlplane.webhooks.sender import post
from controlplane.webhooks.urls import parse_url
from tests.harness.receiver import Receiver, handler
from tests.harness.server import free_port

LOCAL = [ipaddress.ip_address("127.0.0.1")]


@pytest.fixture
def tls_receiver(pki: Any) -> Iterator[Receiver]:
    """The receiver over HTTPS with the test PKI's server certificate (for 127.0.0.1 and localhost)."""
    state = Receiver()
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler(state))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.server.cert, pki.server.key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    state.port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


async def test_https_is_verified_against_the_trusted_cas(tls_receiver: Receiver, pki: Any) -> None:
    target = parse_url(f"https://localhost:{tls_receiver.port}/hook")
    untrusted = await post(target, LOCAL, b"{}", {"MAOS-Event": "webhook.test"}, 5.0)
    assert untrusted.http_status == 0 and "certificate" in untrusted.error.lower()
    assert tls_receiver.snapshot() == []
    trusting = ssl.create_default_context(cafile=str(pki.ca))
    ok = await post(target, LOCAL, b'{"a":1}', {"MAOS-Event": "webhook.test"}, 5.0, trusting)
    assert ok.ok and ok.http_status == 200 and ok.latency > 0
    [r] = tls_receiver.snapshot()
    assert r.body == b'{"a":1}' and r.headers["Host"] == f"localhost:{tls_receiver.port}"


async def test_no_answer_is_a_timeout_and_a_closed_port_an_error() -> None:
    done = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1)  # accept and say nothing until the test is over
        await done.wait()
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        slow = await post(parse_url(f"http://127.0.0.1:{port}/"), LOCAL, b"{}", {}, 0.3)
    finally:
        done.set()
        server.close()
    assert slow.http_status == 0 and "no answer within 0.3 s" in slow.error and not slow.ok
    closed = await post(parse_url(f"http://127.0.0.1:{free_port()}/"), LOCAL, b"{}", {}, 2.0)
    assert closed.http_status == 0 and closed.error and not closed.ok


async def test_non_2xx_and_garbage_answers_fail() -> None:
    answers = iter([b"HTTP/1.1 302 Found\r\nLocation: http://10.0.0.1/\r\n\r\n", b"SSH-2.0-OpenSSH\r\n"])

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(next(answers))
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    target = parse_url(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/")
    try:
        redirect = await post(target, LOCAL, b"{}", {}, 2.0)
        garbage = await post(target, LOCAL, b"{}", {}, 2.0)
    finally:
        server.close()
    assert redirect.http_status == 302 and not redirect.ok and "302" in redirect.error  # never followed
    assert garbage.http_status == 0 and "not an HTTP answer" in garbage.error
