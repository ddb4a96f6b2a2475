"""StreamSubmitTasks: many submits on one stream, each answered like SubmitTask, in order."""

from __future__ import annotations

import asyncio
import uuid

import grpc
import pytest

from agent_sdk.client import Client
from agent_sdk.errors import InvalidArgumentError, NotFoundError, PermissionDeniedError
from agent_sdk.proto.maos.v1 import errors_pb2 as errors
from agent_sdk.proto.maos.v1 import task_service_pb2 as tasks_pb
from controlplane.app import App
from tests.controlplane.access.test_access import task_count, user_key
from tests.harness.server import admin_key, wait_for


async def test_many_submits_in_flight_are_answered_in_order(control_plane: App) -> None:
    async with Client(control_plane.address) as client, client.submitter() as submitter:
        tasks = await asyncio.gather(
            *(submitter.submit(description=f"item {i}", priority="HIGH") for i in range(300))
        )
    assert [t.description for t in tasks] == [f"item {i}" for i in range(300)]
    assert len({t.name for t in tasks}) == 300
    assert all(t.priority == 3 for t in tasks)
    assert await task_count(control_plane) == 300


async def test_a_refused_submit_raises_alone_and_stores_nothing(control_plane: App) -> None:
    async with Client(control_plane.address) as client, client.submitter() as submitter:
        good = submitter.submit(description="fine")
        bad_priority = submitter.submit(description="bad", priority=17)
        missing_dependency = submitter.submit(description="waits", depends_on=["tasks/t000000000000"])
        later = submitter.submit(description="also fine")
        outcomes = await asyncio.gather(good, bad_priority, missing_dependency, later, return_exceptions=True)
    assert outcomes[0].description == "fine" and outcomes[3].description == "also fine"
    assert isinstance(outcomes[1], InvalidArgumentError)
    assert outcomes[1].reason == "ERROR_REASON_INVALID_FIELD"
    assert [f for f, _ in outcomes[1].field_violations] == ["task.priority"]
    assert (
        isinstance(outcomes[2], NotFoundError) and outcomes[2].reason == "ERROR_REASON_DEPENDENCY_NOT_FOUND"
    )
    assert await task_count(control_plane) == 2


async def test_request_ids_make_stream_and_unary_submits_one_submission(control_plane: App) -> None:
    request_id = str(uuid.uuid4())
    async with Client(control_plane.address) as client:
        async with client.submitter() as submitter:
            first = await submitter.submit(description="once", request_id=request_id)
            again = await submitter.submit(description="once", request_id=request_id)
            with pytest.raises(InvalidArgumentError) as reused:
                await submitter.submit(description="something else", request_id=request_id)
        assert reused.value.reason == "ERROR_REASON_REQUEST_ID_REUSED"
        unary = await client.submit_task(description="once", request_id=request_id)
    assert first.name == again.name == unary.name
    assert await task_count(control_plane) == 1


async def test_a_caller_without_task_submit_gets_permission_denied_on_every_submit(secured: App) -> None:
    token = await user_key(secured, "viewer@example.com", "viewer")
    async with Client(secured.address, token=token) as viewer, viewer.submitter() as submitter:
        outcomes = await asyncio.gather(
            *(submitter.submit(description=f"no {i}") for i in range(3)), return_exceptions=True
        )
    assert all(isinstance(o, PermissionDeniedError) for o in outcomes), outcomes
    assert await task_count(secured) == 0
    async with (
        Client(secured.address, token=await admin_key(secured)) as admin,
        admin.submitter() as submitter,
    ):
        assert (await submitter.submit(description="allowed")).name.startswith("tasks/")
    assert await task_count(secured) == 1


async def test_undecodable_bytes_end_the_stream_with_invalid_argument(control_plane: App) -> None:
    async with grpc.aio.insecure_channel(control_plane.address) as channel:
        call = channel.stream_stream(
            "/maos.v1.TaskService/StreamSubmitTasks",
            request_serializer=lambda raw: raw,
            response_deserializer=tasks_pb.StreamSubmitTasksResponse.FromString,
        )()
        good = tasks_pb.StreamSubmitTasksRequest()
        good.task.description = "before the garbage"
        await call.write(good.SerializeToString())
        answer = await call.read()
        assert answer.WhichOneof("outcome") == "task"
        await call.write(b"\xff\xff\xff\xff")
        with pytest.raises(grpc.aio.AioRpcError) as ended:
            await call.read()
        assert ended.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert await task_count(control_plane) == 1


async def test_submitting_outside_the_context_manager_is_a_usage_error(control_plane: App) -> None:
    async with Client(control_plane.address) as client:
        with pytest.raises(RuntimeError):
            await client.submitter().submit(description="x")
    assert await task_count(control_plane) == 0


def test_submit_error_keeps_code_reason_and_fields() -> None:
    from agent_sdk.errors import from_submit_error

    error = tasks_pb.SubmitError(
        code=grpc.StatusCode.INVALID_ARGUMENT.value[0],
        reason=errors.ERROR_REASON_INVALID_FIELD,
        message="bad",
        field_violations=[tasks_pb.FieldViolation(field="task.x", description="no")],
    )
    converted = from_submit_error(error)
    assert isinstance(converted, InvalidArgumentError)
    assert (converted.code, converted.reason, converted.message, converted.field_violations) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "ERROR_REASON_INVALID_FIELD",
        "bad",
        [("task.x", "no")],
    )


async def test_submit_after_close_or_after_the_stream_broke_raises_instead_of_hanging(
    control_plane: App,
) -> None:
    async with Client(control_plane.address) as client:
        submitter = client.submitter()
        async with submitter:
            assert (await submitter.submit(description="one")).name
        with pytest.raises(RuntimeError):
            await asyncio.wait_for(submitter.submit(description="after close"), 5)

        broken = client.submitter()
        async with broken:
            await broken.submit(description="two")
            broken._call.cancel()  # the stream breaks while nothing is waiting
            await asyncio.wait_for(asyncio.shield(broken._reader), 5)
            with pytest.raises(Exception) as failed:
                await asyncio.wait_for(broken.submit(description="never sent"), 5)
            assert not isinstance(failed.value, asyncio.TimeoutError)
    assert await task_count(control_plane) == 2


async def test_each_streamed_submit_has_its_own_audit_record(secured: App) -> None:
    async with Client(secured.address, token=await admin_key(secured)) as admin:
        async with admin.submitter() as submitter:
            outcomes = await asyncio.gather(
                submitter.submit(description="audited one"),
                submitter.submit(description="bad", priority=17),
                submitter.submit(description="audited two"),
                return_exceptions=True,
            )
        records = await admin.all_audit_records(action="StreamSubmitTasks")
    stored = sorted(o.name for o in outcomes if not isinstance(o, Exception))
    per_request = [r for r in records if r.request_id]  # the stream's own record carries none
    assert sorted(r.resource for r in per_request if r.status_code == "OK") == stored
    assert [r.status_code for r in per_request if r.status_code != "OK"] == ["INVALID_ARGUMENT"]
    assert all(r.principal == "users/admin" for r in records)
    assert len(records) == 4  # three requests and the stream


async def test_streamed_submits_are_answered_only_after_their_commit(control_plane: App) -> None:
    committer = control_plane.engine.committer
    async with Client(control_plane.address) as client, client.submitter() as submitter:
        async with committer.paused():  # nothing reaches storage meanwhile
            pending = [asyncio.ensure_future(submitter.submit(description=f"held {i}")) for i in range(20)]
            bad = asyncio.ensure_future(submitter.submit(description="bad", priority=17))
            await wait_for(lambda: len(committer.pending().tasks) == 20, timeout=10)  # all accepted
            await client.status()  # a round trip after them: an early answer would be here by now
            assert not any(p.done() for p in [*pending, bad])  # the refusal waits its turn too
            assert await task_count(control_plane) == 0
        tasks = await asyncio.wait_for(asyncio.gather(*pending), 10)
        with pytest.raises(InvalidArgumentError):
            await asyncio.wait_for(bad, 10)
    assert [t.description for t in tasks] == [f"held {i}" for i in range(20)]
    assert await task_count(control_plane) == 20
