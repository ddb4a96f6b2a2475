"""ListLogs over gRPC: newest first across pages, the guide's component groups, and bounded filters."""

from __future__ import annotations

import logging
import time

import grpc
import pytest

from agent_sdk.proto.maos.v1 import system_service_pb2 as system_pb
from controlplane.app import App
from controlplane.logbook import LogEntry
from tests.harness.server import Stubs


async def test_newest_first_pages_and_groups(control_plane: App, stubs: Stubs) -> None:
    for n in range(7):
        control_plane.logbook.add(LogEntry(level=logging.WARNING, component="scheduler", message=f"cp {n}"))
        control_plane.logbook.add(
            LogEntry(level=logging.INFO, component="agents/a1", message=f"agent {n}", agent_id="a1")
        )
    seen, token = [], ""
    while True:
        page = await stubs.system.ListLogs(
            system_pb.ListLogsRequest(
                order_by="time desc", page_size=3, page_token=token, component="orchestrator"
            )
        )
        seen += [r.message for r in page.records]
        token = page.next_page_token
        if not token:
            break
    assert [m for m in seen if m.startswith("cp ")] == [f"cp {n}" for n in reversed(range(7))]
    assert not any(m.startswith("agent ") for m in seen)
    agents = await stubs.system.ListLogs(system_pb.ListLogsRequest(component="agents", page_size=100))
    assert [r.message for r in agents.records] == [f"agent {n}" for n in range(7)]  # oldest first
    assert {r.component for r in agents.records} == {"agents/a1"}


@pytest.mark.parametrize(
    ("fields", "text"),
    [
        ({"order_by": "level"}, "order_by 'level' is not one of: time, time desc"),
        ({"contains": "x" * 257}, "contains is at most 256 characters (got 257)"),
        ({"component": "c" * 129}, "component is at most 128 characters"),
        ({"page_size": -1}, "page_size cannot be negative"),
    ],
)
async def test_bad_filters_are_invalid(stubs: Stubs, fields: dict, text: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stubs.system.ListLogs(system_pb.ListLogsRequest(**fields))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT and text in caught.value.details()


async def test_since_in_the_future_and_unknown_agents(stubs: Stubs) -> None:
    request = system_pb.ListLogsRequest()
    request.since.FromSeconds(int(time.time()) + 3600)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stubs.system.ListLogs(request)
    assert (
        caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        and "since is in the future" in caught.value.details()
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stubs.system.ListLogs(system_pb.ListLogsRequest(agent="agents/nobody"))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
