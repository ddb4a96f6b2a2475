"""Small helpers the client's parts share: enum values from names, and the items of a paged List RPC."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any


def enum_value(value: str | int | None, names: Mapping[str, int], prefix: str, choices: str) -> int:
    """An enum value from its short name (any case, ``prefix`` optional), an int as it is, or 0 for None.

    Raises:
        ValueError: An unknown name; the message lists ``choices``.
    """
    if value is None:
        return 0
    if isinstance(value, int):
        return value
    key = str(value).strip().upper().removeprefix(prefix)
    if key not in names:
        raise ValueError(f"unknown {prefix.rstrip('_').lower().replace('_', ' ')} {value!r}; use {choices}")
    return names[key]


async def paged(
    fetch: Callable[[str], Awaitable[Any]], field: str, limit: int | None = None
) -> AsyncIterator[Any]:
    """Every item of a List RPC's repeated ``field``, page after page (``fetch(page_token)``), at most ``limit``."""
    token, count = "", 0
    while True:
        page = await fetch(token)
        for item in getattr(page, field):
            yield item
            count += 1
            if limit and count >= limit:
                return
        token = page.next_page_token
        if not token:
            return
