"""The evaluator-optimizer loop of a task (``review_rounds``): the rules, no state.

Once a task's answer is made (its synthesis step, its single step, the
parts joined, or its consensus winner), round 1 starts: a REVIEW step grades
the answer against the task's description, context and constraints and
answers with a verdict (``maos.v1.ReviewVerdict`` as JSON). An approval ends
the loop; a list of changes adds a REVISION step that rewrites the answer,
and the next round reviews the revision. After ``review_rounds`` rounds the
last revision is the answer (outcome EXHAUSTED).

A reviewer's output that holds no verdict counts as an approval with a note:
offline agents (echo, noop, shell ...) and agents that do not know review
steps end the loop instead of holding the task.

The loop's record lives on the task (``Task.review_state``)::

    {"max_rounds": 2, "outcome": "PENDING", "answer_step": "synthesis",
     "rounds": [{"round": 1, "review_step": "review-1", "reviewer": "agent-id",
                 "verdict": {"approved": False, "changes": [...], "summary": ""} or None,
                 "revision_step": "revision-1", "usage": {...}, "note": ""}]}

``answer_step`` is the step whose output is the answer under review ("" for
the parts joined as they are).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from controlplane.domain.context import bound_texts
from controlplane.domain.model import Subtask, SubtaskKind, Task
from controlplane.domain.pool import AgentPool
from controlplane.domain.tasks import combine_outputs

#: Changes kept of one verdict, and characters kept of each change and of the summary.
MAX_CHANGES = 20
MAX_CHANGE_CHARS = 2000
#: Agent types that review, in order of preference (when one is connected or launchable).
REVIEWER_TYPES = ("tester", "coordinator")
#: A capability an agent type may declare to review (beside the types above).
REVIEW_CAPABILITY = "review"
#: The kinds of the loop's steps (they see the answer alone, as input ``answer``).
LOOP_KINDS = (SubtaskKind.REVIEW, SubtaskKind.REVISION)
#: The input key of the answer under review or revision.
ANSWER_INPUT = "answer"
#: ``outcome`` values of the record (``maos.v1.ReviewOutcome`` names).
PENDING, APPROVED, EXHAUSTED = "PENDING", "APPROVED", "EXHAUSTED"
NO_VERDICT_NOTE = "the reviewer's output held no verdict; counted as an approval"


@dataclass
class Verdict:
    """A reviewer's judgement, as read from its output."""

    approved: bool
    changes: list[str] = field(default_factory=list)
    summary: str = ""
    #: Why the output was not read as it stands ("" when it was a proper verdict).
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        """The verdict as stored in the record."""
        return {"approved": self.approved, "changes": list(self.changes), "summary": self.summary}


def _clip(text: str) -> str:
    text = text.strip()
    return text if len(text) <= MAX_CHANGE_CHARS else text[: MAX_CHANGE_CHARS - 1] + "…"


def parse_verdict(output: str) -> Verdict:
    """The verdict in a review step's output: the JSON object from its first ``{`` to its last ``}``.

    ``{"approved": false}`` with no changes takes its summary as the change; with neither, and for
    output that holds no JSON object with a boolean ``approved``, the verdict is an approval with a
    note saying why.
    """
    start, end = output.find("{"), output.rfind("}")
    data: Any = None
    if 0 <= start < end:
        try:
            data = json.loads(output[start : end + 1])
        except ValueError:
            data = None
    if not isinstance(data, Mapping) or not isinstance(data.get("approved"), bool):
        return Verdict(True, note=NO_VERDICT_NOTE)
    raw = data.get("changes")
    items = raw if isinstance(raw, list) else [raw] if isinstance(raw, str) else []
    changes = [_clip(item) for item in items if isinstance(item, str) and item.strip()][:MAX_CHANGES]
    summary = _clip(data["summary"]) if isinstance(data.get("summary"), str) else ""
    if data["approved"]:
        return Verdict(True, [], summary)
    if not changes and summary:
        return Verdict(False, [summary], summary)
    if not changes:
        return Verdict(
            True,
            [],
            summary,
            note="the reviewer did not approve but asked for no change; counted as an approval",
        )
    return Verdict(False, changes, summary)


def review_key(round_number: int) -> str:
    """The subtask id of the review step of a round."""
    return f"review-{round_number}"


def revision_key(round_number: int) -> str:
    """The subtask id of the revision step of a round."""
    return f"revision-{round_number}"


def answer_step(subtasks: Mapping[str, Subtask]) -> str:
    """The step whose output is a plan's answer: the synthesis step, the single step, or "" (the parts joined)."""
    steps = [s for s in subtasks.values() if s.kind not in LOOP_KINDS]
    synthesis = [s.id for s in steps if s.kind == SubtaskKind.SYNTHESIS]
    if synthesis:
        return synthesis[0]
    return steps[0].id if len(steps) == 1 else ""


def new_record(max_rounds: int, answer: str) -> dict[str, Any]:
    """The record of a loop that starts now, reviewing the output of step ``answer``."""
    return {"max_rounds": max_rounds, "outcome": PENDING, "answer_step": answer, "rounds": []}


def current_answer(record: Mapping[str, Any], subtasks: Mapping[str, Subtask]) -> str:
    """The text of the answer the record points at (the parts joined when it names no step)."""
    step = subtasks.get(record["answer_step"]) if record["answer_step"] else None
    if step is not None:
        return step.output
    return combine_outputs([s for s in subtasks.values() if s.kind not in LOOP_KINDS])


def answer_inputs(task: Task, subtasks: Mapping[str, Subtask], limit: int) -> dict[str, str]:
    """What a review or revision step sees: the answer alone, bounded by ``limit``."""
    record = task.review_state or {}
    text = current_answer(record, subtasks) if record else ""
    where = f"maos task results {task.id}" + (
        f" (subtask {record['answer_step']})" if record.get("answer_step") else ""
    )
    bounded = bound_texts({ANSWER_INPUT: text}, limit, {ANSWER_INPUT: where})
    return {ANSWER_INPUT: bounded[ANSWER_INPUT][0]}


REVIEW_INSTRUCTIONS = (
    "Review the answer to the task (input `answer`): does it do what the task's description asks, "
    "completely and correctly, within its context and constraints? Reply with only a JSON object: "
    '{"approved": true, "summary": "..."} when it does, or {"approved": false, "changes": ["...", "..."], '
    '"summary": "..."} listing each change it needs, concretely (what is wrong or missing, and what to do).'
)


def revision_instructions(changes: list[str], round_number: int) -> str:
    """What a revision step is asked to do."""
    items = "\n".join(f"- {change}" for change in changes)
    return (
        f"A reviewer asked for changes to the answer to the task (input `answer`), round {round_number}:\n"
        f"{items}\n\nRevise the answer to make these changes, keeping what is right. Reply with the whole "
        "revised answer (it replaces the previous one), not only the changes and not a description of them."
    )


def route_reviewer(pool: AgentPool, task: Task) -> tuple[str, str]:
    """(agent_type, capability) of a review step: a tester, else a coordinator, else a type that declares
    ``review``, else the task's own type, else any agent."""
    if task.agent_type:
        return task.agent_type, ""
    for name in REVIEWER_TYPES:
        found = pool.types.get(name)
        if found is not None and found.present and not found.offline:
            return name, ""
    if any(t.declares(REVIEW_CAPABILITY) for t in pool.present()):
        return "", REVIEW_CAPABILITY
    return "", ""


def review_step(task: Task, round_number: int, after: str, pool: AgentPool) -> Subtask:
    """The review step of ``round_number``, after step ``after`` (or every current step when "")."""
    agent_type, capability = route_reviewer(pool, task)
    return Subtask(
        task_id=task.id,
        id=review_key(round_number),
        title=f"Review the answer (round {round_number})",
        instructions=REVIEW_INSTRUCTIONS,
        capability=capability,
        agent_type=agent_type,
        kind=SubtaskKind.REVIEW,
        depends_on=[after] if after else [],
    )


def revision_step(task: Task, round_number: int, changes: list[str], author: Subtask | None) -> Subtask:
    """The revision step of ``round_number``, for the agents that made the answer (``author``'s type or
    capability; any agent when the answer was the parts joined)."""
    return Subtask(
        task_id=task.id,
        id=revision_key(round_number),
        title=f"Revise the answer (round {round_number})",
        instructions=revision_instructions(changes, round_number),
        capability=author.capability if author is not None else "",
        agent_type=author.agent_type if author is not None else task.agent_type,
        kind=SubtaskKind.REVISION,
        depends_on=[review_key(round_number)],
    )


def verdict_text(verdict: Mapping[str, Any]) -> str:
    """One line for events and logs: "approved" or "changes requested: a; b"."""
    if verdict["approved"]:
        return "approved"
    return "changes requested: " + "; ".join(verdict["changes"])
