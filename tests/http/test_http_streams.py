"""Server streams as Server-Sent Events: `id:` lines, resumed with Last-Event-ID after a disconnect."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import requests

from controlplane.app import App
from tests.harness.server import wait_for_agents
from tests.http.conftest import Http, error_of


def read_events(url: str, headers: dict[str, str], enough: Callable[[list[dict[str, Any]]], bool],
                opened: Any = None) -> list[dict[str, Any]]:
    """Read SSE events (``{"id", "event", "data"}``) until ``enough(events)``, then disconnect."""
    events: list[dict[str, Any]] = []
    with requests.get(url, headers=headers, stream=True, timeout=(5, 30)) as response:
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/event-stream")
        if opened is not None:
            opened.set()
        if enough(events):
            return events
        current: dict[str, Any] = {}
        for line in response.iter_lines(decode_unicode=True):
            if line.startswith(":"):
                continue
            if not line:
                if current:
                    events.append(current)
                    current = {}
                    if enough(events):
                        return events
                continue
            key, _, value = line.partition(": ")
            current[key] = json.loads(value) if key == "data" else value
    return events


def _tasks_in(events: list[dict[str, Any]]) -> set[str]:
    return {e["data"]["event"].get("task", "") for e in events if "data" in e}


async def test_watch_events_resumes_after_a_disconnect_with_last_event_id(http_plane: App, http: Http) -> None:
    url = f"{http.base}/v1/events:watch"
    opened = asyncio.Event()
    loop = asyncio.get_running_loop()
    thread_opened = type("Opened", (), {"set": lambda self: loop.call_soon_threadsafe(opened.set)})()
    reader = asyncio.create_task(asyncio.to_thread(read_events, url, {}, bool, thread_opened))
    await asyncio.wait_for(opened.wait(), 10)
    # Submit until the stream has shown an event (the watch may subscribe just after answering 200).
    for _ in range(100):
        await http.post("/v1/tasks", json={"task": {"description": "one"}})
        await asyncio.wait({reader}, timeout=0.2)
        if reader.done():
            break
    before = reader.result()
    assert all(e.get("id") for e in before), before  # every event carries its id
    last_id = before[-1]["id"]
    # While disconnected, another task is submitted: the resumed stream must deliver its events.
    second = (await http.post("/v1/tasks", json={"task": {"description": "two"}})).json()["task"]["name"]
    after = await asyncio.to_thread(read_events, url, {"Last-Event-ID": last_id},
                                    lambda events: second in _tasks_in(events))
    assert second in _tasks_in(after)
    seen_before = {e["id"] for e in before}
    assert not seen_before & {e["id"] for e in after}, "events before Last-Event-ID came again"
    # A Last-Event-ID the server does not know is the RPC's own refusal, as JSON with its HTTP status.
    stale = await http.get("/v1/events:watch", headers={"Last-Event-ID": "not-an-id"})
    assert stale.status_code == 400 and error_of(stale)[0] == 3


async def test_watch_task_streams_until_the_task_finishes(http_plane: App, http: Http, agent_processes) -> None:
    agent_processes(http_plane.address, "echo")
    await wait_for_agents(http_plane, 1)
    name = (await http.post("/v1/tasks", json={"task": {"description": "watch me"}})).json()["task"]["name"]
    finished = ("TASK_STATUS_COMPLETED", "TASK_STATUS_FAILED", "TASK_STATUS_CANCELLED")
    events = await asyncio.to_thread(
        read_events, f"{http.base}/v1/{name}:watch", {},
        lambda events: bool(events) and events[-1]["data"]["task"]["status"] in finished)
    assert events[0]["data"]["task"]["name"] == name  # the snapshot first
    assert events[-1]["data"]["task"]["status"] == "TASK_STATUS_COMPLETED"
    assert all(e.get("id") for e in events[1:])  # every change has an event id
    missing = await http.get("/v1/tasks/t0000:watch")
    assert missing.status_code == 404 and error_of(missing)[1] == "ERROR_REASON_TASK_NOT_FOUND"


async def test_tail_logs_needs_a_key_when_access_control_is_on(secured_http: App, admin_http: Http) -> None:
    bare = await asyncio.to_thread(requests.get, f"{admin_http.base}/v1/logs:tail", timeout=10)
    assert bare.status_code == 401 and error_of(bare)[1] == "ERROR_REASON_UNAUTHENTICATED"
    # With the key the stream opens (200, text/event-stream) and the caller leaves.
    assert await asyncio.to_thread(read_events, f"{admin_http.base}/v1/logs:tail?tail=5",
                                   admin_http.headers(), lambda events: True) == []
