"""The audit log as read back: a caller sees its own calls at once, and filters page correctly."""

from __future__ import annotations

import grpc
import pytest

from agent_sdk.client import Client
from agent_sdk.errors import MaosRpcError
from agent_sdk.proto.maos.v1 import audit_service_pb2 as audit_pb
from agent_sdk.proto.maos.v1 import enums_pb2 as enums
from controlplane.app import App
from tests.harness.server import admin_key


async def test_a_call_is_in_the_audit_log_as_soon_as_it_returns(secured: App) -> None:
    async with Client(secured.address, token=await admin_key(secured)) as admin:
        for n in range(5):
            task = await admin.submit_task(description=f"audited {n}")
            records = await admin.list_audit_records(action="SubmitTask", page_size=1)
            assert records and records[0].status_code == "OK"
            assert records[0].principal == "users/admin"
            assert records[0].method == "/maos.v1.TaskService/SubmitTask"
            assert task.name.startswith("tasks/")


async def test_decision_filter_pages_past_records_of_the_other_decision(secured: App) -> None:
    async with Client(secured.address) as anonymous:
        with pytest.raises(MaosRpcError) as refused:
            await anonymous.submit_task(description="refused")
        assert refused.value.code == grpc.StatusCode.UNAUTHENTICATED
    async with Client(secured.address, token=await admin_key(secured)) as admin:
        for n in range(12):  # newer ALLOW records than the one DENY
            await admin.submit_task(description=f"allowed {n}")
        request = audit_pb.ListAuditRecordsRequest(page_size=3, decision=enums.AUDIT_DECISION_DENY)
        denied = []
        while True:
            page = await admin.audit.ListAuditRecords(request)
            assert len(page.records) <= 3
            denied.extend(page.records)
            if not page.next_page_token:
                break
            request.page_token = page.next_page_token
        assert [r.decision for r in denied] == [enums.AUDIT_DECISION_DENY]
        assert denied[0].status_code == "UNAUTHENTICATED"

        request = audit_pb.ListAuditRecordsRequest(
            page_size=5, decision=enums.AUDIT_DECISION_ALLOW, action="SubmitTask"
        )
        allowed, pages = [], 0
        while True:
            page = await admin.audit.ListAuditRecords(request)
            pages += 1
            allowed.extend(page.records)
            if not page.next_page_token:
                break
            request.page_token = page.next_page_token
        assert len(allowed) == 12 and pages == 3
        assert all(r.decision == enums.AUDIT_DECISION_ALLOW for r in allowed)


@pytest.mark.parametrize(
    ("name", "recorded"),
    [
        ("", ""),
        ("tasks/t-1", "tasks/t-1"),
        ("tasks/t-1/subtasks/s_2", "tasks/t-1/subtasks/s_2"),
        ("agents/echo-0123456789abcdef", "agents/echo-0123456789abcdef"),
        ("users/bob-2", "users/bob-2"),
        ("roles/reviewer", "roles/reviewer"),
        ("apiKeys/AbCdEf123456", "apiKeys/AbCdEf123456"),
        ("joinTokens/abc123", "joinTokens/abc123"),
        ("t-1", "t-1"),  # the servers accept bare ids
        ("joinTokens/abc123.0123456789abcdef", "<malformed>"),  # a whole join token
        ("abc123.0123456789abcdef", "<malformed>"),
        ("apiKeys/maos_key_" + "a" * 32 + "_abcdef", "<malformed>"),  # a whole API key
        ("maos_key_" + "a" * 32 + "_abcdef", "<malformed>"),
        ("tasks/maos_key_" + "a" * 32, "<malformed>"),
        ("apiKeys/AbCdEf1234567", "<malformed>"),
        ("joinTokens/ABC123", "<malformed>"),
        ("roles/Admin", "<malformed>"),
        ("tasks/t-1\n", "<malformed>"),
        ("tasks/", "<malformed>"),
        ("tasks/../x", "<malformed>"),
        ("secrets/x", "<malformed>"),
        ("tasks/" + "x" * 400, "<malformed>"),
    ],
)
def test_only_well_formed_names_are_recorded(name: str, recorded: str) -> None:
    from controlplane.api.auth import audit_resource

    assert audit_resource(name) == recorded
