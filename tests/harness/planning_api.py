"""Responders for :class:`tests.harness.messages_api.MessagesAPIServer` that plan and answer like a model.

* :func:`plan_over_offered_types`: a planning request (one offering the ``submit_plan`` tool) gets a
  ``submit_plan`` call over the agent types its system prompt offers (the planner lists them as lines
  ``  - name: capability, ...``): one work step per offered type, in order, then a synthesis step.
* :func:`role_answer`: any other request gets an answer naming the role that answered (from the role
  prompt, ``Role: coordinator.``), whether it combined parts, and the subtask's title, for example
  ``coordinator synthesized: Synthesize the results`` — so a test can tell who did what.
* :func:`model_like`: both, for a server that behaves like a model end to end.

Example::

    with MessagesAPIServer(api_key="k", responder=model_like()) as api:
        ...
"""

from __future__ import annotations

import re
from typing import Any

from tests.harness.messages_api import MessageReply, Reply, Responder, _text_of

_OFFERED_TYPE = re.compile(r"^\s+- ([A-Za-z][\w-]*): (.*)$", re.MULTILINE)
_ROLE = re.compile(r"Role: ([\w-]+)")
_TITLE = re.compile(r'<subtask title="([^"]*)">')


def is_planning(request: dict[str, Any]) -> bool:
    """Whether the request offers the planner's ``submit_plan`` tool."""
    return any(isinstance(t, dict) and t.get("name") == "submit_plan" for t in request.get("tools") or [])


def offered_agent_types(request: dict[str, Any]) -> dict[str, list[str]]:
    """The agent types (and their capabilities) a planning request offers, in order."""
    system = _text_of(request.get("system", ""))
    return {
        m.group(1): [c.strip() for c in m.group(2).split(",") if c.strip()]
        for m in _OFFERED_TYPE.finditer(system)
    }


def plan_over_offered_types(request: dict[str, Any], parts: int = 2) -> Reply | None:
    """A ``submit_plan`` reply over the offered types (None when the request does not plan).

    Args:
        request: The request body.
        parts: The most work steps (one per offered type, in the order offered).
    """
    if not is_planning(request):
        return None
    offered = [name for name in offered_agent_types(request) if name != "coordinator"] or ["researcher"]
    steps = [
        {
            "key": f"part_{index + 1}",
            "title": f"Part {index + 1} for {name}",
            "instructions": f"Do part {index + 1} of the task as a {name}.",
            "capability": name,
            "depends_on": [],
        }
        for index, name in enumerate(offered[:parts])
    ]
    if len(steps) > 1:
        steps.append(
            {
                "key": "final",
                "title": "Synthesize the results",
                "kind": "synthesis",
                "instructions": "Combine the parts into one answer.",
                "capability": "synthesis",
                "depends_on": [s["key"] for s in steps],
            }
        )
    plan = {"subtasks": steps, "complexity": "low", "recommended_agents": len(steps)}
    return MessageReply(
        [{"type": "tool_use", "id": "toolu_plan", "name": "submit_plan", "input": plan}],
        stop_reason="tool_use",
    )


def role_answer(request: dict[str, Any]) -> Reply:
    """An answer naming the role that gave it, whether it combined parts, and the subtask's title."""
    role = _ROLE.search(_text_of(request.get("system", "")))
    users = [m for m in request.get("messages", []) if isinstance(m, dict) and m.get("role") == "user"]
    text = _text_of(users[-1]) if users else ""
    title = _TITLE.search(text)
    verb = "synthesized" if "Your part: combine" in text else "answered"
    answer = f"{role.group(1) if role else 'model'} {verb}: {title.group(1) if title else 'the request'}"
    return MessageReply([{"type": "text", "text": answer}])


def model_like(parts: int = 2) -> Responder:
    """Plans planning requests over the offered types and answers the others with :func:`role_answer`."""

    def respond(request: dict[str, Any]) -> Reply:
        return plan_over_offered_types(request, parts) or role_answer(request)

    return respond
