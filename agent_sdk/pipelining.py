"""Concurrent ``Client.submit_task`` calls carried over one StreamSubmitTasks stream.

With ``Client(..., pipeline_submits=True)``, every ``submit_task`` of the client
goes out as one message of a single shared submit stream (opened on the first
call, reopened after it ends), the way Ray's ``.remote()`` calls share one
connection: many callers at once cost the control plane and the client far
less per task than as many SubmitTask calls. Each call still behaves like
SubmitTask:

* it returns the task as stored, or raises the :class:`~agent_sdk.errors.MaosRpcError`
  subclass SubmitTask would have raised for that request alone (a refused
  request does not disturb the others on the stream);
* it waits at most the client's ``timeout`` (then DeadlineExceededError);
* cancelling it stops the wait; like a cancelled unary call, the request may
  already have been stored;
* if the stream itself ends before answering (the control plane restarted, the
  connection broke), each call still waiting is sent again by itself as a
  SubmitTask call with the same request id, so it is stored at most once, and
  the next call opens a new stream. A control plane without StreamSubmitTasks
  (UNIMPLEMENTED) gets unary calls from then on.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import grpc

from agent_sdk.errors import AbortedError, DeadlineExceededError, MaosRpcError
from agent_sdk.proto.maos.v1 import messages_pb2 as msgs
from agent_sdk.proto.maos.v1 import task_service_pb2 as tasks_pb
from agent_sdk.submitter import TaskSubmitter

#: How long a resent request waits between tries while the control plane still runs its first copy.
IN_FLIGHT_BACKOFF = 0.05


def _expire(answer: asyncio.Future[msgs.Task], timeout: float) -> None:
    if not answer.done():
        answer.set_exception(
            DeadlineExceededError(
                f"the control plane did not answer the submit within {timeout:g} s",
                code=grpc.StatusCode.DEADLINE_EXCEEDED,
            )
        )


class SubmitPipeline:
    """One client's shared submit stream, with a unary fallback (see the module docstring)."""

    def __init__(
        self,
        open_submitter: Callable[[], TaskSubmitter],
        submit_unary: Callable[[tasks_pb.SubmitTaskRequest], Awaitable[msgs.Task]],
        timeout: float,
    ):
        self._open_submitter = open_submitter
        self._submit_unary = submit_unary
        self.timeout = timeout
        self._submitter: TaskSubmitter | None = None
        #: Set once the control plane answered UNIMPLEMENTED to the stream: unary calls only.
        self.unary_only = False
        #: How many requests were resent by themselves after their stream ended (for tests and tuning).
        self.resent = 0

    def _stream(self) -> TaskSubmitter:
        submitter = self._submitter
        if submitter is None or submitter.failure is not None or submitter.closing:
            submitter = self._submitter = self._open_submitter()
            submitter.open()
        return submitter

    async def submit(self, task: msgs.Task, request_id: str) -> msgs.Task:
        """Submit one task on the shared stream; answered like a SubmitTask call with ``request_id``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        if not self.unary_only:
            submitter = self._stream()
            try:
                answer = submitter.send(task, request_id)
            except MaosRpcError:  # the stream had already ended: resend below
                pass
            else:
                # A timer rather than asyncio.wait_for: no task of its own per call.
                timer = loop.call_later(self.timeout, _expire, answer, self.timeout)
                try:
                    return await answer  # cancelling the call cancels the answer, which is then dropped
                except MaosRpcError as exc:
                    if exc is not submitter.failure:
                        raise  # this request's own answer (or its deadline)
                    if exc.code == grpc.StatusCode.UNIMPLEMENTED:
                        self.unary_only = True
                finally:
                    timer.cancel()
            # The stream ended before answering: send this request again by itself.
            self.resent += 1
        return await self._resend(task, request_id, deadline)

    async def _resend(self, task: msgs.Task, request_id: str, deadline: float) -> msgs.Task:
        loop = asyncio.get_running_loop()
        request = tasks_pb.SubmitTaskRequest(task=task, request_id=request_id)
        while True:
            try:
                return await self._submit_unary(request)
            except AbortedError as exc:
                # The control plane still runs the streamed copy: its answer comes once it is committed.
                if (
                    exc.reason != "ERROR_REASON_REQUEST_IN_FLIGHT"
                    or loop.time() + IN_FLIGHT_BACKOFF > deadline
                ):
                    raise
                await asyncio.sleep(IN_FLIGHT_BACKOFF)

    async def close(self) -> None:
        """Finish the stream once every submit made on it is answered (waiting at most ``timeout``)."""
        submitter, self._submitter = self._submitter, None
        if submitter is None:
            return
        # Answers that never come are not waited for: the calls still waiting get UnavailableError.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(submitter.close(), self.timeout)
