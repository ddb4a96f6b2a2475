"""maos.v1.TemplateService: proto <-> :class:`controlplane.workflows.Templates`; no business logic here."""

from __future__ import annotations

import grpc

from controlplane.access.permissions import VIEW_ALL_TASKS
from controlplane.api import convert
from controlplane.api.context import caller_may, current_principal
from controlplane.api.drafts import draft_from_pb, draft_to_pb
from controlplane.api.idempotency import request_fingerprint as request_hash
from controlplane.api.paging import PageTokens, page_size
from controlplane.api.pb import messages_pb, templates_grpc, templates_pb
from controlplane.config import Settings
from controlplane.domain.tasks import validate_request_id
from controlplane.errors import InvalidArgument
from controlplane.workflows import TemplateParameter, TemplateRecord, Templates


def template_to_pb(t: TemplateRecord) -> messages_pb.Template:
    """The proto of a template (its whole definition: what export writes)."""
    return messages_pb.Template(
        name=t.name,
        display_name=t.display_name,
        description=t.description,
        task=draft_to_pb(t.task),
        parameters=[
            messages_pb.TemplateParameter(name=p.name, description=p.description, default_value=p.default)
            for p in t.parameters
        ],
        owner=t.owner,
        create_time=convert.timestamp(t.create_time),
        source_task=f"tasks/{t.source_task}" if t.source_task else "",
    )


def parameters_from_pb(msg: messages_pb.Template) -> list[TemplateParameter]:
    """The declared parameters of a template in a request."""
    return [
        TemplateParameter(p.name, p.description, p.default_value if p.HasField("default_value") else None)
        for p in msg.parameters
    ]


class TemplateServicer(templates_grpc.TemplateServiceServicer):
    """Creates, shows, lists and deletes templates, and submits tasks from them."""

    def __init__(self, templates: Templates, settings: Settings):
        self.templates = templates
        self.settings = settings
        self.tokens = PageTokens("ListTemplates", lambda: templates.engine.page_secret)

    async def CreateTemplate(
        self, request: templates_pb.CreateTemplateRequest, context: grpc.aio.ServicerContext
    ) -> templates_pb.CreateTemplateResponse:
        principal, view_all = current_principal(), caller_may(VIEW_ALL_TASKS)
        if request.source_task:
            if request.template.HasField("task"):
                raise InvalidArgument(
                    "give either source_task or template.task, not both", field="source_task"
                )
            source_id = convert.parse_name(request.source_task, "tasks", "source_task")
            task = await self.templates.source(source_id, principal, view_all)
        elif request.template.HasField("task"):
            source_id = ""
            task = draft_from_pb(request.template.task, self.settings, prefix="template.task")
        else:
            raise InvalidArgument(
                "give the template's task (template.task) or a task to copy (source_task)",
                field="template.task",
            )
        created = await self.templates.create(
            request.template.display_name,
            task,
            principal,
            description=request.template.description,
            parameters=parameters_from_pb(request.template),
            source_task=source_id,
            template_id=request.template_id,
            replace=request.replace,
        )
        return templates_pb.CreateTemplateResponse(template=template_to_pb(created))

    async def GetTemplate(
        self, request: templates_pb.GetTemplateRequest, context: grpc.aio.ServicerContext
    ) -> templates_pb.GetTemplateResponse:
        found = await self.templates.resolve(request.name, current_principal(), caller_may(VIEW_ALL_TASKS))
        return templates_pb.GetTemplateResponse(template=template_to_pb(found))

    async def ListTemplates(
        self, request: templates_pb.ListTemplatesRequest, context: grpc.aio.ServicerContext
    ) -> templates_pb.ListTemplatesResponse:
        size = page_size(request.page_size)
        principal, view_all = current_principal(), caller_may(VIEW_ALL_TASKS)
        filters = f"templates:{principal}:{view_all}".encode()  # the caller's list, not another's
        offset = self.tokens.read(request.page_token, filters) or 0
        found = await self.templates.list(principal, view_all, offset, size + 1)
        response = templates_pb.ListTemplatesResponse(templates=[template_to_pb(t) for t in found[:size]])
        if len(found) > size:
            response.next_page_token = self.tokens.issue(offset + size, filters)
        return response

    async def DeleteTemplate(
        self, request: templates_pb.DeleteTemplateRequest, context: grpc.aio.ServicerContext
    ) -> templates_pb.DeleteTemplateResponse:
        found = await self.templates.owned(request.name, current_principal(), caller_may(VIEW_ALL_TASKS))
        await self.templates.delete(found)
        return templates_pb.DeleteTemplateResponse()

    async def SubmitTaskFromTemplate(
        self, request: templates_pb.SubmitTaskFromTemplateRequest, context: grpc.aio.ServicerContext
    ) -> templates_pb.SubmitTaskFromTemplateResponse:
        validate_request_id(request.request_id)
        principal = current_principal()
        found = await self.templates.resolve(request.template, principal, caller_may(VIEW_ALL_TASKS))
        task = await self.templates.submit(
            found,
            dict(request.params),
            principal,
            request_id=request.request_id,
            request_hash=request_hash(request) if request.request_id else "",
        )
        return templates_pb.SubmitTaskFromTemplateResponse(task=convert.task_to_pb(task))
