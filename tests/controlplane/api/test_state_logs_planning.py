"""Shared state, forwarded agent logs, and planners that take their time."""

from __future__ import annotations

import asyncio
from pathlib import Path

from agent_sdk.agent import Agent
from agent_sdk.context import Context, StateConflict
from agent_sdk.proto.maos.v1 import enums_pb2 as enums
from agent_sdk.proto.maos.v1 import messages_pb2 as m
from agent_sdk.proto.maos.v1 import system_service_pb2 as system_pb
from agent_sdk.proto.maos.v1 import task_service_pb2 as t
from agent_sdk.worker import Worker
from controlplane import hookimpl
from controlplane.app import build_app
from controlplane.domain.model import ExecutionPlan, PlannedSubtask
from controlplane.plugins import get_plugin_manager
from tests.harness.server import Stubs, make_settings, wait_for


class Counter(Agent):
    """Increments a shared counter with compare-and-set, then logs."""

    agent_type = "counter"
    capabilities = ["*"]
    max_concurrency = 8

    async def handle(self, ctx: Context) -> str:
        assert ctx.state is not None
        while True:
            current = await ctx.state.get("count")
            value, version = current if current else (b"0", 0)
            try:
                await ctx.state.put("count", str(int(value) + 1).encode(), expected_version=version)
                break
            except StateConflict:
                continue
        ctx.log.info("counted %s", ctx.assignment.title)
        return "counted"


async def run_worker(agent: Agent, address: str):
    worker = Worker(agent, address)
    runner = asyncio.get_running_loop().create_task(worker.run())
    await asyncio.wait_for(worker.registered.wait(), 10)
    return worker, runner


async def test_parallel_subtasks_share_state_with_compare_and_set(control_plane, stubs: Stubs) -> None:
    worker, runner = await run_worker(Counter(), control_plane.address)
    try:
        items = "\n".join(f"- part {i}" for i in range(6))
        reply = await stubs.tasks.SubmitTask(
            t.SubmitTaskRequest(task=m.Task(description=f"Count:\n{items}", max_agents=6)), timeout=5
        )
        await wait_for(lambda: _finished(stubs, reply.task.name), 15, message="the task")
        backend = control_plane.storage.backend
        stored = await control_plane.storage.call(backend.state_get, reply.task.name.split("/")[1], "count")
        assert stored is not None and stored.value == b"7"  # 6 parts + the synthesis step
        assert stored.version == 7

        logs = await stubs.system.ListLogs(
            system_pb.ListLogsRequest(task=reply.task.name, contains="counted"), timeout=5
        )
        assert len(logs.records) == 7
        assert all(r.agent == worker.agent_name and r.component == worker.agent_name for r in logs.records)
    finally:
        await worker.shutdown(0.5)
        await runner


async def _finished(stubs: Stubs, name: str) -> bool:
    task = (await stubs.tasks.GetTask(t.GetTaskRequest(name=name), timeout=5)).task
    return task.status == enums.TASK_STATUS_COMPLETED


async def test_tail_logs_streams_new_records(control_plane, stubs: Stubs) -> None:
    stream = stubs.system.TailLogs(system_pb.TailLogsRequest(contains="tail-marker"), timeout=10)
    await wait_for(lambda: control_plane.logbook.subscribers, 5, message="the subscriber")
    import logging

    logging.getLogger("controlplane.scheduler").warning("tail-marker one")
    record = (await stream.read()).record
    assert record.message == "tail-marker one" and record.component == "scheduler"
    assert record.level == enums.LOG_LEVEL_WARNING
    stream.cancel()


class SlowPlanner:
    """An async-only planner (like a model-backed one)."""

    name = "slow"

    def __init__(self, fail: bool):
        self.fail = fail
        self.release = asyncio.Event()

    def accepts(self, task) -> bool:
        return True

    async def plan(self, task) -> ExecutionPlan:
        await self.release.wait()
        if self.fail:
            raise RuntimeError("model unavailable")
        return ExecutionPlan(
            subtasks=[PlannedSubtask("only", "Only step", task.description)], planner=self.name
        )


class PlannerPlugin:
    def __init__(self, planner: SlowPlanner):
        self.planner = planner

    @hookimpl
    def register_planners(self, settings):
        return [self.planner]


async def _app_with(planner: SlowPlanner, home: Path):
    pm = get_plugin_manager(load_entrypoints=False)
    pm.register(PlannerPlugin(planner))
    app = build_app(make_settings(home), pm)
    await app.start("127.0.0.1:0")
    return app


async def test_an_async_planner_plans_in_the_background(tmp_path: Path) -> None:
    planner = SlowPlanner(fail=False)
    app = await _app_with(planner, tmp_path)
    stubs = Stubs(app.address)
    try:
        reply = await stubs.tasks.SubmitTask(
            t.SubmitTaskRequest(task=m.Task(description="a\n- b\n- c")), timeout=5
        )
        assert reply.task.status == enums.TASK_STATUS_PENDING and reply.task.status_reason == "planning"
        planner.release.set()

        async def planned() -> bool:
            full = await stubs.tasks.GetTask(
                t.GetTaskRequest(name=reply.task.name, view=enums.TASK_VIEW_FULL)
            )
            return full.plan.planner == "slow" and [s.name.rsplit("/", 1)[1] for s in full.subtasks] == [
                "only"
            ]

        await wait_for(planned, 10, message="the slow plan")
    finally:
        await stubs.close()
        await app.stop(grace=0.5)


async def test_a_failing_planner_falls_back_with_a_warning(tmp_path: Path) -> None:
    planner = SlowPlanner(fail=True)
    planner.release.set()
    app = await _app_with(planner, tmp_path)
    stubs = Stubs(app.address)
    try:
        reply = await stubs.tasks.SubmitTask(
            t.SubmitTaskRequest(task=m.Task(description="x:\n- a\n- b")), timeout=5
        )

        async def fell_back() -> m.Task | None:
            task = (await stubs.tasks.GetTask(t.GetTaskRequest(name=reply.task.name))).task
            return task if task.status != enums.TASK_STATUS_PENDING else None

        task = await wait_for(fell_back, 10, message="the fallback plan")
        assert any("planner slow failed (RuntimeError: model unavailable)" in w for w in task.warnings)
        full = await stubs.tasks.GetTask(t.GetTaskRequest(name=reply.task.name, view=enums.TASK_VIEW_FULL))
        assert full.plan.planner == "deterministic" and len(full.subtasks) == 3
    finally:
        await stubs.close()
        await app.stop(grace=0.5)


class NotReallyCapable(SlowPlanner):
    """Attributes named like the optional capabilities that cannot be called: they are no capabilities."""

    plan_now = "not a method"
    plan_with_usage = "not a method either"


async def test_capabilities_that_cannot_be_called_leave_the_task_to_plan(tmp_path: Path) -> None:
    planner = NotReallyCapable(fail=False)
    planner.release.set()
    app = await _app_with(planner, tmp_path)
    stubs = Stubs(app.address)
    try:
        reply = await stubs.tasks.SubmitTask(
            t.SubmitTaskRequest(task=m.Task(description="x:\n- a\n- b")), timeout=5
        )

        async def planned() -> m.GetTaskResponse | None:
            full = await stubs.tasks.GetTask(
                t.GetTaskRequest(name=reply.task.name, view=enums.TASK_VIEW_FULL)
            )
            return full if full.task.status != enums.TASK_STATUS_PENDING else None

        full = await wait_for(planned, 10, message="the plan")
        assert full.plan.planner == "slow" and [s.name.rsplit("/", 1)[1] for s in full.subtasks] == ["only"]
        assert not any("failed" in w for w in full.task.warnings), list(full.task.warnings)
    finally:
        await stubs.close()
        await app.stop(grace=0.5)
