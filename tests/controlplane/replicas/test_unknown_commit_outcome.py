"""A SubmitTask whose commit outcome is unknown: the connection to PostgreSQL drops under its commit.

Two ``maos start`` replicas share PostgreSQL and Redis; replica 0 reaches PostgreSQL through a TCP
proxy of the test's (:mod:`tests.harness.tcp_proxy`), which lets the commit of one submit (found by
a marker in its task) reach the server and commit, then cuts the connection before the answer
comes back. Replica 0 cannot know whether its rows were stored. A recording agent connected to
replica 0 alone runs the work. The client sends the call again with its request id, to replica 0
or to replica 1: either way it gets the one stored task, and that task runs, exactly once.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
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
            proxy.cut_after_commit(marker.encode())
            first: msgs.Task | None = None
            try:
                first = (await stubs[0].tasks.SubmitTask(request, timeout=RPC)).task
            except grpc.aio.AioRpcError as exc:  # the outcome was not known in time: retry, as clients do
                assert exc.code() == grpc.StatusCode.UNAVAILABLE, exc
            assert proxy.commit_cut.is_set(), "the commit's connection was not cut"
            stored = stored_tasks(cluster.database_url, marker)
            assert len(stored) == 1, stored  # committed, though its answer never came back
            assert stored[0][1] == "replica-0"  # held by the replica that lost the answer

            again = (await stubs[retry_on].tasks.SubmitTask(request, timeout=RPC)).task
            assert again.name == f"tasks/{stored[0][0]}"
            if first is not None:
                assert first.name == again.name

            async def completed() -> bool:
                reply = await stubs[1].tasks.GetTask(tasks_pb.GetTaskRequest(name=again.name), timeout=RPC)
                return reply.task.status == enums.TASK_STATUS_COMPLETED

            await wait_for(completed, 30, 0.05, f"{again.name} to run (it must not wait for a restart)")
            runs = collections.Counter(e.task for e in agent.executions())
            assert runs[again.name] == 1, runs
            assert runs[warm.task.name] == 1, runs
            assert len(stored_tasks(cluster.database_url, marker)) == 1
            assert all(replica.running for replica in cluster.replicas)
        finally:
            for stub in stubs:
                await stub.close()
