"""API key format: ``maos_key_<32 base62>_<6 hex CRC32>``.

The public id is the first 12 characters of the random part; only the
SHA-256 of the whole key is stored, and secrets are compared in constant time.
The checksum lets a key be recognised (and a typo rejected) offline.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
import zlib

PREFIX = "maos_key_"
_ALPHABET = string.ascii_letters + string.digits
_FORMAT = re.compile(r"maos_key_([A-Za-z0-9]{32})_([0-9a-f]{6})")
_ID = re.compile(r"[A-Za-z0-9]{12}")


def _checksum(body: str) -> str:
    return f"{zlib.crc32(body.encode()) & 0xFFFFFF:06x}"


def generate(key_id: str | None = None) -> str:
    """A new key (190 random bits); with ``key_id``, one whose id is ``key_id`` (rotation)."""
    random = "".join(secrets.choice(_ALPHABET) for _ in range(32 - len(key_id or "")))
    body = (key_id or "") + random
    return f"{PREFIX}{body}_{_checksum(body)}"


def parse(key: str) -> str | None:
    """The key's public id, or None if it is malformed or its checksum is wrong."""
    match = _FORMAT.fullmatch(key)  # not match() with "$", which accepts a trailing newline
    if not match or not hmac.compare_digest(_checksum(match.group(1)), match.group(2)):
        return None
    return match.group(1)[:12]


def valid_id(key_id: str) -> bool:
    """Whether ``key_id`` is a key's public id (12 letters or digits)."""
    return bool(_ID.fullmatch(key_id))


def digest(key: str) -> str:
    """SHA-256 hex digest of a key (what is stored)."""
    return hashlib.sha256(key.encode()).hexdigest()


def matches(key: str, stored_digest: str) -> bool:
    """Constant-time comparison of a key with a stored digest."""
    return hmac.compare_digest(digest(key), stored_digest)


def display_prefix(key_id: str) -> str:
    """What logs and listings show of a key."""
    return f"{PREFIX}{key_id}"
