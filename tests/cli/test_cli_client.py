"""``agent_sdk.client`` under the CLI: rich errors, names, waiting."""

from __future__ import annotations

import grpc
import pytest

from agent_sdk.client import SERVICE_CONFIG, Client, build_task
from agent_sdk.errors import (
    FailedPreconditionError,
    InvalidArgumentError,
    MaosRpcError,
    NotFoundError,
    UnavailableError,
)
from agent_sdk.proto.maos.v1 import enums_pb2 as enums
from tests.cli.conftest import Maos


async def test_errors_carry_reason_and_field_violations(maos: Maos) -> None:
    async with Client(maos.address, token="ignored-by-this-server", timeout=5) as client:
        with pytest.raises(InvalidArgumentError) as invalid:
            await client.submit_task(description="x", max_agents=10_001)
        assert invalid.value.code == grpc.StatusCode.INVALID_ARGUMENT
        assert invalid.value.reason == "ERROR_REASON_INVALID_FIELD"
        assert [f for f, _ in invalid.value.field_violations] == ["task.max_agents"]

        with pytest.raises(NotFoundError) as missing:
            await client.get_task("t0000000000000000dead")
        assert missing.value.reason == "ERROR_REASON_TASK_NOT_FOUND"
        assert isinstance(missing.value, MaosRpcError)


async def test_submit_wait_and_finished_task_errors(maos: Maos) -> None:
    async with await Client.connect(maos.address, timeout=5) as client:
        task = await client.submit_task(build_task("hello", priority="medium"), request_id="idem-1")
        again = await client.submit_task(build_task("hello", priority="medium"), request_id="idem-1")
        assert again.name == task.name  # idempotent by request_id
        assert task.priority == enums.PRIORITY_NORMAL
        done = await client.wait_task(task.name.removeprefix("tasks/"), timeout=30)
        assert done.status == enums.TASK_STATUS_COMPLETED
        with pytest.raises(FailedPreconditionError) as finished:
            await client.cancel_task(done.name)
        assert finished.value.reason == "ERROR_REASON_TASK_FINISHED"
        assert [t.name async for t in client.iter_tasks(page_size=1)] == [task.name]


async def test_wait_times_out_and_connect_fails_fast() -> None:
    with pytest.raises(UnavailableError):
        await Client.connect("127.0.0.1:1", timeout=0.5)
    assert SERVICE_CONFIG["methodConfig"][0]["retryPolicy"]["retryableStatusCodes"] == ["UNAVAILABLE"]


async def test_wait_task_timeout(maos: Maos) -> None:
    async with Client(maos.address, timeout=5) as client:
        task = await client.submit_task(description="needs a sleep agent", agent_type="sleep")
        with pytest.raises(TimeoutError):
            await client.wait_task(task.name, timeout=0.2)
        await client.cancel_task(task.name, "test over")
