"""Opaque, tamper-evident page tokens and page-size rules (AIP-158)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import struct
from collections.abc import Sequence

from google.protobuf.message import Message

from controlplane.errors import InvalidArgument

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000


def page_size(requested: int, default: int = DEFAULT_PAGE_SIZE) -> int:
    """0 means the default; above the maximum is lowered; negative is invalid."""
    if requested < 0:
        raise InvalidArgument("page_size cannot be negative", field="page_size")
    return min(requested or default, MAX_PAGE_SIZE)


class PageTokens:
    """Signs a keyset position together with a digest of the filters it was issued for."""

    def __init__(self, secret: bytes | None = None):
        self._secret = secret or secrets.token_bytes(32)

    def issue(self, position: int, filters: bytes) -> str:
        """A token for continuing after ``position`` with the same ``filters``."""
        digest = hashlib.blake2b(filters, digest_size=8).digest()
        body = struct.pack(">q", position) + digest
        mac = hmac.new(self._secret, body, hashlib.sha256).digest()[:12]
        return base64.urlsafe_b64encode(body + mac).decode().rstrip("=")

    def read(self, token: str, filters: bytes) -> int | None:
        """The position of a token, or None for the first page; INVALID_ARGUMENT if bad."""
        if not token:
            return None
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (ValueError, TypeError):
            raw = b""
        body, mac = raw[:16], raw[16:]
        good = len(raw) == 28 and hmac.compare_digest(
            mac, hmac.new(self._secret, body, hashlib.sha256).digest()[:12]
        )
        if not good:
            raise InvalidArgument(
                "page_token is malformed or expired; start again from the first page",
                field="page_token",
                reason="ERROR_REASON_INVALID_PAGE_TOKEN",
            )
        if body[8:] != hashlib.blake2b(filters, digest_size=8).digest():
            raise InvalidArgument(
                "page_token was issued for other filters; repeat the same filters or start again",
                field="page_token",
                reason="ERROR_REASON_INVALID_PAGE_TOKEN",
            )
        offset: int = struct.unpack(">q", body[:8])[0]
        return offset


def fitting(messages: Sequence[Message], budget: int) -> int:
    """How many of the first ``messages`` fit in one response of at most ``budget`` bytes (at least one).

    A page stops early rather than grow past the message limit: whatever its objects hold, a list
    answers, and the rest comes with the next page token (issue 11).
    """
    total = 0
    for count, message in enumerate(messages):
        total += message.ByteSize() + 8  # the field's tag and length prefix
        if total > budget and count:
            return count
    return len(messages)
