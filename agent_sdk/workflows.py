"""Client methods of the BatchService and TemplateService (mixed into :class:`agent_sdk.client.Client`).

Batches and templates are named by their resource name (``batches/ID``), their
id, or their display name (unique among the caller's own); the server resolves
the name, so any of the three may be passed as ``batch`` or ``template``.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

from agent_sdk._common import enum_value, paged
from agent_sdk.proto.maos.v1 import batch_service_pb2 as batches_pb
from agent_sdk.proto.maos.v1 import enums_pb2 as enums
from agent_sdk.proto.maos.v1 import messages_pb2 as msgs
from agent_sdk.proto.maos.v1 import template_service_pb2 as templates_pb

if TYPE_CHECKING:
    from agent_sdk.client import _Service

_SCHEDULES = {"PARALLEL": enums.BATCH_SCHEDULE_PARALLEL, "SEQUENTIAL": enums.BATCH_SCHEDULE_SEQUENTIAL}


def schedule_value(schedule: str | int | None) -> enums.BatchSchedule:
    """A ``BatchSchedule`` value from parallel or sequential (any case, optional prefix), an int, or None."""
    # A proto enum value is a plain int at run time; the generated stubs name it by its enum class.
    return cast(
        enums.BatchSchedule, enum_value(schedule, _SCHEDULES, "BATCH_SCHEDULE_", "parallel or sequential")
    )


def parameters(
    values: Mapping[str, str | None] | Sequence[msgs.TemplateParameter],
) -> list[msgs.TemplateParameter]:
    """Template parameters from ``{name: default or None}`` or ``TemplateParameter`` messages."""
    if isinstance(values, Mapping):
        return [msgs.TemplateParameter(name=name, default_value=default) for name, default in values.items()]
    return list(values)


class WorkflowMethods:
    """Batches (``create_batch`` ... ``delete_batch``) and templates (``create_template`` ... ``submit_from_template``)."""

    batches: _Service
    templates: _Service

    # --- batches ------------------------------------------------------------------------------

    async def create_batch(
        self, name: str, *, batch_id: str = "", request_id: str | None = None
    ) -> msgs.Batch:
        """A new, empty batch named ``name`` (unique among yours)."""
        response: batches_pb.CreateBatchResponse = await self.batches.CreateBatch(
            batches_pb.CreateBatchRequest(
                display_name=name, batch_id=batch_id, request_id=request_id or str(uuid.uuid4())
            )
        )
        return response.batch

    async def add_batch_task(
        self, batch: str, task: msgs.Task | None = None, *, request_id: str | None = None, **fields: Any
    ) -> msgs.Batch:
        """Add a task (a ``Task`` message or :func:`agent_sdk.client.build_task` keywords) to an open batch."""
        from agent_sdk.client import build_task

        message = task if task is not None else build_task(**fields)
        response: batches_pb.AddBatchTaskResponse = await self.batches.AddBatchTask(
            batches_pb.AddBatchTaskRequest(
                batch=batch, task=message, request_id=request_id or str(uuid.uuid4())
            )
        )
        return response.batch

    async def submit_batch(
        self, batch: str, *, schedule: str | int | None = None, request_id: str | None = None
    ) -> batches_pb.SubmitBatchResponse:
        """Submit every task of the batch at once (``schedule``: parallel or sequential); its tasks."""
        response: batches_pb.SubmitBatchResponse = await self.batches.SubmitBatch(
            batches_pb.SubmitBatchRequest(
                name=batch, schedule=schedule_value(schedule), request_id=request_id or str(uuid.uuid4())
            )
        )
        return response

    async def get_batch(self, batch: str) -> batches_pb.GetBatchResponse:
        """A batch with its counts by state, its added tasks (while open) and its submitted tasks."""
        response: batches_pb.GetBatchResponse = await self.batches.GetBatch(
            batches_pb.GetBatchRequest(name=batch)
        )
        return response

    async def list_batches(
        self, *, page_size: int = 0, page_token: str = ""
    ) -> batches_pb.ListBatchesResponse:
        """One page of your batches, newest first."""
        response: batches_pb.ListBatchesResponse = await self.batches.ListBatches(
            batches_pb.ListBatchesRequest(page_size=page_size, page_token=page_token)
        )
        return response

    async def iter_batches(self, *, limit: int | None = None) -> AsyncIterator[msgs.Batch]:
        """Every batch you may see, newest first, across pages (at most ``limit``)."""
        async for batch in paged(lambda token: self.list_batches(page_token=token), "batches", limit):
            yield batch

    async def get_batch_results(self, batch: str) -> batches_pb.GetBatchResultsResponse:
        """The results of the batch's finished tasks, with the batch's counts."""
        response: batches_pb.GetBatchResultsResponse = await self.batches.GetBatchResults(
            batches_pb.GetBatchResultsRequest(name=batch)
        )
        return response

    async def delete_batch(self, batch: str) -> None:
        """Delete an open batch, or forget a finished one (its tasks remain)."""
        await self.batches.DeleteBatch(batches_pb.DeleteBatchRequest(name=batch))

    # --- templates ----------------------------------------------------------------------------

    async def create_template(
        self,
        name: str,
        task: msgs.Task | None = None,
        *,
        source_task: str = "",
        summary: str = "",
        params: Mapping[str, str | None] | Sequence[msgs.TemplateParameter] = (),
        template_id: str = "",
        replace: bool = False,
        **fields: Any,
    ) -> msgs.Template:
        """A template named ``name``: of ``task`` (or build_task keywords), or copied from ``source_task``.

        ``summary`` says what the template is for (``Template.description``; a
        ``description`` keyword is the task's, with its placeholders). ``params``
        declares the parameters (``{name: default or None}``); when empty, every
        ``{placeholder}`` of the task becomes a required parameter.
        """
        from agent_sdk.client import build_task, task_name

        template = msgs.Template(display_name=name, description=summary, parameters=parameters(params))
        if not source_task:
            template.task.CopyFrom(task if task is not None else build_task(**fields))
        response: templates_pb.CreateTemplateResponse = await self.templates.CreateTemplate(
            templates_pb.CreateTemplateRequest(
                template=template,
                template_id=template_id,
                replace=replace,
                source_task=task_name(source_task) if source_task else "",
            )
        )
        return response.template

    async def import_template(self, template: msgs.Template, *, replace: bool = False) -> msgs.Template:
        """Store an exported template (:meth:`get_template`'s message) as one of yours."""
        copy = msgs.Template(
            display_name=template.display_name,
            description=template.description,
            parameters=template.parameters,
            task=template.task,
        )
        response: templates_pb.CreateTemplateResponse = await self.templates.CreateTemplate(
            templates_pb.CreateTemplateRequest(template=copy, replace=replace)
        )
        return response.template

    async def get_template(self, template: str) -> msgs.Template:
        """One template, with its whole definition."""
        response: templates_pb.GetTemplateResponse = await self.templates.GetTemplate(
            templates_pb.GetTemplateRequest(name=template)
        )
        return response.template

    async def list_templates(
        self, *, page_size: int = 0, page_token: str = ""
    ) -> templates_pb.ListTemplatesResponse:
        """One page of your templates, by name."""
        response: templates_pb.ListTemplatesResponse = await self.templates.ListTemplates(
            templates_pb.ListTemplatesRequest(page_size=page_size, page_token=page_token)
        )
        return response

    async def iter_templates(self, *, limit: int | None = None) -> AsyncIterator[msgs.Template]:
        """Every template you may see, by name, across pages (at most ``limit``)."""
        async for template in paged(lambda token: self.list_templates(page_token=token), "templates", limit):
            yield template

    async def delete_template(self, template: str) -> None:
        """Delete one of your templates (tasks made from it remain)."""
        await self.templates.DeleteTemplate(templates_pb.DeleteTemplateRequest(name=template))

    async def submit_from_template(
        self, template: str, params: Mapping[str, str] | None = None, *, request_id: str | None = None
    ) -> msgs.Task:
        """Fill the template's placeholders with ``params`` and submit the task; returns it as stored."""
        response: templates_pb.SubmitTaskFromTemplateResponse = await self.templates.SubmitTaskFromTemplate(
            templates_pb.SubmitTaskFromTemplateRequest(
                template=template,
                params={k: str(v) for k, v in (params or {}).items()},
                request_id=request_id or str(uuid.uuid4()),
            )
        )
        return response.task
