"""TailLogs resuming after a stream id: the records read from the stream, then the live ones,
none lost and none twice, even when records arrive live while the stream is being read.

The replicas' shared stream is a stand-in whose ``after`` puts records into the log book (as the
stream's reader would, live) before it returns: the join is then exercised deterministically.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import grpc
import pytest

from agent_sdk.proto.maos.v1 import system_service_pb2 as system_pb
from controlplane.api import convert
from controlplane.app import App
from controlplane.errors import InvalidArgument
from controlplane.logbook import LogBook, LogEntry
from tests.harness.server import Stubs


def _record(message: str, stream_id: str) -> LogEntry:
    return LogEntry(level=logging.INFO, component="joined", message=message, stream_id=stream_id)


class Stream:
    """Records 6-0 and 6-1 arrive live while the resume reads the stream, which holds 6-0 only."""

    def __init__(self, book: LogBook):
        self.book = book

    async def after(self, record_id: str) -> list[LogEntry]:
        assert record_id == "5-0"
        self.book.add(_record("six", "6-0"))
        self.book.add(_record("six, later", "6-1"))
        return [_record("six", "6-0")]


async def test_records_arriving_live_during_a_resume_are_sent_once(control_plane: App, stubs: Stubs) -> None:
    book = control_plane.logbook
    book.shared = Stream(book)
    call = stubs.system.TailLogs(system_pb.TailLogsRequest(component="joined", after_record_id="5-0"))
    try:
        got: list[Any] = []
        for _ in range(2):
            got.append((await asyncio.wait_for(call.read(), 10)).record)
        book.add(_record("seven", "7-0"))
        book.add(_record("five again", "5-9"))  # at or before what was sent: a late copy, skipped
        book.add(_record("eight", "8-0"))
        for _ in range(2):
            got.append((await asyncio.wait_for(call.read(), 10)).record)
    finally:
        call.cancel()
    assert [(r.id, r.message) for r in got] == [
        ("6-0", "six"),
        ("6-1", "six, later"),
        ("7-0", "seven"),
        ("8-0", "eight"),
    ]


async def test_a_stream_id_with_a_trailing_newline_is_invalid(control_plane: App, stubs: Stubs) -> None:
    control_plane.logbook.shared = Stream(control_plane.logbook)
    call = stubs.system.TailLogs(system_pb.TailLogsRequest(after_record_id="17-3\n"))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await asyncio.wait_for(call.read(), 10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "is not an id this API sent" in (caught.value.details() or "")


def test_stream_resume_ids_must_match_whole() -> None:
    for value in ("17-3\n", "17-3 ", "17-3-"):
        with pytest.raises(InvalidArgument):
            convert.parse_record_resume_id(value, 1, True)
    for value in ("17-3-0\n", "17-3-0 "):
        with pytest.raises(InvalidArgument):
            convert.parse_event_resume_id(value, 1, "after_event_id", True)
    assert convert.parse_record_resume_id("17-3", 1, True) == "17-3"
    assert convert.parse_event_resume_id("17-3-0", 1, "after_event_id", True) == "17-3-0"
