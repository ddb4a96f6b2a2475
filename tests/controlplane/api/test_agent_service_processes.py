"""AgentService with real agent processes: SpawnAgents, the launcher's supervision, and process exits.

Every process a test starts is ended by the end of the test (the control
plane's launcher stops its own; ``spawned`` kills any straggler and fails
the test if one was left running).
"""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator, Iterator
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
from tests.harness.server import Stubs, make_settings, start_app, wait_for

PROCESS_START = 20.0  # seconds a fresh Python agent process may take to register


def alive(pid: int) -> bool:
    """Whether a process (not a zombie we could still reap) runs."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return True


@pytest.fixture
def spawned(control_plane: App) -> Iterator[set[int]]:
    """Pids of the launched processes (recorded by the tests); none may outlive the test."""
    pids: set[int] = set()
    yield pids
    leftovers = set()
    for launch in control_plane.launcher.launches.values():
        if launch.process is not None:
            pids.add(launch.process.pid)
    for pid in pids:
        if alive(pid):
            leftovers.add(pid)
            os.kill(pid, signal.SIGKILL)
    # The control_plane fixture's App.stop() stops what its launcher still supervises afterwards; a pid
    # alive here that the launcher no longer tracks would leak.
    untracked = {p for p in leftovers
                 if not any(la.process and la.process.pid == p for la in control_plane.launcher.launches.values())}
    assert not untracked, f"agent processes left running: {sorted(untracked)}"


def launch_of(app: App, name: str) -> Launch:
    """The launcher's record of a registered managed agent."""
    launch = app.launcher.by_agent(name.removeprefix("agents/"))
    assert launch is not None, f"{name} is not supervised by the launcher"
    return launch


async def spawn(stubs: Stubs, agent_type: str = "echo", count: int = 1, **fields: Any) -> list[msgs.Agent]:
    """SpawnAgents; returns the agents."""
    reply = await stubs.agents.SpawnAgents(
        agents_pb.SpawnAgentsRequest(agent_type=agent_type, count=count, **fields), timeout=PROCESS_START + 5)
    return list(reply.agents)


async def wait_exited(launch: Launch, timeout: float = 10.0) -> int:
    """Wait until the launch's current process exited; its return code."""
    process = launch.process
    assert process is not None
    await wait_for(lambda: process.returncode is not None, timeout, message=f"process {process.pid} to exit")
    return process.returncode  # type: ignore[return-value]


async def wait_supervisor_done(launch: Launch, timeout: float = 10.0) -> None:
    """The supervisor returns only when the launch is being stopped (otherwise it restarts the process)."""
    await wait_for(lambda: launch.supervisor is None or launch.supervisor.done(), timeout,
                   message=f"the supervisor of launch {launch.id} to give up")


# --- SpawnAgents -------------------------------------------------------------------------


async def test_spawned_agents_register_run_work_and_are_restarted_after_sigkill(
        control_plane: App, stubs: Stubs, spawned: set[int]) -> None:
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
        fresh = [a for a in await list_agents(stubs, statuses=[enums.AGENT_STATUS_IDLE])
                 if a.managed and a.name not in {x.name for x in agents}]
        return fresh[0] if fresh else None

    new = await wait_for(replacement, PROCESS_START, interval=0.05, message="the restarted agent to register")
    spawned.add(new.pid)
    assert new.pid != victim.pid and new.agent_type == "echo"
    assert launch.restarts == 1 and launch.agent_id == new.name.removeprefix("agents/")
    assert launch.process is not None and launch.process.pid == new.pid
    assert (await get_agent(stubs, agents[1].name)).status == enums.AGENT_STATUS_IDLE  # the other one is untouched

    # TerminateAgent on the restarted agent ends its process for good.
    reply = await stubs.agents.TerminateAgent(agents_pb.TerminateAgentRequest(name=new.name, grace=seconds(5)),
                                              timeout=RPC_TIMEOUT)
    assert reply.agent.name == new.name
    assert await wait_exited(launch) == 0  # it drained and exited by itself
    await wait_supervisor_done(launch)
    assert launch.restarts == 1 and not alive(new.pid)
    await wait_agent(stubs, new.name, enums.AGENT_STATUS_TERMINATED)
    assert control_plane.launcher.active == 1


async def test_spawn_count_zero_means_one_with_overrides(control_plane: App, stubs: Stubs,
                                                         spawned: set[int]) -> None:
    [agent] = await spawn(stubs, "noop", 0, capabilities=["review"], max_concurrency=3)
    spawned.add(agent.pid)
    assert agent.status == enums.AGENT_STATUS_IDLE
    assert agent.agent_type == "noop" and list(agent.capabilities) == ["review"] and agent.max_concurrency == 3
    assert (await get_agent(stubs, agent.name)).free_slots == 3


async def test_spawn_is_idempotent_by_request_id(control_plane: App, stubs: Stubs, spawned: set[int]) -> None:
    first = await spawn(stubs, "echo", 1, request_id="spawn-once")
    spawned.update(a.pid for a in first)
    again = await spawn(stubs, "echo", 1, request_id="spawn-once")
    spawned.update(a.pid for a in again)
    assert [a.name for a in again] == [a.name for a in first]
    assert len(control_plane.launcher.launches) == 1
    assert len(await list_agents(stubs, include_terminated=True)) == 1

    failure = await rpc_failure(stubs.agents.SpawnAgents(
        agents_pb.SpawnAgentsRequest(agent_type="noop", count=1, request_id="spawn-once"), timeout=RPC_TIMEOUT))
    assert_failure(failure, grpc.StatusCode.INVALID_ARGUMENT, "ERROR_REASON_REQUEST_ID_REUSED", field="request_id")
    assert len(control_plane.launcher.launches) == 1


async def test_drained_managed_agent_is_not_restarted(control_plane: App, stubs: Stubs, spawned: set[int]) -> None:
    [agent] = await spawn(stubs, "echo")
    spawned.add(agent.pid)
    launch = launch_of(control_plane, agent.name)
    reply = await stubs.agents.DrainAgent(agents_pb.DrainAgentRequest(name=agent.name, grace=seconds(5)),
                                          timeout=RPC_TIMEOUT)
    assert reply.agent.status == enums.AGENT_STATUS_DRAINING
    assert await wait_exited(launch) == 0
    await wait_supervisor_done(launch)
    assert launch.restarts == 0 and launch.process is not None and launch.process.pid == agent.pid
    gone = await wait_agent(stubs, agent.name, enums.AGENT_STATUS_TERMINATED, enums.AGENT_STATUS_DISCONNECTED)
    assert not gone.assignments
    assert not [a for a in await list_agents(stubs) if a.status not in (enums.AGENT_STATUS_TERMINATED,
                                                                       enums.AGENT_STATUS_DISCONNECTED)]
    assert control_plane.launcher.active == 0


async def test_force_terminate_of_a_spawned_sleeper_requeues_and_kills(control_plane: App, stubs: Stubs,
                                                                       spawned: set[int]) -> None:
    [sleeper] = await spawn(stubs, "sleep")
    spawned.add(sleeper.pid)
    submitted = await submit(stubs, "a long nap", metadata={"sleep_seconds": "30"})
    await wait_agent(stubs, sleeper.name, enums.AGENT_STATUS_BUSY)
    [rescuer] = await spawn(stubs, "echo")
    spawned.add(rescuer.pid)
    launch = launch_of(control_plane, sleeper.name)

    reply = await stubs.agents.TerminateAgent(agents_pb.TerminateAgentRequest(name=sleeper.name, force=True),
                                              timeout=RPC_TIMEOUT)
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


# --- real unmanaged processes ------------------------------------------------------------------


async def test_sigterm_drains_an_agent_process(control_plane: App, stubs: Stubs, agent_processes) -> None:
    proc = agent_processes(control_plane.address, "sleep")
    await wait_for(lambda: control_plane.engine.sessions, PROCESS_START, message="the agent process to register")
    [agent] = await list_agents(stubs)
    assert not agent.managed and agent.pid == proc.pid
    submitted = await submit(stubs, "short nap", metadata={"sleep_seconds": "1", "sleep_steps": "4"})
    await wait_agent(stubs, agent.name, enums.AGENT_STATUS_BUSY)

    proc.signal(signal.SIGTERM)
    draining = await wait_agent(stubs, agent.name, enums.AGENT_STATUS_DRAINING)  # told by its heartbeat
    assert draining.free_slots == 0 and len(draining.assignments) == 1
    done = await wait_status(stubs, submitted.name, enums.TASK_STATUS_COMPLETED, enums.TASK_STATUS_FAILED)
    assert done.status == enums.TASK_STATUS_COMPLETED
    [sub] = await subtasks_of(stubs, submitted.name)
    assert sub.attempt == 0 and sub.agent == agent.name
    await wait_for(lambda: proc.process.poll() is not None, 10, message="the agent process to exit")
    assert proc.process.returncode == 0
    await wait_agent(stubs, agent.name, enums.AGENT_STATUS_TERMINATED)


async def test_terminate_makes_an_unmanaged_process_exit(control_plane: App, stubs: Stubs, agent_processes) -> None:
    proc = agent_processes(control_plane.address, "echo")
    await wait_for(lambda: control_plane.engine.sessions, PROCESS_START, message="the agent process to register")
    [agent] = await list_agents(stubs)
    await stubs.agents.TerminateAgent(agents_pb.TerminateAgentRequest(name=agent.name), timeout=RPC_TIMEOUT)
    await wait_for(lambda: proc.process.poll() is not None, 10, message="the agent process to exit")
    assert proc.process.returncode == 0
    await wait_agent(stubs, agent.name, enums.AGENT_STATUS_TERMINATED)


# --- bad input --------------------------------------------------------------------------------


async def test_spawn_unknown_type_lists_the_known_ones(control_plane: App, stubs: Stubs) -> None:
    before = await all_agents_fingerprint(stubs)
    failure = await rpc_failure(stubs.agents.SpawnAgents(agents_pb.SpawnAgentsRequest(agent_type="wizard", count=1),
                                                         timeout=RPC_TIMEOUT))
    assert_failure(failure, grpc.StatusCode.INVALID_ARGUMENT, "ERROR_REASON_UNKNOWN_AGENT_TYPE", field="agent_type")
    assert "wizard" in failure.message
    for known in ("echo", "noop", "sleep"):
        assert known in failure.message, failure.message
    assert not control_plane.launcher.launches
    assert await all_agents_fingerprint(stubs) == before


@pytest.mark.parametrize("request_", [
    pytest.param(agents_pb.SpawnAgentsRequest(agent_type="echo", count=101), id="count-101"),
    pytest.param(agents_pb.SpawnAgentsRequest(agent_type="echo", count=1000), id="count-1000"),
    pytest.param(agents_pb.SpawnAgentsRequest(agent_type="echo", count=1, request_id="not a uuid!"),
                 id="bad-request-id"),
    pytest.param(agents_pb.SpawnAgentsRequest(agent_type="", count=1), id="no-type"),
])
async def test_spawn_rejects_bad_requests(control_plane: App, stubs: Stubs,
                                          request_: agents_pb.SpawnAgentsRequest) -> None:
    failure = await rpc_failure(stubs.agents.SpawnAgents(request_, timeout=RPC_TIMEOUT))
    assert failure.code == grpc.StatusCode.INVALID_ARGUMENT, failure
    assert failure.fields, failure
    assert not control_plane.launcher.launches
    assert not await list_agents(stubs, include_terminated=True)


async def test_spawn_count_101_names_count(control_plane: App, stubs: Stubs) -> None:
    failure = await rpc_failure(stubs.agents.SpawnAgents(agents_pb.SpawnAgentsRequest(agent_type="echo", count=101),
                                                         timeout=RPC_TIMEOUT))
    assert_failure(failure, grpc.StatusCode.INVALID_ARGUMENT, "ERROR_REASON_INVALID_FIELD", field="count")


@pytest.fixture
async def one_agent_max(tmp_path: Path) -> AsyncIterator[App]:
    """A control plane that may supervise a single agent process."""
    app = await start_app(make_settings(tmp_path / "home", **{"system.max_agents": 1}))
    try:
        yield app
    finally:
        await app.stop(grace=1.0)


async def test_spawn_over_max_agents_is_resource_exhausted(one_agent_max: App) -> None:
    stubs = Stubs(one_agent_max.address)
    try:
        failure = await rpc_failure(stubs.agents.SpawnAgents(
            agents_pb.SpawnAgentsRequest(agent_type="echo", count=2), timeout=RPC_TIMEOUT))
        assert_failure(failure, grpc.StatusCode.RESOURCE_EXHAUSTED, "ERROR_REASON_LIMIT_EXCEEDED")
        assert "max_agents" in failure.message
        assert not one_agent_max.launcher.launches
        assert not await list_agents(stubs, include_terminated=True)
    finally:
        await stubs.close()
