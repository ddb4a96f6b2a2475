"""Following a server stream that can be resumed from the id of the last item seen."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import TypeVar

import grpc

from agent_sdk.errors import MaosRpcError
from maos_cli._output import message

T = TypeVar("T")

#: First wait before opening a broken stream again, and the longest (doubled each time in between).
RECONNECT_DELAY, RECONNECT_DELAY_CAP = 0.5, 5.0


async def resumed(
    open_stream: Callable[[str], AsyncIterator[T]],
    id_of: Callable[[T], str],
    *,
    what: str,
    stream: str,
    verb: str,
) -> AsyncIterator[T]:
    """Every item of ``open_stream(after)``, opened again after the last item seen when it breaks.

    Nothing is lost or shown twice while the server keeps what was missed; when it no longer does
    (FAILED_PRECONDITION, for example after a restart), stderr says so and the stream starts again
    from now. A stream that ends or is unavailable is opened again after a growing delay (said on
    stderr); other errors are raised.

    Args:
        open_stream: Opens the stream after an item id ("": from the start).
        id_of: The id of an item.
        what: What the items are called ("events", "log records").
        stream: What the stream is called ("event", "log").
        verb: What following is called in the retry note ("watching", "following").
    """
    after, delay = "", RECONNECT_DELAY
    while True:
        try:
            async for item in open_stream(after):
                after, delay = id_of(item), RECONNECT_DELAY
                yield item
            why = f"the control plane ended the {stream} stream"
        except MaosRpcError as exc:
            if exc.code == grpc.StatusCode.FAILED_PRECONDITION and after:
                message(
                    f"{what} after {after} are no longer kept (the control plane restarted?); "
                    "some were missed"
                )
                after = ""
                continue
            if exc.code not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED):
                raise
            why = exc.message
        message(f"{why}; {verb} again in {delay:g} s")
        await asyncio.sleep(delay)
        delay = min(delay * 2, RECONNECT_DELAY_CAP)
