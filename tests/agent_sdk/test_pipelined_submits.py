"""Client(pipeline_submits=True): concurrent submit_task calls share one StreamSubmitTasks stream."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from agent_sdk.client import Client
from agent_sdk.errors import (
    DeadlineExceededError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    UnavailableError,
)
from agent_sdk.proto.maos.v1 import messages_pb2 as m
from agent_sdk.proto.maos.v1 import task_service_pb2 as t
from agent_sdk.proto.maos.v1 import task_service_pb2_grpc as tg
from controlplane.app import App
from tests.controlplane.access.test_access import task_count, user_key
from tests.harness.server import admin_key, make_settings, start_app


async def test_concurrent_submits_share_one_stream_and_keep_their_order(control_plane: App) -> None:
    async with Client(control_plane.address, pipeline_submits=True) as client:
        tasks = await asyncio.gather(*(client.submit_task(description=f"item {i}") for i in range(200)))
        pipeline = client._pipeline
        assert pipeline is not None
        stream = pipeline._submitter
        again = await client.submit_task(description="later")
        assert pipeline._submitter is stream  # one stream for every call
        assert pipeline.resent == 0 and not pipeline.unary_only
    assert [task.description for task in tasks] == [f"item {i}" for i in range(200)]
    assert len({task.name for task in [*tasks, again]}) == 201
    assert await task_count(control_plane) == 201


async def test_a_refused_submit_fails_alone_with_its_own_error(control_plane: App) -> None:
    async with Client(control_plane.address, pipeline_submits=True) as client:
        outcomes = await asyncio.gather(
            client.submit_task(description="fine"),
            client.submit_task(description="bad", priority=17),
            client.submit_task(description="waits", depends_on=["tasks/t000000000000"]),
            client.submit_task(description="also fine"),
            return_exceptions=True,
        )
    assert isinstance(outcomes[0], m.Task) and outcomes[0].description == "fine"
    assert isinstance(outcomes[3], m.Task) and outcomes[3].description == "also fine"
    assert isinstance(outcomes[1], InvalidArgumentError)
    assert [field for field, _ in outcomes[1].field_violations] == ["task.priority"]
    assert isinstance(outcomes[2], NotFoundError)
    assert outcomes[2].reason == "ERROR_REASON_DEPENDENCY_NOT_FOUND"
    assert await task_count(control_plane) == 2


async def test_a_request_id_makes_a_pipelined_and_a_unary_submit_one_submission(control_plane: App) -> None:
    request_id = str(uuid.uuid4())
    async with (
        Client(control_plane.address, pipeline_submits=True) as pipelined,
        Client(control_plane.address) as unary,
    ):
        first = await pipelined.submit_task(description="once", request_id=request_id)
        again = await unary.submit_task(description="once", request_id=request_id)
        with pytest.raises(InvalidArgumentError) as reused:
            await pipelined.submit_task(description="other", request_id=request_id)
    assert first.name == again.name
    assert reused.value.reason == "ERROR_REASON_REQUEST_ID_REUSED"
    assert await task_count(control_plane) == 1


async def test_a_cancelled_submit_does_not_disturb_the_others(control_plane: App) -> None:
    async with Client(control_plane.address, pipeline_submits=True) as client:
        calls = [asyncio.create_task(client.submit_task(description=f"item {i}")) for i in range(50)]
        await asyncio.sleep(0)  # every request is on its way
        calls[10].cancel()
        outcomes = await asyncio.gather(*calls, return_exceptions=True)
        after = await client.submit_task(description="after the cancel")
    assert isinstance(outcomes[10], asyncio.CancelledError)
    kept = [o for i, o in enumerate(outcomes) if i != 10]
    assert [o.description for o in kept] == [f"item {i}" for i in range(50) if i != 10]
    assert after.description == "after the cancel"
    # the cancelled request may or may not have been stored, like a cancelled unary call
    assert await task_count(control_plane) in (50, 51)


async def test_calls_waiting_when_the_stream_dies_are_resent_once_each(control_plane: App) -> None:
    async with Client(control_plane.address, pipeline_submits=True) as client:
        calls = [asyncio.create_task(client.submit_task(description=f"item {i}")) for i in range(100)]
        await asyncio.sleep(0)
        pipeline = client._pipeline
        assert pipeline is not None and pipeline._submitter is not None
        dead = pipeline._submitter
        dead._call.cancel()  # the stream breaks with every call still waiting
        tasks = await asyncio.wait_for(asyncio.gather(*calls), 30)
        assert pipeline.resent > 0
        later = await client.submit_task(description="on a new stream")
        assert pipeline._submitter is not dead
    assert [task.description for task in tasks] == [f"item {i}" for i in range(100)]
    assert later.description == "on a new stream"
    # each request was stored once, whether its streamed copy arrived before the break or not
    assert len({task.name for task in tasks}) == 100
    assert await task_count(control_plane) == 101


async def test_a_stopped_control_plane_fails_every_waiting_call(maos_home: Path) -> None:
    app = await start_app(make_settings(maos_home))
    try:
        async with Client(app.address, pipeline_submits=True, timeout=5) as client:
            assert (await client.submit_task(description="before")).name
            calls = [asyncio.create_task(client.submit_task(description=f"item {i}")) for i in range(20)]
            await asyncio.sleep(0)
            await app.stop(grace=None)
            outcomes = await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), 30)
    finally:
        await app.stop(grace=None)
    # none hangs: each was answered before the stop, or raises what its unary resend got
    failed = [o for o in outcomes if not isinstance(o, m.Task)]
    assert failed and all(isinstance(o, UnavailableError) for o in failed), failed


async def test_each_token_has_its_own_stream(secured: App) -> None:
    viewer_token = await user_key(secured, "viewer@example.com", "viewer")
    async with Client(secured.address, token=await admin_key(secured), pipeline_submits=True) as admin:
        viewer = admin.with_token(viewer_token)
        with pytest.raises(PermissionDeniedError):
            await viewer.submit_task(description="not allowed")
        assert (await admin.submit_task(description="allowed")).name.startswith("tasks/")
    assert await task_count(secured) == 1


class _OnlyUnary(tg.TaskServiceServicer):  # type: ignore[misc]
    """A TaskService without StreamSubmitTasks (an older control plane)."""

    async def SubmitTask(self, request: t.SubmitTaskRequest, context: grpc.aio.ServicerContext) -> object:
        return t.SubmitTaskResponse(task=m.Task(name="tasks/t1", description=request.task.description))


class _NeverAnswers(_OnlyUnary):
    async def StreamSubmitTasks(
        self, requests: AsyncIterator[object], context: object
    ) -> AsyncIterator[object]:
        async for _ in requests:
            pass
        if False:  # pragma: no cover - an async generator that never yields
            yield


async def _serve(servicer: tg.TaskServiceServicer) -> tuple[grpc.aio.Server, str]:
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    tg.add_TaskServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, f"127.0.0.1:{port}"


async def test_a_control_plane_without_the_stream_gets_unary_calls() -> None:
    server, address = await _serve(_OnlyUnary())
    try:
        async with Client(address, pipeline_submits=True) as client:
            first = await client.submit_task(description="one")
            second = await client.submit_task(description="two")
            assert client._pipeline is not None and client._pipeline.unary_only
    finally:
        await server.stop(None)
    assert (first.description, second.description) == ("one", "two")


async def test_an_unanswered_submit_raises_deadline_exceeded() -> None:
    server, address = await _serve(_NeverAnswers())
    try:
        async with Client(address, pipeline_submits=True, timeout=0.5) as client:
            with pytest.raises(DeadlineExceededError):
                await asyncio.wait_for(client.submit_task(description="lost"), 10)
            await asyncio.wait_for(client.close(), 10)  # closing does not wait for answers that never come
    finally:
        await server.stop(None)
