"""A SubmitTask whose commit outcome is unknown: the connection to PostgreSQL drops under its commit.

Two ``maos start`` replicas share PostgreSQL and Redis; replica 0 reaches PostgreSQL through a TCP
proxy of the test's (:mod:`tests.harness.tcp_proxy`), which cuts replica 0's connection under the
commit of one submit (found by a marker in its task) and keeps that COMMIT from the server until
the test lets it go: the transaction stays open on the server, its rows not yet stored. Replica 0
cannot know whether they will be: its call answers UNAVAILABLE, and the read settling the outcome
waits for the commit in flight. The client sends the call again with its request id, to replica 0
(which waits for the outcome) or to replica 1 (whose commit waits for the one in flight), and the
commit is let through: either way the client gets the one stored task, and that task runs, exactly
once, on whichever replica the agent is connected to.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
import sqlalchemy
from sqlalchemy.engine import make_url

from agent_sdk.proto.maos.v1 import enums_pb2 as enums
from agent_sdk.proto.maos.v1 import messages_pb2 as msgs
from agent_sdk.proto.maos.v1 import task_service_pb2 as tasks_pb
from tests.harness.recording_agent import AGENT_TYPE
from tests.harness.replicas import ReplicaCluster, fresh_database
from tests.harness.server import Stubs, wait_for
from tests.harness.tcp_proxy import TcpProxy

RPC = 15


@contextlib.asynccontextmanager
async def cluster_with_proxied_database(
    folder: Path, postgres_url: str, redis_url: str, prefix: str
) -> AsyncIterator[tuple[ReplicaCluster, TcpProxy]]:
    """Two replicas on a fresh database; replica 0 reaches it through a proxy."""
    with fresh_database(postgres_url) as url:
        parsed = make_url(url)
        proxy = TcpProxy(parsed.host or "127.0.0.1", parsed.port or 5432)
        await proxy.start()
        proxied = parsed.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
        cluster = ReplicaCluster(
            folder, url, redis_url, prefix, 2, overrides={0: {"MAOS_DATABASE_PRIMARY_URL": proxied}}
        )
        try:
            await cluster.start()
            yield cluster, proxy
        finally:
            await asyncio.to_thread(cluster.stop)  # (the proxy serves replica 0 while it stops)
            await proxy.close()


def wait_for_a_lock_wait(url: str, timeout: float = 30.0) -> None:
    """Return once a session of this database waits for a lock (the settling read, waiting for the commit)."""
    engine = sqlalchemy.create_engine(url)
    query = sqlalchemy.text(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    deadline = time.monotonic() + timeout
    try:
        with engine.connect() as conn:
            while not conn.execute(query).scalar_one():
                assert time.monotonic() < deadline, "nothing waited for the commit in flight"
                time.sleep(0.02)
    finally:
        engine.dispose()


def stored_tasks(url: str, description: str) -> list[tuple[str, str | None, int]]:
    """(id, claimed_by, status) of the stored tasks with ``description``."""
    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sqlalchemy.text("SELECT id, claimed_by, status, data FROM tasks"),
            )
            return [(r.id, r.claimed_by, r.status) for r in rows if description in r.data]
    finally:
        engine.dispose()


@pytest.mark.parametrize(("retry_on", "agent_on"), [(0, 0), (1, 0), (1, 1)])
async def test_a_submit_whose_commit_outcome_is_unknown_runs_its_stored_task_once(
    tmp_path: Path, postgres_url: str, redis_url: str, redis_namespace: str, retry_on: int, agent_on: int
) -> None:
    async with cluster_with_proxied_database(tmp_path, postgres_url, redis_url, redis_namespace) as (
        cluster,
        proxy,
    ):
        agent = cluster.agent(agent_on, only=True, concurrency=2)
        await cluster.wait_for_connections(1)
        stubs = [Stubs(address) for address in cluster.addresses]
        try:
            # Work runs before the fault: the agent and replica 0 are ready.
            warm = await stubs[0].tasks.SubmitTask(
                tasks_pb.SubmitTaskRequest(task=msgs.Task(description="warm up", agent_type=AGENT_TYPE)),
                timeout=RPC,
            )
            await wait_for(lambda: len(agent.executions()) == 1, 30, 0.05, "the warm-up task to run")

            marker = f"unknown-outcome-{uuid.uuid4()}"
            request = tasks_pb.SubmitTaskRequest(
                task=msgs.Task(description=marker, agent_type=AGENT_TYPE), request_id=str(uuid.uuid4())
            )
            proxy.hold_commit(marker.encode())
            with pytest.raises(grpc.aio.AioRpcError) as first:  # its outcome is not known in time
                await stubs[0].tasks.SubmitTask(request, timeout=RPC)
            assert first.value.code() == grpc.StatusCode.UNAVAILABLE, first.value
            assert proxy.commit_cut.is_set(), "the commit's connection was not cut"
            assert stored_tasks(cluster.database_url, marker) == []  # in flight: not stored yet
            await asyncio.to_thread(wait_for_a_lock_wait, cluster.database_url)  # the settling read waits

            retry = asyncio.ensure_future(stubs[retry_on].tasks.SubmitTask(request, timeout=RPC))
            proxy.release_commit()  # the commit lands
            await asyncio.wait_for(proxy.commit_landed.wait(), RPC)
            again = (await retry).task
            stored = stored_tasks(cluster.database_url, marker)
            assert len(stored) == 1, stored  # committed, though replica 0 never learnt it from its commit
            if agent_on == 0:
                assert stored[0][1] == "replica-0"  # held by the replica that lost its commit's answer
            assert again.name == f"tasks/{stored[0][0]}"

            async def completed() -> bool:
                reply = await stubs[1].tasks.GetTask(tasks_pb.GetTaskRequest(name=again.name), timeout=RPC)
                return reply.task.status == enums.TASK_STATUS_COMPLETED

            await wait_for(completed, 30, 0.05, f"{again.name} to run (it must not wait for a restart)")
            # A task submitted after it runs too: had the stored task been taken twice, its second run
            # would have been dispatched by now.
            later = await stubs[0].tasks.SubmitTask(
                tasks_pb.SubmitTaskRequest(task=msgs.Task(description="later", agent_type=AGENT_TYPE)),
                timeout=RPC,
            )
            await wait_for(
                lambda: any(e.task == later.task.name and e.done_ns for e in agent.executions()),
                30,
                0.05,
                "the later task to run",
            )
            runs = collections.Counter(e.task for e in agent.executions())
            assert runs[again.name] == 1, runs
            assert runs[warm.task.name] == 1, runs
            assert len(stored_tasks(cluster.database_url, marker)) == 1
            assert all(replica.running for replica in cluster.replicas)
        finally:
            for stub in stubs:
                await stub.close()
