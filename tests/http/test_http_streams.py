"""Server streams as Server-Sent Events: `id:` lines, resumed with Last-Event-ID after a disconnect."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

import pytest
import requests

from controlplane.app import App
from tests.harness.server import wait_for, wait_for_agents
from tests.http.conftest import Http, error_of


def read_events(
    url: str, headers: dict[str, str], enough: Callable[[list[dict[str, Any]]], bool], opened: Any = None
) -> list[dict[str, Any]]:
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


async def test_watch_events_resumes_after_a_disconnect_with_last_event_id(
    http_plane: App, http: Http
) -> None:
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
    after = await asyncio.to_thread(
        read_events, url, {"Last-Event-ID": last_id}, lambda events: second in _tasks_in(events)
    )
    assert second in _tasks_in(after)
    seen_before = {e["id"] for e in before}
    assert not seen_before & {e["id"] for e in after}, "events before Last-Event-ID came again"
    # A Last-Event-ID the server does not know is the RPC's own refusal, as JSON with its HTTP status.
    stale = await http.get("/v1/events:watch", headers={"Last-Event-ID": "not-an-id"})
    assert stale.status_code == 400 and error_of(stale)[0] == 3


async def test_watch_task_streams_until_the_task_finishes(
    http_plane: App, http: Http, agent_processes
) -> None:
    agent_processes(http_plane.address, "echo")
    await wait_for_agents(http_plane, 1)
    name = (await http.post("/v1/tasks", json={"task": {"description": "watch me"}})).json()["task"]["name"]
    finished = ("TASK_STATUS_COMPLETED", "TASK_STATUS_FAILED", "TASK_STATUS_CANCELLED")
    events = await asyncio.to_thread(
        read_events,
        f"{http.base}/v1/{name}:watch",
        {},
        lambda events: bool(events) and events[-1]["data"]["task"]["status"] in finished,
    )
    assert events[0]["data"]["task"]["name"] == name  # the snapshot first
    assert events[-1]["data"]["task"]["status"] == "TASK_STATUS_COMPLETED"
    assert all(e.get("id") for e in events[1:])  # every change has an event id
    missing = await http.get("/v1/tasks/t0000:watch")
    assert missing.status_code == 404 and error_of(missing)[1] == "ERROR_REASON_TASK_NOT_FOUND"


async def test_tail_logs_needs_a_key_when_access_control_is_on(secured_http: App, admin_http: Http) -> None:
    bare = await asyncio.to_thread(requests.get, f"{admin_http.base}/v1/logs:tail", timeout=10)
    assert bare.status_code == 401 and error_of(bare)[1] == "ERROR_REASON_UNAUTHENTICATED"
    # With the key the stream opens (200, text/event-stream) and the caller leaves.
    assert (
        await asyncio.to_thread(
            read_events, f"{admin_http.base}/v1/logs:tail?tail=5", admin_http.headers(), lambda events: True
        )
        == []
    )


def _in_thread(loop: asyncio.AbstractEventLoop, flag: asyncio.Event) -> Any:
    """An object whose ``set()`` sets ``flag`` from another thread."""
    return type("Opened", (), {"set": lambda self: loop.call_soon_threadsafe(flag.set)})()


async def test_watch_task_resumes_over_sse_with_exactly_the_missed_changes(
    http_plane: App, http: Http, agent_processes
) -> None:
    name = (await http.post("/v1/tasks", json={"task": {"description": "resume over http"}})).json()["task"][
        "name"
    ]
    loop = asyncio.get_running_loop()
    # The reference: every change of the task, on a stream that is never interrupted.
    reference_open = asyncio.Event()
    reference = asyncio.create_task(
        asyncio.to_thread(
            read_events,
            f"{http.base}/v1/events:watch?task={name}",
            {},
            lambda events: (
                bool(events) and events[-1]["data"]["event"].get("toStatus") == "TASK_STATUS_COMPLETED"
            ),
            _in_thread(loop, reference_open),
        )
    )
    watch_open = asyncio.Event()
    watch = asyncio.create_task(
        asyncio.to_thread(
            read_events,
            f"{http.base}/v1/{name}:watch",
            {},
            lambda events: len(events) >= 2,
            _in_thread(loop, watch_open),
        )
    )
    await asyncio.wait_for(asyncio.gather(reference_open.wait(), watch_open.wait()), 10)
    await wait_for(lambda: http_plane.engine.event_listeners, 5, message="the reference stream's listener")
    agent_processes(http_plane.address, "echo")  # the task waited for an agent until now
    before = await asyncio.wait_for(watch, 30)  # the snapshot and one change; then the client leaves
    assert "id" not in before[0] and before[1]["id"]
    everything = [
        e["id"]
        for e in await asyncio.wait_for(reference, 30)
        if e["data"]["event"]["type"] not in ("EVENT_TYPE_SUBTASK_PROGRESS", "EVENT_TYPE_SUBTASK_OUTPUT")
    ]
    # The task finished while nobody watched it: the resumed stream sends what was missed, then ends.
    after = await asyncio.to_thread(
        read_events, f"{http.base}/v1/{name}:watch", {"Last-Event-ID": before[1]["id"]}, lambda events: False
    )
    assert [e["id"] for e in after] == everything[everything.index(before[1]["id"]) + 1 :]
    assert after[-1]["data"]["event"]["toStatus"] == "TASK_STATUS_COMPLETED"


async def test_tail_logs_resumes_over_sse_after_the_last_record(http_plane: App, http: Http) -> None:
    log = logging.getLogger("controlplane.sseprobe")
    url = f"{http.base}/v1/logs:tail?contains=sse-probe"
    loop = asyncio.get_running_loop()
    opened = asyncio.Event()
    reader = asyncio.create_task(
        asyncio.to_thread(read_events, url, {}, lambda events: len(events) >= 2, _in_thread(loop, opened))
    )
    await asyncio.wait_for(opened.wait(), 10)
    await wait_for(lambda: http_plane.logbook.subscribers, 5, message="the tail's subscriber")
    for n in range(2):
        log.warning("sse-probe %d", n)
    before = await asyncio.wait_for(reader, 10)
    assert [e["data"]["record"]["message"] for e in before] == ["sse-probe 0", "sse-probe 1"]
    assert [e["id"] for e in before] == [e["data"]["record"]["id"] for e in before]
    for n in range(2, 5):  # written while disconnected
        log.warning("sse-probe %d", n)
    after = await asyncio.to_thread(
        read_events, url, {"Last-Event-ID": before[-1]["id"]}, lambda events: len(events) >= 3
    )
    assert [e["data"]["record"]["message"] for e in after] == ["sse-probe 2", "sse-probe 3", "sse-probe 4"]


@pytest.mark.parametrize("path", ["/v1/events:watch", "/v1/logs:tail", "/v1/tasks/{task}:watch"])
async def test_a_bad_last_event_id_is_a_400_status(http_plane: App, http: Http, path: str) -> None:
    task = (await http.post("/v1/tasks", json={"task": {"description": "x"}})).json()["task"]["name"]
    path = path.replace("tasks/{task}", task)
    field = "after_record_id" if "logs" in path else "after_event_id"
    malformed = await http.get(path, headers={"Last-Event-ID": "last tuesday"})
    assert malformed.status_code == 400 and error_of(malformed) == (3, "ERROR_REASON_INVALID_FIELD", [field])
    incarnation = http_plane.engine.incarnation
    unsent = await http.get(path, headers={"Last-Event-ID": f"{incarnation}.99999999"})
    assert unsent.status_code == 400 and error_of(unsent) == (3, "ERROR_REASON_INVALID_FIELD", [field])
    lost = await http.get(path, headers={"Last-Event-ID": f"{incarnation + 1}.1"})
    assert lost.status_code == 400 and error_of(lost)[:2] == (9, "ERROR_REASON_RESUME_POINT_LOST")
    assert "restarted" in lost.json()["message"]
