"""Loose validation closed, through a real control plane (issue 11).

Unknown event types, non-ASCII digits in event ids, invalid Durations and
Timestamps and negative page sizes are INVALID_ARGUMENT naming the field, and
change nothing.
"""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from google.protobuf import duration_pb2, timestamp_pb2

from agent_sdk.proto.maos.v1 import access_service_pb2 as access_pb
from agent_sdk.proto.maos.v1 import access_service_pb2_grpc as access_grpc
from agent_sdk.proto.maos.v1 import agent_service_pb2 as agents_pb
from agent_sdk.proto.maos.v1 import audit_service_pb2 as audit_pb
from agent_sdk.proto.maos.v1 import audit_service_pb2_grpc as audit_grpc
from agent_sdk.proto.maos.v1 import checkpoint_service_pb2 as checkpoints_pb
from agent_sdk.proto.maos.v1 import checkpoint_service_pb2_grpc as checkpoints_grpc
from agent_sdk.proto.maos.v1 import messages_pb2 as msgs
from agent_sdk.proto.maos.v1 import system_service_pb2 as system_pb
from agent_sdk.proto.maos.v1 import task_service_pb2 as tasks_pb
from tests.controlplane.api.test_task_service import RPC_TIMEOUT, assert_failure, rpc_failure, task
from tests.harness.server import Stubs

INVALID = grpc.StatusCode.INVALID_ARGUMENT
INVALID_FIELD = "ERROR_REASON_INVALID_FIELD"


async def first_event(stubs: Stubs, **fields: Any) -> None:
    """Open WatchEvents and read its first message (the stream fails before any for a bad request)."""
    call = stubs.system.WatchEvents(system_pb.WatchEventsRequest(**fields), timeout=RPC_TIMEOUT)
    try:
        await call.read()
    finally:
        call.cancel()


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        pytest.param({"event_types": [999]}, "event_types[0]", id="unknown-type"),
        pytest.param({"event_types": [1, 0]}, "event_types[1]", id="unspecified-type"),
        pytest.param({"after_event_id": "١.٢"}, "after_event_id", id="arabic-indic-digits"),
        pytest.param({"after_event_id": "².1"}, "after_event_id", id="superscript-digit"),
        pytest.param({"after_event_id": "1." + "9" * 40}, "after_event_id", id="huge-sequence"),
    ],
)
async def test_watch_events_refuses_bad_filters(stubs: Stubs, fields: dict[str, Any], field: str) -> None:
    failure = await rpc_failure(first_event(stubs, **fields))
    assert_failure(failure, INVALID, INVALID_FIELD, field)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        pytest.param(
            {"timeout": duration_pb2.Duration(seconds=0, nanos=-5)}, "task.timeout", id="negative-nanos"
        ),
        pytest.param(
            {"timeout": duration_pb2.Duration(seconds=5, nanos=-1)}, "task.timeout", id="mixed-signs"
        ),
        pytest.param(
            {"timeout": duration_pb2.Duration(seconds=5, nanos=2_000_000_000)},
            "task.timeout",
            id="nanos-out-of-range",
        ),
        pytest.param(
            {"retry_policy": msgs.RetryPolicy(initial_backoff=duration_pb2.Duration(nanos=-1))},
            "task.retry_policy.initial_backoff",
            id="backoff-negative-nanos",
        ),
        pytest.param(
            {"retry_policy": msgs.RetryPolicy(max_backoff=duration_pb2.Duration(seconds=10**15))},
            "task.retry_policy.max_backoff",
            id="backoff-out-of-range",
        ),
        pytest.param(
            {
                "consensus": msgs.ConsensusPolicy(
                    required=True, round_timeout=duration_pb2.Duration(seconds=-1, nanos=5)
                )
            },
            "task.consensus.round_timeout",
            id="round-timeout-mixed-signs",
        ),
    ],
)
async def test_submit_refuses_invalid_durations(stubs: Stubs, fields: dict[str, Any], field: str) -> None:
    failure = await rpc_failure(
        stubs.tasks.SubmitTask(tasks_pb.SubmitTaskRequest(task=task("d", **fields)), timeout=RPC_TIMEOUT)
    )
    assert_failure(failure, INVALID, INVALID_FIELD, field)
    listed = await stubs.tasks.ListTasks(tasks_pb.ListTasksRequest(), timeout=RPC_TIMEOUT)
    assert list(listed.tasks) == []


BAD_TIMESTAMPS = [
    pytest.param(timestamp_pb2.Timestamp(seconds=10**12), id="after-year-9999"),
    pytest.param(timestamp_pb2.Timestamp(seconds=-(10**12)), id="before-year-1"),
    pytest.param(timestamp_pb2.Timestamp(seconds=5, nanos=-1), id="negative-nanos"),
]


@pytest.mark.parametrize("stamp", BAD_TIMESTAMPS)
async def test_list_filters_refuse_out_of_range_timestamps(
    stubs: Stubs, control_plane: Any, stamp: timestamp_pb2.Timestamp
) -> None:
    calls = [
        stubs.tasks.ListTasks(tasks_pb.ListTasksRequest(since=stamp), timeout=RPC_TIMEOUT),
        stubs.system.ListLogs(system_pb.ListLogsRequest(since=stamp), timeout=RPC_TIMEOUT),
    ]
    audit = audit_grpc.AuditServiceStub(stubs.channel)
    calls.append(audit.ListAuditRecords(audit_pb.ListAuditRecordsRequest(since=stamp), timeout=RPC_TIMEOUT))
    calls.append(audit.ListAuditRecords(audit_pb.ListAuditRecordsRequest(until=stamp), timeout=RPC_TIMEOUT))
    fields = ["since", "since", "since", "until"]
    for call, field in zip(calls, fields, strict=True):
        assert_failure(await rpc_failure(call), INVALID, INVALID_FIELD, field)


async def test_every_list_refuses_a_negative_page_size(stubs: Stubs) -> None:
    access = access_grpc.AccessServiceStub(stubs.channel)
    audit = audit_grpc.AuditServiceStub(stubs.channel)
    checkpoints = checkpoints_grpc.CheckpointServiceStub(stubs.channel)
    calls = [
        stubs.tasks.ListTasks(tasks_pb.ListTasksRequest(page_size=-1), timeout=RPC_TIMEOUT),
        stubs.agents.ListAgents(agents_pb.ListAgentsRequest(page_size=-1), timeout=RPC_TIMEOUT),
        stubs.system.ListLogs(system_pb.ListLogsRequest(page_size=-1), timeout=RPC_TIMEOUT),
        checkpoints.ListCheckpoints(checkpoints_pb.ListCheckpointsRequest(page_size=-1), timeout=RPC_TIMEOUT),
        audit.ListAuditRecords(audit_pb.ListAuditRecordsRequest(page_size=-1), timeout=RPC_TIMEOUT),
        access.ListUsers(access_pb.ListUsersRequest(page_size=-1), timeout=RPC_TIMEOUT),
        access.ListRoles(access_pb.ListRolesRequest(page_size=-1), timeout=RPC_TIMEOUT),
        access.ListApiKeys(access_pb.ListApiKeysRequest(page_size=-1), timeout=RPC_TIMEOUT),
        access.ListJoinTokens(access_pb.ListJoinTokensRequest(page_size=-1), timeout=RPC_TIMEOUT),
    ]
    for call in calls:
        assert_failure(await rpc_failure(call), INVALID, INVALID_FIELD, "page_size")


@pytest.mark.parametrize(
    "grace",
    [
        pytest.param(duration_pb2.Duration(seconds=10**9), id="a-billion-seconds"),
        pytest.param(duration_pb2.Duration(seconds=1, nanos=-1), id="mixed-signs"),
    ],
)
async def test_drain_refuses_an_invalid_grace(stubs: Stubs, grace: duration_pb2.Duration) -> None:
    failure = await rpc_failure(
        stubs.agents.DrainAgent(
            agents_pb.DrainAgentRequest(name="agents/nobody", grace=grace), timeout=RPC_TIMEOUT
        )
    )
    assert_failure(failure, INVALID, INVALID_FIELD, "grace")
