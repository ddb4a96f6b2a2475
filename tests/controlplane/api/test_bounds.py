"""Bounds on every caller-controlled field, through a real control plane (issue 11).

Oversized fields are refused with INVALID_ARGUMENT naming the field and the limit,
and nothing is stored; lists and results answer whatever their objects hold
(pages stop early, large outputs come in chunks); errors quote a bad value by a
short prefix only.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from agent_sdk.agent import Agent
from agent_sdk.client import Client
from agent_sdk.context import Context
from agent_sdk.proto.maos.v1 import agent_gateway_pb2 as gw
from agent_sdk.proto.maos.v1 import agent_gateway_pb2_grpc as gw_grpc
from agent_sdk.proto.maos.v1 import agent_service_pb2 as agents_pb
from agent_sdk.proto.maos.v1 import agent_service_pb2_grpc, system_service_pb2_grpc, task_service_pb2_grpc
from agent_sdk.proto.maos.v1 import enums_pb2 as enums
from agent_sdk.proto.maos.v1 import messages_pb2 as msgs
from agent_sdk.proto.maos.v1 import system_service_pb2 as system_pb
from agent_sdk.proto.maos.v1 import task_service_pb2 as tasks_pb
from controlplane.app import App
from tests.controlplane.api.test_task_service import (
    RPC_TIMEOUT,
    assert_failure,
    rpc_failure,
    running_worker,
    submit,
    task,
    wait_status,
)
from tests.harness.server import Stubs, make_settings, start_app, wait_for

INVALID = grpc.StatusCode.INVALID_ARGUMENT
INVALID_FIELD = "ERROR_REASON_INVALID_FIELD"
#: Big enough for the large messages these tests send and read.
BIG = [
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
]
MB = 1024 * 1024


class BigStubs(Stubs):
    """Stubs whose channel sends and receives messages up to 64 MiB (the server's limit decides)."""

    def __init__(self, address: str):
        self.channel = grpc.aio.insecure_channel(address, options=BIG)
        self.tasks = task_service_pb2_grpc.TaskServiceStub(self.channel)
        self.agents = agent_service_pb2_grpc.AgentServiceStub(self.channel)
        self.system = system_service_pb2_grpc.SystemServiceStub(self.channel)
        self.gateway = gw_grpc.AgentGatewayStub(self.channel)


async def _plane(home: Path, **overrides: Any) -> tuple[App, BigStubs]:
    app = await start_app(make_settings(home, **overrides))
    return app, BigStubs(app.address)


@pytest.fixture
async def plane(tmp_path: Path) -> AsyncIterator[tuple[App, BigStubs]]:
    """A control plane with the default limits."""
    app, stubs = await _plane(tmp_path / "home")
    try:
        yield app, stubs
    finally:
        await stubs.close()
        await app.stop(grace=1.0)


@pytest.fixture
async def small(tmp_path: Path) -> AsyncIterator[tuple[App, BigStubs]]:
    """A control plane with small limits, so that pages and chunks show with small objects."""
    app, stubs = await _plane(
        tmp_path / "small",
        **{
            "limits.task_context_bytes": 40_000,
            "limits.response_bytes": 100_000,
            "limits.result_bytes": 300_000,
            "limits.agent_labels_bytes": 1000,
            "limits.progress_message_bytes": 100,
            "limits.log_message_bytes": 1000,
        },
    )
    try:
        yield app, stubs
    finally:
        await stubs.close()
        await app.stop(grace=1.0)


async def all_tasks(stubs: Stubs) -> list[msgs.Task]:
    """Every task, page by page; checks that no page is empty but the last."""
    found: list[msgs.Task] = []
    token = ""
    while True:
        page = await stubs.tasks.ListTasks(tasks_pb.ListTasksRequest(page_token=token), timeout=RPC_TIMEOUT)
        found.extend(page.tasks)
        if not page.next_page_token:
            return found
        assert page.tasks
        token = page.next_page_token


# --- tasks ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "field", "limit"),
    [
        pytest.param({"context": "x" * (MB + 1)}, "task.context", "1048576", id="context"),
        pytest.param({"constraints": "é" * 40_000}, "task.constraints", "65536", id="constraints-in-bytes"),
        pytest.param(
            {"metadata": {f"k{i}": "v" * 4000 for i in range(20)}}, "task.metadata", "65536", id="metadata"
        ),
    ],
)
async def test_oversized_task_fields_are_refused_naming_field_and_limit(
    plane: tuple[App, BigStubs], fields: dict[str, Any], field: str, limit: str
) -> None:
    _, stubs = plane
    failure = await rpc_failure(
        stubs.tasks.SubmitTask(tasks_pb.SubmitTaskRequest(task=task("big", **fields)), timeout=RPC_TIMEOUT)
    )
    assert_failure(failure, INVALID, INVALID_FIELD, field)
    assert limit in failure.message and "bytes" in failure.message
    assert await all_tasks(stubs) == []  # nothing stored


async def test_batch_submit_names_the_oversized_entry(plane: tuple[App, BigStubs]) -> None:
    _, stubs = plane
    request = tasks_pb.BatchSubmitTasksRequest(
        requests=[
            tasks_pb.SubmitTaskRequest(task=task("small")),
            tasks_pb.SubmitTaskRequest(task=task("big", context="x" * (2 * MB))),
        ]
    )
    failure = await rpc_failure(stubs.tasks.BatchSubmitTasks(request, timeout=RPC_TIMEOUT))
    assert_failure(failure, INVALID, INVALID_FIELD, "requests[1].task.context")
    assert await all_tasks(stubs) == []


async def test_list_tasks_pages_by_size(small: tuple[App, BigStubs]) -> None:
    """Six tasks of 30 KB context: a 100 KB response budget holds three, the rest comes on later pages."""
    _, stubs = small
    names = {(await submit(stubs, f"task {i}", context="c" * 30_000)).name for i in range(6)}
    first = await stubs.tasks.ListTasks(tasks_pb.ListTasksRequest(page_size=50), timeout=RPC_TIMEOUT)
    assert 1 <= len(first.tasks) < 6 and first.next_page_token
    assert first.ByteSize() <= 100_000
    assert {t.name for t in await all_tasks(stubs)} == names


async def test_list_tasks_answers_with_tasks_stored_before_the_limits(tmp_path: Path) -> None:
    """Three 6 MB tasks (a limit raised, as before it existed) are listed one per page, cut to the budget."""
    app, stubs = await _plane(tmp_path / "old", **{"limits.task_context_bytes": 8 * MB})
    try:
        for i in range(3):
            await submit(stubs, f"huge {i}", context="h" * (6 * MB))
        listed = await all_tasks(stubs)
        assert len(listed) == 3
        for t in listed:
            assert len(t.context) < 3 * MB and any("GetTask shows them" in w for w in t.warnings)
        whole = await stubs.tasks.GetTask(tasks_pb.GetTaskRequest(name=listed[0].name), timeout=RPC_TIMEOUT)
        assert len(whole.task.context) == 6 * MB
    finally:
        await stubs.close()
        await app.stop(grace=1.0)


# --- errors quote a prefix ------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("x" * 3000, id="ascii-3000"),
        pytest.param("ü" * 3000, id="two-byte-3000"),
        pytest.param("tasks/" + "\U0001f600" * 5000, id="emoji-5000"),
    ],
)
async def test_a_long_bad_name_is_invalid_argument_quoting_a_prefix(
    plane: tuple[App, BigStubs], name: str
) -> None:
    _, stubs = plane
    failure = await rpc_failure(stubs.tasks.GetTask(tasks_pb.GetTaskRequest(name=name), timeout=RPC_TIMEOUT))
    assert_failure(failure, INVALID, INVALID_FIELD, "name")
    assert "…" in failure.message and len(failure.message) < 300
    assert name[:1000] not in failure.message


async def test_unknown_long_setting_is_quoted_short(plane: tuple[App, BigStubs]) -> None:
    _, stubs = plane
    failure = await rpc_failure(
        stubs.system.GetConfig(system_pb.GetConfigRequest(keys=["k" * 20_000]), timeout=RPC_TIMEOUT)
    )
    assert_failure(failure, INVALID, INVALID_FIELD, "keys")
    assert len(failure.message) < 300


# --- agents -----------------------------------------------------------------------


async def register_failure(stubs: BigStubs, **fields: Any) -> Any:
    """Connect with one Register built from ``fields``; the stream's failure."""
    register = gw.Register(agent_type="echo", max_concurrency=1, **fields)

    async def requests() -> AsyncIterator[gw.ConnectRequest]:
        yield gw.ConnectRequest(register=register)
        await asyncio.sleep(30)  # keep the stream open: the server ends it

    async def run() -> None:
        async for _ in stubs.gateway.Connect(requests(), timeout=RPC_TIMEOUT):
            raise AssertionError("registered despite oversized fields")

    return await rpc_failure(run())


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        pytest.param({"labels": {f"l{i}": "v" * 1000 for i in range(20)}}, "register.labels", id="labels"),
        pytest.param({"hostname": "h" * 300}, "register.hostname", id="hostname"),
        pytest.param({"sdk_version": "1" * 500}, "register.sdk_version", id="sdk-version"),
    ],
)
async def test_register_with_oversized_fields_is_refused(
    plane: tuple[App, BigStubs], fields: dict[str, Any], field: str
) -> None:
    app, stubs = plane
    failure = await register_failure(stubs, **fields)
    assert_failure(failure, INVALID, INVALID_FIELD, field)
    assert "limit" in failure.message
    listed = await stubs.agents.ListAgents(
        agents_pb.ListAgentsRequest(include_terminated=True), timeout=RPC_TIMEOUT
    )
    assert list(listed.agents) == [] and not app.engine.agents


async def test_list_agents_pages_by_size(small: tuple[App, BigStubs]) -> None:
    """Agents with 900 bytes of labels each: the page stops at the response budget (100 KB)."""
    app, stubs = small
    streams = []
    for i in range(150):
        queue: asyncio.Queue[gw.ConnectRequest | None] = asyncio.Queue()
        queue.put_nowait(
            gw.ConnectRequest(
                register=gw.Register(
                    agent_type="echo", max_concurrency=1, labels={"big": f"{i:03d}" + "l" * 880}
                )
            )
        )

        async def requests(
            q: asyncio.Queue[gw.ConnectRequest | None] = queue,
        ) -> AsyncIterator[gw.ConnectRequest]:
            while (item := await q.get()) is not None:
                yield item

        call = stubs.gateway.Connect(requests())
        await call.read()  # registered
        streams.append((queue, call))
    try:
        page = await stubs.agents.ListAgents(agents_pb.ListAgentsRequest(page_size=1000), timeout=RPC_TIMEOUT)
        assert 1 <= len(page.agents) < 150 and page.next_page_token and page.ByteSize() <= 100_000
        seen = {a.name for a in page.agents}
        token = page.next_page_token
        while token:
            page = await stubs.agents.ListAgents(
                agents_pb.ListAgentsRequest(page_size=1000, page_token=token), timeout=RPC_TIMEOUT
            )
            seen |= {a.name for a in page.agents}
            token = page.next_page_token
        assert len(seen) == 150
    finally:
        for queue, call in streams:
            queue.put_nowait(None)
            call.cancel()


# --- results ----------------------------------------------------------------------


class BigAnswer(Agent):
    """Answers with ``metadata.size`` characters of ``metadata.char`` and reports long progress first."""

    agent_type = "echo"
    capabilities = ["*"]

    async def handle(self, ctx: Context) -> str:
        """The long answer."""
        meta = dict(ctx.assignment.metadata)
        ctx.progress(0.5, "p" * 10_000)
        for i in range(int(meta.get("log_lines", "0"))):
            ctx.log.info("line %d %s", i, "L" * 10_000)
        return meta.get("char", "a") * int(meta["size"])


async def test_an_oversized_result_fails_its_subtask_and_results_stay_readable(
    small: tuple[App, BigStubs],
) -> None:
    app, stubs = small
    async with running_worker(BigAnswer(), app.address):
        created = await submit(stubs, "too much", max_agents=1, metadata={"size": "400000"})
        final = await wait_status(stubs, created.name, enums.TASK_STATUS_FAILED)
    assert "limits.result_bytes" in final.failure.message and "300000" in final.failure.message
    reply = await stubs.tasks.GetTaskResults(
        tasks_pb.GetTaskResultsRequest(name=created.name), timeout=RPC_TIMEOUT
    )
    assert reply.result.status == enums.TASK_STATUS_FAILED
    assert len(reply.result.output) < 300_000


async def test_a_large_output_is_read_in_chunks(small: tuple[App, BigStubs], tmp_path: Path) -> None:
    """A 250,000-character output of 2-byte characters (500 KB) under a 100 KB budget: chunks, then whole."""
    app, stubs = small
    async with running_worker(BigAnswer(), app.address):
        created = await submit(stubs, "large", max_agents=1, metadata={"size": "125000", "char": "é"})
        await wait_status(stubs, created.name, enums.TASK_STATUS_COMPLETED)
        subtasks = await stubs.tasks.GetTask(
            tasks_pb.GetTaskRequest(name=created.name, view=enums.TASK_VIEW_FULL)
        )
        assert all(len(s.progress_message.encode()) <= 100 for s in subtasks.subtasks)  # progress text cut
    request = tasks_pb.GetTaskResultsRequest(name=created.name)
    first = await stubs.tasks.GetTaskResults(request, timeout=RPC_TIMEOUT)
    assert first.output_size == 250_000 and first.next_output_offset and first.ByteSize() <= 100_000
    chunks, offset = [first.result.output], first.next_output_offset
    while offset:
        chunk = await stubs.tasks.GetTaskResults(
            tasks_pb.GetTaskResultsRequest(name=created.name, output_offset=offset), timeout=RPC_TIMEOUT
        )
        assert chunk.output_offset == offset and not chunk.result.subtasks
        chunks.append(chunk.result.output)
        offset = chunk.next_output_offset
    assert "".join(chunks) == "é" * 125_000
    client = Client(app.address)
    try:
        assert (await client.get_results(created.name)).output == "é" * 125_000
    finally:
        await client.close()
    inside = await rpc_failure(
        stubs.tasks.GetTaskResults(
            tasks_pb.GetTaskResultsRequest(name=created.name, output_offset=1), timeout=RPC_TIMEOUT
        )
    )
    assert_failure(inside, INVALID, INVALID_FIELD, "output_offset")
    past = await rpc_failure(
        stubs.tasks.GetTaskResults(
            tasks_pb.GetTaskResultsRequest(name=created.name, output_offset=10**9), timeout=RPC_TIMEOUT
        )
    )
    assert_failure(past, INVALID, INVALID_FIELD, "output_offset")
    negative = await rpc_failure(
        stubs.tasks.GetTaskResults(
            tasks_pb.GetTaskResultsRequest(name=created.name, max_output_bytes=-1), timeout=RPC_TIMEOUT
        )
    )
    assert_failure(negative, INVALID, INVALID_FIELD, "max_output_bytes")
    small_chunk = await stubs.tasks.GetTaskResults(
        tasks_pb.GetTaskResultsRequest(name=created.name, max_output_bytes=1001), timeout=RPC_TIMEOUT
    )
    assert small_chunk.result.output == "é" * 500 and small_chunk.next_output_offset == 1000


async def test_cli_task_results_prints_a_chunked_output_whole(
    small: tuple[App, BigStubs], tmp_path: Path
) -> None:
    from tests.cli.conftest import Maos

    app, stubs = small
    async with running_worker(BigAnswer(), app.address):
        created = await submit(stubs, "large", max_agents=1, metadata={"size": "260000", "char": "z"})
        await wait_status(stubs, created.name, enums.TASK_STATUS_COMPLETED)
    maos = Maos(app.address, tmp_path / "cli-home")
    result = await maos("-o", "json", "task", "results", created.name)
    assert result.exit_code == 0, result.output
    assert "z" * 260_000 in result.stdout


# --- small free-text fields -----------------------------------------------------------


async def test_free_text_fields_are_bounded(plane: tuple[App, BigStubs]) -> None:
    """Reasons, descriptions and display names: INVALID_ARGUMENT naming the field, nothing changed."""
    from agent_sdk.proto.maos.v1 import access_service_pb2 as access_pb
    from agent_sdk.proto.maos.v1 import access_service_pb2_grpc as access_grpc
    from agent_sdk.proto.maos.v1 import checkpoint_service_pb2 as checkpoints_pb
    from agent_sdk.proto.maos.v1 import checkpoint_service_pb2_grpc as checkpoints_grpc

    _, stubs = plane
    created = await submit(stubs, "to keep")
    access = access_grpc.AccessServiceStub(stubs.channel)
    checkpoints = checkpoints_grpc.CheckpointServiceStub(stubs.channel)
    calls = [
        (
            "reason",
            stubs.tasks.CancelTask(
                tasks_pb.CancelTaskRequest(name=created.name, reason="r" * 5000), timeout=RPC_TIMEOUT
            ),
        ),
        (
            "display_name",
            checkpoints.CreateCheckpoint(
                checkpoints_pb.CreateCheckpointRequest(display_name="d" * 300), timeout=RPC_TIMEOUT
            ),
        ),
        (
            "description",
            checkpoints.CreateCheckpoint(
                checkpoints_pb.CreateCheckpointRequest(description="d" * 5000), timeout=RPC_TIMEOUT
            ),
        ),
        (
            "role.description",
            access.CreateRole(
                access_pb.CreateRoleRequest(
                    role=msgs.Role(name="roles/wordy", description="w" * 5000, permissions=["task:view"])
                ),
                timeout=RPC_TIMEOUT,
            ),
        ),
        (
            "api_key.display_name",
            access.CreateApiKey(
                access_pb.CreateApiKeyRequest(
                    api_key=msgs.ApiKey(user="users/admin", display_name="k" * 300)
                ),
                timeout=RPC_TIMEOUT,
            ),
        ),
        (
            "labels",
            stubs.agents.SpawnAgents(
                agents_pb.SpawnAgentsRequest(agent_type="echo", labels={"l": "v" * 20_000}),
                timeout=RPC_TIMEOUT,
            ),
        ),
    ]
    for field, call in calls:
        failure = await rpc_failure(call)
        assert_failure(failure, INVALID, INVALID_FIELD, field)
        assert "bytes; the limit is" in failure.message
    task_now = await stubs.tasks.GetTask(tasks_pb.GetTaskRequest(name=created.name), timeout=RPC_TIMEOUT)
    assert task_now.task.status != enums.TASK_STATUS_CANCELLED
    listed = await checkpoints.ListCheckpoints(checkpoints_pb.ListCheckpointsRequest(), timeout=RPC_TIMEOUT)
    assert [c for c in listed.checkpoints if not c.automatic] == []
    roles = await access.ListRoles(access_pb.ListRolesRequest(), timeout=RPC_TIMEOUT)
    assert "roles/wordy" not in {r.name for r in roles.roles}


async def test_agent_log_lines_are_cut_and_log_pages_fit(small: tuple[App, BigStubs]) -> None:
    """150 log lines of 10 KB: each stored cut to 1,000 bytes, and a page stops at the 100 KB budget."""
    app, stubs = small
    async with running_worker(BigAnswer(), app.address):
        created = await submit(stubs, "chatty", max_agents=1, metadata={"size": "1", "log_lines": "150"})
        await wait_status(stubs, created.name, enums.TASK_STATUS_COMPLETED)

        async def logged() -> list[msgs.LogRecord]:
            found, token = [], ""
            while True:
                page = await stubs.system.ListLogs(
                    system_pb.ListLogsRequest(
                        task=created.name, contains="line", page_size=1000, page_token=token
                    ),
                    timeout=RPC_TIMEOUT,
                )
                assert page.ByteSize() <= 100_000
                found.extend(page.records)
                token = page.next_page_token
                if not token:
                    return found

        await wait_for(lambda: _count(logged, 150), message="150 log records")
    first = await stubs.system.ListLogs(
        system_pb.ListLogsRequest(task=created.name, contains="line", page_size=1000), timeout=RPC_TIMEOUT
    )
    assert 1 <= len(first.records) < 150 and first.next_page_token
    records = await logged()
    assert all(len(r.message.encode()) <= 1000 and r.message.endswith("…") for r in records)


async def _count(read: Any, wanted: int) -> bool:
    return len(await read()) >= wanted


async def test_agents_registered_before_the_label_limit_are_listed_without_their_labels(
    tmp_path: Path,
) -> None:
    """Agents with 5 MB of labels, kept after they left: ListAgents still answers, leaving those labels out."""
    home = tmp_path / "labels"
    app, stubs = await _plane(home, **{"limits.agent_labels_bytes": 6 * MB})
    try:
        for i in range(4):
            queue: asyncio.Queue[gw.ConnectRequest | None] = asyncio.Queue()
            queue.put_nowait(
                gw.ConnectRequest(
                    register=gw.Register(
                        agent_type="echo", max_concurrency=1, labels={"big": f"{i}" + "l" * (5 * MB)}
                    )
                )
            )

            async def requests(
                q: asyncio.Queue[gw.ConnectRequest | None] = queue,
            ) -> AsyncIterator[gw.ConnectRequest]:
                while (item := await q.get()) is not None:
                    yield item

            call = stubs.gateway.Connect(requests())
            await call.read()  # registered
            queue.put_nowait(None)  # the agent leaves
            while await call.read() is not grpc.aio.EOF:
                pass
        await app.engine.committer.durable()
    finally:
        await stubs.close()
        await app.stop(grace=1.0)
    app, stubs = await _plane(home)  # the default limit, 16 KiB
    try:
        listed, token = [], ""
        while True:
            page = await stubs.agents.ListAgents(
                agents_pb.ListAgentsRequest(include_terminated=True, page_token=token), timeout=RPC_TIMEOUT
            )
            listed.extend(page.agents)
            token = page.next_page_token
            if not token:
                break
        assert len(listed) == 4
        assert all(dict(a.labels) == {"maos.labels-omitted": f"{5 * MB + 4} bytes"} for a in listed)
    finally:
        await stubs.close()
        await app.stop(grace=1.0)
