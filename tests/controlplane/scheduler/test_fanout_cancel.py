"""Cancel of a task spread over many agent streams, and heartbeats of busy agents (a real server, the raw
protocol).

Every agent holding a subtask of the cancelled task hears exactly one Cancel naming its own attempt, the
cancel is durable when CancelTask answers, and a heartbeat that changes nothing still renews the lease of
the work it names. Leases last 3 s here (tests.harness.server.TEST_OVERRIDES).
"""

from __future__ import annotations

import asyncio

from agent_sdk.proto.maos.v1 import agent_gateway_pb2 as gw
from agent_sdk.proto.maos.v1 import enums_pb2 as enums
from agent_sdk.proto.maos.v1 import messages_pb2 as m
from agent_sdk.proto.maos.v1 import task_service_pb2 as t
from controlplane.app import App
from controlplane.domain.model import now
from tests.controlplane.scheduler.test_faults import RawAgent
from tests.controlplane.scheduler.test_resume import connect
from tests.harness.server import Stubs, wait_for

AGENTS = 40


async def test_cancel_of_a_wide_task_reaches_every_agent_once(control_plane: App, stubs: Stubs) -> None:
    agents: list[RawAgent] = []
    try:
        for _ in range(AGENTS):
            agents.append((await connect(control_plane.address))[0])
        description = "Fan out:\n" + "\n".join(f"- part {i}" for i in range(AGENTS))
        reply = await stubs.tasks.SubmitTask(
            t.SubmitTaskRequest(task=m.Task(description=description, max_agents=AGENTS)), timeout=5
        )
        refs = await asyncio.gather(*(a.receive("assignment") for a in agents))
        held = [r.assignment.ref for r in refs]
        assert len({r.subtask for r in held}) == AGENTS  # one subtask on each stream

        await stubs.tasks.CancelTask(t.CancelTaskRequest(name=reply.task.name, reason="enough"), timeout=5)
        stored = await control_plane.engine.storage.call(
            control_plane.engine.storage.backend.get_task, reply.task.name.rsplit("/", 1)[-1]
        )
        assert stored is not None and stored.status.name == "CANCELLED"  # durable when answered

        cancels = await asyncio.gather(*(a.receive("cancel") for a in agents))
        assert [c.cancel.ref for c in cancels] == held  # each agent its own attempt
        assert all("enough" in c.cancel.reason for c in cancels)
        for agent in agents:  # and only once: nothing else is waiting on any stream
            agent.send(heartbeat=gw.Heartbeat(free_slots=1))
        extra = await asyncio.gather(
            *(asyncio.wait_for(a.call.read(), 0.5) for a in agents), return_exceptions=True
        )
        assert all(isinstance(e, TimeoutError) for e in extra), extra
        task = (await stubs.tasks.GetTask(t.GetTaskRequest(name=reply.task.name), timeout=5)).task
        assert task.status == enums.TASK_STATUS_CANCELLED
    finally:
        for agent in agents:
            await agent.close()


async def test_a_heartbeat_that_changes_nothing_still_renews_the_lease(
    control_plane: App, stubs: Stubs
) -> None:
    agent, _ = await connect(control_plane.address)
    try:
        await stubs.tasks.SubmitTask(t.SubmitTaskRequest(task=m.Task(description="hold me")), timeout=5)
        ref = (await agent.receive("assignment")).assignment.ref
        engine = control_plane.engine
        [(key, lease)] = [(k, v) for k, v in engine.leases.items() if k[1] == ref.subtask.rsplit("/", 1)[-1]]
        session = engine.sessions[lease.agent_id]
        reported = session.reported_free
        # Past several lease lifetimes (3 s) with only heartbeats that repeat what the agent said before:
        # the work stays its own, the same attempt, never cancelled.
        for _ in range(8):
            expires = lease.expires
            agent.send(heartbeat=gw.Heartbeat(running=[ref], free_slots=0))
            await wait_for(
                lambda e=expires: lease.expires != e, 5, message="the heartbeat renewing the lease"
            )
            assert session.reported_free == reported == 0
            renewed = lease.expires
            # The next heartbeat once a third of the 3 s lifetime has passed.
            await wait_for(lambda r=renewed: now() >= r - 2.0, 5, message="a third of the lease's lifetime")
        assert engine.leases.get(key) is lease and lease.epoch == ref.lease_epoch
        with_duplicate = gw.Heartbeat(running=[ref, ref], free_slots=0)  # named twice, counted once
        agent.send(heartbeat=with_duplicate)
        assert await _no_message(agent, 0.5)
        assert session.reported_free == 0 and engine.leases.get(key) is lease
    finally:
        await agent.close()


async def _no_message(agent: RawAgent, seconds: float) -> bool:
    try:
        await asyncio.wait_for(agent.call.read(), seconds)
    except TimeoutError:
        return True
    return False
