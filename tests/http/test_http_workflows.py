"""Batches, templates and webhooks over HTTP: the same services, found by their google.api.http rules."""

from __future__ import annotations

from controlplane.app import App
from tests.harness.server import wait_for_agents
from tests.http.conftest import Http


async def test_a_batch_over_http(http_plane: App, http: Http, agent_processes) -> None:
    agent_processes(http_plane.address, "echo")
    await wait_for_agents(http_plane, 1)
    created = await http.post("/v1/batches", json={"displayName": "nightly"})
    assert created.status_code == 200, created.text
    name = created.json()["batch"]["name"]
    assert name.startswith("batches/")
    for description in ("first part", "second part"):
        added = await http.post(f"/v1/{name}/tasks", json={"task": {"description": description}})
        assert added.status_code == 200, added.text
    submitted = await http.post(f"/v1/{name}:submit", json={})
    assert submitted.status_code == 200, submitted.text
    assert len(submitted.json()["tasks"]) == 2
    shown = await http.get(f"/v1/{name}")
    assert shown.status_code == 200 and shown.json()["batch"]["name"] == name
    listed = await http.get("/v1/batches")
    assert [b["name"] for b in listed.json()["batches"]] == [name]
    missing = await http.get("/v1/batches/nope")
    assert missing.status_code == 404 and missing.json()["details"][0]["reason"].endswith("NOT_FOUND")


async def test_a_template_over_http(http_plane: App, http: Http) -> None:
    created = await http.post(
        "/v1/templates",
        json={"template": {"displayName": "api", "task": {"description": "Build an API in {language}"}}},
    )
    assert created.status_code == 200, created.text
    name = created.json()["template"]["name"]
    task = await http.post(f"/v1/{name}:submit", json={"params": {"language": "python"}})
    assert task.status_code == 200, task.text
    assert task.json()["task"]["description"] == "Build an API in python"
    refused = await http.post(f"/v1/{name}:submit", json={"params": {}})
    assert refused.status_code == 400 and "language" in refused.json()["message"]
    assert (await http.call("DELETE", f"/v1/{name}")).status_code == 200
    assert (await http.get(f"/v1/{name}")).status_code == 404


async def test_webhooks_over_http(http: Http) -> None:
    listed = await http.get("/v1/webhooks")
    assert listed.status_code == 200 and listed.json().get("webhooks", []) == []
    refused = await http.post(
        "/v1/webhooks", json={"webhook": {"url": "http://127.0.0.1:9/hook", "events": ["task.completed"]}}
    )
    assert refused.status_code == 400 and "private" in refused.json()["message"]
