"""Context flows: a task sees the results it depends on, a step every step before it, the synthesis the plan.

Real control plane, real CLI, in-process Claude agents and the Messages API test server, which
records every request: the assertions read the prompts the model was sent.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from agent_sdk.proto.maos.v1 import enums_pb2 as enums
from agent_sdk.proto.maos.v1 import messages_pb2 as msgs
from agent_sdk.proto.maos.v1 import task_service_pb2 as tasks_pb
from agent_sdk.worker import Worker
from controlplane.app import App
from maos_plugins.claude.agents import ClaudeAgent, CoordinatorAgent, ResearcherAgent
from tests.cli.conftest import Maos
from tests.harness.messages_api import MessagesAPIServer, RecordedRequest
from tests.harness.server import Stubs, make_settings, start_app, wait_for
from tests.plugins.claude.conftest import params

SUBTASK = re.compile(r"<subtask[^>]*>\n(.*?)\n</subtask>", re.S)


def naming(body: dict[str, Any]) -> str:
    """A responder whose answer names the subtask it answers (and is easy to find in later prompts)."""
    found = SUBTASK.search(str(body["messages"][-1]["content"]))
    what = found.group(1).strip().splitlines()[0] if found else "?"
    return f"RESULT OF <<{what}>>: the finding."


def request_for(api: MessagesAPIServer, instructions: str) -> RecordedRequest:
    """The one recorded request whose subtask is ``instructions``."""
    (found,) = [
        r
        for r in api.requests
        if (m := SUBTASK.search(str(r.body["messages"][-1]["content"])))
        and m.group(1).strip() == instructions
    ]
    return found


@asynccontextmanager
async def agents(address: str, *agent_list: ClaudeAgent) -> AsyncIterator[list[Worker]]:
    workers = [Worker(agent, address, max_backoff=0.5) for agent in agent_list]
    runners = [asyncio.get_running_loop().create_task(w.run()) for w in workers]
    try:
        for worker in workers:
            await asyncio.wait_for(worker.registered.wait(), 10)
        yield workers
    finally:
        for worker in workers:
            await worker.shutdown(0.5)
        await asyncio.gather(*runners)


async def test_the_guides_chain_hands_each_result_to_the_next_task(
    control_plane: App, maos_home: Path, api: MessagesAPIServer
) -> None:
    api.responder = naming
    maos = Maos(control_plane.address, maos_home)
    async with agents(control_plane.address, ResearcherAgent(params(api))):
        research = (await maos("task", "submit", "Research user requirements")).stdout.strip()
        design = (
            await maos("task", "submit", "Design system architecture", "--depends-on", research)
        ).stdout.strip()
        implement = (
            await maos("task", "submit", "Implement the system", "--depends-on", design)
        ).stdout.strip()
        test = (
            await maos("task", "submit", "Create comprehensive tests", "--depends-on", implement)
        ).stdout.strip()
        waited = await maos("task", "wait", test, "--timeout", "60")
        assert waited.exit_code == 0, waited.output
    chain = [
        "Research user requirements",
        "Design system architecture",
        "Implement the system",
        "Create comprehensive tests",
    ]
    for earlier, later in zip(chain, chain[1:], strict=False):
        shared = request_for(api, later).body["system"][1]
        assert shared["cache_control"] == {"type": "ephemeral"}  # in the shared, cached part of the prompt
        assert f"RESULT OF <<{earlier}>>: the finding." in shared["text"]
    first = request_for(api, chain[0]).body["system"][1]["text"]
    assert "RESULT OF" not in first and "depends on" not in first


async def test_a_long_dependency_result_is_cut_with_a_visible_note(
    tmp_path: Path, api: MessagesAPIServer
) -> None:
    long_answer = "word " * 3000  # 15,000 characters
    api.responder = lambda body: long_answer if "first" in str(body["messages"]) else "done"
    app = await start_app(make_settings(tmp_path, **{"tasks.context_max_chars": 1000}))
    stubs = Stubs(app.address)
    try:
        async with agents(app.address, ResearcherAgent(params(api))):
            first = await stubs.tasks.SubmitTask(
                tasks_pb.SubmitTaskRequest(task=msgs.Task(description="The first part")), timeout=5
            )
            second = await stubs.tasks.SubmitTask(
                tasks_pb.SubmitTaskRequest(
                    task=msgs.Task(description="The second part", depends_on=[first.task.name])
                ),
                timeout=5,
            )

            async def done() -> bool:
                got = await stubs.tasks.GetTask(tasks_pb.GetTaskRequest(name=second.task.name), timeout=5)
                return got.task.status == enums.TASK_STATUS_COMPLETED

            await wait_for(done, 30, message="the dependant task")
    finally:
        await stubs.close()
        await app.stop(grace=0.5)
    shared = request_for(api, "The second part").body["system"][1]["text"]
    first_id = first.task.name.split("/")[1]
    assert "word word" in shared and len(shared) < 3000
    assert (
        f"characters left out here (the context limit tasks.context_max_chars); the whole text: "
        f"maos task results {first_id}" in shared
    )


async def test_every_step_sees_all_it_depends_on_and_the_synthesis_sees_the_plan(
    tmp_path: Path, api: MessagesAPIServer
) -> None:
    plan = {
        "subtasks": [
            {
                "key": "design",
                "title": "Design",
                "instructions": "Design the API",
                "capability": "orchestration",
            },
            {
                "key": "implement",
                "title": "Implement",
                "instructions": "Implement the API",
                "capability": "orchestration",
                "depends_on": ["design"],
            },
            {
                "key": "test",
                "title": "Test",
                "instructions": "Test the API",
                "capability": "orchestration",
                "depends_on": ["implement"],
            },
        ]
    }
    api.push_tool_use("submit_plan", plan)
    api.responder = naming
    app = await start_app(
        make_settings(tmp_path, **{"claude.api_key": "sk-ant-test-key", "claude.base_url": api.base_url})
    )
    stubs = Stubs(app.address)
    try:
        async with agents(app.address, CoordinatorAgent(params(api))):
            reply = await stubs.tasks.SubmitTask(
                tasks_pb.SubmitTaskRequest(task=msgs.Task(description="Build a small API")), timeout=5
            )

            async def done() -> bool:
                got = await stubs.tasks.GetTask(tasks_pb.GetTaskRequest(name=reply.task.name), timeout=5)
                assert got.task.status != enums.TASK_STATUS_FAILED, got.task.failure
                return got.task.status == enums.TASK_STATUS_COMPLETED

            await wait_for(done, 30, message="the planned task")
    finally:
        await stubs.close()
        await app.stop(grace=0.5)
    test_prompt = request_for(api, "Test the API").body["messages"][0]["content"]
    assert "RESULT OF <<Implement the API>>" in test_prompt
    assert "RESULT OF <<Design the API>>" in test_prompt  # transitively, through implement
    synthesis = request_for(api, "Combine the results of the parts into one answer to:\nBuild a small API")
    synthesis = synthesis.body["messages"][0]
    for step in ("Design the API", "Implement the API", "Test the API"):
        assert f"RESULT OF <<{step}>>" in synthesis["content"]
    assert (
        "<plan>\n- design: Design\n- implement: Implement (after design)\n- test: Test (after implement)"
        in synthesis["content"]
    )
