"""Opaque, tamper-evident page tokens and page-size rules (AIP-158).

Tokens are signed with a key every replica sharing a database reads from it (``Engine.page_secret``, read from
``control_meta`` at start), so a token issued by one replica continues the same listing on any other, and
after a restart. A token carries a position and a digest of the filters it was issued for (callers bind their
own identity into those filters where the answer depends on it); the signature makes it tamper-evident, never
a grant: every page is filtered for its caller again.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import secrets
import struct
from collections.abc import Callable, Sequence

from google.protobuf.message import Message

from controlplane.errors import InvalidArgument

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000


def page_size(requested: int, default: int = DEFAULT_PAGE_SIZE) -> int:
    """0 means the default; above the maximum is lowered; negative is invalid."""
    if requested < 0:
        raise InvalidArgument("page_size cannot be negative", field="page_size")
    return min(requested or default, MAX_PAGE_SIZE)


#: Positions of two numbers (ListLogs: a stream id, or an incarnation and a sequence), by kind.
_PAIR = struct.Struct(">Bqq")


#: Characters a page token has at most (those issued have about 50): a longer one is refused unread.
MAX_TOKEN_LENGTH = 256


class PageTokens:
    """Signs a keyset position together with a digest of the filters it was issued for.

    Args:
        purpose: The list the tokens are for (its RPC's name), signed with each token: one key
            serves every list, and a token of one list is never read by another.
        secret: The key to sign with, asked at each use (the engine's ``page_secret``, which it
            reads from the database at start); without it, a key of this object alone.
    """

    def __init__(self, purpose: str, secret: Callable[[], bytes] | None = None):
        own = secrets.token_bytes(32)
        self._secret = secret or (lambda: own)
        self._purpose = purpose.encode() + b"\0"

    def _mac(self, body: bytes) -> bytes:
        return hmac.new(self._secret(), self._purpose + body, hashlib.sha256).digest()[:12]

    def _sign(self, position: bytes, filters: bytes) -> str:
        body = position + hashlib.blake2b(filters, digest_size=8).digest()
        return base64.urlsafe_b64encode(body + self._mac(body)).decode().rstrip("=")

    def _check(self, token: str, filters: bytes, size: int) -> bytes:
        """The position bytes of a token of ``size`` position bytes; INVALID_ARGUMENT if bad."""
        raw = b""
        if len(token) <= MAX_TOKEN_LENGTH:
            with contextlib.suppress(ValueError, TypeError):
                raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        body, mac = raw[: size + 8], raw[size + 8 :]
        good = len(raw) == size + 20 and hmac.compare_digest(mac, self._mac(body))
        if not good:
            raise InvalidArgument(
                "page_token is malformed, expired, of another list or from another system (a token "
                "continues the list it came from, and is signed with a key the replicas on one "
                "database share); start again from the first page",
                field="page_token",
                reason="ERROR_REASON_INVALID_PAGE_TOKEN",
            )
        if body[size:] != hashlib.blake2b(filters, digest_size=8).digest():
            raise InvalidArgument(
                "page_token was issued for other filters or another caller; repeat the same "
                "filters with the same credentials, or start again from the first page",
                field="page_token",
                reason="ERROR_REASON_INVALID_PAGE_TOKEN",
            )
        return body[:size]

    def issue(self, position: int, filters: bytes) -> str:
        """A token for continuing after ``position`` with the same ``filters``."""
        return self._sign(struct.pack(">q", position), filters)

    def read(self, token: str, filters: bytes) -> int | None:
        """The position of a token, or None for the first page; INVALID_ARGUMENT if bad."""
        if not token:
            return None
        offset: int = struct.unpack(">q", self._check(token, filters, 8))[0]
        return offset

    def issue_pair(self, kind: int, first: int, second: int, filters: bytes) -> str:
        """A token for continuing after a position of two numbers (of a ``kind``, 0-255)."""
        return self._sign(_PAIR.pack(kind, first, second), filters)

    def read_pair(self, token: str, filters: bytes) -> tuple[int, int, int] | None:
        """``(kind, first, second)`` of a :meth:`issue_pair` token, or None for the first page;
        INVALID_ARGUMENT if bad."""
        if not token:
            return None
        kind, first, second = _PAIR.unpack(self._check(token, filters, _PAIR.size))
        return int(kind), int(first), int(second)


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
