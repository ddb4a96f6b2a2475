"""The shared stream of log records (controlplane.replicas.event_stream.LogStream) on a real Redis.

Records written from many threads enter the stream in number order; records read back by a
resume note who owns their task; entries this version cannot read are skipped; while Redis does
not answer, records written here are kept here at once (and not twice once it answers); a
replica that starts while Redis does not answer reads its own first records back.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
import threading
from typing import Any

import pytest

from controlplane.logbook import LogBook, LogBookHandler, LogEntry, LogFilter
from controlplane.replicas.event_stream import LogStream
from controlplane.replicas.streams import SharedStream
from tests.controlplane.replicas.test_redis import private_redis  # noqa: F401 (a fixture)
from tests.harness.server import wait_for

EVERYTHING = LogFilter()


def _messages(book: LogBook) -> list[str]:
    return [entry.message for entry in book.tail(EVERYTHING, 1000) if entry.component == "t"]


def _record(message: str, task_id: str = "") -> LogEntry:
    return LogEntry(level=logging.INFO, component="t", message=message, task_id=task_id)


def test_records_from_many_threads_enter_the_stream_in_number_order() -> None:
    stream = SharedStream(None, "unused", 1000, "log records")  # not started: the outbox only
    book = LogBook()
    LogStream(stream, book, "r")
    switching = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads switch as often as they can
    try:
        threads = [
            threading.Thread(target=lambda: [book.add(_record("x")) for _ in range(3000)]) for _ in range(6)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(switching)
    numbers = [int(fields[b"n"]) for fields in stream._outbox]
    assert numbers == list(range(1, 18_001))


async def test_records_read_back_by_a_resume_note_their_owners_and_skip_unreadable_entries(
    redis_url: str, redis_namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(redis_url)
    key = f"{redis_namespace}logs"
    stream = SharedStream(client, key, 1000, "log records")
    book = LogBook(task_owner=lambda task: "users/ann" if task == "t1" else "")
    logs = LogStream(stream, book, "r")

    async def add(number: int, body: Any) -> str:
        text = body if isinstance(body, str) else json.dumps(body)
        fields = {"r": "elsewhere/0001", "n": str(number), "e": text}
        return (await client.xadd(key, fields)).decode()  # type: ignore[no-any-return]

    try:
        cut = await add(1, [20, "t", "the cut", 1.0, "", "", "", {}, "", ""])
        await add(2, [20, "t", "about t1", 1.0, "t1", "", "", {}, "", ""])  # its writer knew no owner
        await add(3, "not json")
        await add(4, [20, "t", "too few fields"])
        await add(5, ["20", "t", "a level that is not a number", 1.0, "", "", "", {}, "", ""])
        await add(6, [20, "t", "the last", 1.0, "", "", "", {}, "", ""])
        with caplog.at_level(logging.WARNING, logger="controlplane.replicas.event_stream"):
            found = await logs.after(cut)
            again = await logs.after(cut)
        assert [(e.message, e.task_owner) for e in found] == [("about t1", "users/ann"), ("the last", "")]
        assert [e.stream_id for e in again] == [e.stream_id for e in found]
        warnings = [r.getMessage() for r in caplog.records if "this version reads" in r.getMessage()]
        assert len(warnings) == 1, warnings
    finally:
        await client.aclose()


def _answers(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=0.5).ping())
    except redis.RedisError:
        return False


async def _started(url: str, book: LogBook) -> tuple[SharedStream, list[Any]]:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)
    reader = aioredis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=6.0)
    stream = SharedStream(client, "maos-test:logs", 1000, "log records")
    stream.reader = reader
    LogStream(stream, book, "r")
    await stream.start()
    return stream, [client, reader]


async def _close(stream: SharedStream, clients: list[Any]) -> None:
    for client in clients:  # first: a read left waiting since the outage ends with its connection
        await asyncio.wait_for(client.aclose(), 10)
    await asyncio.wait_for(stream.close(), 10)


async def test_while_redis_does_not_answer_records_are_kept_here_at_once_and_once(
    private_redis: Any,  # noqa: F811 (the fixture imported above)
) -> None:
    url, server = private_redis
    await wait_for(lambda: _answers(url), 10, message="the private Redis to answer")
    book = LogBook()
    handler = LogBookHandler(book, logging.WARNING)
    logging.getLogger("controlplane").addHandler(handler)
    stream, clients = await _started(url, book)
    try:
        book.add(_record("before"))
        await wait_for(lambda: "before" in _messages(book), 10, message="the record read back")
        os.kill(server.pid, signal.SIGSTOP)
        try:
            book.add(_record("during, first"))  # its write fails: kept when Redis answers
            await wait_for(lambda: stream.failing, 10, message="the writer to fail")
            book.add(_record("during, second"))
            assert "during, second" in _messages(book)  # at once, under this replica's own id
            kept = [e for e in book.tail(EVERYTHING, 1000) if e.message == "during, second"][0]
            assert kept.stream_id == "" and kept.seq > 0
            warnings = [
                e.message for e in book.tail(EVERYTHING, 1000) if "cannot write to Redis" in e.message
            ]
            assert warnings, "the writer's own warning is kept here"
        finally:
            os.kill(server.pid, signal.SIGCONT)
        await wait_for(lambda: "during, first" in _messages(book), 15, message="the first record sent")
        book.add(_record("after"))
        await wait_for(lambda: "after" in _messages(book), 10, message="the record after the outage")
        assert _messages(book) == ["before", "during, second", "during, first", "after"]
    finally:
        logging.getLogger("controlplane").removeHandler(handler)
        await _close(stream, clients)


async def test_a_replica_starting_while_redis_does_not_answer_reads_its_first_records_back(
    private_redis: Any,  # noqa: F811 (the fixture imported above)
) -> None:
    """The reader's position is resolved before the writer's first write: a record written the
    moment Redis answers again is read back (an XREAD $ sent after it would miss it)."""
    import redis

    url, server = private_redis
    await wait_for(lambda: _answers(url), 10, message="the private Redis to answer")
    old = [20, "t", "old", 1.0, "", "", "", {}, "", ""]
    redis.Redis.from_url(url).xadd("maos-test:logs", {"r": "other/1", "n": "1", "e": json.dumps(old)})
    book = LogBook()
    os.kill(server.pid, signal.SIGSTOP)
    try:
        stream, clients = await _started(url, book)  # its first read of the stream timed out
        assert stream.last_read is None  # where to read from is not known yet
    finally:
        os.kill(server.pid, signal.SIGCONT)
    try:
        book.add(_record("first"))
        await wait_for(lambda: _messages(book), 15, message="the first record read back")
        book.add(_record("second"))
        await wait_for(lambda: "second" in _messages(book), 10, message="the second record read back")
        assert _messages(book) == ["first", "second"]  # "old" was written before the start
        assert all(e.stream_id for e in book.tail(EVERYTHING, 10))
        assert not stream.failing
    finally:
        await _close(stream, clients)
