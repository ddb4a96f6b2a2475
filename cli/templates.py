"""``maos template`` (reusable tasks with ``{param}`` placeholders) and ``maos task submit-from-template``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
import yaml
from google.protobuf import json_format

from agent_sdk.client import Client
from agent_sdk.proto.maos.v1 import enums_pb2 as enums
from agent_sdk.proto.maos.v1 import messages_pb2 as msgs
from maos_cli._errors import EXIT_INVALID_ARGUMENT, CliError, handle_errors
from maos_cli._options import KeyValue, output_option, run
from maos_cli._output import (
    bare_id,
    duration_text,
    emit,
    enum_label,
    key_values,
    message,
    short,
    table,
    to_data,
    when,
)
from maos_cli._task_options import draft, given, pop_options, task_options
from maos_cli.tasks import _exit_for, _results_text, _status

#: What ``template export`` writes and ``template import`` expects as ``kind``.
KIND = "maos.v1.Template"
#: The largest file ``template import`` reads.
MAX_IMPORT_BYTES = 1024 * 1024


def _parameters_text(t: msgs.Template) -> str:
    return ", ".join(
        f"{p.name}={p.default_value}" if p.HasField("default_value") else p.name for p in t.parameters
    )


def _param_option(values: tuple[str, ...]) -> dict[str, str | None]:
    """``--param NAME`` (required) or ``--param NAME=DEFAULT``."""
    declared: dict[str, str | None] = {}
    for value in values:
        name, sep, default = value.partition("=")
        if not name.strip():
            raise click.BadParameter(f"{value!r}: give NAME or NAME=DEFAULT", param_hint="--param")
        declared[name.strip()] = default if sep else None
    return declared


def document(t: msgs.Template) -> dict[str, Any]:
    """The export form of a template: plain data that ``template import`` reads back."""
    params = []
    for p in t.parameters:
        entry: dict[str, Any] = {"name": p.name}
        if p.description:
            entry["description"] = p.description
        if p.HasField("default_value"):
            entry["default"] = p.default_value
        params.append(entry)
    doc: dict[str, Any] = {"kind": KIND, "name": t.display_name}
    if t.description:
        doc["description"] = t.description
    doc["parameters"] = params
    doc["task"] = json_format.MessageToDict(t.task, preserving_proto_field_name=True)
    return doc


def from_document(doc: Any, source: str) -> msgs.Template:
    """A Template message from an exported document.

    Raises:
        CliError: Exit 4, naming what is wrong and where.
    """

    def bad(text: str) -> CliError:
        return CliError(f"{source}: {text}", EXIT_INVALID_ARGUMENT)

    if not isinstance(doc, dict):
        raise bad(f"not a template (a YAML mapping with kind: {KIND}, name, parameters and task)")
    if doc.get("kind", KIND) != KIND:
        raise bad(f"kind is {doc.get('kind')!r}, not {KIND}")
    unknown = sorted(set(doc) - {"kind", "name", "description", "parameters", "task"})
    if unknown:
        raise bad(f"unknown keys: {', '.join(map(str, unknown))}")
    if not isinstance(doc.get("name"), str) or not isinstance(doc.get("task"), dict):
        raise bad("needs a name (text) and a task (a mapping with at least a description)")
    template = msgs.Template(display_name=doc["name"], description=str(doc.get("description") or ""))
    params = doc.get("parameters") or []
    if not isinstance(params, list):
        raise bad("parameters must be a list of {name, description, default}")
    for index, p in enumerate(params):
        if (
            not isinstance(p, dict)
            or not isinstance(p.get("name"), str)
            or set(p) - {"name", "description", "default"}
        ):
            raise bad(f"parameters[{index}] must be a mapping of name, description and default")
        param = template.parameters.add(name=p["name"], description=str(p.get("description") or ""))
        if p.get("default") is not None:
            param.default_value = str(p["default"])
    try:
        json_format.ParseDict(doc["task"], template.task)
    except json_format.ParseError as exc:
        raise bad(f"task: {exc}") from None
    return template


@click.group()
def template() -> None:
    """Reusable tasks with {param} placeholders.

    \b
    maos template create --name api-development --description "Build a REST API in {language} with {framework}"
    maos template create --name api-development --from-task TASK_ID
    maos task submit-from-template api-development --params '{"language": "python", "framework": "fastapi"}'
    maos template export api-development --output api_template.yml
    maos template import api_template.yml

    A template is named by the name you gave it (unique among yours) or by its id.
    """


@template.command()
@click.option("--name", required=True, help="The template's name, unique among your templates.")
@click.option("--from-task", default=None, metavar="ID", help="Copy this task's description and options.")
@click.option(
    "--description",
    default=None,
    help="The task's description, with {param} placeholders (instead of --from-task).",
)
@click.option("--summary", default="", show_default=False, help="What the template is for.")
@click.option(
    "--param",
    "params",
    multiple=True,
    metavar="NAME[=DEFAULT]",
    help="Give a parameter a default (NAME=DEFAULT), or say it is required (NAME); repeatable. "
    "Every {placeholder} is a parameter, required unless given a default.",
)
@click.option("--replace", is_flag=True, help="Replace your template of the same name.")
@task_options
@output_option
@handle_errors
def create(
    name: str,
    from_task: str | None,
    description: str | None,
    summary: str,
    params: tuple[str, ...],
    replace: bool,
    **kwargs: Any,
) -> None:
    """Create a template from a task (--from-task) or a description (--description); prints its id.

    Placeholders are {name} or {{name}} in the description, --context,
    --constraints and --metadata values.
    """
    options = pop_options(kwargs)
    if (from_task is None) == (description is None):
        raise click.UsageError("give either --from-task ID or --description TEXT")
    if from_task is not None and given(options):
        raise click.UsageError(
            f"{', '.join(given(options))} cannot be used with --from-task (the task's own "
            "options are copied); create from --description instead"
        )
    if options["depends_on"]:
        raise click.UsageError("a template cannot depend on tasks: --depends-on is for `maos task submit`")
    declared = _param_option(params)

    async def action(client: Client) -> msgs.Template:
        if from_task is not None:
            return await client.create_template(
                name, source_task=from_task, summary=summary, params=declared, replace=replace
            )
        return await client.create_template(
            name, draft(description or "", options), summary=summary, params=declared, replace=replace
        )

    created = run(action)
    message(
        f"created template {created.display_name!r} with parameters: {_parameters_text(created) or 'none'}"
    )
    emit({"template": created}, lambda: bare_id(created.name))


@template.command("list")
@click.option("--limit", type=click.IntRange(min=1), default=100, help="Most templates shown.")
@output_option
@handle_errors
def list_(limit: int) -> None:
    """List your templates by name."""

    async def action(client: Client) -> list[msgs.Template]:
        return [t async for t in client.iter_templates(limit=limit)]

    found = run(action)
    emit(
        {"templates": found},
        lambda: table(
            ["NAME", "ID", "PARAMETERS", "CREATED", "DESCRIPTION"],
            [
                [
                    t.display_name,
                    bare_id(t.name),
                    _parameters_text(t),
                    when(t.create_time),
                    short(t.description or t.task.description, 50),
                ]
                for t in found
            ],
            empty="No templates.",
        ),
    )


@template.command()
@click.argument("name")
@output_option
@handle_errors
def show(name: str) -> None:
    """Show a template: its parameters and the task it makes."""
    found = run(lambda client: client.get_template(name))
    task = found.task

    def text() -> str:
        return key_values(
            [
                ("Template", found.display_name),
                ("ID", bare_id(found.name)),
                ("Description", found.description),
                ("Parameters", _parameters_text(found) or "none"),
                ("Owner", found.owner),
                ("Created", when(found.create_time)),
                ("From task", bare_id(found.source_task) if found.source_task else ""),
                ("Task", task.description),
                ("Type", task.task_type),
                ("Priority", enum_label(enums.Priority, task.priority, "PRIORITY_")),
                ("Max agents", task.max_agents or ""),
                ("Agent type", task.agent_type),
                ("Context", task.context),
                ("Constraints", task.constraints),
                ("Metadata", ", ".join(f"{k}={v}" for k, v in task.metadata.items())),
                ("Timeout", duration_text(task.timeout) if task.HasField("timeout") else ""),
                ("Consensus", "required" if task.consensus.required else ""),
            ]
        )

    emit({"template": found}, text)


@template.command()
@click.argument("name")
@handle_errors
def delete(name: str) -> None:
    """Delete one of your templates (tasks made from it remain)."""
    run(lambda client: client.delete_template(name))
    message(f"deleted template {name!r}")


@template.command()
@click.argument("name")
@click.option(
    "--output",
    "path",
    type=click.Path(dir_okay=False, writable=True),
    default=None,
    metavar="FILE",
    help="Write to FILE (YAML; JSON if it ends in .json) instead of stdout. Here --output is the "
    "file, not the output format.",
)
@handle_errors
def export(name: str, path: str | None) -> None:
    """Write a template to a file that `maos template import` reads (to share it)."""
    found = run(lambda client: client.get_template(name))
    doc = document(found)
    if path and path.endswith(".json"):
        text = json.dumps(doc, indent=2) + "\n"
    else:
        text = "# A MAOS task template: maos template import FILE\n" + yaml.safe_dump(
            doc, sort_keys=False, allow_unicode=True
        )
    if path is None:
        click.echo(text, nl=False)
        return
    Path(path).write_text(text, encoding="utf-8")
    message(f"exported template {found.display_name!r} to {path}")


@template.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, readable=True))
@click.option("--name", default=None, help="Store it under this name instead of the file's.")
@click.option("--replace", is_flag=True, help="Replace your template of the same name.")
@output_option
@handle_errors
def import_(file: str, name: str | None, replace: bool) -> None:
    """Create a template from a file written by `maos template export` (YAML or JSON); prints its id."""
    raw = Path(file).read_bytes()
    if len(raw) > MAX_IMPORT_BYTES:
        raise CliError(
            f"{file} is {len(raw)} bytes; a template file is at most {MAX_IMPORT_BYTES}",
            EXIT_INVALID_ARGUMENT,
        )
    try:
        doc = yaml.safe_load(raw)  # JSON is YAML too
    except yaml.YAMLError as exc:
        raise CliError(f"{file} is not YAML or JSON: {exc}", EXIT_INVALID_ARGUMENT) from None
    tpl = from_document(doc, file)
    if name:
        tpl.display_name = name
    created = run(lambda client: client.import_template(tpl, replace=replace))
    message(
        f"imported template {created.display_name!r} with parameters: {_parameters_text(created) or 'none'}"
    )
    emit({"template": created}, lambda: bare_id(created.name))


def _params(text: str | None, pairs: tuple[tuple[str, str], ...]) -> dict[str, str]:
    """``--params`` (a JSON object of scalars) merged with ``--param KEY=VALUE``."""
    values: dict[str, str] = {}
    if text:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise click.BadParameter(f"not JSON: {exc}", param_hint="--params") from None
        if not isinstance(data, dict):
            raise click.BadParameter('a JSON object, e.g. \'{"language": "python"}\'', param_hint="--params")
        for key, value in data.items():
            if isinstance(value, (dict, list)) or value is None:
                raise click.BadParameter(
                    f"{key!r}: values are text, numbers or true/false", param_hint="--params"
                )
            values[key] = json.dumps(value) if isinstance(value, bool) else str(value)
    values.update(dict(pairs))
    return values


@click.command("submit-from-template")
@click.argument("template_name", metavar="TEMPLATE")
@click.option(
    "--params",
    "params_json",
    default=None,
    metavar="JSON",
    help='Parameter values as a JSON object: \'{"language": "python"}\'.',
)
@click.option(
    "--param", "pairs", multiple=True, type=KeyValue(), help="One parameter value KEY=VALUE (repeatable)."
)
@click.option("--request-id", default=None, help="Idempotency key (a UUID; generated when unset).")
@click.option("--wait", is_flag=True, help="Wait until the task finishes and print its result.")
@click.option(
    "--wait-timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    metavar="SECONDS",
    help="With --wait: give up after this long (exit 9).",
)
@output_option
@handle_errors
def submit_from_template(
    template_name: str,
    params_json: str | None,
    pairs: tuple[tuple[str, str], ...],
    request_id: str | None,
    wait: bool,
    wait_timeout: float | None,
) -> None:
    """Submit a task made from a template; prints its id (like `maos task submit`).

    Every parameter without a default needs a value; a value for a parameter the
    template does not have is refused (exit 4, naming them).
    """
    values = _params(params_json, pairs)

    async def action(client: Client) -> tuple[msgs.Task, msgs.Task | None, msgs.TaskResult | None]:
        created = await client.submit_from_template(template_name, values, request_id=request_id)
        if not wait:
            return created, None, None
        message(f"submitted {bare_id(created.name)}; waiting for it to finish")
        final = await client.wait_task(created.name, timeout=wait_timeout)
        return created, final, await client.get_results(final.name)

    created, final, result = run(action)
    task_id = bare_id(created.name)
    if final is None or result is None:  # not waited for (a finished task has a result)
        emit({"task_id": task_id}, lambda: task_id)
        return
    emit(
        {"task_id": task_id, "status": _status(final), "result": to_data(result)},
        lambda: _results_text(result),
    )
    _exit_for(final)
