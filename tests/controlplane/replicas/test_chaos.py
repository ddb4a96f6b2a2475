"""Chaos across replicas: three ``maos start`` on PostgreSQL + Redis, real agents, faults while work runs.

Thousands of tasks are submitted in batches spread over the three replicas (a batch refused because its
replica died is sent again, with the same request id, to the next one). Six recording agents
(:mod:`tests.harness.recording_agent`, real SDK Workers given every replica's address) run them, two
per replica. While they run: two agents are SIGKILLed (and two new ones started), a replica is
frozen (SIGSTOP) until its agents have finished what they held, then SIGKILLed (and stays dead), and every replica's Redis connections are closed again and again for a
few seconds. Then, read through the replicas still alive:

* **nothing lost**: every accepted task ends COMPLETED, and each submitted item is exactly one task
  (a batch sent twice with its request id made its tasks once);
* **nothing applied twice**: the output a subtask ended with is the token of one execution of it,
  of its last attempt, and no execution started after that one (work whose result was applied
  never ran again); and no attempt ran on two agents (a replica sends an assignment once it is
  committed: the replica taking a killed one's tasks over finds the work RUNNING under the agent's
  lease, which the agent keeps by resuming its session there, or which expires into a new attempt);
* **re-runs only where a fault explains them**: an attempt that did not make the result either ran on
  an agent that was SIGKILLed, or on one connected to the replica that was SIGKILLed, and started
  before the kill. A Redis outage never explains one (it may only slow wake-ups).

``MAOS_CHAOS_TASKS`` sets how many tasks (default 3,000).
"""

from __future__ import annotations

import asyncio
import collections
import os
import time
from dataclasses import dataclass, field

import pytest

from agent_sdk.proto.maos.v1 import enums_pb2 as enums
from tests.harness.chaos import Submitter, full_tasks, subtask_key, wait_all_finished
from tests.harness.recording_agent import Execution
from tests.harness.replica_fixtures import MakeCluster
from tests.harness.replicas import RecordingAgentProcess, ReplicaCluster, redis_cut
from tests.harness.server import wait_for

pytestmark = pytest.mark.slow

TASKS = int(os.environ.get("MAOS_CHAOS_TASKS", "3000"))
AGENT_DELAY = 0.05  # seconds an execution takes, so a kill finds work in flight
AGENT_CONCURRENCY = 8
REDIS_CUT_SECONDS = 3.0
#: The longest the submits and the faults may take together.
RUN_SECONDS = 120


@dataclass
class Faults:
    """What was done to the cluster, and when (``CLOCK_MONOTONIC`` ns), to tell which re-runs it explains."""

    killed_agents: dict[str, int] = field(default_factory=dict)  # log file name -> kill time
    replica_kill_ns: int = 0
    agents_on_killed_replica: set[str] = field(default_factory=set)  # log file names
    redis_cuts: list[int] = field(default_factory=list)

    def describe(self, e: Execution) -> str:
        """One execution, its times in ms relative to the replica kill (for failure messages)."""
        at = (e.start_ns - self.replica_kill_ns) / 1e6 if self.replica_kill_ns else float("nan")
        done = "never done" if e.done_ns is None else "done"
        return (
            f"{e.log} attempt {e.attempt} epoch {e.epoch} started {at:+.0f} ms from the replica kill, {done}"
        )

    def summary(self) -> str:
        """What was killed, for failure messages."""
        return (
            f"agents killed: {sorted(self.killed_agents)}; on the killed replica: "
            f"{sorted(self.agents_on_killed_replica)}"
        )

    def explains(self, execution: Execution) -> bool:
        """Whether a fault explains that ``execution``'s result was not the one applied."""
        killed = self.killed_agents.get(execution.log)
        if killed is not None and execution.start_ns < killed:
            return True
        # An agent of the killed replica resumes its session on another replica, and a result it sends
        # again waits there until the task can be taken over, then is applied: most of its executions
        # are kept. One whose result did not get through before its lease ran out (a loaded machine)
        # may still run again, so any execution it started before the kill is explained.
        return execution.log in self.agents_on_killed_replica and execution.start_ns < self.replica_kill_ns


def finished_subtasks(cluster: ReplicaCluster) -> int:
    """How many distinct subtasks some agent finished an execution of."""
    return len({subtask_key(e.task, e.subtask) for e in cluster.executions() if e.done_ns is not None})


async def until_progress(cluster: ReplicaCluster, share: float, what: str) -> None:
    need = int(TASKS * share)
    await wait_for(
        lambda: finished_subtasks(cluster) >= need, 90, 0.05, f"{need} of {TASKS} tasks run, before {what}"
    )


async def inflict(cluster: ReplicaCluster, faults: Faults) -> None:
    """Kill two agents, then a replica, then cut Redis, each once a share of the work ran."""
    await until_progress(cluster, 0.10, "killing two agents")
    for victim in (cluster.agents[0], cluster.agents[3]):
        victim.kill()
        faults.killed_agents[victim.log.name] = victim.killed_ns or 0
    cluster.agent(0, delay=AGENT_DELAY, concurrency=AGENT_CONCURRENCY)  # the pool keeps its size
    cluster.agent(1, delay=AGENT_DELAY, concurrency=AGENT_CONCURRENCY)

    await until_progress(cluster, 0.30, "killing replica 0")
    victim_replica = cluster.replicas[0]

    def agents_on_victim() -> list[RecordingAgentProcess]:
        live = [a for a in cluster.agents if a.process.poll() is None]
        return [a for a in live if cluster.replica_of(a) is victim_replica]

    await wait_for(agents_on_victim, 30, 0.05, "an agent on replica 0 (the replacement started there)")
    await wait_for(
        lambda: any(e.done_ns is None for a in agents_on_victim() for e in a.executions()),
        30,
        0.01,
        "an agent of replica 0 at work",
    )
    faults.agents_on_killed_replica = {
        a.log.name
        for a in cluster.agents
        if a.process.poll() is None and cluster.replica_of(a) is victim_replica
    }
    # Frozen first, until its agents have finished what they were running: their results reach a
    # replica that never answers them, so they must come back through another replica.
    cluster.freeze(0)
    on_it = [a for a in cluster.agents if a.log.name in faults.agents_on_killed_replica]
    await wait_for(
        lambda: all(e.done_ns is not None for a in on_it for e in a.executions()),
        10,
        0.05,
        "the frozen replica's agents to finish their work",
    )
    faults.replica_kill_ns = cluster.kill(0)

    await until_progress(cluster, 0.50, "cutting Redis")
    async with redis_cut(cluster.redis_url, cluster.redis_pids()) as rounds:
        ends = time.monotonic() + REDIS_CUT_SECONDS
        await wait_for(lambda: time.monotonic() > ends, REDIS_CUT_SECONDS + 5, 0.05, "the Redis cut to last")
    faults.redis_cuts = rounds


async def test_three_replicas_lose_nothing_and_apply_nothing_twice(replica_cluster: MakeCluster) -> None:
    cluster = await replica_cluster(3)
    for i in range(6):  # two per replica: replica i % 3 first in each list
        cluster.agent(i % 3, delay=AGENT_DELAY, concurrency=AGENT_CONCURRENCY)
    await cluster.wait_for_connections(6)
    submitter = Submitter(cluster)
    faults = Faults()
    try:
        async with asyncio.timeout(RUN_SECONDS), asyncio.TaskGroup() as running:
            running.create_task(submitter.run(TASKS))
            running.create_task(inflict(cluster, faults))
        await wait_all_finished(submitter, timeout=90)

        # Nothing lost: every item accepted, as exactly one task, and every one COMPLETED.
        assert sorted(submitter.accepted) == list(range(TASKS))
        listed = await submitter.live_stubs()[0].all_tasks()
        by_item = collections.Counter(task.metadata["item"] for task in listed)
        twice = sorted((item, n) for item, n in by_item.items() if n > 1)
        assert not twice, (
            f"items made into more than one task (a batch resent with its request id): {twice[:10]}"
        )
        assert {task.name for task in listed} == set(submitter.accepted.values())
        answers = await full_tasks(submitter, sorted(submitter.accepted.values()))
        not_done = [(a.task.name, enums.TaskStatus.Name(a.task.status)) for a in answers]
        not_done = [(name, status) for name, status in not_done if status != "TASK_STATUS_COMPLETED"]
        assert not not_done, f"{len(not_done)} accepted tasks did not complete: {not_done[:10]}"

        # Nothing applied twice.
        executions = cluster.executions()
        by_subtask: dict[str, list[Execution]] = collections.defaultdict(list)
        for e in executions:
            by_subtask[subtask_key(e.task, e.subtask)].append(e)
        failures = []
        # One attempt runs on one agent: a replica sends an assignment once it is committed, so a
        # replica taking a killed one's tasks over finds it RUNNING under its lease, never QUEUED.
        same_attempt = []
        for sub, runs in by_subtask.items():
            for attempt, n in collections.Counter(e.attempt for e in runs).items():
                if n > 1:
                    twice = sorted((e for e in runs if e.attempt == attempt), key=lambda e: e.start_ns)
                    same_attempt.append((sub, [faults.describe(e) for e in twice]))
        if same_attempt:
            failures.append(f"{len(same_attempt)} attempts run on two agents, e.g. {same_attempt[:3]}")
        problems, unexplained = [], []
        for answer in answers:
            for sub in answer.subtasks:
                runs = by_subtask.get(subtask_key(answer.task.name, sub.name), [])
                applied = [e for e in runs if e.token == sub.output]
                if len(applied) != 1 or applied[0].attempt != sub.attempt:
                    problems.append((sub.name, sub.attempt, sub.output, [faults.describe(e) for e in runs]))
                    continue
                later = [e for e in runs if e.attempt > sub.attempt or e.start_ns > applied[0].start_ns]
                if later:
                    problems.append(
                        (sub.name, "ran again after its applied run", [faults.describe(e) for e in later])
                    )
                unexplained += [e for e in runs if e is not applied[0] and not faults.explains(e)]
        if problems:
            failures.append(
                f"{len(problems)} subtasks whose output is not their one last run: {problems[:3]}"
            )
        if unexplained:
            failures.append(
                f"{len(unexplained)} runs with no agent or replica kill to explain them (Redis was cut "
                f"{len(faults.redis_cuts)} times): {[faults.describe(e) for e in unexplained[:3]]}"
            )
        assert not failures, "; ".join(failures) + f" ({faults.summary()})"
        reruns = len(executions) - sum(len(a.subtasks) for a in answers)
        print(
            f"chaos: {TASKS} tasks, {len(executions)} executions ({reruns} re-runs, all explained by a kill), "
            f"{submitter.resent} batches sent again, {len(faults.agents_on_killed_replica)} agents on the killed "
            f"replica, {sum(faults.redis_cuts)} Redis connections closed in {len(faults.redis_cuts)} rounds"
        )
        assert sum(faults.redis_cuts) > 0, "the Redis cut closed no connection: it tested nothing"
        assert faults.killed_agents and faults.replica_kill_ns and faults.agents_on_killed_replica
    finally:
        await submitter.close()
