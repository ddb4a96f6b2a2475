"""The counts GetStatus reports are kept as work moves, and always equal a walk over the work."""

from __future__ import annotations

from collections import Counter

from agent_sdk.builtin import EchoAgent
from agent_sdk.proto.maos.v1 import enums_pb2 as enums
from agent_sdk.proto.maos.v1 import messages_pb2 as msgs
from agent_sdk.proto.maos.v1 import system_service_pb2 as system_pb
from agent_sdk.proto.maos.v1 import task_service_pb2 as tasks_pb
from controlplane.app import App
from controlplane.domain.model import SubtaskStatus
from controlplane.scheduler.engine import Engine
from tests.controlplane.api.test_task_service import RPC_TIMEOUT, mask, running_worker, submit, wait_status
from tests.harness.server import Stubs


def walked(engine: Engine) -> tuple[dict[str, int], dict[str, int]]:
    """Queued subtasks by priority and subtasks by status, counted the slow way."""
    queue: Counter[str] = Counter()
    subtasks: Counter[str] = Counter()
    for task_id, subs in engine.subtasks.items():
        for sub in subs.values():
            subtasks[sub.status.name] += 1
            if sub.status == SubtaskStatus.QUEUED:
                queue[engine.tasks[task_id].priority.name] += 1
    return dict(queue), dict(subtasks)


def demand_walked(engine: Engine) -> dict[tuple[str, str], tuple[int, float | None]]:
    """Queued subtasks by (agent type, capability) with the earliest queue time, counted the slow way."""
    out: dict[tuple[str, str], tuple[int, float | None]] = {}
    for subs in engine.subtasks.values():
        for sub in subs.values():
            if sub.status == SubtaskStatus.QUEUED:
                n, since = out.get((sub.agent_type, sub.capability), (0, None))
                times = [t for t in (since, sub.queue_time) if t]
                out[(sub.agent_type, sub.capability)] = (n + 1, min(times) if times else None)
    return out


async def reported(stubs: Stubs) -> tuple[dict[str, int], dict[str, int], dict[str, int]]:
    status = await stubs.system.GetStatus(system_pb.GetStatusRequest(), timeout=RPC_TIMEOUT)
    return (
        {c.state: c.count for c in status.queue},
        {c.state: c.count for c in status.subtasks},
        {c.state: c.count for c in status.tasks},
    )


async def assert_counts_match(stubs: Stubs, engine: Engine) -> dict[str, int]:
    queue, subtasks, tasks = await reported(stubs)
    assert (queue, subtasks) == walked(engine)
    assert engine.queued_demand() == demand_walked(engine)  # what the autoscaler reads
    return tasks


async def test_counts_follow_submit_update_cancel_and_completion(control_plane: App, stubs: Stubs) -> None:
    engine = control_plane.engine
    low = await submit(stubs, "1. one\n2. two\n3. three", priority=enums.PRIORITY_LOW)
    normal = await submit(stubs, "alone")
    high = await submit(stubs, "alone too", priority=enums.PRIORITY_HIGH)
    await assert_counts_match(stubs, engine)
    queue, subtasks, tasks = await reported(stubs)
    assert queue["HIGH"] == 1 and queue["NORMAL"] == 1 and queue["LOW"] >= 3
    assert tasks["QUEUED"] == 3

    await stubs.tasks.UpdateTask(
        tasks_pb.UpdateTaskRequest(
            task=msgs.Task(name=low.name, priority=enums.PRIORITY_CRITICAL), update_mask=mask("priority")
        ),
        timeout=RPC_TIMEOUT,
    )
    queue = (await reported(stubs))[0]
    assert "LOW" not in queue and queue["CRITICAL"] >= 3
    await assert_counts_match(stubs, engine)

    await stubs.tasks.CancelTask(tasks_pb.CancelTaskRequest(name=normal.name), timeout=RPC_TIMEOUT)
    await assert_counts_match(stubs, engine)
    assert (await reported(stubs))[2]["CANCELLED"] == 1

    async with running_worker(EchoAgent(), control_plane.address):
        await wait_status(stubs, low.name, enums.TASK_STATUS_COMPLETED)
        await wait_status(stubs, high.name, enums.TASK_STATUS_COMPLETED)
    tasks = await assert_counts_match(stubs, engine)
    assert (await reported(stubs))[0] == {}
    assert (tasks["COMPLETED"], tasks["CANCELLED"], tasks["QUEUED"], tasks["RUNNING"]) == (2, 1, 0, 0)

    await stubs.tasks.RetryTask(tasks_pb.RetryTaskRequest(name=normal.name), timeout=RPC_TIMEOUT)
    await assert_counts_match(stubs, engine)
    assert (await reported(stubs))[0] == {"NORMAL": 1}
