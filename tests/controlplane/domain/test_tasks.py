"""Task validation and retry policy."""

from __future__ import annotations

import pytest

from controlplane.domain.model import RetryPolicy, Task
from controlplane.domain.tasks import validate_request_id, validate_task
from controlplane.errors import InvalidArgument


def test_a_good_task_passes() -> None:
    validate_task(Task(id="", description="do it", max_agents=8, timeout=60), max_description_length=100)


def test_every_bad_field_is_named() -> None:
    task = Task(id="", description=" ", max_agents=0, timeout=-1, task_type="bad type!")
    with pytest.raises(InvalidArgument) as info:
        validate_task(task, max_description_length=100)
    fields = {v.field for v in info.value.violations}
    assert fields == {"task.description", "task.max_agents", "task.timeout", "task.task_type"}


def test_description_limit() -> None:
    with pytest.raises(InvalidArgument, match="is 11 characters; the limit is 10"):
        validate_task(Task(id="", description="x" * 11), max_description_length=10)


@pytest.mark.parametrize("request_id", ["", "0b6f3c1e-2f5a-4a8e-9a55-0d1f0e8f6c11", "job_42"])
def test_request_ids_accepted(request_id: str) -> None:
    validate_request_id(request_id)


@pytest.mark.parametrize("request_id", ["x" * 37, "has space", "semi;colon"])
def test_request_ids_rejected(request_id: str) -> None:
    with pytest.raises(InvalidArgument):
        validate_request_id(request_id)


def test_retry_backoff_is_exponential_and_capped() -> None:
    policy = RetryPolicy(max_retries=10, initial_backoff=1.0, multiplier=2.0, max_backoff=5.0)
    assert [policy.backoff(n) for n in range(1, 6)] == [1.0, 2.0, 4.0, 5.0, 5.0]
