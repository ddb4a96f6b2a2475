"""TaskService against a real control plane: bad requests get the right status, details, and change nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from agent_sdk.builtin import EchoAgent
from agent_sdk.proto.maos.v1 import enums_pb2 as enums
from agent_sdk.proto.maos.v1 import messages_pb2 as msgs
from agent_sdk.proto.maos.v1 import task_service_pb2 as tasks_pb
from controlplane.app import App
from tests.controlplane.api.test_task_service import (
    RPC_TIMEOUT,
    assert_failure,
    fingerprint,
    get,
    list_all,
    mask,
    rpc_failure,
    running_worker,
    seconds,
    submit,
    task,
    wait_status,
)
from tests.harness.server import Stubs, make_settings, start_app

INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND
PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION
INVALID_FIELD = "ERROR_REASON_INVALID_FIELD"


@pytest.fixture
async def existing(stubs: Stubs) -> msgs.Task:
    """One queued task, so "nothing changed" is checked against a non-empty list."""
    created = await submit(stubs, "an existing task")
    return await wait_status(stubs, created.name, enums.TASK_STATUS_QUEUED)


@pytest.fixture
async def small_limits(tmp_path: Path) -> AsyncIterator[Stubs]:
    """A control plane whose descriptions may be at most 100 characters."""
    app = await start_app(make_settings(tmp_path / "small-home", **{"tasks.max_description_length": 100}))
    stubs = Stubs(app.address)
    try:
        yield stubs
    finally:
        await stubs.close()
        await app.stop(grace=1.0)


def submit_call(stubs: Stubs, draft: msgs.Task, request_id: str = ""):
    return stubs.tasks.SubmitTask(
        tasks_pb.SubmitTaskRequest(task=draft, request_id=request_id), timeout=RPC_TIMEOUT
    )


async def finished_task(stubs: Stubs) -> msgs.Task:
    """A CANCELLED task (finished without needing an agent)."""
    created = await submit(stubs, "to be cancelled")
    reply = await stubs.tasks.CancelTask(tasks_pb.CancelTaskRequest(name=created.name), timeout=RPC_TIMEOUT)
    assert reply.task.status == enums.TASK_STATUS_CANCELLED
    return reply.task


# --- SubmitTask -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("draft", "field"),
    [
        pytest.param(task(""), "task.description", id="empty-description"),
        pytest.param(task("   \n\t"), "task.description", id="blank-description"),
        pytest.param(task(max_agents=10_001), "task.max_agents", id="max-agents-10001"),
        pytest.param(task(priority=99), "task.priority", id="priority-99"),
        pytest.param(task(priority=-1), "task.priority", id="priority-negative"),
        pytest.param(task(task_type="bad type!"), "task.task_type", id="task-type-chars"),
        pytest.param(task(task_type="1research"), "task.task_type", id="task-type-digit-first"),
        pytest.param(task(task_type="research\n"), "task.task_type", id="task-type-trailing-newline"),
        pytest.param(task(agent_type="echo\n"), "task.agent_type", id="agent-type-trailing-newline"),
        pytest.param(task(timeout=seconds(0)), "task.timeout", id="timeout-zero"),
        pytest.param(task(timeout=seconds(-1)), "task.timeout", id="timeout-negative"),
        pytest.param(task(depends_on=["tasks/"]), "task.depends_on", id="depends-on-malformed"),
        pytest.param(task(depends_on=["tasks/abc\n"]), "task.depends_on", id="depends-on-trailing-newline"),
        pytest.param(
            task(retry_policy=msgs.RetryPolicy(backoff_multiplier=0.5)),
            "task.retry_policy.backoff_multiplier",
            id="backoff-multiplier",
        ),
    ],
)
async def test_submit_rejects_invalid_fields_and_changes_nothing(
    stubs: Stubs, existing: msgs.Task, draft: msgs.Task, field: str
) -> None:
    before = fingerprint(await list_all(stubs))
    failure = await rpc_failure(submit_call(stubs, draft))
    assert_failure(failure, INVALID, INVALID_FIELD, field)
    assert fingerprint(await list_all(stubs)) == before


async def test_submit_names_every_bad_field(stubs: Stubs) -> None:
    failure = await rpc_failure(submit_call(stubs, task("", max_agents=10_001, timeout=seconds(-3))))
    assert_failure(failure, INVALID, INVALID_FIELD)
    assert {"task.description", "task.max_agents", "task.timeout"} <= set(failure.fields)
    assert await list_all(stubs) == []


async def test_max_agents_zero_means_the_default(stubs: Stubs) -> None:
    created = await submit(stubs, "default width", max_agents=0)
    assert created.max_agents == 4  # tasks.default_max_agents
    assert created.task_type == "mixed" and created.priority == enums.PRIORITY_NORMAL


async def test_description_over_the_configured_limit(small_limits: Stubs) -> None:
    ok = await submit(small_limits, "x" * 100)
    before = fingerprint(await list_all(small_limits))
    failure = await rpc_failure(submit_call(small_limits, task("x" * 101)))
    assert_failure(failure, INVALID, INVALID_FIELD, "task.description")
    assert "100" in failure.message
    assert fingerprint(await list_all(small_limits)) == before
    assert [t.name for t in await list_all(small_limits)] == [ok.name]


async def test_unknown_dependency_is_not_found(stubs: Stubs, existing: msgs.Task) -> None:
    before = fingerprint(await list_all(stubs))
    failure = await rpc_failure(
        submit_call(stubs, task(depends_on=[existing.name, "tasks/t0000doesnotexist"]))
    )
    assert_failure(failure, NOT_FOUND, "ERROR_REASON_DEPENDENCY_NOT_FOUND")
    assert "tasks/t0000doesnotexist" in failure.message
    assert fingerprint(await list_all(stubs)) == before


@pytest.mark.parametrize(
    "request_id",
    [
        pytest.param("a" * 37, id="37-chars"),
        pytest.param("a" * 36 + "\n", id="36-chars-plus-newline"),
        pytest.param("has space", id="space"),
    ],
)
async def test_bad_request_id(stubs: Stubs, existing: msgs.Task, request_id: str) -> None:
    before = fingerprint(await list_all(stubs))
    failure = await rpc_failure(submit_call(stubs, task(), request_id=request_id))
    assert_failure(failure, INVALID, INVALID_FIELD, "request_id")
    assert fingerprint(await list_all(stubs)) == before


async def test_request_id_36_chars_is_accepted(stubs: Stubs) -> None:
    request_id = "0123456789abcdef0123456789abcdef-_Aa"
    assert len(request_id) == 36
    created = await submit(stubs, "fine", request_id=request_id)
    assert created.name


async def test_same_request_id_same_parameters_returns_the_same_task(stubs: Stubs) -> None:
    request_id = "6f1c2a4e-8a55-4c11-9b7e-2f1d5b8c9a01"
    first = await submit(stubs, "idempotent", request_id=request_id, priority=enums.PRIORITY_HIGH)
    again = await submit(stubs, "idempotent", request_id=request_id, priority=enums.PRIORITY_HIGH)
    assert again.name == first.name
    assert again.create_time == first.create_time
    assert [t.name for t in await list_all(stubs)] == [first.name]


async def test_same_request_id_different_parameters_is_rejected(stubs: Stubs) -> None:
    request_id = "6f1c2a4e-8a55-4c11-9b7e-2f1d5b8c9a02"
    first = await submit(stubs, "idempotent", request_id=request_id)
    before = fingerprint(await list_all(stubs))
    failure = await rpc_failure(submit_call(stubs, task("something else"), request_id=request_id))
    assert_failure(failure, INVALID, "ERROR_REASON_REQUEST_ID_REUSED", "request_id")
    assert fingerprint(await list_all(stubs)) == before
    assert [t.name for t in await list_all(stubs)] == [first.name]


# --- BatchSubmitTasks ---------------------------------------------------------------


async def test_batch_with_one_bad_entry_submits_nothing(stubs: Stubs, existing: msgs.Task) -> None:
    before = fingerprint(await list_all(stubs))
    request = tasks_pb.BatchSubmitTasksRequest(
        requests=[
            tasks_pb.SubmitTaskRequest(task=task("good one")),
            tasks_pb.SubmitTaskRequest(task=task("bad one", priority=99)),
            tasks_pb.SubmitTaskRequest(task=task("good two")),
            tasks_pb.SubmitTaskRequest(task=task("")),
        ]
    )
    failure = await rpc_failure(stubs.tasks.BatchSubmitTasks(request, timeout=RPC_TIMEOUT))
    assert_failure(failure, INVALID, INVALID_FIELD, "requests[1].task.priority")
    assert "requests[3].task.description" in failure.fields
    assert not failure.field_starting("requests[0]") and not failure.field_starting("requests[2]")
    assert fingerprint(await list_all(stubs)) == before


async def test_batch_with_an_unknown_dependency_submits_nothing(stubs: Stubs, existing: msgs.Task) -> None:
    before = fingerprint(await list_all(stubs))
    request = tasks_pb.BatchSubmitTasksRequest(
        requests=[
            tasks_pb.SubmitTaskRequest(task=task("good one", depends_on=[existing.name])),
            tasks_pb.SubmitTaskRequest(task=task("bad dep", depends_on=["tasks/t0000missing"])),
        ]
    )
    failure = await rpc_failure(stubs.tasks.BatchSubmitTasks(request, timeout=RPC_TIMEOUT))
    assert_failure(failure, NOT_FOUND, "ERROR_REASON_DEPENDENCY_NOT_FOUND")
    assert failure.metadata.get("field") == "requests[1].task.depends_on"
    assert fingerprint(await list_all(stubs)) == before


async def test_batch_of_1001_is_resource_exhausted(stubs: Stubs, existing: msgs.Task) -> None:
    before = fingerprint(await list_all(stubs))
    request = tasks_pb.BatchSubmitTasksRequest(
        requests=[tasks_pb.SubmitTaskRequest(task=task(f"t{i}")) for i in range(1001)]
    )
    failure = await rpc_failure(stubs.tasks.BatchSubmitTasks(request, timeout=RPC_TIMEOUT))
    assert_failure(failure, grpc.StatusCode.RESOURCE_EXHAUSTED, "ERROR_REASON_LIMIT_EXCEEDED")
    assert fingerprint(await list_all(stubs)) == before


async def test_empty_batch_is_invalid(stubs: Stubs) -> None:
    failure = await rpc_failure(
        stubs.tasks.BatchSubmitTasks(tasks_pb.BatchSubmitTasksRequest(), timeout=RPC_TIMEOUT)
    )
    assert_failure(failure, INVALID, INVALID_FIELD, "requests")


async def test_good_batch_is_submitted_in_order_and_idempotent(stubs: Stubs) -> None:
    request = tasks_pb.BatchSubmitTasksRequest(
        requests=[
            tasks_pb.SubmitTaskRequest(task=task(f"batch item {i}", task_type="research")) for i in range(3)
        ],
        request_id="batch-0001",
    )
    reply = await stubs.tasks.BatchSubmitTasks(request, timeout=RPC_TIMEOUT)
    assert [t.description for t in reply.tasks] == [f"batch item {i}" for i in range(3)]
    # Like SubmitTask, the answer says why each task waits.
    assert all("no connected agent has capability researcher" in t.status_reason for t in reply.tasks), (
        reply.tasks
    )
    again = await stubs.tasks.BatchSubmitTasks(request, timeout=RPC_TIMEOUT)
    assert [t.name for t in again.tasks] == [t.name for t in reply.tasks]
    assert sorted(t.name for t in await list_all(stubs)) == sorted(t.name for t in reply.tasks)


# --- GetTask and names ------------------------------------------------------------------


@pytest.mark.parametrize("name", ["", "tasks/", "tasks/a b", "tasks/abc\n", "tasks/../x"])
async def test_get_task_with_a_malformed_name(stubs: Stubs, name: str) -> None:
    failure = await rpc_failure(get(stubs, name))
    assert_failure(failure, INVALID, INVALID_FIELD, "name")


async def test_get_unknown_task_is_not_found(stubs: Stubs) -> None:
    failure = await rpc_failure(get(stubs, "tasks/t0000doesnotexist"))
    assert_failure(failure, NOT_FOUND, "ERROR_REASON_TASK_NOT_FOUND")
    assert "tasks/t0000doesnotexist" in failure.message


@pytest.mark.parametrize("method", ["CancelTask", "RetryTask", "GetTaskResults", "WatchTask"])
async def test_other_methods_on_unknown_and_malformed_names(stubs: Stubs, method: str) -> None:
    request_type = {
        "CancelTask": tasks_pb.CancelTaskRequest,
        "RetryTask": tasks_pb.RetryTaskRequest,
        "GetTaskResults": tasks_pb.GetTaskResultsRequest,
        "WatchTask": tasks_pb.WatchTaskRequest,
    }[method]
    call = getattr(stubs.tasks, method)

    async def invoke(name: str) -> None:
        result = call(request_type(name=name), timeout=RPC_TIMEOUT)
        if method == "WatchTask":
            async for _ in result:
                pass
        else:
            await result

    assert_failure(await rpc_failure(invoke("tasks/t0000missing")), NOT_FOUND, "ERROR_REASON_TASK_NOT_FOUND")
    assert_failure(await rpc_failure(invoke("tasks/a b")), INVALID, INVALID_FIELD, "name")


# --- ListTasks ---------------------------------------------------------------------------


async def test_negative_page_size(stubs: Stubs) -> None:
    failure = await rpc_failure(
        stubs.tasks.ListTasks(tasks_pb.ListTasksRequest(page_size=-1), timeout=RPC_TIMEOUT)
    )
    assert_failure(failure, INVALID, INVALID_FIELD, "page_size")


@pytest.mark.parametrize("token", ["garbage", "!!!***", "é", "AAAA" * 10])
async def test_garbage_page_token(stubs: Stubs, existing: msgs.Task, token: str) -> None:
    failure = await rpc_failure(
        stubs.tasks.ListTasks(tasks_pb.ListTasksRequest(page_token=token), timeout=RPC_TIMEOUT)
    )
    assert_failure(failure, INVALID, "ERROR_REASON_INVALID_PAGE_TOKEN", "page_token")


async def test_page_token_reused_with_other_filters(stubs: Stubs) -> None:
    for i in range(3):
        await submit(stubs, f"task {i}")
    first = await stubs.tasks.ListTasks(tasks_pb.ListTasksRequest(page_size=1), timeout=RPC_TIMEOUT)
    assert first.next_page_token
    for changed in (
        tasks_pb.ListTasksRequest(
            page_size=1, page_token=first.next_page_token, statuses=[enums.TASK_STATUS_QUEUED]
        ),
        tasks_pb.ListTasksRequest(page_size=1, page_token=first.next_page_token, task_types=["mixed"]),
        tasks_pb.ListTasksRequest(
            page_size=1, page_token=first.next_page_token, priorities=[enums.PRIORITY_NORMAL]
        ),
    ):
        failure = await rpc_failure(stubs.tasks.ListTasks(changed, timeout=RPC_TIMEOUT))
        assert_failure(failure, INVALID, "ERROR_REASON_INVALID_PAGE_TOKEN", "page_token")
    # The same filters with another page size are fine.
    second = await stubs.tasks.ListTasks(
        tasks_pb.ListTasksRequest(page_size=5, page_token=first.next_page_token), timeout=RPC_TIMEOUT
    )
    assert len(second.tasks) == 2 and not second.next_page_token


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (tasks_pb.ListTasksRequest(statuses=[99]), "statuses[0]"),
        (tasks_pb.ListTasksRequest(priorities=[enums.PRIORITY_LOW, 42]), "priorities[1]"),
        (tasks_pb.ListTasksRequest(batch="batches/a b"), "batch"),
    ],
)
async def test_invalid_list_filters(stubs: Stubs, request_: tasks_pb.ListTasksRequest, field: str) -> None:
    failure = await rpc_failure(stubs.tasks.ListTasks(request_, timeout=RPC_TIMEOUT))
    assert_failure(failure, INVALID, INVALID_FIELD, field)


# --- UpdateTask, CancelTask, RetryTask, GetTaskResults ----------------------------------


@pytest.mark.parametrize(
    ("paths", "task_fields", "field"),
    [
        pytest.param((), {"priority": enums.PRIORITY_HIGH}, "update_mask", id="empty-mask"),
        pytest.param(("description",), {"description": "new"}, "update_mask", id="description"),
        pytest.param(("priority", "status"), {"priority": enums.PRIORITY_HIGH}, "update_mask", id="status"),
        pytest.param(("max_agents",), {"max_agents": 10_001}, "task.max_agents", id="max-agents-10001"),
        pytest.param(("max_agents",), {"max_agents": 0}, "task.max_agents", id="max-agents-0"),
        pytest.param(("priority",), {"priority": 99}, "task.priority", id="priority-99"),
    ],
)
async def test_update_rejects_bad_masks_and_values(
    stubs: Stubs, existing: msgs.Task, paths: tuple[str, ...], task_fields: dict, field: str
) -> None:
    before = fingerprint(await list_all(stubs))
    request = tasks_pb.UpdateTaskRequest(
        task=msgs.Task(name=existing.name, **task_fields), update_mask=mask(*paths)
    )
    failure = await rpc_failure(stubs.tasks.UpdateTask(request, timeout=RPC_TIMEOUT))
    assert_failure(failure, INVALID, INVALID_FIELD, field)
    assert fingerprint(await list_all(stubs)) == before


async def test_update_without_a_task_name_names_task_name(stubs: Stubs) -> None:
    request = tasks_pb.UpdateTaskRequest(
        task=msgs.Task(priority=enums.PRIORITY_HIGH), update_mask=mask("priority")
    )
    failure = await rpc_failure(stubs.tasks.UpdateTask(request, timeout=RPC_TIMEOUT))
    assert_failure(failure, INVALID, INVALID_FIELD, "task.name")


async def test_update_of_a_finished_task(stubs: Stubs) -> None:
    done = await finished_task(stubs)
    before = fingerprint(await list_all(stubs))
    request = tasks_pb.UpdateTaskRequest(
        task=msgs.Task(name=done.name, priority=enums.PRIORITY_HIGH), update_mask=mask("priority")
    )
    failure = await rpc_failure(stubs.tasks.UpdateTask(request, timeout=RPC_TIMEOUT))
    assert_failure(failure, PRECONDITION, "ERROR_REASON_TASK_FINISHED")
    assert fingerprint(await list_all(stubs)) == before


async def test_cancel_of_a_finished_task(stubs: Stubs) -> None:
    done = await finished_task(stubs)
    before = fingerprint(await list_all(stubs))
    failure = await rpc_failure(
        stubs.tasks.CancelTask(tasks_pb.CancelTaskRequest(name=done.name), timeout=RPC_TIMEOUT)
    )
    assert_failure(failure, PRECONDITION, "ERROR_REASON_TASK_FINISHED")
    assert fingerprint(await list_all(stubs)) == before
    assert (await get(stubs, done.name)).task.failure.message == done.failure.message


async def test_retry_of_a_completed_task(control_plane: App, stubs: Stubs) -> None:
    async with running_worker(EchoAgent(), control_plane.address):
        created = await submit(stubs, "quick")
        await wait_status(stubs, created.name, enums.TASK_STATUS_COMPLETED)
    before = fingerprint(await list_all(stubs))
    failure = await rpc_failure(
        stubs.tasks.RetryTask(tasks_pb.RetryTaskRequest(name=created.name), timeout=RPC_TIMEOUT)
    )
    assert_failure(failure, PRECONDITION, "ERROR_REASON_TASK_NOT_RETRYABLE")
    assert fingerprint(await list_all(stubs)) == before
    assert (await get(stubs, created.name)).task.retries == 0


async def test_retry_of_a_queued_task(stubs: Stubs, existing: msgs.Task) -> None:
    before = fingerprint(await list_all(stubs))
    failure = await rpc_failure(
        stubs.tasks.RetryTask(tasks_pb.RetryTaskRequest(name=existing.name), timeout=RPC_TIMEOUT)
    )
    assert_failure(failure, PRECONDITION, "ERROR_REASON_TASK_NOT_RETRYABLE")
    assert fingerprint(await list_all(stubs)) == before


async def test_results_of_an_unfinished_task(stubs: Stubs, existing: msgs.Task) -> None:
    failure = await rpc_failure(
        stubs.tasks.GetTaskResults(tasks_pb.GetTaskResultsRequest(name=existing.name), timeout=RPC_TIMEOUT)
    )
    assert_failure(failure, PRECONDITION, "ERROR_REASON_RESULT_NOT_READY")


async def test_results_of_a_pending_task(stubs: Stubs, existing: msgs.Task) -> None:
    waiting = await submit(stubs, "after the existing one", depends_on=[existing.name])
    assert (await get(stubs, waiting.name)).task.status == enums.TASK_STATUS_PENDING
    failure = await rpc_failure(
        stubs.tasks.GetTaskResults(tasks_pb.GetTaskResultsRequest(name=waiting.name), timeout=RPC_TIMEOUT)
    )
    assert_failure(failure, PRECONDITION, "ERROR_REASON_RESULT_NOT_READY")


async def test_repeated_cancel_with_request_id_is_idempotent(stubs: Stubs, existing: msgs.Task) -> None:
    request = tasks_pb.CancelTaskRequest(name=existing.name, request_id="cancel-1")
    first = await stubs.tasks.CancelTask(request, timeout=RPC_TIMEOUT)
    again = await stubs.tasks.CancelTask(request, timeout=RPC_TIMEOUT)
    assert first.task.status == again.task.status == enums.TASK_STATUS_CANCELLED
    assert first.task.end_time == again.task.end_time


# --- AnalyzeTask -------------------------------------------------------------------------


async def test_analyze_without_a_target(stubs: Stubs) -> None:
    failure = await rpc_failure(stubs.tasks.AnalyzeTask(tasks_pb.AnalyzeTaskRequest(), timeout=RPC_TIMEOUT))
    assert_failure(failure, INVALID, INVALID_FIELD, "target")


async def test_analyze_an_invalid_draft_changes_nothing(stubs: Stubs, existing: msgs.Task) -> None:
    before = fingerprint(await list_all(stubs))
    failure = await rpc_failure(
        stubs.tasks.AnalyzeTask(
            tasks_pb.AnalyzeTaskRequest(task=task("", max_agents=10_001)), timeout=RPC_TIMEOUT
        )
    )
    assert_failure(failure, INVALID, INVALID_FIELD, "task.description")
    assert "task.max_agents" in failure.fields
    assert fingerprint(await list_all(stubs)) == before


async def test_analyze_a_draft_plans_without_running(stubs: Stubs) -> None:
    reply = await stubs.tasks.AnalyzeTask(
        tasks_pb.AnalyzeTaskRequest(task=task("1. a\n2. b\n3. c\n4. d", max_agents=2)), timeout=RPC_TIMEOUT
    )
    assert len(reply.plan.subtasks) == 3  # two groups and the synthesis
    assert reply.plan.recommended_agents == 2
    assert reply.plan.critical_path_length == 2
    assert reply.plan.warnings
    assert await list_all(stubs) == []


async def test_analyze_an_existing_task_returns_its_plan(stubs: Stubs) -> None:
    created = await submit(stubs, "- one\n- two")
    reply = await stubs.tasks.AnalyzeTask(tasks_pb.AnalyzeTaskRequest(name=created.name), timeout=RPC_TIMEOUT)
    full = await get(stubs, created.name, full=True)
    assert reply.plan == full.plan
    assert_failure(
        await rpc_failure(
            stubs.tasks.AnalyzeTask(
                tasks_pb.AnalyzeTaskRequest(name="tasks/t0000missing"), timeout=RPC_TIMEOUT
            )
        ),
        NOT_FOUND,
        "ERROR_REASON_TASK_NOT_FOUND",
    )
