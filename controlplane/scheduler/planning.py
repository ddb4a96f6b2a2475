"""Planning: which planner plans a task, and what happens when it fails or takes too long.

A component of :class:`~controlplane.scheduler.engine.Engine`. It owns the
planners, the built-in fallback planner, the pacer handed to planners that
call a model, and the plans being made in the background. A planner plugin
cannot lose a task: when it fails or runs past ``tasks.planning_timeout`` the
built-in plan is used, with a warning saying why. The plan made is handed to
:meth:`Planning._apply_plan`: fitted to the pool, with candidate steps for
consensus, held for approval if asked, then made into subtasks.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable, Sequence
from typing import Any

from controlplane.config import Settings
from controlplane.domain.model import ExecutionPlan, Failure, Subtask, SubtaskStatus, Task, TaskStatus, now
from controlplane.domain.planning import (
    DeterministicPlanner,
    Planner,
    validate_plan,
)
from controlplane.domain.pool import fit_plan
from controlplane.scheduler.book import NOTHING, UNUSED, word
from controlplane.scheduler.committer import Committer
from controlplane.scheduler.consensus import with_candidates
from controlplane.scheduler.pool_side import PoolSide
from controlplane.scheduler.review import Review

log = logging.getLogger(__name__)


def _capability(planner: Planner, name: str) -> Callable[..., Any] | None:
    """The planner's method ``name`` (an optional capability: ``plan_now``, ``plan_with_usage``), or None.

    Asked by name, and only a callable attribute counts: one that is not callable is no
    capability, so the task is planned through ``plan``. A runtime protocol check
    (``isinstance(planner, PlansAtOnce)``) would cost about 40 times as much on every submit, and
    would accept an attribute that cannot be called.
    """
    method = getattr(planner, name, None)
    return method if callable(method) else None


def _plan_now_of(planner: Planner) -> Callable[[Task], ExecutionPlan] | None:
    """The planner's ``plan_now`` (:class:`PlansAtOnce`), or None."""
    return _capability(planner, "plan_now")


class Planning:
    """The planners, and the plans being made in the background."""

    def __init__(
        self,
        *,
        settings: Settings,
        planners: Sequence[Planner],
        tasks: dict[str, Task],
        pool: PoolSide,
        kick: Callable[[], None],
        subtasks: dict[str, dict[str, Subtask]],
        count: Callable[[Task, Subtask, SubtaskStatus, int], None],
        committer: Committer,
        enqueue: Callable[[Task, Subtask], None],
        set_task_status: Callable[[Task, TaskStatus], None],
        finish_task: Callable[[Task, TaskStatus, Failure | None], None],
        consensus_plan: Callable[[Task, ExecutionPlan], ExecutionPlan],
        await_approval: Callable[[Task], bool],
    ):
        self.settings = settings
        self.planners = list(planners)
        self.fallback_planner = DeterministicPlanner(max_fanout=settings["tasks.max_fanout"])
        #: Paces model calls across agents (controlplane.pacing.Pacer; set by build_app), or None.
        self.pacer: Any = None
        #: The task book's tasks in memory (a plan made late applies only to the task still there).
        self.tasks = tasks
        self._pool = pool
        self._kick = kick
        #: The task book's subtasks (a plan's steps join them) and its counter.
        self.subtasks = subtasks
        self._count = count
        self.committer = committer
        self._enqueue = enqueue
        self._set_task_status = set_task_status
        self._finish_task = finish_task
        self._consensus_plan = consensus_plan
        self._await_approval = await_approval
        self.awaiting_approval = Review.awaiting_approval
        self._planning: dict[str, asyncio.Task[None]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Plan in the background on ``loop`` from now on."""
        self._loop = loop

    def cancel(self, task_id: str | None = None) -> None:
        """Stop planning the task (every task when None)."""
        if task_id is not None:
            planning = self._planning.pop(task_id, None)
            if planning:
                planning.cancel()
            return
        for planning in list(self._planning.values()):
            planning.cancel()
        self._planning.clear()

    def agent_pool(self) -> Any:
        """The pool plans are made for (see :meth:`PoolSide.agent_pool`)."""
        return self._pool.agent_pool()

    @property
    def supply(self) -> Any:
        """What the supervisor can launch, or None."""
        return self._pool.supply

    async def analyze(self, task: Task, with_model: bool = True) -> ExecutionPlan:
        """The plan a task would run with (same planner choice, fallback and consensus steps); no state.

        Without ``with_model`` only planners that plan at once (``plan_now``) are asked: a planner
        that would call a model, and spend its tokens, is passed over for the built-in plan.
        """
        try:
            planner = next(p for p in self.planners if p.accepts(task))
            plan_now = _plan_now_of(planner)
            if plan_now is None and not with_model:
                plan = self.fallback_planner.plan_now(task)
                plan.warnings.append(
                    f"planning with a model needs the permission task:submit; showing the {plan.planner} plan"
                )
            elif plan_now is not None:
                plan = plan_now(task)
            else:
                plan = await asyncio.wait_for(
                    self._ask_planner(planner.plan, task), self.settings["tasks.planning_timeout"]
                )
        except Exception as exc:  # as for a real task: the built-in plan, with why
            plan = self.fallback_planner.plan_now(task)
            plan.warnings.append(
                f"the planner failed ({type(exc).__name__}: {exc}); used the {plan.planner} plan"
            )
        known = self.supply.specs() if self.supply is not None else {}
        fitted = fit_plan(plan, task, self.agent_pool(), known)
        plan = fitted.plan
        if fitted.refused:
            plan.warnings = [*plan.warnings, f"this task would fail: {fitted.refused}"]
        if task.consensus.required:
            plan, _ = with_candidates(plan, task.consensus.candidates)
        return plan

    def _ask_planner(self, method: Callable[..., Any], task: Task) -> Any:
        """Call a planner's ``plan``/``plan_with_usage``, telling it the pool when it takes ``pool`` and
        giving it the pacer of model calls when it takes ``pacer``."""
        parameters = inspect.signature(method).parameters
        kwargs: dict[str, Any] = {}
        if "pool" in parameters:
            kwargs["pool"] = self.agent_pool()
        if "pacer" in parameters:
            kwargs["pacer"] = self.pacer
        return method(task, **kwargs)

    def _plan_and_queue(self, task: Task) -> None:
        """Plan the task now (planners with ``plan_now``) or in the background (model planners)."""
        if self.awaiting_approval(task):  # planned before a restart: it waits with the plan it showed
            return
        try:
            planner = next(p for p in self.planners if p.accepts(task))
            plan_now = _plan_now_of(planner)
            if plan_now is not None:
                plan = plan_now(task)
        except Exception as exc:  # a planner plugin must not be able to lose a task
            log.warning("planner failed for %s: %s", task.name, exc)
            plan = self.fallback_planner.plan_now(task)
            plan.warnings.append(
                f"the planner failed ({type(exc).__name__}: {exc}); used the {plan.planner} plan"
            )
            self._apply_plan(task, plan)
            return
        if plan_now is not None:
            self._apply_plan(task, plan)
            return
        if task.id in self._planning:
            return
        self._planning[task.id] = self._loop.create_task(self._plan_later(task, planner))  # type: ignore[union-attr]

    async def _plan_later(self, task: Task, planner: Planner) -> None:
        """Run a slow planner; fall back to the built-in plan if it fails or takes too long."""
        spent = None
        try:
            with_usage = _capability(planner, "plan_with_usage")  # ReportsPlanningUsage
            if with_usage is not None:
                plan, spent = await asyncio.wait_for(
                    self._ask_planner(with_usage, task), self.settings["tasks.planning_timeout"]
                )
            else:
                plan = await asyncio.wait_for(
                    self._ask_planner(planner.plan, task), self.settings["tasks.planning_timeout"]
                )
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a planner plugin must not be able to lose a task
            log.warning("planner %s failed for %s: %s", planner.name, task.name, exc)
            plan = self.fallback_planner.plan_now(task)
            why = (
                "took too long" if isinstance(exc, TimeoutError) else f"failed ({type(exc).__name__}: {exc})"
            )
            plan.warnings.append(f"planner {planner.name} {why}; used the {plan.planner} plan")
        finally:
            self._planning.pop(task.id, None)
        if task.status == TaskStatus.PENDING and self.tasks.get(task.id) is task:
            if spent is not None:
                task.usage = task.usage.plus(spent)
            self._apply_plan(task, plan)
            self._kick()

    def _apply_plan(self, task: Task, plan: ExecutionPlan) -> None:
        fitted = self._pool._fit(task, plan)
        if fitted is None:  # nobody here can run it: the task failed with the reason
            return
        plan = fitted
        if task.consensus.required:
            plan = self._consensus_plan(task, plan)
        problems = validate_plan(plan, self.settings["tasks.max_fanout"])
        if problems:
            self._finish_task(
                task,
                TaskStatus.FAILED,
                Failure("ERROR_REASON_INTERNAL", "unusable plan: " + "; ".join(problems)),
            )
            return
        task.plan = plan
        if plan.warnings:
            task.warnings = [*task.warnings, *plan.warnings]
        if self._await_approval(task):
            return
        self._start_plan(task, plan)

    def _start_plan(self, task: Task, plan: ExecutionPlan) -> None:
        """Make the subtasks of the task's (fitted, validated, perhaps approved) plan and queue the ready ones."""
        subs = self.subtasks.setdefault(task.id, {})
        stamp = now()
        for step in plan.subtasks:
            sub = Subtask(
                task_id=task.id,
                id=step.key,
                title=step.title,
                instructions=step.instructions,
                capability=word(step.capability),
                agent_type=word(step.agent_type or task.agent_type),
                kind=step.kind,
                depends_on=list(step.depends_on) if step.depends_on else NOTHING,
                status=SubtaskStatus.BLOCKED if step.depends_on else SubtaskStatus.QUEUED,
                queue_time=stamp,
                usage=UNUSED,
                artifacts=NOTHING,
                tool_calls=NOTHING,
                sources=NOTHING,
            )
            replaced = subs.get(sub.id)
            if replaced is not None:
                self._count(task, replaced, replaced.status, -1)
            subs[sub.id] = sub
            self._count(task, sub, sub.status, 1)
            self.committer.subtask(sub)
            if sub.status == SubtaskStatus.QUEUED:
                self._enqueue(task, sub)
        self._set_task_status(task, TaskStatus.QUEUED)
        if task.consensus.required and not self._pool._consensus_capacity(task):
            return
        self._pool._demand_for_plan(task)
