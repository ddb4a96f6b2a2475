"""Rules of batches and templates that need no state: placeholders, parameters, schedules, summaries."""

from __future__ import annotations

import pytest

from controlplane.domain.model import Task, TaskStatus
from controlplane.errors import InvalidArgument
from controlplane.workflows import rules
from controlplane.workflows.records import BatchSchedule, BatchStatus, TemplateParameter


def _task(description: str, **fields: object) -> Task:
    return Task(id="", description=description, **fields)  # type: ignore[arg-type]


def test_placeholders_in_every_text_field_in_order_of_first_use() -> None:
    task = _task(
        "Build in {language} with {{ framework }}, again {language}",
        context="for {team}",
        constraints="{{style}}",
        metadata={"stack": "{framework}-{db}"},
    )
    assert rules.placeholders(task) == ["language", "framework", "team", "style", "db"]
    assert rules.placeholders(_task('JSON {"a": 1} and { spaced } and {1x} are text')) == []


def test_render_fills_defaults_and_names_every_problem() -> None:
    task = _task("{greeting}, {who}!", metadata={"k": "{who}"})
    params = [TemplateParameter("greeting", default="Hello"), TemplateParameter("who")]
    out = rules.render(task, params, {"who": "world"})
    assert (out.description, out.metadata) == ("Hello, world!", {"k": "world"})
    assert task.description == "{greeting}, {who}!"  # the template is not changed
    with pytest.raises(InvalidArgument) as err:
        rules.render(task, params, {"colour": "red", "size": "L"})
    assert "unknown parameters: colour, size (the template takes: greeting, who)" in err.value.message
    assert "missing required parameters: who" in err.value.message
    assert [v.field for v in err.value.violations] == ["params", "params"]
    with pytest.raises(InvalidArgument, match="longer than 4096"):
        rules.render(task, params, {"who": "x" * 4097})


def test_declared_parameters_must_be_used() -> None:
    task = _task("In {language} on {os}")
    assert [p.name for p in rules.check_parameters(task, [])] == ["language", "os"]
    declared = [TemplateParameter("os", "the system"), TemplateParameter("language", default="python")]
    assert rules.check_parameters(task, declared) == [declared[1], declared[0]]
    assert rules.check_parameters(task, declared[1:]) == [declared[1], TemplateParameter("os")]
    for bad, text in [
        ([*declared, TemplateParameter("extra")], "used by no placeholder: extra"),
        ([*declared, TemplateParameter("os")], "'os' is declared twice"),
        ([TemplateParameter("1bad"), *declared], "'1bad' is not a parameter name"),
    ]:
        with pytest.raises(InvalidArgument, match=text):
            rules.check_parameters(task, bad)


def test_display_names_and_client_ids() -> None:
    rules.validate_display_name("q1_marketing_analysis", "display_name", "batch")
    rules.validate_display_name("Quarterly analysis (2025)", "display_name", "batch")
    for bad in ("", " padded", "a/b", "x" * 101, "tab\there"):
        with pytest.raises(InvalidArgument):
            rules.validate_display_name(bad, "display_name", "batch")
    rules.validate_client_id("api-development", "template_id")
    for bad in ("Upper", "9starts-with-digit", "under_score", "x" * 64):
        with pytest.raises(InvalidArgument):
            rules.validate_client_id(bad, "template_id")


def test_sequential_chains_each_task_to_the_one_before() -> None:
    tasks = [Task(id=f"t{i}", description="d") for i in range(3)]
    tasks[2].depends_on = ["tx"]
    rules.chain(tasks, BatchSchedule.PARALLEL)
    assert [t.depends_on for t in tasks] == [[], [], ["tx"]]
    rules.chain(tasks, BatchSchedule.SEQUENTIAL)
    assert [t.depends_on for t in tasks] == [[], ["t0"], ["tx", "t1"]]


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        ([TaskStatus.COMPLETED, TaskStatus.COMPLETED], BatchStatus.COMPLETED),
        ([TaskStatus.COMPLETED, TaskStatus.RUNNING], BatchStatus.RUNNING),
        ([TaskStatus.PENDING, TaskStatus.FAILED], BatchStatus.RUNNING),
        ([TaskStatus.COMPLETED, TaskStatus.CANCELLED], BatchStatus.FAILED),
        ([TaskStatus.FAILED], BatchStatus.FAILED),
    ],
)
def test_summary_of_a_submitted_batch(statuses: list[TaskStatus], expected: BatchStatus) -> None:
    summary = rules.summarize(True, statuses, [1.0 if s.finished else 0.5 for s in statuses])
    assert summary.status == expected
    assert sum(summary.counts.values()) == len(statuses)
    assert 0 < summary.progress <= 1


def test_an_open_batch_is_open() -> None:
    assert rules.summarize(False, [], []).status == BatchStatus.OPEN


def test_callers_parameter_names_are_bounded_in_errors() -> None:
    params = [TemplateParameter("who")]
    with pytest.raises(InvalidArgument) as err:
        rules.render(_task("{who}"), params, {"x" * 10_000: "v", "who": "me"})
    assert len(err.value.message) < 300 and "x" * 64 + "..." in err.value.message
    with pytest.raises(InvalidArgument, match="65 parameter values; at most 64"):
        rules.render(_task("{who}"), params, {f"p{i}": "v" for i in range(65)})


def test_a_template_without_placeholders_says_so() -> None:
    with pytest.raises(
        InvalidArgument,
        match=r"unknown parameters: language \(the template has no parameters: "
        r"its text has no \{placeholders\}\)",
    ):
        rules.render(_task("Plain"), [], {"language": "python"})
