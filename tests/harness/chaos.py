"""What chaos tests share: submitting batches over replicas that may die, and reading every task back.

:class:`Submitter` sends tasks in batches to the live replicas of a
:class:`~tests.harness.replicas.ReplicaCluster`; a batch refused with a code of :data:`RETRY` is
sent again, with the same request id, to the next live replica. The readers list every task and
read each in full, spread over the replicas still alive.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import grpc

from agent_sdk.proto.maos.v1 import enums_pb2 as enums
from agent_sdk.proto.maos.v1 import messages_pb2 as m
from agent_sdk.proto.maos.v1 import task_service_pb2 as t
from tests.harness.recording_agent import AGENT_TYPE
from tests.harness.replicas import ReplicaCluster
from tests.harness.server import Stubs, wait_for

#: Tasks per BatchSubmitTasks call.
BATCH = 50
#: Codes after which a batch is sent again (same request id) to the next live replica.
RETRY = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.ABORTED}


def short(name: str) -> str:
    """The id at the end of a resource name (``tasks/x/subtasks/y`` -> ``y``)."""
    return name.rsplit("/", 1)[-1]


def subtask_key(task: str, subtask: str) -> str:
    """``task/subtask`` by their ids (subtask ids are unique within their task only)."""
    return f"{short(task)}/{short(subtask)}"


class Submitter:
    """Submits the chaos tasks in batches over the live replicas; remembers what was accepted."""

    def __init__(self, cluster: ReplicaCluster, *, sticky: bool = False):
        self.cluster = cluster
        #: Send a refused batch again to the same replica while it runs (as a client that stays on
        #: its replica does), not to the next one.
        self.sticky = sticky
        self.stubs = [Stubs(address) for address in cluster.addresses]
        self.accepted: dict[int, str] = {}  # item number -> task name
        self.resent = 0

    def request(self, numbers: range) -> t.BatchSubmitTasksRequest:
        items = [
            t.SubmitTaskRequest(
                task=m.Task(
                    description=f"chaos item {n}",
                    agent_type=AGENT_TYPE,
                    metadata={"item": str(n)},
                    retry_policy=m.RetryPolicy(max_retries=20),
                )
            )
            for n in numbers
        ]
        return t.BatchSubmitTasksRequest(requests=items, request_id=str(uuid.uuid4()))

    async def batch(self, numbers: range, first: int) -> None:
        request = self.request(numbers)
        deadline = time.monotonic() + 60
        target = first
        while True:
            if not self.cluster.live():
                raise AssertionError("every replica has exited (see their logs above)")
            index = target % len(self.stubs)
            if not self.cluster.replicas[index].running:
                target += 1
                continue
            if not self.sticky:
                target += 1
            try:
                reply = await self.stubs[index].tasks.BatchSubmitTasks(request, timeout=10)
                break
            except grpc.aio.AioRpcError as exc:
                if exc.code() not in RETRY or time.monotonic() > deadline:
                    raise
                self.resent += 1
                await asyncio.sleep(0.05)  # back off before the next replica
        assert len(reply.tasks) == len(numbers)
        for n, task in zip(numbers, reply.tasks, strict=True):
            assert task.metadata["item"] == str(n)
            self.accepted[n] = task.name

    async def run(self, total: int, parallel: int = 3) -> None:
        batches = [range(start, min(start + BATCH, total)) for start in range(0, total, BATCH)]
        queue: asyncio.Queue[tuple[int, range]] = asyncio.Queue()
        for i, numbers in enumerate(batches):
            queue.put_nowait((i, numbers))

        async def worker() -> None:
            while not queue.empty():
                i, numbers = queue.get_nowait()
                await self.batch(numbers, first=i)

        await asyncio.gather(*(worker() for _ in range(parallel)))

    def live_stubs(self) -> list[Stubs]:
        return [s for s, r in zip(self.stubs, self.cluster.replicas, strict=True) if r.running]

    async def close(self) -> None:
        for s in self.stubs:
            await s.close()


async def wait_all_finished(submitter: Submitter, timeout: float) -> None:
    """Until no accepted task is PENDING, QUEUED or RUNNING on any live replica's answer."""
    open_states = [enums.TASK_STATUS_PENDING, enums.TASK_STATUS_QUEUED, enums.TASK_STATUS_RUNNING]

    async def none_open() -> bool:
        for stubs in submitter.live_stubs():
            reply = await stubs.tasks.ListTasks(
                t.ListTasksRequest(page_size=1, statuses=open_states), timeout=10
            )
            if reply.tasks:
                return False
        return True

    await wait_for(none_open, timeout, 0.2, "every accepted task to finish")


async def full_tasks(submitter: Submitter, names: list[str]) -> list[t.GetTaskResponse]:
    """GetTask (full view) of each name, spread over the live replicas, 32 at a time."""
    live = submitter.live_stubs()
    gate = asyncio.Semaphore(32)

    async def one(i: int, name: str) -> t.GetTaskResponse:
        async with gate:
            request = t.GetTaskRequest(name=name, view=enums.TASK_VIEW_FULL)
            return await live[i % len(live)].tasks.GetTask(request, timeout=30)

    return await asyncio.gather(*(one(i, n) for i, n in enumerate(names)))
