"""The Node.js example agent (examples/node-agent/agent.mjs) against a real control plane.

Each test starts the real ``node`` process next to a real Python ``echo``
agent process and drives them through the public services: registration,
type-restricted and open scheduling, progress checkpoints, retryable and
permanent failures, cancellation and drain. Voting and resuming after a
reconnect are driven by a small fake AgentGateway (the control plane does not
send VoteRequest yet, and a broken stream is easiest to script there).

Node.js or the npm packages of package.json missing: skipped, or failed
under CI (``tests.harness.services.fail_or_skip``).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import duration_pb2

from agent_sdk.proto.maos.v1 import agent_gateway_pb2 as gw
from agent_sdk.proto.maos.v1 import agent_gateway_pb2_grpc as gw_grpc
from agent_sdk.proto.maos.v1 import agent_service_pb2 as agents_pb
from agent_sdk.proto.maos.v1 import enums_pb2 as enums
from agent_sdk.proto.maos.v1 import messages_pb2 as msgs
from agent_sdk.proto.maos.v1 import task_service_pb2 as tasks_pb
from controlplane.app import App
from tests.harness.server import Stubs, wait_for, wait_for_agents
from tests.harness.services import fail_or_skip

pytestmark = pytest.mark.node

ROOT = Path(__file__).resolve().parents[2]
AGENT = ROOT / "examples" / "node-agent" / "agent.mjs"
NODE_TYPE = "node-upper"
RPC_TIMEOUT = 5.0
START_TIMEOUT = 30.0  # seconds a fresh agent process may take to register (Python agents import a lot)
FINISHED = (enums.TASK_STATUS_COMPLETED, enums.TASK_STATUS_FAILED, enums.TASK_STATUS_CANCELLED)


def require_node() -> str:
    """The node executable; fail or skip (fail_or_skip's policy) when Node.js or the packages are missing."""
    node = shutil.which("node")
    if node is None:
        fail_or_skip("node is not installed (install Node.js 18.3 or later)")
    for package in ("@grpc/grpc-js", "@grpc/proto-loader"):
        if not (ROOT / "node_modules" / package / "package.json").is_file():
            fail_or_skip(f"node_modules/{package} is missing: run `npm ci` in {ROOT}")
    return node


class NodeAgentProcess:
    """A running ``node examples/node-agent/agent.mjs``; stdout lines are collected, stderr goes to a file."""

    def __init__(
        self, node: str, address: str, log_path: Path, *extra: str, env: dict[str, str] | None = None
    ):
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            [
                node,
                str(AGENT),
                "--server",
                address,
                "--type",
                NODE_TYPE,
                "--capabilities",
                "text,upper",
                "--max-concurrency",
                "4",
                "--max-backoff",
                "1",
                "--log-level",
                "debug",
                *extra,
            ],
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._log,
            env={**os.environ, **(env or {})},
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read_stdout, daemon=True)
        self._reader.start()

    def _read_stdout(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            self.lines.append(raw.decode().rstrip("\n"))

    @property
    def pid(self) -> int:
        """The process id."""
        return self.process.pid

    def log(self) -> str:
        """What the agent logged on stderr so far."""
        return self.log_path.read_text(errors="replace")

    def registrations(self) -> list[str]:
        """Agent names from the ``registered agents/...`` lines on stdout."""
        return [line.split(" ", 1)[1] for line in self.lines if line.startswith("registered ")]

    async def wait_registered(self, count: int = 1, timeout: float = START_TIMEOUT) -> str:
        """Wait for the ``count``-th ``registered`` line; the agent name it names."""

        def registered() -> bool:
            if self.process.poll() is not None and len(self.registrations()) < count:
                raise AssertionError(f"the node agent exited with {self.process.returncode}:\n{self.log()}")
            return len(self.registrations()) >= count

        await wait_for(registered, timeout, interval=0.02, message=f"registration {count} of the node agent")
        return self.registrations()[count - 1]

    async def wait_exit(self, timeout: float = 15.0) -> int:
        """Wait for the process to exit; its return code."""
        await wait_for(
            lambda: self.process.poll() is not None,
            timeout,
            interval=0.02,
            message=f"the node agent to exit; its log:\n{self.log()}",
        )
        return self.process.returncode

    def stop(self) -> None:
        """Kill the process if it still runs; show its log (pytest prints it for failed tests)."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)
        self._reader.join(timeout=5)
        self._log.close()
        sys.stderr.write(f"--- node agent {self.pid} (exit {self.process.returncode}) ---\n{self.log()}")


@pytest.fixture
def node_agents(tmp_path: Path) -> Iterator[Callable[..., NodeAgentProcess]]:
    """Start Node.js example agents; all are killed at the end of the test."""
    node = require_node()
    started: list[NodeAgentProcess] = []

    def start(address: str, *extra: str, env: dict[str, str] | None = None) -> NodeAgentProcess:
        agent = NodeAgentProcess(node, address, tmp_path / f"node-agent-{len(started)}.log", *extra, env=env)
        started.append(agent)
        return agent

    yield start
    for agent in started:
        agent.stop()


@pytest.fixture
async def pair(node_agents, control_plane: App, agent_processes) -> tuple[NodeAgentProcess, str]:
    """A registered node agent and a Python echo agent on ``control_plane``: (node process, node agent name)."""
    node = node_agents(control_plane.address)
    agent_processes(control_plane.address, "echo")
    name = await node.wait_registered()
    await wait_for_agents(control_plane, 2, timeout=START_TIMEOUT)
    return node, name


# --- helpers ------------------------------------------------------------------------------


async def submit(stubs: Stubs, description: str, **fields: Any) -> str:
    """SubmitTask with a one-line description (one subtask); the task name."""
    reply = await stubs.tasks.SubmitTask(
        tasks_pb.SubmitTaskRequest(task=msgs.Task(description=description, **fields)), timeout=RPC_TIMEOUT
    )
    return reply.task.name


async def full(stubs: Stubs, name: str) -> tasks_pb.GetTaskResponse:
    """GetTask with the FULL view."""
    return await stubs.tasks.GetTask(
        tasks_pb.GetTaskRequest(name=name, view=enums.TASK_VIEW_FULL), timeout=RPC_TIMEOUT
    )


async def finished(stubs: Stubs, name: str, timeout: float = 20.0) -> tasks_pb.GetTaskResponse:
    """Wait until the task is COMPLETED, FAILED or CANCELLED; its FULL view."""

    async def done() -> tasks_pb.GetTaskResponse | None:
        reply = await full(stubs, name)
        return reply if reply.task.status in FINISHED else None

    return await wait_for(done, timeout, interval=0.05, message=f"{name} to finish")


async def output_of(stubs: Stubs, name: str) -> str:
    """The task's output from GetTaskResults."""
    reply = await stubs.tasks.GetTaskResults(tasks_pb.GetTaskResultsRequest(name=name), timeout=RPC_TIMEOUT)
    return reply.result.output


async def agent(stubs: Stubs, name: str) -> msgs.Agent:
    """GetAgent."""
    return (await stubs.agents.GetAgent(agents_pb.GetAgentRequest(name=name), timeout=RPC_TIMEOUT)).agent


def seconds(value: float) -> duration_pb2.Duration:
    """A Duration."""
    d = duration_pb2.Duration()
    d.FromNanoseconds(int(value * 1e9))
    return d


# --- against the real control plane -------------------------------------------------------


async def test_node_agent_registers_and_runs_work_of_its_type(pair, control_plane: App, stubs: Stubs) -> None:
    node, name = pair
    listed = (await stubs.agents.ListAgents(agents_pb.ListAgentsRequest(), timeout=RPC_TIMEOUT)).agents
    by_language = {a.language: a for a in listed}
    assert set(by_language) == {"node", "python"}, listed
    mine = by_language["node"]
    assert mine.name == name and mine.agent_type == NODE_TYPE
    assert list(mine.capabilities) == ["text", "upper"] and mine.max_concurrency == 4
    assert mine.pid == node.pid and mine.sdk_version and mine.hostname
    assert mine.status == enums.AGENT_STATUS_IDLE

    task = await submit(stubs, "make this loud", agent_type=NODE_TYPE)
    done = await finished(stubs, task)
    assert done.task.status == enums.TASK_STATUS_COMPLETED, done.task.failure
    assert await output_of(stubs, task) == "MAKE THIS LOUD"
    [sub] = done.subtasks
    assert sub.agent == name and sub.attempt == 0 and sub.output == "MAKE THIS LOUD"
    assert sub.has_checkpoint, (
        "the Progress checkpoint the node agent sent half way did not reach the control plane"
    )
    assert sub.progress == 1.0

    # A task that depends on another gets its result in the assignment.
    later = await submit(stubs, "then this", agent_type=NODE_TYPE, depends_on=[task])
    done = await finished(stubs, later)
    assert done.task.status == enums.TASK_STATUS_COMPLETED, done.task.failure
    assert await output_of(stubs, later) == f"THEN THIS\nbuilds on {task}: MAKE THIS LOUD"

    # Without agent_type either agent may take it: the Python echo agent echoes, the node agent upper-cases.
    echo_name = by_language["python"].name
    names = [await submit(stubs, f"open task {i}") for i in range(6)]
    for task in names:
        done = await finished(stubs, task)
        assert done.task.status == enums.TASK_STATUS_COMPLETED, done.task.failure
        [sub] = done.subtasks
        index = names.index(task)
        expected = {name: f"OPEN TASK {index}", echo_name: f"open task {index}"}
        assert sub.agent in expected, sub
        assert sub.output == expected[sub.agent]


async def test_node_agent_over_mutual_tls(node_agents, maos_home: Path, pki: Any) -> None:
    from agent_sdk.client import Client
    from agent_sdk.tls import tls_credentials
    from tests.harness.server import make_settings, start_app

    app = await start_app(make_settings(maos_home, **pki.server_settings(mutual=True)))
    try:
        address = f"127.0.0.1:{app.port}"
        refused = node_agents(address, "--tls-ca", str(pki.ca))  # no client certificate: never registers
        node = node_agents(address, *pki.client_args(mutual=True))
        await node.wait_registered()
        credentials = tls_credentials(ca=pki.ca, cert=pki.client.cert, key=pki.client.key)
        async with Client(address, credentials=credentials, timeout=RPC_TIMEOUT) as client:
            task = await client.submit_task(description="loud and private", agent_type=NODE_TYPE)
            assert (await client.wait_task(task.name, timeout=30)).status == enums.TASK_STATUS_COMPLETED
            assert (await client.get_results(task.name)).output == "LOUD AND PRIVATE"
        await wait_for(
            lambda: "ended (UNAVAILABLE" in refused.log(), 15, message="the refused node agent to retry"
        )
        assert refused.registrations() == [] and len(app.engine.sessions) == 1
    finally:
        await app.stop(grace=1.0)


async def test_retryable_failure_is_retried_and_permanent_failure_fails_the_task(
    pair, control_plane: App, stubs: Stubs
) -> None:
    node, name = pair
    retried = await submit(
        stubs,
        "fail once",
        agent_type=NODE_TYPE,
        metadata={"node_fail": "retryable"},
        retry_policy=msgs.RetryPolicy(max_retries=3),
    )
    permanent = await submit(
        stubs,
        "fail for good",
        agent_type=NODE_TYPE,
        metadata={"node_fail": "permanent"},
        retry_policy=msgs.RetryPolicy(max_retries=3),
    )

    done = await finished(stubs, retried)
    assert done.task.status == enums.TASK_STATUS_COMPLETED, done.task.failure
    [sub] = done.subtasks
    assert sub.attempt >= 1 and sub.agent == name
    assert sub.output == "FAIL ONCE"

    done = await finished(stubs, permanent)
    assert done.task.status == enums.TASK_STATUS_FAILED
    assert "node agent was asked to fail (metadata node_fail=permanent)" in done.task.failure.message
    assert done.task.failure.error_type == "PermanentError"
    [sub] = done.subtasks
    assert sub.status == enums.SUBTASK_STATUS_FAILED and sub.attempt == 0, (
        "a permanent failure is not retried"
    )
    assert f"{sub.name} attempt 0 failed (permanent, PermanentError)" in node.log()


async def test_cancelling_a_task_cancels_the_running_node_assignment(
    pair, control_plane: App, stubs: Stubs
) -> None:
    node, name = pair
    task = await submit(stubs, "slow work", agent_type=NODE_TYPE, metadata={"node_delay_ms": "60000"})

    async def running() -> msgs.Subtask | None:
        [sub] = (await full(stubs, task)).subtasks
        return sub if sub.status == enums.SUBTASK_STATUS_RUNNING else None

    sub = await wait_for(running, 10, interval=0.05, message="the node agent to start the subtask")
    assert sub.agent == name
    await stubs.tasks.CancelTask(tasks_pb.CancelTaskRequest(name=task, reason="test"), timeout=RPC_TIMEOUT)
    done = await finished(stubs, task)
    assert done.task.status == enums.TASK_STATUS_CANCELLED
    await wait_for(
        lambda: f"cancelling {sub.name}" in node.log(),
        10,
        interval=0.05,
        message="the node agent to log the cancellation",
    )
    await wait_for(
        lambda: f"work on {sub.name} stopped" in node.log(),
        10,
        interval=0.05,
        message="the node agent to stop the work",
    )

    # The slot is free again and the agent still works.
    await wait_for(lambda: not _running_on(control_plane, name), 10, message="the node agent to hold nothing")
    again = await submit(stubs, "after cancel", agent_type=NODE_TYPE)
    done = await finished(stubs, again)
    assert done.task.status == enums.TASK_STATUS_COMPLETED, done.task.failure
    assert node.process.poll() is None


async def test_node_agents_answer_and_vote_in_a_consensus(
    node_agents, control_plane: App, stubs: Stubs
) -> None:
    """Three Node.js agents produce the candidates and vote on them through the real control plane."""
    nodes = [node_agents(control_plane.address) for _ in range(3)]
    for node in nodes:
        await node.wait_registered()
    name = await submit(
        stubs,
        "pick a deployment strategy",
        agent_type=NODE_TYPE,
        consensus=msgs.ConsensusPolicy(required=True, threshold=0.6),
    )
    reply = await finished(stubs, name, timeout=30)
    assert reply.task.status == enums.TASK_STATUS_COMPLETED, reply.task.failure
    record = reply.consensus
    assert record.outcome == enums.CONSENSUS_OUTCOME_REACHED
    assert len({c.agent for c in record.candidates}) == 3
    assert len(record.votes) == 3 and all(v.confidence == pytest.approx(0.9) for v in record.votes)
    assert await output_of(stubs, name) == "PICK A DEPLOYMENT STRATEGY"


async def test_node_agent_joins_with_a_join_token_and_reconnects_with_its_credential(
    node_agents, secured: App
) -> None:
    """MAOS_JOIN_TOKEN: the node agent joins a control plane that requires credentials, runs work, and
    reconnects with the credential it got (the single-use token is spent by then)."""
    from agent_sdk.client import Client
    from tests.harness.server import admin_key

    async with Client(secured.address, token=await admin_key(secured)) as admin:
        created = await admin.create_join_token([NODE_TYPE], max_uses=1)
        # A token bound to a type the server's registry does not know lets its agents claim no
        # capability beyond the type itself (which is what typed work needs).
        node = node_agents(
            secured.address, "--capabilities", "", env={"MAOS_JOIN_TOKEN": created.token, "MAOS_TOKEN": ""}
        )
        name = await node.wait_registered()
        agent_id = name.removeprefix("agents/")
        [token] = await admin.list_join_tokens()
        assert token.uses == 1
        [key] = await admin.list_api_keys(user="joined-agents")
        assert key.display_name == name

        task = await admin.submit_task(description="joined from node", agent_type=NODE_TYPE)
        assert (await admin.wait_task(task.name, timeout=20)).status == enums.TASK_STATUS_COMPLETED
        assert (await admin.get_results(task.name)).output == "JOINED FROM NODE"

        secured.engine.sessions[agent_id].close()  # the control plane ends the stream: the agent reconnects
        assert await node.wait_registered(2) == name
        assert node.process.poll() is None and (await admin.list_join_tokens())[0].uses == 1

        await admin.revoke_api_key(key.name)  # its next connection is refused: the agent exits 1
        secured.engine.sessions[agent_id].close()
        assert await node.wait_exit() == 1
        assert "UNAUTHENTICATED" in node.log()


def _running_on(app: App, name: str) -> set[Any]:
    session = app.engine.sessions.get(name.removeprefix("agents/"))
    return set(session.running) if session is not None else set()


async def test_drain_finishes_running_work_then_the_process_exits_0(
    pair, control_plane: App, stubs: Stubs
) -> None:
    node, name = pair
    task = await submit(stubs, "finish me", agent_type=NODE_TYPE, metadata={"node_delay_ms": "1500"})
    await wait_for(
        lambda: _running_on(control_plane, name), 10, interval=0.02, message="the node agent to start"
    )

    reply = await stubs.agents.DrainAgent(
        agents_pb.DrainAgentRequest(name=name, grace=seconds(20)), timeout=RPC_TIMEOUT
    )
    assert reply.agent.status == enums.AGENT_STATUS_DRAINING
    assert await node.wait_exit(20) == 0
    done = await finished(stubs, task)
    assert done.task.status == enums.TASK_STATUS_COMPLETED, done.task.failure
    assert done.subtasks[0].agent == name and done.subtasks[0].output == "FINISH ME"
    await wait_for(
        lambda: name.removeprefix("agents/") not in control_plane.engine.sessions,
        5,
        message="the drained session to close",
    )
    assert (await agent(stubs, name)).status == enums.AGENT_STATUS_TERMINATED
    assert "drain requested" in node.log()

    # The echo agent is untouched; new node-only work waits for a node agent.
    later = await submit(stubs, "nobody to run me", agent_type=NODE_TYPE)

    async def waiting_for_a_node_agent() -> bool:
        task = (await full(stubs, later)).task
        return (
            task.status == enums.TASK_STATUS_QUEUED
            and f"no connected agent of type {NODE_TYPE}" in task.status_reason
        )

    await wait_for(waiting_for_a_node_agent, 5, message="the task to wait for a node agent")


async def test_sigterm_drains_and_exits_0(pair, control_plane: App, stubs: Stubs) -> None:
    node, name = pair
    task = await submit(stubs, "sigterm", agent_type=NODE_TYPE, metadata={"node_delay_ms": "1000"})
    await wait_for(
        lambda: _running_on(control_plane, name), 10, interval=0.02, message="the node agent to start"
    )
    os.kill(node.pid, signal.SIGTERM)
    assert await node.wait_exit(20) == 0
    done = await finished(stubs, task)
    assert done.task.status == enums.TASK_STATUS_COMPLETED, done.task.failure
    assert done.subtasks[0].output == "SIGTERM"


# --- against a scripted fake gateway ------------------------------------------------------


class FakeStream:
    """One Connect stream of the fake gateway, driven by the test."""

    END = object()

    def __init__(self) -> None:
        self.inbox: asyncio.Queue[gw.ConnectRequest | None] = asyncio.Queue()
        self.outbox: asyncio.Queue[Any] = asyncio.Queue()

    def send(self, **fields: Any) -> None:
        """Send a ConnectResponse."""
        self.outbox.put_nowait(gw.ConnectResponse(**fields))

    def abort(self, code: grpc.StatusCode, details: str) -> None:
        """End the stream with an error status."""
        self.outbox.put_nowait((code, details))

    async def receive(self, kind: str, timeout: float = 10.0) -> Any:
        """The next request of ``kind`` (others are skipped); fails if the stream ends first."""

        async def next_of_kind() -> Any:
            while True:
                request = await self.inbox.get()
                assert request is not None, f"the stream ended while waiting for {kind}"
                if request.WhichOneof("message") == kind:
                    return getattr(request, kind)

        return await asyncio.wait_for(next_of_kind(), timeout)

    async def ended(self, timeout: float = 10.0) -> None:
        """Wait until the agent half-closes the stream."""

        async def end() -> None:
            while await self.inbox.get() is not None:
                pass

        await asyncio.wait_for(end(), timeout)


class FakeGateway(gw_grpc.AgentGatewayServicer):
    """An AgentGateway whose streams the test scripts message by message."""

    def __init__(self) -> None:
        self.streams: asyncio.Queue[FakeStream] = asyncio.Queue()

    async def Connect(self, request_iterator, context):  # the gRPC servicer signature
        stream = FakeStream()
        self.streams.put_nowait(stream)

        async def pump() -> None:
            try:
                async for request in request_iterator:
                    stream.inbox.put_nowait(request)
            finally:
                stream.inbox.put_nowait(None)

        reader = asyncio.get_running_loop().create_task(pump())
        try:
            while True:
                item = await stream.outbox.get()
                if item is FakeStream.END:
                    return
                if isinstance(item, tuple):
                    await context.abort(*item)
                yield item
        finally:
            reader.cancel()

    async def next_stream(self, timeout: float = 10.0) -> FakeStream:
        """The next stream an agent opens."""
        return await asyncio.wait_for(self.streams.get(), timeout)


@pytest.fixture
async def fake_gateway() -> AsyncIterator[tuple[FakeGateway, str]]:
    """A fake AgentGateway on an ephemeral port: (servicer, address)."""
    server = grpc.aio.server()
    servicer = FakeGateway()
    gw_grpc.add_AgentGatewayServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield servicer, f"127.0.0.1:{port}"
    finally:
        await server.stop(grace=None)


async def test_votes_resumes_after_a_broken_stream_and_echoes_refs(fake_gateway, node_agents) -> None:
    gateway, address = fake_gateway
    node = node_agents(address, "--labels", "team=examples,zone=a")
    ref = gw.AssignmentRef(subtask="tasks/t1/subtasks/s0", attempt=2, lease_epoch=(7 << 32) | 5)

    first = await gateway.next_stream()
    register = await first.receive("register")
    assert register.language == "node" and register.agent_type == NODE_TYPE
    assert list(register.capabilities) == ["text", "upper"] and register.max_concurrency == 4
    assert dict(register.labels) == {"team": "examples", "zone": "a"}
    assert register.pid == node.pid and register.hostname and register.sdk_version
    assert not register.HasField("resume")
    first.send(
        registered=gw.Registered(
            agent="agents/fake-1",
            session_id="s1",
            heartbeat_interval=seconds(0.1),
            lease_ttl=seconds(3),
            server_version="fake",
        )
    )
    assert await node.wait_registered() == "agents/fake-1"

    # Voting: the longest candidate, confidence 0.9, proposal and round echoed.
    first.send(
        vote_request=gw.VoteRequest(
            proposal="tasks/t1/proposals/p1",
            task="tasks/t1",
            question="which?",
            round=2,
            candidates=[
                msgs.Candidate(id="a", content="short"),
                msgs.Candidate(id="b", content="the longest answer"),
                msgs.Candidate(id="c", content="middling one"),
            ],
        )
    )
    vote = await first.receive("vote")
    assert (vote.proposal, vote.candidate_id, vote.round) == ("tasks/t1/proposals/p1", "b", 2)
    assert vote.confidence == pytest.approx(0.9) and vote.rationale

    # Work in flight: heartbeats list it; progress carries a checkpoint; the ref is echoed exactly.
    first.send(
        assignment=gw.Assignment(
            ref=ref, task="tasks/t1", title="t", instructions="abcd", metadata={"node_delay_ms": "3000"}
        )
    )

    async def heartbeat_listing_ref() -> gw.Heartbeat:
        while True:
            beat = await first.receive("heartbeat")
            if list(beat.running) == [ref]:
                return beat

    beat = await asyncio.wait_for(heartbeat_listing_ref(), 10)
    assert beat.free_slots == 3 and not beat.draining
    progress = await first.receive("progress")
    assert progress.ref == ref and progress.HasField("checkpoint") and progress.fraction == 0.5
    chunk = await first.receive("output")
    assert chunk.ref == ref and chunk.sequence == 0 and chunk.text == "AB"

    # The stream breaks: the agent reconnects with backoff and resumes with the work it holds.
    assert "tasks/t1/subtasks/s0 attempt 2 completed" not in node.log()
    first.abort(grpc.StatusCode.UNAVAILABLE, "replica going away")
    second = await gateway.next_stream()
    register = await second.receive("register")
    assert register.resume.agent == "agents/fake-1" and register.resume.session_id == "s1"
    assert list(register.resume.assignments) == [ref]
    # Registered is held back until the work is done: the result, made while not registered, is
    # kept and sent once the session is resumed.
    await wait_for(
        lambda: "tasks/t1/subtasks/s0 attempt 2 completed" in node.log(),
        10,
        message="the work to finish while the agent is not registered",
    )
    second.send(
        registered=gw.Registered(
            agent="agents/fake-1",
            session_id="s2",
            heartbeat_interval=seconds(0.1),
            lease_ttl=seconds(3),
            resumed=[ref],
        )
    )
    assert await node.wait_registered(2) == "agents/fake-1"
    result = await second.receive("result")
    assert result.ref == ref and result.output == "ABCD"
    assert result.usage == msgs.TokenUsage()
    second.send(committed=gw.Committed(refs=[ref]))

    # A revoked assignment on a later resume is stopped without a report; Drain ends the stream; exit 0.
    other = gw.AssignmentRef(subtask="tasks/t2/subtasks/s0", attempt=0, lease_epoch=9)
    second.send(
        assignment=gw.Assignment(
            ref=other, task="tasks/t2", instructions="x", metadata={"node_delay_ms": "60000"}
        )
    )
    second.send(cancel=gw.Cancel(ref=other, reason="lease expired"))
    await wait_for(
        lambda: "cancelling tasks/t2/subtasks/s0" in node.log(), 10, message="the cancel to be logged"
    )
    second.send(drain=gw.Drain(grace=seconds(5), reason="test", exit=True))
    beat = await second.receive("heartbeat")
    while not beat.draining:
        beat = await second.receive("heartbeat")
    assert beat.free_slots == 0 and not beat.running
    await second.ended()
    second.outbox.put_nowait(FakeStream.END)
    assert await node.wait_exit() == 0
    assert "rejected" not in node.log()
