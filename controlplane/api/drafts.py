"""Task definitions that are not (yet) tasks: batch entries and template bodies, proto <-> domain."""

from __future__ import annotations

from controlplane.api import convert
from controlplane.api.pb import messages_pb
from controlplane.config import Settings
from controlplane.domain.model import RetryPolicy, Task
from controlplane.domain.tasks import validate_task

#: The fields of a Task a client sets; the rest is state, cleared from a draft.
INPUT_FIELDS = frozenset(
    {
        "description",
        "task_type",
        "priority",
        "max_agents",
        "depends_on",
        "consensus",
        "timeout",
        "context",
        "constraints",
        "metadata",
        "retry_policy",
        "budget",
        "agent_type",
        "review_rounds",
        "approve_plan",
    }
)


def retry_defaults(settings: Settings) -> RetryPolicy:
    """The retry policy of a task that sets none (``tasks.default_*``)."""
    return RetryPolicy(
        max_retries=settings["tasks.default_max_retries"],
        initial_backoff=settings["tasks.default_initial_backoff"],
        max_backoff=settings["tasks.default_max_backoff"],
    )


def draft_from_pb(msg: messages_pb.Task, settings: Settings, prefix: str = "task") -> Task:
    """A validated task definition from a request, as SubmitTask validates it (no id yet).

    Raises:
        InvalidArgument: Naming every bad field under ``prefix``.
    """
    task = convert.task_from_pb(
        msg,
        default_max_agents=settings["tasks.default_max_agents"],
        retry_defaults=retry_defaults(settings),
        prefix=prefix,
    )
    validate_task(task, max_description_length=settings["tasks.max_description_length"], prefix=prefix)
    return task


def draft_to_pb(task: Task) -> messages_pb.Task:
    """A task definition as a proto: only the fields a client sets."""
    msg = convert.task_to_pb(task)
    for field in msg.DESCRIPTOR.fields:
        if field.name not in INPUT_FIELDS:
            msg.ClearField(field.name)
    return msg
