"""ListTasks against a real control plane: filters and pagination."""

from __future__ import annotations

from google.protobuf import timestamp_pb2

from agent_sdk.builtin import EchoAgent
from agent_sdk.proto.maos.v1 import enums_pb2 as enums
from agent_sdk.proto.maos.v1 import task_service_pb2 as tasks_pb
from controlplane.app import App
from tests.controlplane.api.test_task_service import (
    RPC_TIMEOUT,
    list_all,
    running_worker,
    submit,
    wait_status,
)
from tests.harness.server import Stubs


def names(tasks) -> list[str]:
    return [t.name for t in tasks]


async def test_pagination_returns_every_task_once_newest_first(stubs: Stubs) -> None:
    created = [await submit(stubs, f"task number {i}") for i in range(7)]
    pages, token = [], ""
    while True:
        reply = await stubs.tasks.ListTasks(
            tasks_pb.ListTasksRequest(page_size=3, page_token=token), timeout=RPC_TIMEOUT
        )
        pages.append(names(reply.tasks))
        token = reply.next_page_token
        if not token:
            break
        assert len(pages) < 10, "pagination does not end"
    assert [len(p) for p in pages] == [3, 3, 1]
    listed = [n for page in pages for n in page]
    assert listed == [t.name for t in reversed(created)]  # newest first, each exactly once
    assert len(set(listed)) == 7


async def test_pagination_with_an_exact_multiple_ends_without_a_token(stubs: Stubs) -> None:
    for i in range(6):
        await submit(stubs, f"task {i}")
    first = await stubs.tasks.ListTasks(tasks_pb.ListTasksRequest(page_size=3), timeout=RPC_TIMEOUT)
    second = await stubs.tasks.ListTasks(
        tasks_pb.ListTasksRequest(page_size=3, page_token=first.next_page_token), timeout=RPC_TIMEOUT
    )
    assert len(first.tasks) == len(second.tasks) == 3
    assert not second.next_page_token
    assert not set(names(first.tasks)) & set(names(second.tasks))


async def test_page_size_zero_is_the_default_and_large_is_capped(stubs: Stubs) -> None:
    reply = await stubs.tasks.BatchSubmitTasks(
        tasks_pb.BatchSubmitTasksRequest(
            requests=[tasks_pb.SubmitTaskRequest(task={"description": f"bulk {i}"}) for i in range(55)]
        ),
        timeout=RPC_TIMEOUT,
    )
    assert len(reply.tasks) == 55
    default = await stubs.tasks.ListTasks(tasks_pb.ListTasksRequest(), timeout=RPC_TIMEOUT)
    assert len(default.tasks) == 50 and default.next_page_token
    rest = await stubs.tasks.ListTasks(
        tasks_pb.ListTasksRequest(page_token=default.next_page_token), timeout=RPC_TIMEOUT
    )
    assert len(rest.tasks) == 5 and not rest.next_page_token
    huge = await stubs.tasks.ListTasks(tasks_pb.ListTasksRequest(page_size=100_000), timeout=RPC_TIMEOUT)
    assert len(huge.tasks) == 55 and not huge.next_page_token
    assert names(huge.tasks) == [t.name for t in reversed(reply.tasks)]


async def test_filters_by_status_type_priority_and_since(control_plane: App, stubs: Stubs) -> None:
    async with running_worker(EchoAgent(), control_plane.address, capabilities=["coder"]):
        completed = await submit(stubs, "write code", task_type="coding", priority=enums.PRIORITY_HIGH)
        await wait_status(stubs, completed.name, enums.TASK_STATUS_COMPLETED)
    queued_research = await submit(stubs, "read papers", task_type="research", priority=enums.PRIORITY_LOW)
    cancelled = await submit(stubs, "never mind", task_type="research", priority=enums.PRIORITY_CRITICAL)
    await stubs.tasks.CancelTask(tasks_pb.CancelTaskRequest(name=cancelled.name), timeout=RPC_TIMEOUT)
    later = await submit(stubs, "analyse numbers", task_type="analysis", priority=enums.PRIORITY_HIGH)

    assert names(await list_all(stubs)) == [later.name, cancelled.name, queued_research.name, completed.name]
    assert names(await list_all(stubs, statuses=[enums.TASK_STATUS_COMPLETED])) == [completed.name]
    assert names(
        await list_all(stubs, statuses=[enums.TASK_STATUS_CANCELLED, enums.TASK_STATUS_COMPLETED])
    ) == [cancelled.name, completed.name]
    assert names(await list_all(stubs, statuses=[enums.TASK_STATUS_QUEUED])) == [
        later.name,
        queued_research.name,
    ]
    assert names(await list_all(stubs, statuses=[enums.TASK_STATUS_FAILED])) == []
    assert names(await list_all(stubs, task_types=["research"])) == [cancelled.name, queued_research.name]
    assert names(await list_all(stubs, task_types=["coding", "analysis"])) == [later.name, completed.name]
    assert names(await list_all(stubs, priorities=[enums.PRIORITY_HIGH])) == [later.name, completed.name]
    assert names(await list_all(stubs, priorities=[enums.PRIORITY_LOW, enums.PRIORITY_CRITICAL])) == [
        cancelled.name,
        queued_research.name,
    ]
    # Filters combine with AND.
    assert names(await list_all(stubs, task_types=["research"], statuses=[enums.TASK_STATUS_QUEUED])) == [
        queued_research.name
    ]
    assert names(await list_all(stubs, task_types=["research"], priorities=[enums.PRIORITY_HIGH])) == []

    since = timestamp_pb2.Timestamp()
    since.CopyFrom(cancelled.create_time)
    assert names(await list_all(stubs, since=since)) == [later.name, cancelled.name]
    future = timestamp_pb2.Timestamp(seconds=later.create_time.seconds + 3600)
    assert names(await list_all(stubs, since=future)) == []
    assert names(await list_all(stubs, owner=later.owner)) == names(await list_all(stubs))
    assert names(await list_all(stubs, owner="users/somebody-else")) == []

    # Listed tasks carry their state and, for waiting ones, why they wait.
    by_name = {t.name: t for t in await list_all(stubs)}
    assert by_name[completed.name].status == enums.TASK_STATUS_COMPLETED
    assert by_name[cancelled.name].failure.reason != 0
    assert "no connected agent has capability researcher" in by_name[queued_research.name].status_reason


async def test_filtered_pagination(stubs: Stubs) -> None:
    wanted = []
    for i in range(7):
        t = await submit(stubs, f"task {i}", task_type="research" if i % 2 == 0 else "coding")
        if i % 2 == 0:
            wanted.append(t.name)
    seen, token = [], ""
    while True:
        reply = await stubs.tasks.ListTasks(
            tasks_pb.ListTasksRequest(page_size=3, page_token=token, task_types=["research"]),
            timeout=RPC_TIMEOUT,
        )
        seen.extend(names(reply.tasks))
        token = reply.next_page_token
        if not token:
            break
    assert seen == list(reversed(wanted))
