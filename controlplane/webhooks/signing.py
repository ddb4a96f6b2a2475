"""The ``MAOS-Signature`` header: ``t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">``.

The scheme Stripe made familiar: the timestamp is signed with the body, so a
receiver can refuse replays older than a tolerance, and ``v1=`` leaves room
for another scheme later (a receiver ignores schemes it does not know).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

#: The prefix of generated secrets (so secret scanners can recognise them).
SECRET_PREFIX = "whsec_"
#: Default tolerance of :func:`verify` for the signature's age, in seconds.
DEFAULT_TOLERANCE = 300


def generate_secret() -> str:
    """A new signing secret: ``whsec_`` and 256 random bits."""
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The hex HMAC-SHA256 of ``"<timestamp>.<body>"`` keyed by ``secret``."""
    message = str(int(timestamp)).encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signature_header(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The value of ``MAOS-Signature`` for ``body`` sent at ``timestamp`` (now by default)."""
    t = int(time.time()) if timestamp is None else int(timestamp)
    return f"t={t},v1={signature(secret, t, body)}"


def verify(
    secret: str, body: bytes, header: str, *, tolerance: float = DEFAULT_TOLERANCE, now: float | None = None
) -> bool:
    """Whether ``header`` is a valid ``MAOS-Signature`` of ``body``, made at most ``tolerance`` s ago.

    The reference implementation of what a receiver does (docs/webhooks.md
    shows the same few lines without MAOS installed).
    """
    fields = [part.strip().split("=", 1) for part in header.split(",") if "=" in part]
    stamps = [value for key, value in fields if key == "t"]
    try:
        t = int(stamps[0])
    except (IndexError, ValueError):
        return False
    if abs((time.time() if now is None else now) - t) > tolerance:
        return False
    expected = signature(secret, t, body)
    return any(hmac.compare_digest(expected, value) for key, value in fields if key == "v1")
