"""Which request ids storage may hold, known without asking it.

Every SubmitTask the SDK and the CLI send carries a fresh ``request_id``. One process that
alone writes its database (SQLite; :mod:`controlplane.replicas.sqlite_lock` refuses a second)
knows every id it stored: those of earlier runs are read once at start, and later ones are added
as they are accepted. A Bloom filter holds them in a fixed, small space (about 1.2 MiB per million
ids), so a fresh id, the common case, is answered "never used" without a storage round trip.
A filter can say "maybe" for an id never stored (about 2 % of fresh ids at capacity, more past
it): that id is then looked up in storage as before, so an answer is never wrong, only slower.
Ids are never removed (an expired record only makes its id a "maybe").

Replicas sharing a database do not use this: another replica may have stored any id, and the
database decides between calls there (:attr:`controlplane.scheduler.intake.Intake.database_decides`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

Key = tuple[str, str, str]
#: Bit positions set per id.
HASHES = 4
#: Ids a new filter is sized for at least (about 2 % false "maybe" answers when that full).
MIN_CAPACITY = 1_000_000
#: Bits per id of capacity.
BITS_PER_ID = 8


class KnownRequestIds:
    """A Bloom filter of (principal, method, request_id) keys."""

    def __init__(self, capacity: int = MIN_CAPACITY):
        self.bits = max(capacity, MIN_CAPACITY) * BITS_PER_ID
        self._array = bytearray(self.bits // 8 + 1)
        #: Ids added so far.
        self.count = 0

    @classmethod
    def of(cls, keys: Iterable[Key], count: int) -> KnownRequestIds:
        """A filter holding ``keys`` (about ``count`` of them), with room for as many again."""
        known = cls(2 * count)
        for key in keys:
            known.add(key)
        return known

    def _positions(self, key: Key) -> list[int]:
        digest = hashlib.blake2b("\x1f".join(key).encode(), digest_size=4 * HASHES).digest()
        return [int.from_bytes(digest[i : i + 4], "little") % self.bits for i in range(0, 4 * HASHES, 4)]

    def add(self, key: Key) -> None:
        for position in self._positions(key):
            self._array[position >> 3] |= 1 << (position & 7)
        self.count += 1

    def may_hold(self, key: Key) -> bool:
        """False only for a key never added; True for every key added (and a few others)."""
        return all(self._array[position >> 3] & (1 << (position & 7)) for position in self._positions(key))
