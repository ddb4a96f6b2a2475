"""End to end: a custom type's MCP server answers the model's tool call, and the answer reaches the result.

A real control plane, a real ``maos-agent`` process of a YAML type whose MCP server (the tests' facts
server, stdio) it starts, and the Messages API test server playing the model: it answers the first
request with a ``tool_use`` of the server's tool, and the request carrying the ``tool_result`` with
a final answer quoting it (the documented client-tool flow of the Messages API).
"""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path
from typing import Any

from agent_sdk.proto.maos.v1 import enums_pb2 as enums
from controlplane.app import App
from maos_plugins.claude.tools.sources import PROBES
from tests.controlplane.api.test_task_service import results, submit, wait_status
from tests.harness.messages_api import MessageReply, MessagesAPIServer
from tests.harness.server import Stubs, wait_for_agents

ROOT = Path(__file__).resolve().parents[2]
KEY = "sk-ant-test-key"
TOOL = "facts_lookup_fact"  # tool lookup_fact of the server named facts, as the model sees it


def tool_results(request: dict[str, Any]) -> list[dict[str, Any]]:
    """The ``tool_result`` blocks of a request's last user message."""
    users = [m for m in request.get("messages", []) if m.get("role") == "user"]
    content = users[-1]["content"] if users else ""
    return (
        [b for b in content if isinstance(b, dict) and b.get("type") == "tool_result"]
        if isinstance(content, list)
        else []
    )


def model(request: dict[str, Any]) -> MessageReply:
    """Call the fact tool first; once its result is in, answer quoting it."""
    done = tool_results(request)
    if not done:
        return MessageReply(
            [{"type": "tool_use", "id": "toolu_facts_1", "name": TOOL, "input": {"topic": "everest"}}],
            stop_reason="tool_use",
        )
    quoted = done[0]["content"]
    text = quoted if isinstance(quoted, str) else " ".join(b.get("text", "") for b in quoted)
    return MessageReply([{"type": "text", "text": f"According to the facts server: {text}"}])


async def test_an_mcp_tools_answer_reaches_the_tasks_result(
    control_plane: App, stubs: Stubs, maos_home: Path, agent_processes
) -> None:
    PROBES.clear()
    with MessagesAPIServer(api_key=KEY, responder=model) as api:
        (maos_home / "agents").mkdir(parents=True)
        (maos_home / "agents" / "fact_researcher.yml").write_text(
            textwrap.dedent(f"""\
            name: fact_researcher
            type: researcher
            parameters: {{api_key: {KEY}, base_url: "{api.base_url}", timeout: 20}}
            mcp_servers:
              - name: facts
                command: {json.dumps([sys.executable, "-m", "tests.harness.mcp_facts"])}
                env: {{PYTHONPATH: {json.dumps(str(ROOT))}}}
                cwd: {json.dumps(str(ROOT))}
            specialized_tools: [lookup_fact]
            """)
        )
        agent_processes(control_plane.address, "fact_researcher", home=maos_home)
        await wait_for_agents(control_plane, 1, timeout=25)

        task = await submit(stubs, "How high is Mount Everest?", agent_type="fact_researcher")
        done = await wait_status(
            stubs, task.name, enums.TASK_STATUS_COMPLETED, enums.TASK_STATUS_FAILED, timeout=30
        )
        assert done.status == enums.TASK_STATUS_COMPLETED, done
        result = await results(stubs, task.name)
        assert "According to the facts server: Mount Everest is 8,849 metres high." in result.output, result

        first, second = [r.body for r in api.requests if r.path == "/v1/messages"][:2]
        offered = [t["name"] for t in first.get("tools", [])]
        assert TOOL in offered and "facts_add" not in offered  # specialized_tools keeps only lookup_fact
        [answered] = tool_results(second)
        assert answered["tool_use_id"] == "toolu_facts_1" and not answered.get("is_error")
