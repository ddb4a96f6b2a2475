"""gRPC-Web framing (``application/grpc-web+proto`` and ``application/grpc-web-text``).

A gRPC-Web body is a sequence of frames: one flag byte (0x00 a message, 0x80 the trailers),
a 4-byte big-endian length, then the bytes. The ``-text`` variant base64-encodes the body
(each response chunk on its own). Unary and server-streaming calls are supported, as in the
protocol's browser clients; the messages pass through unchanged.
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Iterable

MESSAGE = 0x00
TRAILERS = 0x80


class FramingError(ValueError):
    """A request body that is not one well-formed gRPC-Web message frame."""


def is_grpc_web(content_type: str) -> bool:
    """Whether a request's content type is gRPC-Web."""
    return content_type.split(";", 1)[0].strip().lower().startswith("application/grpc-web")


def is_text(content_type: str) -> bool:
    """Whether it is the base64 (``-text``) variant."""
    return content_type.split(";", 1)[0].strip().lower().startswith("application/grpc-web-text")


def frame(flag: int, payload: bytes) -> bytes:
    """One frame."""
    return struct.pack(">BI", flag, len(payload)) + payload


def trailers(code: int, message: str, details: bytes | None = None) -> bytes:
    """The trailer frame: ``grpc-status``, ``grpc-message`` and the rich status, if any."""
    lines = [f"grpc-status:{code}", f"grpc-message:{_percent(message)}"]
    if details:
        lines.append("grpc-status-details-bin:" + base64.b64encode(details).decode().rstrip("="))
    return frame(TRAILERS, ("\r\n".join(lines) + "\r\n").encode())


def _percent(text: str) -> str:
    """The gRPC percent-encoding of a status message."""
    return "".join(
        c if 0x20 <= ord(c) < 0x7F and c != "%" else "".join(f"%{b:02X}" for b in c.encode()) for c in text
    )


def request_message(body: bytes, text: bool) -> bytes:
    """The one message of a unary or server-streaming request body."""
    if text:
        try:
            body = base64.b64decode(body, validate=False)
        except ValueError as exc:
            raise FramingError(f"the body is not base64: {exc}") from None
    if len(body) < 5:
        raise FramingError("the body holds no gRPC-Web frame")
    flag, length = struct.unpack(">BI", body[:5])
    if flag != MESSAGE:
        raise FramingError(f"the first frame has flag {flag:#04x}; a message frame (0x00) is expected")
    if length != len(body) - 5:
        raise FramingError(f"the frame says {length} bytes but {len(body) - 5} follow (one message expected)")
    return body[5:]


def encode(chunk: bytes, text: bool) -> bytes:
    """A response chunk as sent (base64 on its own for ``-text``)."""
    return base64.b64encode(chunk) if text else chunk


def parse_frames(body: bytes) -> Iterable[tuple[int, bytes]]:
    """The frames of a (binary) body: for clients and tests."""
    position = 0
    while position < len(body):
        flag, length = struct.unpack(">BI", body[position : position + 5])
        yield flag, body[position + 5 : position + 5 + length]
        position += 5 + length
