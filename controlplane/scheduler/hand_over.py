"""Handing tasks over: how a replica gives tasks up to the others (see :mod:`.claims`, "Don't hoard").

A task given up is marked *leaving* in the commit of its state (or, sent away, in its submit's
commit). Behind that commit's events a ``work`` wake-up naming the tasks is published, in the round
trip that sends the events where the bus can (:meth:`HandOver._wake_behind_events`), else once they
are sent (waited for at most :data:`EVENTS_WAIT` seconds). :data:`LET_GO_DELAY` after it the tasks
are let go (``claimed_by = NULL`` where the mark still stands), so a claim pass finds any the wake-up
did not bring; a let-go that fails, or passes over rows a claim by id has locked, is tried again on
the claims poll.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from controlplane.domain.model import Task
from controlplane.scheduler.work_hints import WorkHint

if TYPE_CHECKING:
    from controlplane.scheduler.claims import Claims

log = logging.getLogger(__name__)

#: Wake-up topic: claimable work appeared (the same as :data:`.claims.WORK`).
WORK = "work"
#: Seconds a give-up waits for its events to leave for the other replicas before releasing the
#: task anyway (Redis or the database not taking them: their watchers are told of the gap).
EVENTS_WAIT = 2.0
#: Seconds between a ``work`` wake-up naming tasks given up and their let-go (the fallback for a lost
#: wake-up), so that the claim by id of a replica woken does not wait for the let-go's commit.
LET_GO_DELAY = 0.1


class HandOver:
    """The tasks one replica gave up and is handing over (its :class:`~.claims.Claims` holds one)."""

    def __init__(self, claims: Claims):
        self.claims = claims
        #: Tasks given up in the commit being gathered, and what their ``work`` wake-up will say.
        self.leaving: list[str] = []
        self.leaving_hint = WorkHint()
        #: Tasks given up and not yet released, each with what is set once it is (a claim of one
        #: here waits for it).
        self.releasing: dict[str, asyncio.Event] = {}
        self.leaving_released = asyncio.Event()
        #: The commit (:attr:`Committer.generation`) that writes the state of the tasks in ``leaving``.
        self.leaving_in: object = None
        #: Tasks given up whose let-go failed (tried again on the poll).
        self.unlet: set[str] = set()
        #: Tasks given up here whose let-go has not succeeded yet: their row may still be marked leaving
        #: from here, which only this replica's claim (or one by id from their wake-up) takes.
        self.marked: set[str] = set()

    def sends_away(self, tasks: list[Task]) -> bool:
        """Whether the tasks of a submit accepted here go to the other replicas in the submit's own commit
        (:meth:`leave_in_commit`, then :meth:`sent_away`): no agent is connected here, so none could run
        them (planning waits for the replica that claims them), none waits for a dependency (those
        wait here, as on one replica, and are given up once planned) and none waits for its plan's
        approval (``approve_plan``: planned here, so the user sees the plan at once, and given up once
        approved)."""
        if (
            not tasks
            or self.claims.fenced
            or self.claims._stopped
            or self.claims._loop is None
            or self.claims._agents()
        ):
            return False
        return not any(task.depends_on or task.approve_plan for task in tasks)

    def leave_in_commit(self, tasks: list[Task]) -> None:
        """Mark tasks not in memory here leaving in the commit that writes them (a submit's)."""
        for task in tasks:
            self.claims.engine.committer.release(task.id)

    def sent_away(self, tasks: list[Task]) -> None:
        """Tasks :meth:`leave_in_commit` marked are committed and their events delivered: hand them over
        now (the wake-up goes right behind those events)."""
        hint, released = WorkHint(origin=self.claims.holder), asyncio.Event()
        for task in tasks:  # not planned yet: announced by the agent type they name, if any
            self.claims.released += 1
            hint.add(
                int(task.priority), task.create_time, [(task.agent_type, "")] if task.agent_type else None
            )
            self.releasing[task.id] = released
            self.marked.add(task.id)
        self._after_events([task.id for task in tasks], hint, released)

    def soon(self, task: Task, needs: list[tuple[str, str]] | None) -> None:
        """Hand a task over after the commit being gathered (one wake-up for all the tasks it gives up)."""
        committer = self.claims.engine.committer
        if self.leaving_in is not committer.generation:  # one wake-up per commit of given-up state
            leaving: list[str] = []
            hint = WorkHint(origin=self.claims.holder)
            released = asyncio.Event()
            self.leaving, self.leaving_hint = leaving, hint
            self.leaving_released, self.leaving_in = released, committer.generation
            # (last: the events of that commit are on their way by then, so its wake-up can follow them)
            committer.after_commit(lambda: self._after_events(leaving, hint, released), last=True)
        self.leaving_hint.add(int(task.priority), task.create_time, needs)
        self.leaving.append(task.id)
        self.releasing[task.id] = self.leaving_released
        self.marked.add(task.id)

    def _after_events(self, task_ids: list[str], hint: WorkHint, released: asyncio.Event) -> None:
        """After the commit that marked given-up tasks leaving, once its events are on their way to the
        other replicas: the wake-up naming the tasks goes out right behind them where the bus can send it
        in the same round trip (Redis: the PUBLISH in the script of the events' XADD), else once they
        are sent (:meth:`_hand_over`)."""
        if self.leaving is task_ids:
            self.leaving, self.leaving_in = [], None
        hint.ids = task_ids
        payload = hint.encode()
        named = len(WorkHint.decode(payload).ids)
        woken = None
        if named and not (self.claims._stopped or self.claims.check_fence()):
            woken = self._wake_behind_events(payload)
        self.claims.engine._background(self._hand_over(task_ids, hint, released, payload, named, woken))

    def _wake_behind_events(self, payload: str) -> asyncio.Future[None] | None:
        """Queue a ``work`` wake-up right behind the events still to be written to the event stream, in
        their round trip (done once sent); None when the bus cannot, or no event waits."""
        watchers = self.claims.engine.watchers
        stream = watchers.stream if watchers.stream is not None else watchers.relay
        publish_after = getattr(self.claims.bus, "publish_after", None)
        if stream is None or publish_after is None:
            return None
        try:
            woken: asyncio.Future[None] | None = publish_after(stream, WORK, payload)
        except Exception as exc:  # (published after the events, as without a stream)
            log.warning("could not queue a work wake-up behind its events: %s", exc)
            return None
        return woken

    async def _hand_over(
        self,
        task_ids: list[str],
        hint: WorkHint,
        released: asyncio.Event,
        payload: str,
        named: int,
        woken: asyncio.Future[None] | None,
    ) -> None:
        """Once the events of tasks given up left for the other replicas: wake those (naming the tasks; done
        already when ``woken`` is sent) and let the tasks go."""
        try:
            try:  # (on a timeout a wake-up still queued behind the events is dropped: published below)
                await asyncio.wait_for(
                    woken if woken is not None else self.claims.engine.watchers.sent_on(), EVENTS_WAIT
                )
            except TimeoutError:
                woken = None
                log.warning(
                    "handing %d tasks over before their events reached the other replicas", len(task_ids)
                )
            if self.claims._stopped or self.claims.check_fence():
                return  # (a stop gives up everything it holds, and wakes the others)
            if named and woken is None:  # the others claim them by id now, whether or not they are let go yet
                self.claims._publish(WORK, payload)
        finally:  # (from here on a claim here takes them back: the mark is committed)
            for task_id in task_ids:
                self.releasing.pop(task_id, None)
            released.set()
        if named:  # (the claim by id does not wait behind the let-go's commit on the same rows)
            await asyncio.sleep(LET_GO_DELAY)
        if self.claims._stopped or self.claims.check_fence():
            return
        await self.let_go(task_ids)
        if named < len(task_ids):  # (too many to name them all: the others search, finding them once let go)
            hint.ids = []
            self.claims._publish(WORK, hint.encode())

    async def let_go(self, task_ids: list[str]) -> None:
        """Make tasks given up here claimable by any claim pass (those claimed by id meanwhile stay)."""
        try:
            locked = await self.claims.engine.storage.call(
                self.claims.store.let_go, self.claims.holder, task_ids
            )
        except Exception as exc:  # the wake-up named them; the poll tries again for a claim pass
            log.warning(
                "could not let go of %d tasks given up (tried again on the poll): %s", len(task_ids), exc
            )
            self.unlet.update(task_id for task_id in task_ids if task_id in self.marked)
            return
        # Passed over while a claim by id locked them: tried again on the poll, in case that claim aborts.
        self.unlet.update(task_id for task_id in locked if task_id in self.marked)
        self.marked.difference_update(set(task_ids) - set(locked))
        self.claims._maybe_more = True
        self.claims.request()  # (agents that connected here meanwhile may take them: no wait for the poll)
