"""The rules of what a step sees and of how a budget is shared (pure functions)."""

from __future__ import annotations

from controlplane.domain.budget import NOTHING_LEFT, reserve_share
from controlplane.domain.context import (
    MIN_SHARE,
    ancestors,
    bound_texts,
    fair_shares,
    plan_outline,
    step_inputs,
)
from controlplane.domain.model import Subtask, SubtaskKind


def chain() -> dict[str, Subtask]:
    steps = [
        ("design", []),
        ("implement", ["design"]),
        ("test", ["implement"]),
        ("docs", []),
        ("synthesis", ["test", "docs"]),
    ]
    return {
        key: Subtask(
            "t1",
            key,
            key.title(),
            f"do {key}",
            depends_on=deps,
            output=f"{key} done",
            kind=SubtaskKind.SYNTHESIS if key == "synthesis" else SubtaskKind.WORK,
        )
        for key, deps in steps
    }


def test_a_step_sees_every_step_it_depends_on_transitively_in_plan_order() -> None:
    subs = chain()
    assert ancestors(subs, "synthesis") == ["design", "implement", "test", "docs"]
    assert ancestors(subs, "test") == ["design", "implement"]
    assert ancestors(subs, "design") == []
    assert step_inputs("t1", subs, "test", 1000) == {"design": "design done", "implement": "implement done"}


def test_texts_that_fit_are_whole_and_the_longest_are_cut_fairly_with_a_note() -> None:
    assert fair_shares([10, 20], 100) == [10, 20]
    assert fair_shares([100, 5000, 5000], 3100) == [100, 1500, 1500]
    bounded = bound_texts({"a": "x" * 100, "b": "y" * 5000}, 1100, {"b": "maos task results t9"})
    assert bounded["a"] == ("x" * 100, 0)
    text, omitted = bounded["b"]
    assert omitted == 4000 and text.startswith("y" * 1000)
    assert text.endswith(
        "[… 4,000 of 5,000 characters left out here (the context limit "
        "tasks.context_max_chars); the whole text: maos task results t9]"
    )


def test_every_cut_text_keeps_a_minimum_share() -> None:
    assert fair_shares([1000] * 10, 100) == [MIN_SHARE] * 10


def test_the_plan_outline_names_each_step_and_what_it_follows() -> None:
    assert plan_outline(None, chain()) == (
        "- design: Design\n- implement: Implement (after design)\n"
        "- test: Test (after implement)\n- docs: Docs\n"
        "- synthesis: Synthesis (after test, docs)"
    )


def test_a_starting_step_reserves_its_share_of_what_is_free() -> None:
    assert reserve_share(0, 500, 0, 3) == 0  # no limit
    assert reserve_share(3000, 0, 0, 5) == 600
    assert reserve_share(3000, 0, 600, 4) == 600  # the first part's share is held, not the whole budget
    assert reserve_share(3000, 1200, 0, 1) == 1800  # the synthesis gets what the parts left
    assert reserve_share(3000, 2999, 0, 3) == 1
    assert reserve_share(3000, 2000, 1000, 2) == NOTHING_LEFT
