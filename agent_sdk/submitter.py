"""Submitting many tasks over one stream (``TaskService.StreamSubmitTasks``).

Usage::

    async with client.submitter() as submitter:
        tasks = await asyncio.gather(*(submitter.submit(description=f"item {i}") for i in range(10_000)))

Each :meth:`TaskSubmitter.submit` behaves like :meth:`Client.submit_task
<agent_sdk.client.Client.submit_task>`: it returns the task as stored or raises
the :class:`~agent_sdk.errors.MaosRpcError` subclass SubmitTask would have
raised, and a refused task does not disturb the others. Requests go out in
the order of the calls and are answered in that order, so many submits can be
in flight at once on one stream: far cheaper per task, for client and control
plane alike, than as many SubmitTask calls (``benchmarks/throughput.py
--mode stream``). If the stream itself fails, every submit still waiting
raises that error.
"""

from __future__ import annotations

import asyncio
import collections
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc

from agent_sdk.errors import MaosRpcError, UnavailableError, from_rpc_error, from_submit_error
from agent_sdk.proto.maos.v1 import messages_pb2 as msgs
from agent_sdk.proto.maos.v1 import task_service_pb2 as tasks_pb

_END = object()


class TaskSubmitter:
    """One open StreamSubmitTasks call; use it as an async context manager (see the module docstring)."""

    def __init__(
        self, stub: Any, metadata: tuple[tuple[str, str], ...] | None, build: Callable[..., msgs.Task]
    ):
        self._stub = stub
        self._metadata = metadata
        self._build = build
        self._outbox: asyncio.Queue[Any] = asyncio.Queue()
        self._waiting: collections.deque[asyncio.Future[msgs.Task]] = collections.deque()
        self._call: Any = None
        self._reader: asyncio.Task[None] | None = None
        self._failed: MaosRpcError | None = None
        self._closing = False

    async def __aenter__(self) -> TaskSubmitter:
        self.open()
        return self

    def open(self) -> None:
        """Open the stream (what ``async with`` does); submits may follow at once."""
        self._call = self._stub.StreamSubmitTasks(self._requests(), metadata=self._metadata)
        self._reader = asyncio.get_running_loop().create_task(self._read())

    @property
    def failure(self) -> MaosRpcError | None:
        """The error the stream itself ended with (every submit still waiting raised it), or None."""
        return self._failed

    @property
    def closing(self) -> bool:
        """Whether :meth:`close` was called: no more submits are taken."""
        return self._closing

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def submit(
        self, task: msgs.Task | None = None, *, request_id: str | None = None, **fields: Any
    ) -> msgs.Task:
        """Submit one task (a ``Task`` message or ``build_task`` keyword arguments); returns it as stored."""
        message = task if task is not None else self._build(**fields)
        return await self.send(message, request_id or str(uuid.uuid4()))

    def send(self, task: msgs.Task, request_id: str) -> asyncio.Future[msgs.Task]:
        """Queue one request; the future of its answer (the stored task, or the request's error).

        Cancelling the future drops the answer when it comes (the request may still be stored).
        """
        if self._reader is None:
            raise RuntimeError(
                "use the submitter as an async context manager (async with client.submitter())"
            )
        if self._closing:
            raise RuntimeError("this submitter is closed; open another with client.submitter()")
        if self._failed is not None:
            raise self._failed
        future: asyncio.Future[msgs.Task] = asyncio.get_running_loop().create_future()
        self._waiting.append(future)
        self._outbox.put_nowait(tasks_pb.StreamSubmitTasksRequest(task=task, request_id=request_id))
        return future

    async def close(self) -> None:
        """Finish the stream once every submit made so far is answered."""
        if self._reader is None or self._closing:
            return
        self._closing = True
        self._outbox.put_nowait(_END)
        await self._reader

    async def _requests(self) -> AsyncIterator[tasks_pb.StreamSubmitTasksRequest]:
        # Write nothing until the server has accepted the stream (it sends its headers
        # at once): a stream refused on its metadata (no permission, rate limit) then
        # ends before any write, and its status is read intact. A write racing that
        # refusal makes grpc report INTERNAL instead (grpc/grpc#36066).
        await self._call.initial_metadata()
        while (request := await self._outbox.get()) is not _END:
            if self._call.done():
                return
            yield request

    async def _read(self) -> None:
        error: MaosRpcError = UnavailableError("the submit stream ended before answering every task")
        try:
            async for response in self._call:
                future = self._waiting.popleft()
                if future.done():
                    continue
                if response.WhichOneof("outcome") == "task":
                    future.set_result(response.task)
                else:
                    future.set_exception(from_submit_error(response.error))
        except grpc.aio.AioRpcError as exc:
            error = from_rpc_error(exc)
        except asyncio.CancelledError:  # the call was cancelled (or this task, at shutdown)
            self._fail(UnavailableError("the submit stream was cancelled"))
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise
            return
        except IndexError:  # an answer nobody asked for: the server broke the protocol
            self._call.cancel()
            error = MaosRpcError(
                "the control plane answered more submits than were made", code=grpc.StatusCode.INTERNAL
            )
        self._fail(error)

    def _fail(self, error: MaosRpcError) -> None:
        """Fail every submit still waiting, and every later one, with ``error``."""
        self._failed = error
        while self._waiting:
            future = self._waiting.popleft()
            if not future.done():
                future.set_exception(error)
