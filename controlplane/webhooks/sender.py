"""One HTTP POST of a delivery, to an address that was checked (plain asyncio streams, HTTP/1.1).

The request goes to an address the URL policy accepted, not to whatever the
name resolves to a moment later (DNS rebinding). Redirects are not followed:
a 3xx answer is a failed attempt like any other non-2xx. Only the status line
is read; the receiver's body is ignored.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass

from controlplane.version import __version__
from controlplane.webhooks.urls import IpAddress, Target

USER_AGENT = f"MAOS-Webhooks/{__version__}"
_MAX_STATUS_LINE = 8192


@dataclass(frozen=True)
class Outcome:
    """What one attempt got: the HTTP status (0 without an answer), an error, and how long it took."""

    http_status: int
    error: str
    latency: float

    @property
    def ok(self) -> bool:
        """Whether the receiver answered 2xx."""
        return 200 <= self.http_status < 300


def _request(target: Target, body: bytes, headers: Mapping[str, str]) -> bytes:
    lines = [
        f"POST {target.path} HTTP/1.1",
        f"Host: {target.host_header}",
        f"User-Agent: {USER_AGENT}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        "Connection: close",
        *(f"{k}: {v}" for k, v in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


async def post(
    target: Target,
    addresses: list[IpAddress],
    body: bytes,
    headers: Mapping[str, str],
    timeout: float,
    tls: ssl.SSLContext | None = None,
) -> Outcome:
    """POST ``body`` to ``target`` through the first of ``addresses`` that accepts a connection.

    Never raises for network trouble: a refused connection, a TLS failure, a
    timeout or a malformed answer is an :class:`Outcome` with status 0 and the error.
    """
    started = time.monotonic()
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await _connect(target, addresses, tls)
            writer.write(_request(target, body, headers))
            await writer.drain()
            line = await reader.readuntil(b"\r\n")
    except TimeoutError:
        return Outcome(0, f"no answer within {timeout:g} s", time.monotonic() - started)
    except (OSError, ssl.SSLError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
        return Outcome(0, _describe(exc), time.monotonic() - started)
    finally:
        if writer is not None:
            writer.close()
    latency = time.monotonic() - started
    parts = line[:_MAX_STATUS_LINE].decode("latin-1").split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        return Outcome(0, f"not an HTTP answer: {line[:80]!r}", latency)
    status = int(parts[1])
    reason = parts[2].strip() if len(parts) > 2 else ""
    return Outcome(status, "" if 200 <= status < 300 else f"HTTP {status} {reason}".strip()[:200], latency)


async def _connect(
    target: Target, addresses: list[IpAddress], tls: ssl.SSLContext | None
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    context = (tls or ssl.create_default_context()) if target.tls else None
    last: OSError | None = None
    for address in addresses:
        try:
            return await asyncio.open_connection(
                str(address),
                target.port,
                ssl=context,
                server_hostname=target.host if context else None,
                limit=_MAX_STATUS_LINE,
            )
        except OSError as exc:
            last = exc
    raise last or OSError(f"{target.host} has no address")


def _describe(exc: BaseException) -> str:
    if isinstance(exc, asyncio.IncompleteReadError):
        return "the connection closed before an answer"
    if isinstance(exc, asyncio.LimitOverrunError):
        return "the answer's status line is too long"
    text = str(exc) or type(exc).__name__
    return text[:200]
