"""AgentService with real agent processes: SpawnAgents, the launcher's supervision, and process exits.

Every process a test starts is ended by the end of the test (the control
plane's launcher stops its own; ``spawned`` kills any straggler and fails
the test if one was left running).
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from agent_sdk.proto.maos.v1 import agent_service_pb2 as agents_pb
from agent_sdk.proto.maos.v1 import enums_pb2 as enums
from agent_sdk.proto.maos.v1 import messages_pb2 as msgs
from controlplane.app import App
from controlplane.launcher import Launch
from tests.controlplane.api.test_agent_service import (
    all_agents_fingerprint,
    get_agent,
    list_agents,
    subtasks_of,
    wait_agent,
)
from tests.controlplane.api.test_task_service import (
    RPC_TIMEOUT,
    assert_failure,
    results,
    rpc_failure,
    seconds,
    submit,
    wait_status,
)
from tests.harness.server import Stubs, alive, make_settings, start_app, wait_for

PROCESS_START = 20.0  # seconds a fresh Python agent process may take to register


@pytest.fixture
async def spawned(control_plane: App) -> AsyncIterator[set[int]]:
    """Pids of the launched processes (recorded by the tests); none may outlive the launcher's stop."""
    pids: set[int] = set()
    yield pids
    for launch in control_plane.launcher.launches.values():
        if launch.process is not None:
            pids.add(launch.process.pid)
    await control_plane.launcher.stop(1.0)
    leftovers = {pid for pid in pids if alive(pid)}
    for pid in leftovers:
        os.kill(pid, signal.SIGKILL)
    assert not leftovers, f"agent processes left running after the launcher stopped: {sorted(leftovers)}"


def launch_of(app: App, name: str) -> Launch:
    """The launcher's record of a registered managed agent."""
    launch = app.launcher.by_agent(name.removeprefix("agents/"))
    assert launch is not None, f"{name} is not supervised by the launcher"
    return launch


async def spawn(stubs: Stubs, agent_type: str = "echo", count: int = 1, **fields: Any) -> list[msgs.Agent]:
    """SpawnAgents; returns the agents."""
    reply = await stubs.agents.SpawnAgents(
        agents_pb.SpawnAgentsRequest(agent_type=agent_type, count=count, **fields), timeout=PROCESS_START + 5
    )
    return list(reply.agents)


async def wait_exited(launch: Launch, timeout: float = 10.0) -> int:
    """Wait until the launch's current process exited; its return code."""
    process = launch.process
    assert process is not None
    await wait_for(lambda: process.returncode is not None, timeout, message=f"process {process.pid} to exit")
    return process.returncode  # type: ignore[return-value]


async def wait_supervisor_done(launch: Launch, timeout: float = 10.0) -> None:
    """The supervisor returns only when the launch is being stopped (otherwise it restarts the process)."""
    await wait_for(
        lambda: launch.supervisor is None or launch.supervisor.done(),
        timeout,
        message=f"the supervisor of launch {launch.id} to give up",
    )


# --- SpawnAgents -------------------------------------------------------------------------


async def test_spawned_agents_register_run_work_and_are_restarted_after_sigkill(
    control_plane: App, stubs: Stubs, spawned: set[int]
) -> None:
    agents = await spawn(stubs, "echo", 2)
    assert len(agents) == 2
    spawned.update(a.pid for a in agents)
    assert len({a.name for a in agents}) == 2
    for agent in agents:
        assert agent.name.startswith("agents/"), agent
        assert agent.status == enums.AGENT_STATUS_IDLE, agent  # registered within the wait
        assert agent.managed and agent.agent_type == "echo" and agent.language == "python"
        assert agent.pid and agent.pid != os.getpid()
        fetched = await get_agent(stubs, agent.name)
        assert fetched.name == agent.name and fetched.managed and fetched.pid == agent.pid
        assert launch_of(control_plane, agent.name).process.pid == agent.pid  # type: ignore[union-attr]
    assert {a.name for a in await list_agents(stubs, agent_types=["echo"])} == {a.name for a in agents}

    submitted = await submit(stubs, "1. alpha\n2. beta")
    done = await wait_status(stubs, submitted.name, enums.TASK_STATUS_COMPLETED, enums.TASK_STATUS_FAILED)
    assert done.status == enums.TASK_STATUS_COMPLETED, done.failure
    assert "alpha" in (await results(stubs, submitted.name)).output
    assert {s.agent for s in await subtasks_of(stubs, submitted.name)} <= {a.name for a in agents}

    # SIGKILL one: the launcher starts a new process, which registers as a new agent.
    victim = agents[0]
    launch = launch_of(control_plane, victim.name)
    os.kill(victim.pid, signal.SIGKILL)
    await wait_agent(stubs, victim.name, enums.AGENT_STATUS_DISCONNECTED)

    async def replacement() -> msgs.Agent | None:
        fresh = [
            a
            for a in await list_agents(stubs, statuses=[enums.AGENT_STATUS_IDLE])
            if a.managed and a.name not in {x.name for x in agents}
        ]
        return fresh[0] if fresh else None

    new = await wait_for(replacement, PROCESS_START, interval=0.05, message="the restarted agent to register")
    spawned.add(new.pid)
    assert new.pid != victim.pid and new.agent_type == "echo"
    assert launch.restarts == 1 and launch.agent_id == new.name.removeprefix("agents/")
    assert launch.process is not None and launch.process.pid == new.pid
    assert (
        await get_agent(stubs, agents[1].name)
    ).status == enums.AGENT_STATUS_IDLE  # the other one is untouched

    # TerminateAgent on the restarted agent ends its process for good.
    reply = await stubs.agents.TerminateAgent(
        agents_pb.TerminateAgentRequest(name=new.name, grace=seconds(5)), timeout=RPC_TIMEOUT
    )
    assert reply.agent.name == new.name
    assert await wait_exited(launch) == 0  # it drained and exited by itself
    await wait_supervisor_done(launch)
    assert launch.restarts == 1 and not alive(new.pid)
    await wait_agent(stubs, new.name, enums.AGENT_STATUS_TERMINATED)
    assert control_plane.launcher.active == 1


async def test_spawn_options_idempotency_and_drain_without_restart(
    control_plane: App, stubs: Stubs, spawned: set[int]
) -> None:
    options: dict[str, Any] = {
        "capabilities": ["review"],
        "max_concurrency": 3,
        "labels": {"team": "blue", "zone": "a"},
        "request_id": "spawn-once",
    }
    [agent] = await spawn(stubs, "noop", 0, **options)  # count 0 means 1
    spawned.add(agent.pid)
    assert agent.status == enums.AGENT_STATUS_IDLE and agent.managed
    assert (
        agent.agent_type == "noop" and list(agent.capabilities) == ["review"] and agent.max_concurrency == 3
    )
    assert dict(agent.labels) == {"team": "blue", "zone": "a"}
    fetched = await get_agent(stubs, agent.name)
    assert fetched.free_slots == 3 and dict(fetched.labels) == {"team": "blue", "zone": "a"}

    # The same request_id and parameters: the same agent, nothing new launched.
    [again] = await spawn(stubs, "noop", 0, **options)
    assert again.name == agent.name and again.pid == agent.pid
    assert len(control_plane.launcher.launches) == 1
    # The same request_id with other parameters: refused, nothing launched.
    failure = await rpc_failure(
        stubs.agents.SpawnAgents(
            agents_pb.SpawnAgentsRequest(agent_type="echo", count=1, request_id="spawn-once"),
            timeout=RPC_TIMEOUT,
        )
    )
    assert_failure(
        failure, grpc.StatusCode.INVALID_ARGUMENT, "ERROR_REASON_REQUEST_ID_REUSED", field="request_id"
    )
    assert len(control_plane.launcher.launches) == 1
    assert [a.name for a in await list_agents(stubs, include_terminated=True)] == [agent.name]

    # Drained, the process exits and the launcher does not start it again.
    launch = launch_of(control_plane, agent.name)
    reply = await stubs.agents.DrainAgent(
        agents_pb.DrainAgentRequest(name=agent.name, grace=seconds(5)), timeout=RPC_TIMEOUT
    )
    assert reply.agent.status == enums.AGENT_STATUS_DRAINING
    assert await wait_exited(launch) == 0
    await wait_supervisor_done(launch)
    assert launch.restarts == 0 and launch.process is not None and launch.process.pid == agent.pid
    gone = await wait_agent(stubs, agent.name, enums.AGENT_STATUS_TERMINATED, enums.AGENT_STATUS_DISCONNECTED)
    assert not gone.assignments
    assert control_plane.launcher.active == 0
    assert [a.name for a in await list_agents(stubs, include_terminated=True)] == [agent.name]


async def test_force_terminate_of_a_spawned_sleeper_requeues_and_kills(
    control_plane: App, stubs: Stubs, spawned: set[int]
) -> None:
    [sleeper], [rescuer] = await asyncio.gather(spawn(stubs, "sleep"), spawn(stubs, "echo"))
    spawned.update((sleeper.pid, rescuer.pid))
    await stubs.agents.PauseAgent(agents_pb.PauseAgentRequest(name=rescuer.name), timeout=RPC_TIMEOUT)
    submitted = await submit(stubs, "a long nap", metadata={"sleep_seconds": "30"})
    await wait_agent(stubs, sleeper.name, enums.AGENT_STATUS_BUSY)
    await stubs.agents.ResumeAgent(agents_pb.ResumeAgentRequest(name=rescuer.name), timeout=RPC_TIMEOUT)
    launch = launch_of(control_plane, sleeper.name)

    reply = await stubs.agents.TerminateAgent(
        agents_pb.TerminateAgentRequest(name=sleeper.name, force=True), timeout=RPC_TIMEOUT
    )
    assert not reply.agent.assignments
    [sub] = await subtasks_of(stubs, submitted.name)
    assert sub.attempt == 1 and sub.agent != sleeper.name  # re-queued at once
    await wait_exited(launch, timeout=5)
    await wait_supervisor_done(launch)
    assert launch.restarts == 0 and not alive(sleeper.pid)
    done = await wait_status(stubs, submitted.name, enums.TASK_STATUS_COMPLETED, enums.TASK_STATUS_FAILED)
    assert done.status == enums.TASK_STATUS_COMPLETED, done.failure
    [sub] = await subtasks_of(stubs, submitted.name)
    assert sub.agent == rescuer.name and sub.attempt == 1
    await wait_agent(stubs, sleeper.name, enums.AGENT_STATUS_TERMINATED, enums.AGENT_STATUS_DISCONNECTED)
    assert control_plane.launcher.active == 1


async def test_terminate_ends_a_spawned_process_that_does_not_drain_within_grace(
    control_plane: App, stubs: Stubs, spawned: set[int]
) -> None:
    [agent] = await spawn(stubs, "echo")
    spawned.add(agent.pid)
    launch = launch_of(control_plane, agent.name)
    os.kill(agent.pid, signal.SIGSTOP)  # frozen: it cannot act on Drain
    try:
        reply = await stubs.agents.TerminateAgent(
            agents_pb.TerminateAgentRequest(name=agent.name, grace=seconds(0.3)), timeout=RPC_TIMEOUT
        )
        assert reply.agent.status == enums.AGENT_STATUS_DRAINING
        assert launch.process is not None and launch.process.returncode is None
        await wait_exited(launch, timeout=5)  # ended by the control plane after the grace
        await wait_supervisor_done(launch)
        assert launch.restarts == 0 and not alive(agent.pid)
        await wait_agent(stubs, agent.name, enums.AGENT_STATUS_TERMINATED, enums.AGENT_STATUS_DISCONNECTED)
    finally:
        if alive(agent.pid):
            os.kill(agent.pid, signal.SIGCONT)


# --- real unmanaged processes ------------------------------------------------------------------


async def test_sigterm_drains_an_unmanaged_agent_process(
    control_plane: App, stubs: Stubs, agent_processes
) -> None:
    sleeper = agent_processes(control_plane.address, "sleep")
    await wait_for(
        lambda: control_plane.engine.sessions, PROCESS_START, message="the agent process to register"
    )
    [agent] = await list_agents(stubs)
    assert agent.pid == sleeper.pid and not agent.managed
    submitted = await submit(stubs, "short nap", metadata={"sleep_seconds": "1", "sleep_steps": "4"})
    await wait_agent(stubs, agent.name, enums.AGENT_STATUS_BUSY)

    # SIGTERM: the agent says it is draining in its heartbeat, finishes its work and exits.
    sleeper.signal(signal.SIGTERM)
    draining = await wait_agent(stubs, agent.name, enums.AGENT_STATUS_DRAINING)
    assert draining.free_slots == 0 and len(draining.assignments) == 1
    done = await wait_status(stubs, submitted.name, enums.TASK_STATUS_COMPLETED, enums.TASK_STATUS_FAILED)
    assert done.status == enums.TASK_STATUS_COMPLETED
    [sub] = await subtasks_of(stubs, submitted.name)
    assert sub.attempt == 0 and sub.agent == agent.name
    await wait_for(lambda: sleeper.process.poll() is not None, 10, message="the agent process to exit")
    assert sleeper.process.returncode == 0
    await wait_agent(stubs, agent.name, enums.AGENT_STATUS_TERMINATED)


# --- bad input --------------------------------------------------------------------------------


async def test_spawn_unknown_type_lists_the_known_ones(control_plane: App, stubs: Stubs) -> None:
    before = await all_agents_fingerprint(stubs)
    failure = await rpc_failure(
        stubs.agents.SpawnAgents(
            agents_pb.SpawnAgentsRequest(agent_type="wizard", count=1), timeout=RPC_TIMEOUT
        )
    )
    assert_failure(
        failure, grpc.StatusCode.INVALID_ARGUMENT, "ERROR_REASON_UNKNOWN_AGENT_TYPE", field="agent_type"
    )
    assert "wizard" in failure.message
    for known in ("echo", "noop", "sleep"):
        assert known in failure.message, failure.message
    assert not control_plane.launcher.launches
    assert await all_agents_fingerprint(stubs) == before


async def test_spawn_rejects_bad_requests(control_plane: App, stubs: Stubs) -> None:
    bad = [
        (agents_pb.SpawnAgentsRequest(agent_type="echo", count=101), "ERROR_REASON_INVALID_FIELD", "count"),
        (agents_pb.SpawnAgentsRequest(agent_type="echo", count=1000), "ERROR_REASON_INVALID_FIELD", "count"),
        (
            agents_pb.SpawnAgentsRequest(agent_type="echo", count=1, request_id="not a uuid!"),
            "ERROR_REASON_INVALID_FIELD",
            "request_id",
        ),
        (
            agents_pb.SpawnAgentsRequest(agent_type="", count=1),
            "ERROR_REASON_UNKNOWN_AGENT_TYPE",
            "agent_type",
        ),
    ]
    for request, reason, field in bad:
        failure = await rpc_failure(stubs.agents.SpawnAgents(request, timeout=RPC_TIMEOUT))
        assert_failure(failure, grpc.StatusCode.INVALID_ARGUMENT, reason, field=field)
    assert not control_plane.launcher.launches
    assert not await list_agents(stubs, include_terminated=True)


@pytest.fixture
async def small_limit(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[App]:
    """A control plane that may supervise ``request.param`` agent processes."""
    app = await start_app(make_settings(tmp_path / "home", **{"system.max_agents": request.param}))
    try:
        yield app
    finally:
        await app.stop(grace=1.0)


@pytest.mark.parametrize("small_limit", [1], indirect=True)
async def test_spawn_over_max_agents_is_resource_exhausted(small_limit: App) -> None:
    stubs = Stubs(small_limit.address)
    try:
        failure = await rpc_failure(
            stubs.agents.SpawnAgents(
                agents_pb.SpawnAgentsRequest(agent_type="echo", count=2), timeout=RPC_TIMEOUT
            )
        )
        assert_failure(failure, grpc.StatusCode.RESOURCE_EXHAUSTED, "ERROR_REASON_LIMIT_EXCEEDED")
        assert "max_agents" in failure.message
        assert not small_limit.launcher.launches
        assert not await list_agents(stubs, include_terminated=True)
    finally:
        await stubs.close()


@pytest.mark.parametrize("small_limit", [3], indirect=True)
async def test_concurrent_spawns_cannot_overshoot_max_agents(small_limit: App) -> None:
    stubs = Stubs(small_limit.address)
    try:
        calls = [
            stubs.agents.SpawnAgents(
                agents_pb.SpawnAgentsRequest(agent_type="noop", count=2), timeout=PROCESS_START + 5
            )
            for _ in range(2)
        ]
        outcomes = await asyncio.gather(*calls, return_exceptions=True)
        refused = [o for o in outcomes if isinstance(o, grpc.aio.AioRpcError)]
        accepted = [o for o in outcomes if not isinstance(o, BaseException)]
        assert len(accepted) == 1 and len(refused) == 1, outcomes
        assert refused[0].code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert len(accepted[0].agents) == 2
        assert len(small_limit.launcher.launches) == 2
    finally:
        await stubs.close()
