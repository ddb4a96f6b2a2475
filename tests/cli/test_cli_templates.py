"""``maos template`` and ``maos task submit-from-template`` through the real CLI against a real control plane:
the guide's commands as it writes them, placeholders and parameters, export and import, bad input, and
other users' templates."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from agent_sdk.client import Client
from controlplane.app import App
from tests.cli.conftest import Maos
from tests.harness.server import admin_key


def short(value: str) -> str:
    """An enum value as ``-o json`` shows it, by its short name (``COMPLETED``), whichever way it is spelt."""
    for prefix in ("BATCH_STATUS_", "BATCH_SCHEDULE_", "PRIORITY_", "TASK_STATUS_"):
        value = value.removeprefix(prefix)
    return value


DESCRIPTION = "Build a REST API in {language} with {framework}; document it in {{ language }}"


async def _task(maos: Maos, task_id: str) -> dict:
    result = await maos("-o", "json", "task", "show", task_id)
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)["task"]


async def test_the_guides_template_commands(maos: Maos, tmp_path: Path) -> None:
    # "Create template from successful task"
    source = await maos(
        "task",
        "submit",
        DESCRIPTION,
        "--type",
        "coding",
        "--priority",
        "HIGH",
        "--max-agents",
        "2",
        "--metadata",
        "stack={framework}",
        "--wait",
    )
    assert source.exit_code == 0, source.stderr
    task_id = json.loads((await maos("-o", "json", "task", "list")).stdout)["tasks"][0]["name"].split("/")[1]
    created = await maos("template", "create", "--name", "api-development", "--from-task", task_id)
    assert created.exit_code == 0, created.stderr
    template_id = created.stdout.strip()
    assert template_id.startswith("tpl") and "parameters: language, framework" in created.stderr

    listed = await maos("template", "list")
    assert "api-development" in listed.stdout and "language, framework" in listed.stdout

    # "Use template"
    used = await maos(
        "task",
        "submit-from-template",
        "api-development",
        "--params",
        '{"language": "python", "framework": "fastapi"}',
    )
    assert used.exit_code == 0, used.stderr
    task = await _task(maos, used.stdout.strip())
    assert task["description"] == "Build a REST API in python with fastapi; document it in python"
    assert task["metadata"] == {"stack": "fastapi"} and task["task_type"] == "coding"
    assert short(task["priority"]) == "HIGH" and task["max_agents"] == 2
    assert task["template"] == f"templates/{template_id}"

    # "Share templates"
    path = tmp_path / "api_template.yml"
    exported = await maos("template", "export", "api-development", "--output", str(path))
    assert exported.exit_code == 0, exported.stderr
    doc = yaml.safe_load(path.read_text())
    assert doc["kind"] == "maos.v1.Template" and doc["name"] == "api-development"
    assert [p["name"] for p in doc["parameters"]] == ["language", "framework"]
    assert doc["task"]["description"] == DESCRIPTION
    taken = await maos("template", "import", str(path))
    assert taken.exit_code == 5 and "--replace" in taken.stderr
    replaced = await maos("template", "import", str(path), "--replace")
    assert replaced.exit_code == 0 and replaced.stdout.strip() == template_id  # the same template, replaced
    copied = await maos("template", "import", str(path), "--name", "api-copy")
    assert copied.exit_code == 0 and copied.stdout.strip() != template_id

    shown = await maos("template", "show", "api-copy")
    assert shown.exit_code == 0 and "language, framework" in shown.stdout and DESCRIPTION in shown.stdout
    waited = await maos(
        "task",
        "submit-from-template",
        "api-copy",
        "--param",
        "language=go",
        "--param",
        "framework=gin",
        "--wait",
    )
    assert waited.exit_code == 0 and "Build a REST API in go with gin" in waited.stdout

    assert (await maos("template", "delete", "api-copy")).exit_code == 0
    gone = await maos("template", "show", "api-copy")
    assert gone.exit_code == 3 and "template 'api-copy' does not exist" in gone.stderr


async def test_description_with_declared_parameters(maos: Maos) -> None:
    created = await maos(
        "template",
        "create",
        "--name",
        "report",
        "--description",
        "Write a {kind} report on {topic}",
        "--param",
        "kind=quarterly",
        "--summary",
        "Reports",
        "--priority",
        "LOW",
    )
    assert created.exit_code == 0, created.stderr
    shown = json.loads((await maos("-o", "json", "template", "show", "report")).stdout)["template"]
    assert shown["parameters"] == [
        {"name": "kind", "description": "", "default_value": "quarterly"},
        {"name": "topic", "description": ""},
    ]
    assert shown["description"] == "Reports" and short(shown["task"]["priority"]) == "LOW"
    used = await maos("task", "submit-from-template", "report", "--params", '{"topic": "sales"}')
    assert (await _task(maos, used.stdout.strip()))["description"] == "Write a quarterly report on sales"
    numbers = await maos("task", "submit-from-template", "report", "--params", '{"topic": 3, "kind": true}')
    assert (await _task(maos, numbers.stdout.strip()))["description"] == "Write a true report on 3"


async def test_missing_and_unknown_parameters_are_named(maos: Maos) -> None:
    await maos("template", "create", "--name", "api", "--description", "API in {language} with {framework}")
    before = json.loads((await maos("-o", "json", "task", "list")).stdout)["tasks"]
    missing = await maos("task", "submit-from-template", "api", "--params", '{"language": "python"}')
    assert missing.exit_code == 4 and "missing required parameters: framework" in missing.stderr
    unknown = await maos(
        "task",
        "submit-from-template",
        "api",
        "--params",
        '{"language": "python", "framework": "x", "colour": "red"}',
    )
    assert unknown.exit_code == 4 and "unknown parameters: colour" in unknown.stderr
    assert "the template takes: language, framework" in unknown.stderr
    not_json = await maos("task", "submit-from-template", "api", "--params", "{language: python")
    assert not_json.exit_code == 2 and "not JSON" in not_json.stderr
    nested = await maos("task", "submit-from-template", "api", "--params", '{"language": {"a": 1}}')
    assert nested.exit_code == 2
    too_long = await maos(
        "task",
        "submit-from-template",
        "api",
        "--params",
        json.dumps({"language": "x" * 5000, "framework": "y"}),
    )
    assert too_long.exit_code == 4 and "longer than 4096" in too_long.stderr
    assert (
        json.loads((await maos("-o", "json", "task", "list")).stdout)["tasks"] == before
    )  # nothing submitted
    nope = await maos("task", "submit-from-template", "nope", "--params", "{}")
    assert nope.exit_code == 3


async def test_bad_templates(maos: Maos, tmp_path: Path) -> None:
    neither = await maos("template", "create", "--name", "x")
    assert neither.exit_code == 2 and "--from-task" in neither.stderr
    both = await maos(
        "template", "create", "--name", "x", "--from-task", "t123456789abcdef", "--description", "d"
    )
    assert both.exit_code == 2
    options = await maos(
        "template", "create", "--name", "x", "--from-task", "t123456789abcdef", "--priority", "HIGH"
    )
    assert options.exit_code == 2 and "--priority cannot be used with --from-task" in options.stderr
    no_task = await maos("template", "create", "--name", "x", "--from-task", "t123456789abcdef")
    assert no_task.exit_code == 3 and "does not exist" in no_task.stderr
    unused = await maos("template", "create", "--name", "x", "--description", "Plain", "--param", "language")
    assert unused.exit_code == 4 and "used by no placeholder: language" in unused.stderr
    depends = await maos("template", "create", "--name", "x", "--description", "d", "--depends-on", "t1")
    assert depends.exit_code == 2
    long = await maos("template", "create", "--name", "n" * 101, "--description", "d")
    assert long.exit_code == 4 and "at most 100" in long.stderr
    assert (await maos("template", "create", "--name", "x", "--description", "d")).exit_code == 0
    twice = await maos("template", "create", "--name", "x", "--description", "d")
    assert twice.exit_code == 5 and "already have a template named 'x'" in twice.stderr

    broken = tmp_path / "broken.yml"
    broken.write_text("kind: maos.v1.Template\nname: y\ntask:\n  description: d\n  colour: red\n")
    result = await maos("template", "import", str(broken))
    assert result.exit_code == 4 and "task:" in result.stderr and "colour" in result.stderr
    broken.write_text("- just\n- a list\n")
    assert (await maos("template", "import", str(broken))).exit_code == 4
    broken.write_text("kind: Batch\nname: y\ntask: {description: d}\n")
    assert "kind is 'Batch'" in (await maos("template", "import", str(broken))).stderr
    assert "No templates." not in (await maos("template", "list")).stdout
    listed = json.loads((await maos("-o", "json", "template", "list")).stdout)["templates"]
    assert [t["display_name"] for t in listed] == ["x"]


async def test_other_users_cannot_see_use_or_delete_a_template(secured: App, maos_home: Path) -> None:
    token = await admin_key(secured)
    async with Client(secured.address, token=token) as admin:
        await admin.create_user("alice@example.com", ["developer"])
        await admin.create_user("bob@example.com", ["developer"])
        alice_key = (await admin.create_api_key("alice", user="alice")).secret
        bob_key = (await admin.create_api_key("bob", user="bob")).secret
    maos = Maos(secured.address, maos_home)
    created = await maos(
        "template", "create", "--name", "mine", "--description", "Secret {thing}", MAOS_TOKEN=alice_key
    )
    assert created.exit_code == 0, created.stderr
    template_id = created.stdout.strip()
    for ref in ("mine", template_id, f"templates/{template_id}"):
        for command in (
            ("template", "show", ref),
            ("template", "delete", ref),
            ("template", "export", ref),
            ("task", "submit-from-template", ref, "--param", "thing=x"),
        ):
            result = await maos(*command, MAOS_TOKEN=bob_key)
            assert result.exit_code == 3, (command, result.stderr)
    assert "No templates." in (await maos("template", "list", MAOS_TOKEN=bob_key)).stdout
    # bob's task cannot be copied by alice either
    bob_task = (await maos("task", "submit", "Bob's {work}", MAOS_TOKEN=bob_key)).stdout.strip()
    copied = await maos(
        "template", "create", "--name", "stolen", "--from-task", bob_task, MAOS_TOKEN=alice_key
    )
    assert copied.exit_code == 3
    # the same name is free for bob
    assert (
        await maos("template", "create", "--name", "mine", "--description", "d", MAOS_TOKEN=bob_key)
    ).exit_code == 0
    # an admin sees alice's template by id but cannot delete it
    assert (await maos("template", "show", template_id, MAOS_TOKEN=token)).exit_code == 0
    refused = await maos("template", "delete", template_id, MAOS_TOKEN=token)
    assert refused.exit_code == 5 and "only its owner" in refused.stderr
    assert (await maos("template", "delete", "mine", MAOS_TOKEN=alice_key)).exit_code == 0


async def test_checkpoints_hold_templates_and_batches(maos: Maos) -> None:
    assert (await maos("template", "create", "--name", "kept", "--description", "Hello {who}")).exit_code == 0
    assert (await maos("batch", "create", "--name", "kept batch")).exit_code == 0
    assert (await maos("batch", "add-task", "kept batch", "work")).exit_code == 0
    ck = (await maos("checkpoint", "create")).stdout.strip()
    shown = json.loads((await maos("-o", "json", "checkpoint", "show", ck)).stdout)
    assert {"templates", "batches"} <= set(shown["components"])
    assert (await maos("template", "delete", "kept")).exit_code == 0
    assert (await maos("batch", "delete", "kept batch")).exit_code == 0

    verified = json.loads(
        (
            await maos(
                "-o",
                "json",
                "recover",
                "--checkpoint",
                ck,
                "--verify",
                "--component",
                "templates",
                "--component",
                "batches",
            )
        ).stdout
    )
    assert {c["component"]: int(c["restored"]) for c in verified["changes"]} == {"templates": 1, "batches": 1}
    result = await maos("recover", "--checkpoint", ck, "--component", "templates", "--component", "batches")
    assert result.exit_code == 0, result.stderr
    used = await maos("task", "submit-from-template", "kept", "--param", "who=world")
    assert used.exit_code == 0, used.stderr
    status = json.loads((await maos("-o", "json", "batch", "status", "kept batch")).stdout)
    assert status["batch"]["task_count"] == 1 and status["batch"]["pending_tasks"][0]["description"] == "work"
