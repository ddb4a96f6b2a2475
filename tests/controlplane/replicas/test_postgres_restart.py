"""PostgreSQL restarting under load, with several replicas: survived with reconnects, nothing lost or applied twice.

Three ``maos start`` replicas share a PostgreSQL server of the test's own
(:mod:`tests.harness.private_postgres`: the machine's server serves other tests meanwhile) and
Redis; recording agents (:mod:`tests.harness.recording_agent`) given every replica's address run
the tasks; a batch refused while the server is away is sent again, with its request id, to the
same replica (a resend to another replica is a matter of idempotency across replicas, tested on its
own). While they run, the server is restarted twice: ``pg_ctl restart -m fast`` (every
connection closed, a clean stop) and ``-m immediate`` (a crash: recovery from the WAL). Once with
Redis carrying the wake-ups, once without (LISTEN/NOTIFY, whose connection the restarts break too).
Then:

* **nothing lost**: every accepted task COMPLETED, each submitted item is one task;
* **nothing applied twice**: each subtask's output names one execution of its last attempt, and
  nothing of it ran after that execution;
* **replicas survive**: every replica still runs and serves (they reconnect; the restarts are far
  shorter than ``replicas.lost_after``, so none may count as lost and fence itself), and no attempt
  ran twice (with no replica lost, no work is taken over).
"""

from __future__ import annotations

import asyncio
import collections
import time

import pytest

from agent_sdk.proto.maos.v1 import enums_pb2 as enums
from tests.harness.chaos import Submitter, full_tasks, subtask_key, wait_all_finished
from tests.harness.private_postgres import PrivatePostgres
from tests.harness.recording_agent import Execution
from tests.harness.replica_fixtures import MakeCluster
from tests.harness.replicas import ReplicaCluster
from tests.harness.server import wait_for

pytestmark = pytest.mark.slow

TASKS = 600
AGENT_DELAY = 0.02
#: Seconds the server stays down in each restart (far below the cluster's ``replicas.lost_after``, 8 s).
DOWN_SECONDS = 1.0


def finished(cluster: ReplicaCluster) -> int:
    return len({subtask_key(e.task, e.subtask) for e in cluster.executions() if e.done_ns is not None})


async def restart_under_load(cluster: ReplicaCluster, server: PrivatePostgres, restarts: list[str]) -> None:
    """Restart the server (fast, then immediate) once a share of the work ran each time."""
    for share, mode in ((0.2, "fast"), (0.55, "immediate")):
        need = int(TASKS * share)
        await wait_for(
            lambda need=need: finished(cluster) >= need,
            45,
            0.02,
            f"{need} tasks run before the {mode} restart",
        )
        await asyncio.to_thread(server.stop, mode)
        ends = time.monotonic() + DOWN_SECONDS
        await wait_for(
            lambda ends=ends: time.monotonic() >= ends, DOWN_SECONDS + 5, 0.05, "the server to stay down"
        )
        await asyncio.to_thread(server.start)
        restarts.append(mode)


@pytest.mark.parametrize("wakeups", ["redis", "listen-notify"])
async def test_replicas_survive_postgres_restarts_under_load(
    private_postgres: PrivatePostgres, replica_cluster: MakeCluster, wakeups: str
) -> None:
    no_redis = {"MAOS_REDIS_URL": ""} if wakeups == "listen-notify" else {}
    cluster = await replica_cluster(3, server=private_postgres.admin_url, **no_redis)
    for i in range(3):
        cluster.agent(i, delay=AGENT_DELAY, concurrency=8)
    await cluster.wait_for_connections(3)
    submitter = Submitter(cluster, sticky=True)
    restarts: list[str] = []
    try:
        async with asyncio.timeout(60), asyncio.TaskGroup() as running:
            running.create_task(submitter.run(TASKS, parallel=2))
            running.create_task(restart_under_load(cluster, private_postgres, restarts))
        await wait_all_finished(submitter, timeout=45)
        assert restarts == ["fast", "immediate"]
        down = [r.address for r in cluster.replicas if not r.running]
        assert not down, f"replicas exited across the restarts (see their logs above): {down}"

        # Nothing lost.
        assert sorted(submitter.accepted) == list(range(TASKS))
        listed = await submitter.live_stubs()[0].all_tasks()
        by_item = collections.Counter(task.metadata["item"] for task in listed)
        twice = sorted((item, n) for item, n in by_item.items() if n > 1)
        assert not twice, f"items made into more than one task: {twice[:10]}"
        assert {task.name for task in listed} == set(submitter.accepted.values())
        answers = await full_tasks(submitter, sorted(submitter.accepted.values()))
        not_done = [
            (a.task.name, enums.TaskStatus.Name(a.task.status))
            for a in answers
            if a.task.status != enums.TASK_STATUS_COMPLETED
        ]
        assert not not_done, f"{len(not_done)} accepted tasks did not complete: {not_done[:10]}"

        # Nothing applied twice, no attempt run twice.
        by_subtask: dict[str, list[Execution]] = collections.defaultdict(list)
        for e in cluster.executions():
            by_subtask[subtask_key(e.task, e.subtask)].append(e)
        problems = []
        for answer in answers:
            for sub in answer.subtasks:
                runs = by_subtask.get(subtask_key(answer.task.name, sub.name), [])
                applied = [e for e in runs if e.token == sub.output]
                if len(applied) != 1 or applied[0].attempt != sub.attempt:
                    problems.append((sub.name, sub.attempt, sub.output, runs))
                    continue
                later = [e for e in runs if e.attempt > sub.attempt or e.start_ns > applied[0].start_ns]
                if later:
                    problems.append((sub.name, "ran again after its applied run", later))
                attempts = collections.Counter(e.attempt for e in runs)
                if any(n > 1 for n in attempts.values()):
                    problems.append((sub.name, "an attempt ran twice", runs))
        assert not problems, f"{len(problems)} subtasks not applied exactly once: {problems[:3]}"
        reruns = sum(len(runs) for runs in by_subtask.values()) - len(by_subtask)
        print(
            f"postgres restarts {restarts} ({wakeups}): {TASKS} tasks, {reruns} re-runs (later attempts), "
            f"{submitter.resent} batches sent again"
        )
    finally:
        await submitter.close()
