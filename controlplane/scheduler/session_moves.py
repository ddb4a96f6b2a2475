"""An agent's running work moving with its session from one live replica to another (issue 17).

An agent that lost only its connection to replica A (a network blip, a proxy restart, a client-side
failover: A lives and holds the tasks of the work it runs) resumes its session on replica B. B cannot
claim those tasks (A holds them), so it asks A over the replicas' bus
(:mod:`controlplane.replicas.session_relay`) to hand the work over:

* **Fencing by session.** A hands work over only for the agent's current session there: the session
  id the agent presents (given at its last Register, on whichever replica) must be the one A knows
  for it, and the one of the agent's committed record (another replica may have taken the agent over
  without A knowing yet), and the agent connecting to B must be of the agent's type and owner (or the
  agent bound to none). Otherwise nothing moves: A refuses with FAILED_PRECONDITION
  (``ERROR_REASON_AGENT_STATE``), B forgets what it knew of the agent and registers the stream as it
  would any unproven resume (a new agent; the assignments it named are revoked).
* **Whom B asks.** Only the live replicas that the rows of the unfinished tasks it names give as their holder,
  once per batch of tasks small enough for a bus message (a task's assignments in one).
* **A task moves whole, with its leases.** A gives a task up only if every subtask of it that runs
  is the agent's, under the lease (attempt and lease epoch) the agent named. A drops those leases from
  memory without re-queueing anything (no revoke, no second run), ends its own stream to the agent
  (a half-open one A still believes alive included), forgets the agent (its record is the new
  replica's to write), and gives the tasks up marked leaving, like any task it gives up. It answers
  once that is committed and the tasks' events have left for the other replicas.
* **B claims the tasks by id**, taking A's mark (:meth:`~controlplane.scheduler.claims.Claims.claim_given`):
  the subtasks come RUNNING under the agent's leases, so the resume keeps them, same attempt and
  lease epoch. B then reads the agent's record again (A wrote it last, its last charges included, and
  writes nothing of the agent after the move). From then on its results, heartbeats and progress are
  B's, and cancels, votes and drains for it reach B (the replica holding its stream). Until B claims
  the tasks (or A lets them go), A takes none of them back: not for a call forwarded to it, nor for a
  late report on the old stream, which is carried to B like any report on a task held elsewhere.
* **Faults.** If B does not claim a task (it died meanwhile), A lets it go
  :data:`LET_GO_AFTER` seconds after the mark is committed (a failed commit is tried again) and any replica
  claims it: its lease, restored there, expires and the work runs again, as after the loss of a replica. If A
  dies before it answers, nothing moved: B tells the agent its work is revoked, and the work runs again after
  its lease. A result the agent sent A before the move and that reaches A after it is carried to B (a report
  on a task A no longer holds, :mod:`.relayed_reports`), where it is applied once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from controlplane.domain.model import AgentInfo, SubtaskStatus, TaskStatus
from controlplane.errors import FailedPrecondition, InvalidArgument, MaosError
from controlplane.scheduler.commands import Ref

if TYPE_CHECKING:
    from controlplane.scheduler.engine import Engine

log = logging.getLogger(__name__)

#: Seconds after a hand-over before the giving replica lets go of tasks the new one did not claim.
LET_GO_AFTER = 5.0
#: Seconds a hand-over waits for the events of the tasks it gives up to leave for the other replicas.
EVENTS_WAIT = 2.0
#: The most bytes of assignments one request names once encoded (a bus message without Redis holds at
#: most 7,900 bytes, the request's envelope included): more are asked for in several requests.
REFS_PER_REQUEST = 6000

#: Asks the live replica named (the second argument) to hand a resumed agent's work over (the request as
#: :func:`encode` made it): that replica's id and answer, or None when it holds none of the tasks.
Ask = Callable[[dict[str, Any], str], Awaitable[tuple[str, dict[str, Any]] | None]]


@dataclass(frozen=True)
class Resume:
    """What an agent resuming on the asking replica presents: its identity, session and kind."""

    agent_id: str
    session_id: str
    agent_type: str
    #: The owner the agent's credential binds it to ("" when none).
    owner: str = ""


def encode(resume: Resume, refs: Sequence[Ref], to: str) -> dict[str, Any]:
    """A hand-over request as JSON for the bus."""
    return {
        "agent": resume.agent_id,
        "session": resume.session_id,
        "type": resume.agent_type,
        "owner": resume.owner,
        "refs": [[r.task_id, r.subtask_id, r.attempt, r.lease_epoch] for r in refs],
        "to": to,
    }


def decode(body: dict[str, Any]) -> tuple[Resume, list[Ref], str]:
    """The resume, assignments and asking replica of a hand-over request.

    Raises:
        ValueError: A malformed request.
    """
    try:
        refs = [Ref(str(t), str(s), int(a), int(e)) for t, s, a, e in body["refs"]]
        resume = Resume(str(body["agent"]), str(body["session"]), str(body["type"]), str(body["owner"]))
        return resume, refs, str(body["to"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"malformed hand-over request: {exc}") from exc


def batches(refs: Sequence[Ref]) -> list[list[Ref]]:
    """``refs`` in requests of at most :data:`REFS_PER_REQUEST` bytes, a task's assignments in one (it
    moves whole), in the order their tasks first come."""
    by_task: dict[str, list[Ref]] = {}
    for ref in refs:
        by_task.setdefault(ref.task_id, []).append(ref)
    out: list[list[Ref]] = []
    size = 0
    for task_refs in by_task.values():
        length = sum(
            len(json.dumps([r.task_id, r.subtask_id, r.attempt, r.lease_epoch])) + 1 for r in task_refs
        )
        if not out or size + length > REFS_PER_REQUEST:
            out.append([])
            size = 0
        out[-1].extend(task_refs)
        size += length
    return out


def same_secret(known: str, presented: str) -> bool:
    """Whether two session ids are equal, compared in constant time (any characters)."""
    return bool(presented) and secrets.compare_digest(known.encode(), presented.encode())


class SessionMoves:
    """Both ends of moving an agent's work with its session (see the module docstring)."""

    def __init__(self, engine: Engine):
        self.engine = engine
        #: Set by :mod:`controlplane.replicas.session_relay` (None: no bus, nothing moves).
        self.ask: Ask | None = None
        #: Tasks handed over to other replicas, and taken from them (for tests and diagnostics).
        self.given = self.taken = 0
        #: Agents whose work moved from here, for :data:`LET_GO_AFTER` seconds: the session they moved
        #: with and the replica they moved to (the later requests of one resume find them gone from here).
        self._moved: dict[str, tuple[str, str]] = {}

    # --- the replica the agent resumes on ---------------------------------------

    async def take(self, resume: Resume, refs: Sequence[Ref]) -> list[str]:
        """Ask the live replicas holding the unfinished tasks of ``refs`` to hand them over, and claim them:
        the tasks held here now. A holder that refuses the session (stale or forged) moves nothing, and
        unless another proved it current this replica forgets what it knew of the agent, so the resume is
        unproven; a holder that proved it makes this replica read the agent's record again (written last
        by the holder, its last charges included)."""
        ask, claims, engine = self.ask, self.engine.claims, self.engine
        if ask is None or claims is None or not refs or not resume.session_id:
            return []
        ids = list(dict.fromkeys(ref.task_id for ref in refs))
        try:
            holders = await engine.storage.call(
                claims.store.live_holders, ids, time.time() - claims.lost_after
            )
        except Exception as exc:  # the agent is told its work is revoked; it runs again after its lease
            log.warning(
                "could not learn who holds the work of agents/%s resuming here: %s", resume.agent_id, exc
            )
            return []
        by_holder: dict[str, list[Ref]] = {}
        for ref in refs:
            holder = holders.get(ref.task_id)
            if holder is not None and holder != engine.replica:
                by_holder.setdefault(holder, []).append(ref)
        proven = refused = False
        taken: list[str] = []
        for holder, held in by_holder.items():
            for batch in batches(held):
                try:
                    answered = await ask(encode(resume, batch, engine.replica), holder)
                except FailedPrecondition as exc:  # a stale or forged session
                    log.info(
                        "the work of agents/%s resuming here stays where it is: %s",
                        resume.agent_id,
                        exc.message,
                    )
                    refused = True
                    break
                except MaosError as exc:  # too long for the bus, or the holder went away
                    log.warning(
                        "could not ask replica %s for the work of agents/%s resuming here (%d tasks stay "
                        "there and run again after their leases): %s",
                        holder,
                        resume.agent_id,
                        len({r.task_id for r in batch}),
                        exc.message,
                    )
                    continue
                if answered is None:
                    continue
                proven = True
                origin, answer = answered
                taken.extend(await self._claim(resume.agent_id, origin, answer.get("moved") or ()))
        if refused and not proven:
            engine.agent_side.unproven(resume.agent_id)
        elif proven:  # (its stream is here already: nothing to read)
            await engine.agent_side.find_agent(resume.agent_id)
        self.taken += len(taken)
        return taken

    async def _claim(self, agent_id: str, origin: str, moved: Sequence[Any]) -> list[str]:
        """Claim the tasks ``origin`` gave up for this replica: those held here now."""
        claims = self.engine.claims
        assert claims is not None
        taken = []
        for task_id in map(str, moved):
            try:
                if await claims.claim_given(task_id, origin):
                    taken.append(task_id)
            except Exception as exc:  # its giver lets it go after LET_GO_AFTER: claimable then
                log.warning("could not claim tasks/%s handed over by replica %s: %s", task_id, origin, exc)
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

        The session is checked against what this replica knows of the agent and against its committed
        record (another replica may have taken the agent over since, this one not knowing yet).

        Raises:
            InvalidArgument: A malformed request.
            FailedPrecondition: The session presented is not the agent's current session here, or the
                agent resuming is not of the same type and owner.
        """
        try:
            resume, refs, to = decode(body)
        except ValueError as exc:
            raise InvalidArgument(f"a hand-over request from another replica: {exc}") from None
        engine, claims = self.engine, self.engine.claims
        if claims is None or claims.check_fence():
            return None
        if not any(ref.task_id in engine.tasks for ref in refs):
            return None
        self._check(resume, to, engine.agent_side.agents.get(resume.agent_id))
        await engine.committer.durable()
        self._check(resume, to, await engine.storage.call(engine.storage.backend.get_agent, resume.agent_id))
        self._check(resume, to, engine.agent_side.agents.get(resume.agent_id))  # (it may have resumed here)
        held = [ref for ref in refs if ref.task_id in engine.tasks]
        movable = [
            task_id
            for task_id in dict.fromkeys(r.task_id for r in held)
            if self._movable(task_id, resume.agent_id, held)
        ]
        if not movable:
            return {"moved": []}
        engine.agent_side.moved_away(resume.agent_id)
        self._moved[resume.agent_id] = (resume.session_id, to)
        asyncio.get_running_loop().call_later(LET_GO_AFTER, self._moved.pop, resume.agent_id, None)
        for task_id in movable:
            self._give_up(task_id)
            claims.handed_to[task_id] = to
        self.given += len(movable)
        # Let go of what the asker does not claim once the mark is committed, whenever that is (a failed
        # commit is tried again; the asker, not answered, claims nothing).
        engine.committer.after_commit(lambda: claims.let_go_later(movable, LET_GO_AFTER))
        await engine.committer.durable()
        try:  # (the next replica's events of them come after these)
            await asyncio.wait_for(engine.watchers.sent_on(), EVENTS_WAIT)
        except TimeoutError:
            log.warning(
                "handing the work of agents/%s over to replica %s before its events reached the other replicas",
                resume.agent_id,
                to,
            )
        log.info(
            "agents/%s resumed on replica %s: its work on %d tasks moves there",
            resume.agent_id,
            to,
            len(movable),
        )
        return {"moved": movable}

    def _check(self, resume: Resume, to: str, info: AgentInfo | None) -> None:
        """Refuse unless ``info`` (this replica's or the committed record of the agent) has the session
        presented as current, and the agent resuming is of its type and owner.

        Raises:
            FailedPrecondition: Not so.
        """
        agent_id = resume.agent_id
        moved = self._moved.get(agent_id)
        if info is None and moved is not None and moved[1] == to:  # (an earlier request of the same resume)
            current = moved[0]
        else:
            current = info.session_id if info is not None else ""
        why = ""
        if not same_secret(current, resume.session_id):
            why = "a session id that is not its current session (a newer session replaced it, or the id is wrong)"
        elif info is not None and info.agent_type != resume.agent_type:
            why = f"agent type {resume.agent_type!r}, not its type {info.agent_type!r}"
        elif info is not None and info.owner not in ("", resume.owner):
            why = "a credential of another owner"
        if why:
            raise FailedPrecondition(
                f"agents/{agent_id} resumed with {why} on replica {self.engine.replica}: its work stays there",
                reason="ERROR_REASON_AGENT_STATE",
                metadata={"replica": self.engine.replica, "agent": agent_id},
            )

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
