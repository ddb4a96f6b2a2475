"""An agent's running work moving with its session from one live replica to another (issue 17).

An agent that lost only its connection to replica A (a network blip, a proxy restart, a client-side
failover: A lives and holds the tasks of the work it runs) resumes its session on replica B. B cannot
claim those tasks (A holds them), so it asks A over the replicas' bus
(:mod:`controlplane.replicas.session_relay`) to hand the work over:

* **Fencing by session.** A hands work over only for the agent's current session there: the session
  id the agent presents (given at its last Register, on whichever replica) must be the one A knows
  for it. A stale session (the agent resumed elsewhere since, and back) or a forged one moves nothing:
  A refuses with FAILED_PRECONDITION (``ERROR_REASON_AGENT_STATE``), and B registers the stream as it
  would any unproven resume (a new agent; the assignments it named are revoked).
* **A task moves whole, with its leases.** A gives a task up only if every subtask of it that runs
  is the agent's, under the lease (attempt and lease epoch) the agent named. A drops those leases from
  memory without re-queueing anything (no revoke, no second run), ends its own stream to the agent
  (a half-open one A still believes alive included), forgets the agent (its record is the new
  replica's to write), and gives the tasks up marked leaving, like any task it gives up. It answers
  once that is committed and the tasks' events have left for the other replicas.
* **B claims the tasks by id**, taking A's mark (:meth:`~controlplane.scheduler.claims.Claims.claim_given`):
  the subtasks come RUNNING under the agent's leases, so the resume keeps them, same attempt and
  lease epoch. From then on its results, heartbeats and progress are B's, and cancels, votes and
  drains for it reach B (the replica holding its stream).
* **Faults.** If B does not claim a task (it died meanwhile), A lets it go after
  :data:`LET_GO_AFTER` seconds and any replica claims it: its lease, restored there, expires and the
  work runs again, as after the loss of a replica. If A dies before it answers, nothing moved: B
  tells the agent its work is revoked, and the work runs again after its lease. A result the agent
  sent A before the move and that reaches A after it is carried to B (a report on a task A no
  longer holds, :mod:`.relayed_reports`), where it is applied once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from controlplane.domain.model import SubtaskStatus, TaskStatus
from controlplane.errors import FailedPrecondition, InvalidArgument, MaosError
from controlplane.scheduler.commands import Ref

if TYPE_CHECKING:
    from controlplane.scheduler.engine import Engine

log = logging.getLogger(__name__)

#: Seconds after a hand-over before the giving replica lets go of tasks the new one did not claim.
LET_GO_AFTER = 5.0
#: Seconds a hand-over waits for the events of the tasks it gives up to leave for the other replicas.
EVENTS_WAIT = 2.0

#: Asks the live replica holding a resumed agent's work to hand it over (the request as :func:`encode`
#: made it): that replica's id and answer, or None when no live replica holds any of the tasks.
Ask = Callable[[dict[str, Any]], Awaitable[tuple[str, dict[str, Any]] | None]]


def encode(agent_id: str, session_id: str, refs: Sequence[Ref], to: str) -> dict[str, Any]:
    """A hand-over request as JSON for the bus."""
    return {
        "agent": agent_id,
        "session": session_id,
        "refs": [[r.task_id, r.subtask_id, r.attempt, r.lease_epoch] for r in refs],
        "to": to,
    }


def decode(body: dict[str, Any]) -> tuple[str, str, list[Ref], str]:
    """The agent id, session id, assignments and asking replica of a hand-over request.

    Raises:
        ValueError: A malformed request.
    """
    try:
        refs = [Ref(str(t), str(s), int(a), int(e)) for t, s, a, e in body["refs"]]
        return str(body["agent"]), str(body["session"]), refs, str(body["to"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"malformed hand-over request: {exc}") from exc


class SessionMoves:
    """Both ends of moving an agent's work with its session (see the module docstring)."""

    def __init__(self, engine: Engine):
        self.engine = engine
        #: Set by :mod:`controlplane.replicas.session_relay` (None: no bus, nothing moves).
        self.ask: Ask | None = None
        #: Tasks handed over to other replicas, and taken from them (for tests and diagnostics).
        self.given = self.taken = 0

    # --- the replica the agent resumes on ---------------------------------------

    async def take(self, agent_id: str, session_id: str, refs: Sequence[Ref]) -> list[str]:
        """Ask the live replica holding the tasks of ``refs`` to hand them over, and claim them: the
        tasks held here now (nothing when the holder refused, or did not answer)."""
        ask, claims = self.ask, self.engine.claims
        if ask is None or claims is None or not refs or not session_id:
            return []
        try:
            answered = await ask(encode(agent_id, session_id, refs, self.engine.replica))
        except MaosError as exc:  # refused (a stale or forged session), or the holder went away
            log.info("the work of agents/%s resuming here stays where it is: %s", agent_id, exc.message)
            return []
        if answered is None:
            return []
        origin, answer = answered
        known = self.engine.agent_side.agents.get(agent_id)
        if known is not None:  # the holder proved the session current (its record here may lag a commit)
            known.session_id = session_id
        taken = []
        for task_id in answer.get("moved") or ():
            task_id = str(task_id)
            try:
                if await claims.claim_given(task_id, origin):
                    taken.append(task_id)
            except Exception as exc:  # its giver lets it go after LET_GO_AFTER: claimable then
                log.warning("could not claim tasks/%s handed over by replica %s: %s", task_id, origin, exc)
        self.taken += len(taken)
        if taken:
            log.info(
                "agents/%s resumed here with the work of %d tasks from replica %s",
                agent_id,
                len(taken),
                origin,
            )
        return taken

    # --- the replica holding the work --------------------------------------------

    async def give(self, body: dict[str, Any]) -> dict[str, Any] | None:
        """Hand the tasks of a resuming agent's work held here to the replica asking; None (declined)
        when none of them is held here, or this replica may not write any more.

        Raises:
            InvalidArgument: A malformed request.
            FailedPrecondition: The session presented is not the agent's current session here.
        """
        try:
            agent_id, session_id, refs, to = decode(body)
        except ValueError as exc:
            raise InvalidArgument(f"a hand-over request from another replica: {exc}") from None
        engine, claims = self.engine, self.engine.claims
        if claims is None or claims.check_fence():
            return None
        held = [ref for ref in refs if ref.task_id in engine.tasks]
        if not held:
            return None
        info = engine.agent_side.agents.get(agent_id)
        if info is None or not session_id or not secrets.compare_digest(info.session_id, session_id):
            raise FailedPrecondition(
                f"agents/{agent_id} resumed with a session id that is not its current session on replica "
                f"{engine.replica} (a newer session replaced it, or the id is wrong): its work stays there",
                reason="ERROR_REASON_AGENT_STATE",
                metadata={"replica": engine.replica, "agent": agent_id},
            )
        movable = [
            task_id
            for task_id in dict.fromkeys(r.task_id for r in held)
            if self._movable(task_id, agent_id, held)
        ]
        if not movable:
            return {"moved": []}
        engine.agent_side.moved_away(agent_id)
        for task_id in movable:
            self._give_up(task_id)
        self.given += len(movable)
        await engine.committer.durable()
        with contextlib.suppress(TimeoutError):  # (the next replica's events of them come after these)
            await asyncio.wait_for(engine.watchers.sent_on(), EVENTS_WAIT)
        claims.let_go_later(movable, LET_GO_AFTER)
        log.info(
            "agents/%s resumed on replica %s: its work on %d tasks moves there", agent_id, to, len(movable)
        )
        return {"moved": movable}

    def _movable(self, task_id: str, agent_id: str, refs: Sequence[Ref]) -> bool:
        """Whether every running subtask of the task is the agent's, under a lease it named."""
        engine = self.engine
        task = engine.tasks[task_id]
        if task.status.finished:
            return False
        named = {(r.subtask_id, r.attempt, r.lease_epoch) for r in refs if r.task_id == task_id}
        running = [s for s in engine.subtasks.get(task_id, {}).values() if s.status == SubtaskStatus.RUNNING]
        if not running:
            return False
        leases = engine.leasing.leases
        for sub in running:
            lease = leases.get((task_id, sub.id))
            if (
                lease is None
                or lease.agent_id != agent_id
                or sub.agent_id != agent_id
                or lease.epoch != sub.lease_epoch
                or (sub.id, sub.attempt, sub.lease_epoch) not in named
            ):
                return False
        return True

    def _give_up(self, task_id: str) -> None:
        """Drop a task and its leases from memory, nothing re-queued, and mark it leaving in the next commit."""
        engine = self.engine
        task = engine.tasks[task_id]
        for sub in engine.subtasks.get(task_id, {}).values():
            if sub.status == SubtaskStatus.RUNNING:
                key = (task_id, sub.id)
                engine.leasing.leases.pop(key, None)
                engine.reservations.release(key)
                engine.committer.subtask(sub)  # (its progress as it stands)
        if task.status == TaskStatus.RUNNING:  # its slot among the running tasks is free here
            engine.dispatch.running_changed(task_id, TaskStatus.RUNNING, TaskStatus.QUEUED)
        engine._give_up(task)
        engine.committer.release(task_id)
