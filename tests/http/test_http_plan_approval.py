"""Plan approval over the HTTP/JSON door: the same RPCs, rules and errors as over gRPC."""

from __future__ import annotations

from controlplane.app import App
from tests.harness.server import wait_for
from tests.http.conftest import Http, error_of


async def test_approve_and_reject_routes(http_plane: App, http: Http) -> None:
    created = await http.post(
        "/v1/tasks",
        json={"task": {"description": "Compare: 1. a 2. b", "approvePlan": True, "reviewRounds": 1}},
    )
    assert created.status_code == 200, created.text
    name = created.json()["task"]["name"]
    await wait_for(
        lambda: http_plane.engine.awaiting_approval(http_plane.engine.tasks[name.split("/")[1]]),
        5,
        message="the task to wait for approval",
    )
    shown = (await http.get(f"/v1/{name}")).json()["task"]
    assert shown["statusReason"] == "waiting for plan approval" and shown["reviewRounds"] == 1
    assert shown["approval"]["state"] == "PLAN_APPROVAL_STATE_WAITING"
    no_reason = await http.post(f"/v1/{name}:reject", json={})
    assert no_reason.status_code == 400 and error_of(no_reason)[0] == 3  # INVALID_ARGUMENT
    approved = await http.post(f"/v1/{name}:approve", json={})
    assert approved.status_code == 200, approved.text
    assert approved.json()["task"]["approval"]["state"] == "PLAN_APPROVAL_STATE_APPROVED"
    again = await http.post(f"/v1/{name}:approve", json={})
    assert again.status_code == 400 and error_of(again)[:2] == (9, "ERROR_REASON_NOT_AWAITING_APPROVAL")

    other = (
        await http.post("/v1/tasks", json={"task": {"description": "Drop it", "approvePlan": True}})
    ).json()
    rejected = await http.post(f"/v1/{other['task']['name']}:reject", json={"reason": "not now"})
    assert rejected.status_code == 200, rejected.text
    task = rejected.json()["task"]
    assert task["status"] == "TASK_STATUS_CANCELLED" and "plan rejected" in task["failure"]["message"]
