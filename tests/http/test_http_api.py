"""The HTTP/JSON API through real HTTP: the guide's example, the API examples' routes, errors, visibility."""

from __future__ import annotations

import asyncio
import re

import requests

from controlplane.app import App
from tests.harness.server import stored_audit, wait_for, wait_for_agents
from tests.http.conftest import Http, error_of

#: The user guide's "API Integration" example, exactly as the guide prints it.
GUIDE_EXAMPLE = """
import requests

# Submit task via API
response = requests.post('http://localhost:8000/api/tasks', json={
    'description': 'Analyze customer satisfaction trends',
    'type': 'analysis',
    'max_agents': 4,
    'priority': 'HIGH'
})

task_id = response.json()['task_id']

# Check task status
status = requests.get(f'http://localhost:8000/api/tasks/{task_id}')
print(status.json())

# Get results
results = requests.get(f'http://localhost:8000/api/tasks/{task_id}/results')
"""


def _run_guide_example(port: int, headers: str = "") -> dict:
    """Run the guide's code on ``port`` (only the port differs; ``headers`` adds a bearer header)."""
    code = GUIDE_EXAMPLE.replace("localhost:8000", f"localhost:{port}")
    if headers:
        code = code.replace("})\n", f"}}, headers={headers})\n", 1)
        code = re.sub(r"requests\.get\((f'[^']+')\)", rf"requests.get(\1, headers={headers})", code)
    namespace: dict = {}
    exec(compile(code, "guide", "exec"), namespace)  # noqa: S102 - the guide's own example
    return namespace


async def test_guide_example_verbatim_with_auth_off(http_plane: App, http: Http, agent_processes) -> None:
    agent_processes(http_plane.address, "echo")
    await wait_for_agents(http_plane, 1)
    ns = await asyncio.to_thread(_run_guide_example, http_plane.http_port)
    assert ns["response"].status_code == 200, ns["response"].text
    submitted = ns["response"].json()
    task_id = ns["task_id"]
    assert submitted["task"]["name"] == f"tasks/{task_id}"
    assert submitted["task"]["task_type"] == "analysis"
    assert submitted["task"]["priority"] == "PRIORITY_HIGH"
    assert submitted["task"]["max_agents"] == 4
    assert ns["status"].status_code == 200 and ns["status"].json()["task"]["name"] == f"tasks/{task_id}"

    async def finished() -> bool:
        reply = await http.get(f"/api/tasks/{task_id}")
        return reply.json()["task"]["status"] in ("TASK_STATUS_COMPLETED", "TASK_STATUS_FAILED")

    await wait_for(finished, 30, interval=0.1, message="the task to finish")
    results = await http.get(f"/api/tasks/{task_id}/results")
    assert results.status_code == 200, results.text
    assert results.json()["task_id"] == task_id
    assert results.json()["result"]["output"]


async def test_guide_example_with_a_bearer_key(secured_http: App, admin_http: Http) -> None:
    headers = repr({"Authorization": f"Bearer {admin_http.key}"})
    ns = await asyncio.to_thread(_run_guide_example, secured_http.http_port, headers)
    assert ns["response"].status_code == 200, ns["response"].text
    assert ns["status"].json()["task"]["owner"] == "users/admin"
    # Not finished yet: the results are FAILED_PRECONDITION, which AIP-193 maps to 400.
    assert ns["results"].status_code == 400
    assert error_of(ns["results"])[:2] == (9, "ERROR_REASON_RESULT_NOT_READY")
    # The same call without the header is refused like the gRPC call, and audited once, as over gRPC.
    bare = await asyncio.to_thread(requests.post, f"{admin_http.base}/api/tasks", json={"description": "x"})
    assert bare.status_code == 401 and error_of(bare)[:2] == (16, "ERROR_REASON_UNAUTHENTICATED")
    wrong = await asyncio.to_thread(
        requests.get,
        f"{admin_http.base}/api/v1/system/status",
        headers={"Authorization": "Bearer maos_key_not_a_real_one"},
    )
    assert wrong.status_code == 401
    # /health is the gRPC health check, which needs no key (load balancers probe it).
    health = await asyncio.to_thread(requests.get, f"{admin_http.base}/health")
    assert health.status_code == 200 and health.json() == {"status": "SERVING"}
    records = await stored_audit(secured_http)
    submits = [r for r in records if r["method"].endswith("SubmitTask")]
    assert [r["decision"] for r in submits].count("ALLOW") == 1
    assert all(r["peer"].startswith("ipv4:127.0.0.1:") for r in submits), submits


async def test_every_route_of_the_api_examples(http_plane: App, http: Http) -> None:
    health = await http.get("/health")
    assert health.status_code == 200 and health.json() == {"status": "SERVING"}
    detailed = await http.get("/health/detailed")
    assert detailed.status_code == 200 and {c["component"] for c in detailed.json()["components"]} >= {
        "database"
    }
    created = await http.post(
        "/api/v1/tasks", json={"description": "Summarise the quarter", "priority": "LOW"}
    )
    assert created.status_code == 200, created.text
    task_id = created.json()["task_id"]
    listed = await http.get("/api/v1/tasks", params={"page_size": 10})
    assert [t["name"] for t in listed.json()["tasks"]] == [f"tasks/{task_id}"]
    shown = await http.get(f"/api/v1/tasks/{task_id}")
    assert shown.json()["task"]["priority"] == "PRIORITY_LOW"
    cancelled = await http.call("DELETE", f"/api/v1/tasks/{task_id}", params={"reason": "not needed"})
    assert cancelled.status_code == 200 and cancelled.json()["task"]["status"] == "TASK_STATUS_CANCELLED"
    again = await http.call("DELETE", f"/api/v1/tasks/{task_id}")
    assert again.status_code == 400 and error_of(again)[:2] == (9, "ERROR_REASON_TASK_FINISHED")
    agents = await http.get("/api/v1/agents")
    assert agents.status_code == 200 and agents.json().get("agents", []) == []
    spawned = await http.post("/api/v1/agents", json={"agent_type": "echo", "count": 1})
    assert spawned.status_code == 200, spawned.text
    await wait_for_agents(http_plane, 1)
    agents = await http.get("/api/v1/agents")
    assert len(agents.json()["agents"]) == 1
    status = await http.get("/api/v1/system/status")
    assert status.status_code == 200 and status.json()["storage_backend"] == "sqlite"
    [replica] = status.json()["replica_status"]  # the replica registry, rendered like every field
    assert replica["id"] == http_plane.engine.replica and replica["current"] is True
    metrics = await http.get("/api/v1/system/metrics")
    assert metrics.status_code == 200 and metrics.json()["samples"]
    # The proto3 JSON routes answer the same data with lowerCamelCase names.
    v1 = (await http.get(f"/v1/tasks/{task_id}")).json()["task"]
    assert v1["status"] == "TASK_STATUS_CANCELLED" and "createTime" in v1 and "create_time" not in v1


async def _count_tasks(app: App) -> int:
    return len(app.engine.tasks)


async def test_bad_input_is_a_json_status_and_changes_nothing(http_plane: App, http: Http) -> None:
    cases = [
        (
            await http.post("/v1/tasks", json={"task": {"description": "x", "priority": "URGENT"}}),
            400,
            3,
            "task.priority",
        ),
        (await http.post("/v1/tasks", json={"task": {"description": ""}}), 400, 3, "task.description"),
        (
            await http.post("/api/tasks", data=b"{not json", headers={"content-type": "application/json"}),
            400,
            3,
            "body",
        ),
        (
            await http.post("/v1/tasks", json={"task": {"description": "x", "colour": "red"}}),
            400,
            3,
            "colour",
        ),
        (await http.get("/v1/tasks", params={"page_size": -1}), 400, 3, "page_size"),
        (await http.get("/v1/tasks", params={"flavour": "x"}), 400, 3, "flavour"),
        (await http.post("/api/tasks", json={"description": "x" * (5 * 1024 * 1024)}), 413, 8, ""),
    ]
    for response, http_status, code, field in cases:
        assert response.status_code == http_status, (response.status_code, response.text[:300])
        got_code, reason, fields = error_of(response)
        assert got_code == code, response.text
        assert reason, response.text
        if field:
            assert any(f == field or f.endswith(field) for f in fields), (field, response.text)
        assert response.json()["message"]
    assert await _count_tasks(http_plane) == 0
    # The guide's and the API examples' paths name the fields as their own bodies and paths do.
    alias_cases = [
        (await http.post("/api/tasks", json={"description": "x", "priority": "URGENT"}), "priority"),
        (await http.post("/api/tasks", json={"description": "x", "max_agents": "four"}), "max_agents"),
        (await http.post("/api/tasks", json={"description": "x", "max_agents": 100000}), "max_agents"),
        (await http.post("/api/tasks", json={"description": "", "type": "analysis"}), "description"),
        (await http.post("/api/tasks", json={"descripton": "x"}), "descripton"),
        (await http.post("/api/tasks", json=["x"]), "body"),
        (await http.post("/api/v1/tasks", json={"description": "x", "priority": 7}), "priority"),
        (await http.get("/api/tasks/bad$id"), "task_id"),
        (await http.get("/api/tasks/bad$id/results"), "task_id"),
        (await http.call("DELETE", "/api/v1/tasks/bad$id"), "task_id"),
        (await http.get("/api/v1/tasks", params={"page_size": "abc"}), "page_size"),
        (await http.get("/api/v1/tasks", params={"statuses": "NOPE"}), "statuses"),
        (await http.post("/api/v1/agents", json={"agent_type": "echo", "count": -1}), "count"),
        (await http.post("/api/v1/agents", json={"agent_type": "nosuch", "count": 1}), "agent_type"),
        (await http.get("/api/v1/system/metrics", params={"category": "nope"}), "category"),
        (await http.get("/health/detailed", params={"x": "1"}), "x"),
    ]
    for response, field in alias_cases:
        assert response.status_code == 400, (field, response.status_code, response.text[:300])
        code, reason, fields = error_of(response)
        assert code == 3 and reason and response.json()["message"], response.text
        assert fields == [field], (field, response.text)
    assert await _count_tasks(http_plane) == 0
    assert (await http.get("/api/v1/agents")).json().get("agents", []) == []
    missing = await http.get("/v1/tasks/t0000")
    assert missing.status_code == 404 and error_of(missing)[:2] == (5, "ERROR_REASON_TASK_NOT_FOUND")
    wrong_verb = await http.call("PUT", "/v1/tasks")
    assert wrong_verb.status_code == 405
    assert (await http.get("/no/such/route")).status_code == 404


async def test_another_users_task_is_not_found(secured_http: App, admin_http: Http) -> None:
    alice = await secured_http.access.create_user("alice@example.com", ["developer"])
    bob = await secured_http.access.create_user("bob@example.com", ["developer"])
    _, alice_key = await secured_http.storage.call(secured_http.access.issue_key_sync, alice["id"], "alice")
    _, bob_key = await secured_http.storage.call(secured_http.access.issue_key_sync, bob["id"], "bob")
    as_alice, as_bob = Http(secured_http, alice_key), Http(secured_http, bob_key)
    task_id = (await as_alice.post("/api/tasks", json={"description": "Alice's work"})).json()["task_id"]
    for path in (f"/api/tasks/{task_id}", f"/v1/tasks/{task_id}", f"/api/tasks/{task_id}/results"):
        refused = await as_bob.get(path)
        assert refused.status_code == 404, (path, refused.text)
        assert error_of(refused)[:2] == (5, "ERROR_REASON_TASK_NOT_FOUND")
        unknown = await as_bob.get(path.replace(task_id, "t0000"))
        assert unknown.json()["message"].replace("t0000", task_id) == refused.json()["message"]
    cancel = await as_bob.post(f"/v1/tasks/{task_id}:cancel", json={})
    assert cancel.status_code == 404
    assert (await as_alice.get(f"/api/tasks/{task_id}")).json()["task"]["status"] != "TASK_STATUS_CANCELLED"
    assert (await as_bob.get("/v1/tasks")).json().get("tasks", []) == []


async def test_rate_limited_calls_are_429_with_retry_after(maos_home) -> None:
    from tests.harness.server import admin_key, make_settings, start_app

    app = await start_app(
        make_settings(
            maos_home,
            **{"security.auth": "required", "security.rate_limit.rate": 0.5, "security.rate_limit.burst": 2},
        ),
        http=True,
    )
    try:
        client = Http(app, await admin_key(app))
        replies = [await client.get("/api/v1/system/status") for _ in range(4)]
        assert [r.status_code for r in replies[:2]] == [200, 200]
        limited = replies[-1]
        assert limited.status_code == 429, limited.text
        code, reason, _ = error_of(limited)
        assert (code, reason) == (8, "ERROR_REASON_RATE_LIMITED")
        assert any(d["@type"].endswith("google.rpc.RetryInfo") for d in limited.json()["details"])
        assert int(limited.headers["Retry-After"]) >= 1
    finally:
        await app.stop(grace=1.0)
