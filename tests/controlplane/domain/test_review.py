"""Reading a reviewer's verdict, and who reviews (controlplane.domain.review)."""

from __future__ import annotations

import pytest

from controlplane.domain.model import Task
from controlplane.domain.pool import BACKING_MODEL, BACKING_OFFLINE, AgentPool, PoolType
from controlplane.domain.review import (
    MAX_CHANGE_CHARS,
    MAX_CHANGES,
    NO_VERDICT_NOTE,
    parse_verdict,
    route_reviewer,
)


def test_an_approval_and_a_list_of_changes_are_read_from_json_with_text_around_it() -> None:
    assert parse_verdict('{"approved": true, "summary": "fine"}').approved
    verdict = parse_verdict(
        'Here is my verdict:\n```json\n{"approved": false, "changes": ["a", " b ", ""],'
        ' "summary": "two gaps"}\n```'
    )
    assert (verdict.approved, verdict.changes, verdict.summary, verdict.note) == (
        False,
        ["a", "b"],
        "two gaps",
        "",
    )


@pytest.mark.parametrize(
    "output", ["ok", "", "{not json}", '{"approved": "yes"}', "[1, 2]", '{"changes": ["x"]}']
)
def test_output_without_a_verdict_counts_as_an_approval_with_a_note(output: str) -> None:
    verdict = parse_verdict(output)
    assert verdict.approved and verdict.note == NO_VERDICT_NOTE


def test_a_refusal_without_changes_takes_its_summary_as_the_change_or_else_approves() -> None:
    assert parse_verdict('{"approved": false, "summary": "too vague"}').changes == ["too vague"]
    empty = parse_verdict('{"approved": false}')
    assert empty.approved and "no change" in empty.note


def test_changes_are_bounded() -> None:
    verdict = parse_verdict(
        '{"approved": false, "changes": %s}'
        % ('["' + "x" * (MAX_CHANGE_CHARS * 2) + '"' + ', "y"' * (MAX_CHANGES * 2) + "]")
    )
    assert len(verdict.changes) == MAX_CHANGES and len(verdict.changes[0]) == MAX_CHANGE_CHARS


def _pool(*types: PoolType) -> AgentPool:
    return AgentPool.of(types)


def test_a_tester_reviews_else_a_coordinator_else_any_agent() -> None:
    tester = PoolType("tester", frozenset({"qa"}), BACKING_MODEL, connected=1)
    coordinator = PoolType("coordinator", frozenset({"synthesis"}), BACKING_MODEL, launchable=True)
    echo = PoolType("echo", frozenset({"*"}), BACKING_OFFLINE, connected=1)
    task = Task(id="t", description="d")
    assert route_reviewer(_pool(tester, coordinator, echo), task) == ("tester", "")
    assert route_reviewer(_pool(coordinator, echo), task) == ("coordinator", "")
    assert route_reviewer(_pool(echo), task) == ("", "")
    checker = PoolType("checker", frozenset({"review"}), BACKING_MODEL, connected=1)
    assert route_reviewer(_pool(checker, echo), task) == ("", "review")
    assert route_reviewer(_pool(tester), Task(id="t", description="d", agent_type="echo")) == ("echo", "")
