"""Task templates: reusable task definitions with ``{param}`` placeholders (``maos template``).

A template belongs to the principal that created it; its display name is
unique among that owner's templates. Submitting from a template fills the
placeholders (every required parameter given, no unknown one), validates the
result like any task and submits it as the caller's task, marked with the
template's id.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping, Sequence

from controlplane.domain.model import Task
from controlplane.domain.tasks import validate_task
from controlplane.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
)
from controlplane.scheduler.engine import Engine
from controlplane.storage.base import StoresTemplates, TemplateStore
from controlplane.storage.executor import StorageExecutor
from controlplane.workflows import rules
from controlplane.workflows.records import TemplateParameter, TemplateRecord

NOT_FOUND = "ERROR_REASON_TEMPLATE_NOT_FOUND"
SUBMIT_METHOD = "SubmitTaskFromTemplate"


class Templates:
    """Creates, finds, lists, deletes templates and submits tasks from them.

    Args:
        engine: The scheduler engine (reads source tasks, submits tasks).
        max_description_length: The longest task description (``tasks.max_description_length``).
        max_per_owner: Most templates one principal may have (``templates.max_per_owner``).
    """

    def __init__(
        self, engine: Engine, storage: StorageExecutor, max_description_length: int, max_per_owner: int
    ):
        self.engine = engine
        self.storage = storage
        self.max_description_length = max_description_length
        self.max_per_owner = max_per_owner
        self._lock = asyncio.Lock()  # the per-owner count and name checks of one create at a time

    def _store(self) -> TemplateStore:
        backend = self.storage.backend
        if not isinstance(backend, StoresTemplates):
            raise FailedPrecondition(
                f"the {backend.kind} storage backend does not store templates",
                reason="ERROR_REASON_NOT_SUPPORTED",
            )
        return backend.templates

    async def resolve(self, ref: str, principal: str, may_view_all: bool) -> TemplateRecord:
        """The template ``ref`` names: ``templates/{id}``, an id, or the display name of one of the caller's.

        Raises:
            NotFound: No such template visible to the caller.
        """
        store = self._store()
        if not ref:
            raise InvalidArgument("name is required: the template's name or id", field="name")
        rules.check_ref(ref, "name")
        if rules.looks_like("templates", ref):
            found = await self.storage.call(store.get_template, ref.removeprefix("templates/"))
        else:
            found = await self.storage.call(store.find_template, principal, ref)
            if found is None:
                found = await self.storage.call(store.get_template, ref)
        if found is None or (found.owner != principal and not may_view_all):
            raise NotFound(
                f"template {ref!r} does not exist (`maos template list` shows yours)",
                reason=NOT_FOUND,
                metadata={"template": ref},
            )
        return found

    async def owned(self, ref: str, principal: str, may_view_all: bool) -> TemplateRecord:
        """Like :meth:`resolve`, but another principal's template (seen through view-all) cannot be changed."""
        found = await self.resolve(ref, principal, may_view_all)
        if found.owner != principal:
            raise FailedPrecondition(
                f"template {found.name} belongs to {found.owner or 'another principal'}; "
                "only its owner can change or delete it",
                metadata={"template": found.name},
            )
        return found

    async def list(self, principal: str, may_view_all: bool, offset: int, limit: int) -> list[TemplateRecord]:
        """The caller's templates (everyone's with ``may_view_all``), by name."""
        return await self.storage.call(
            self._store().list_templates, None if may_view_all else principal, offset, limit
        )

    async def create(
        self,
        display_name: str,
        task: Task,
        principal: str,
        *,
        description: str = "",
        parameters: Sequence[TemplateParameter] = (),
        source_task: str = "",
        template_id: str = "",
        replace: bool = False,
    ) -> TemplateRecord:
        """Store a template of ``task`` (already validated as a task) owned by ``principal``.

        Raises:
            InvalidArgument: A bad name, id, description or parameters.
            AlreadyExists: The caller has a template of that name (without ``replace``), or the id is taken.
            ResourceExhausted: The caller has ``templates.max_per_owner`` templates.
        """
        store = self._store()
        rules.validate_display_name(display_name, "template.display_name", "template")
        if template_id:
            rules.validate_client_id(template_id, "template_id")
        if len(description) > rules.MAX_TEMPLATE_DESCRIPTION:
            raise InvalidArgument(
                f"template.description is {len(description)} characters; at most "
                f"{rules.MAX_TEMPLATE_DESCRIPTION}",
                field="template.description",
            )
        if task.depends_on and not source_task:
            raise InvalidArgument(
                "a template cannot depend on tasks (each task made from it would wait for the "
                "same ones); leave depends_on out",
                field="template.task.depends_on",
            )
        params = rules.check_parameters(task, parameters)
        record = TemplateRecord(
            id=template_id or rules.new_id("tpl"),
            display_name=display_name,
            task=rules.template_task(task),
            owner=principal,
            description=description,
            parameters=params,
            source_task=source_task,
        )
        async with self._lock:
            existing = await self.storage.call(store.find_template, principal, display_name)
            if existing is not None and not replace:
                raise AlreadyExists(
                    f"you already have a template named {display_name!r} ({existing.name}); pick "
                    "another name, delete it, or replace it (`maos template import --replace`)",
                    metadata={"template": existing.name},
                )
            if (
                existing is None
                and await self.storage.call(store.count_templates, principal) >= self.max_per_owner
            ):
                raise ResourceExhausted(
                    f"you have {self.max_per_owner} templates, the most allowed "
                    "(templates.max_per_owner); delete some with `maos template delete`"
                )
            try:
                return await self.storage.call(lambda: store.put_template(record, replace=replace))
            except AlreadyExists:
                raise AlreadyExists(
                    f"template id {record.id!r} is taken; choose another or let the server pick one",
                    metadata={"template": record.name},
                ) from None

    async def source(self, task_id: str, principal: str, may_view_all: bool) -> Task:
        """The task a template is made from (``--from-task``); another principal's is NOT_FOUND."""
        task = await self.engine.get_task(task_id)
        if task.owner != principal and not may_view_all:
            raise NotFound(f"task tasks/{task_id} does not exist", reason="ERROR_REASON_TASK_NOT_FOUND")
        return task

    async def delete(self, template: TemplateRecord) -> None:
        """Delete a template (tasks submitted from it remain)."""
        await self.storage.call(self._store().delete_template, template.id)

    def render(self, template: TemplateRecord, params: Mapping[str, str]) -> Task:
        """The task the template makes with ``params``, validated, without an id.

        Raises:
            InvalidArgument: Missing, unknown or too long parameters (named), or a
                filled-in task that is not valid (a description past the limit).
        """
        task = rules.render(template.task, template.parameters, params)
        task = dataclasses.replace(task, template=template.id)
        validate_task(task, max_description_length=self.max_description_length)
        return task

    async def submit(
        self,
        template: TemplateRecord,
        params: Mapping[str, str],
        principal: str,
        *,
        request_id: str = "",
        request_hash: str = "",
    ) -> Task:
        """Fill the template and submit the task as ``principal``'s; idempotent by ``request_id``."""
        task = self.render(template, params)
        task.id = self.engine.new_task_id()
        outcomes = await self.engine.submit(
            [task],
            principal=principal,
            request_id=request_id,
            request_hash=request_hash,
            method=SUBMIT_METHOD,
        )
        return outcomes[0].task
