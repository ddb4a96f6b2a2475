"""Custom agent types from ``$MAOS_HOME/agents/*.yml``: loading, validation, and running them for real."""

from __future__ import annotations

import logging
import os
import textwrap
import time
from pathlib import Path

import pytest

from agent_sdk import PermanentError
from agent_sdk.proto.maos.v1 import agent_service_pb2 as agents_pb
from agent_sdk.proto.maos.v1 import enums_pb2 as enums
from agent_sdk.testing import AgentEnvironment
from controlplane import custom_agents
from controlplane.agent_types import agent_types
from controlplane.app import App
from controlplane.custom_agents import custom_agent_types
from controlplane.plugins import get_plugin_manager
from tests.controlplane.api.test_task_service import results, submit, wait_status
from tests.harness.server import Stubs, make_settings, wait_for_agents

PROCESS_START = 25.0  # seconds a fresh agent process may take to register

DOMAIN_RESEARCHER = """\
# ~/.maos/agents/custom_researcher.yml
name: "domain_researcher"
type: "echo"
description: Researches papers and patents.
capabilities:
  - "scientific_literature"
  - "patent_research"
parameters:
  max_memory: "2GB"
  timeout: 7200
"""

WORDCOUNT = """\
name: wordcount
type: shell
description: Counts the words of its instructions.
capabilities: [count]
parameters:
  command: "wc -w"
  allow: true
  timeout: 10
"""

SHOUTER = """\
name: shouter
type: python
parameters:
  function: "tests.plugins.agent_functions:shout"
  kwargs: {suffix: "?!"}
"""


def write(home: Path, name: str, text: str) -> Path:
    """Write ``$MAOS_HOME/agents/NAME``."""
    path = home / "agents" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def types_of(home: Path, **settings: object) -> dict:
    """The agent types a fresh plugin manager sees with MAOS_HOME=home."""
    return agent_types(get_plugin_manager(load_entrypoints=False), make_settings(home, **settings))


def problems_of(home: Path) -> dict[str, str]:
    """Problem message by file name."""
    found = custom_agent_types(get_plugin_manager(load_entrypoints=False), make_settings(home))
    return {p.path.name: p.message for p in found.problems}


# --- loading ------------------------------------------------------------------------------


def test_a_custom_type_specialises_its_base_type(tmp_path: Path) -> None:
    path = write(tmp_path, "custom_researcher.yml", DOMAIN_RESEARCHER)
    spec = types_of(tmp_path)["domain_researcher"]
    assert spec.base_type == "echo"
    assert spec.source == str(path)
    assert spec.capabilities == ("scientific_literature", "patent_research")
    assert spec.description == "Researches papers and patents."
    assert spec.parameters == {"max_memory": "2GB", "timeout": 7200}
    agent = spec.build()
    assert agent.agent_type == "domain_researcher"  # what the worker registers, so --agent-type routes to it
    assert agent.capabilities == ["scientific_literature", "patent_research"]
    assert type(agent).__name__ == "EchoAgent"


def test_defaults_come_from_the_base_type_and_types_may_build_on_custom_types(tmp_path: Path) -> None:
    write(tmp_path, "a.yml", "name: plain\ntype: sleep\n")
    write(tmp_path, "b.yaml", "name: plainer\ntype: plain\nmax_concurrency: 3\n")
    known = types_of(tmp_path)
    assert known["plain"].capabilities == known["sleep"].capabilities
    assert known["plain"].max_concurrency == known["sleep"].max_concurrency
    assert known["plain"].description == known["sleep"].description
    assert known["plainer"].base_type == "plain"
    agent = known["plainer"].build()
    assert (agent.agent_type, agent.max_concurrency, type(agent).__name__) == ("plainer", 3, "SleepAgent")


def test_broken_files_are_reported_precisely_and_skipped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write(tmp_path, "good.yml", DOMAIN_RESEARCHER)
    write(tmp_path, "bad_yaml.yml", "name: x\ntype: [echo\n")
    write(tmp_path, "list.yml", "- name: x\n")
    write(tmp_path, "empty.yml", "")
    write(tmp_path, "no_type.yml", "name: lonely\n")
    write(tmp_path, "typo.yml", "name: typo\ntype: echo\ncapabilites: [a]\n")
    write(tmp_path, "bad_name.yml", "name: 'has spaces'\ntype: echo\n")
    write(tmp_path, "unknown_base.yml", "name: orphan\ntype: researcher\n")
    write(tmp_path, "zz_duplicate.yml", "name: domain_researcher\ntype: noop\n")
    write(tmp_path, "clash.yml", "name: echo\ntype: noop\n")
    write(tmp_path, "caps.yml", "name: capless\ntype: echo\ncapabilities: research\n")
    write(tmp_path, "self.yml", "name: me\ntype: me\n")
    write(tmp_path, "cycle_a.yml", "name: ca\ntype: cb\n")
    write(tmp_path, "cycle_b.yml", "name: cb\ntype: ca\n")
    write(tmp_path, "shell_typo.yml", "name: sh\ntype: shell\nparameters: {comand: ls}\n")
    write(tmp_path, "shell_nocmd.yml", "name: sh2\ntype: shell\nparameters: {allow: true}\n")
    write(
        tmp_path,
        "python_missing.yml",
        "name: py\ntype: python\nparameters: {function: 'no_such_module_x:f'}\n",
    )
    write(
        tmp_path,
        "python_not_callable.yml",
        "name: py2\ntype: python\nparameters: {function: 'tests.plugins.agent_functions:NOT_CALLABLE'}\n",
    )
    write(tmp_path, "on_broken.yml", "name: child\ntype: sh\n")
    (tmp_path / "agents" / "notes.txt").write_text("not a type")

    with caplog.at_level(logging.WARNING, logger="controlplane.custom_agents"):
        known = types_of(tmp_path)
    customs = {name for name, spec in known.items() if spec.base_type}
    assert customs == {"domain_researcher"}
    assert known["echo"].source == "builtin"  # not replaced by clash.yml

    problems = problems_of(tmp_path)
    assert problems["bad_yaml.yml"].startswith("is not valid YAML at line 3, column 1")
    assert problems["list.yml"] == "must be a mapping with at least `name` and `type`, not a list"
    assert problems["empty.yml"] == "must be a mapping with at least `name` and `type` (the file is empty)"
    assert problems["no_type.yml"] == "`type` is required"
    assert problems["typo.yml"].startswith("unknown field(s) capabilites; allowed: name, type,")
    assert problems["bad_name.yml"].startswith("`name` 'has spaces' must start with a letter")
    assert problems["unknown_base.yml"].startswith("unknown base type 'researcher'; known types: ")
    assert problems["zz_duplicate.yml"] == "agent type 'domain_researcher' is also defined in good.yml"
    assert problems["clash.yml"] == "agent type 'echo' already exists (from builtin); choose another name"
    assert problems["caps.yml"] == "`capabilities` must be a list of strings"
    assert problems["self.yml"] == "`type` cannot be the type itself ('me')"
    assert "cannot be resolved" in problems["cycle_a.yml"] and "cannot be resolved" in problems["cycle_b.yml"]
    assert problems["shell_typo.yml"] == (
        "parameters rejected by base type 'shell': unknown shell parameter(s) comand; "
        "known: allow, command, cwd, env, max_output_bytes, timeout"
    )
    assert problems["shell_nocmd.yml"].startswith("the shell agent has no command")
    assert problems["python_missing.yml"].startswith(
        "parameters rejected by base type 'python': parameters.function 'no_such_module_x:f': cannot import"
    )
    assert problems["python_not_callable.yml"].endswith("is not callable")
    assert problems["on_broken.yml"] == "base type 'sh' was skipped (see shell_typo.yml)"
    assert "notes.txt" not in problems and "good.yml" not in problems

    logged = [r.getMessage() for r in caplog.records]
    assert any("bad_yaml.yml: is not valid YAML" in line for line in logged), logged


def test_no_agents_folder_means_no_custom_types(tmp_path: Path) -> None:
    known = types_of(tmp_path / "nowhere")
    assert sorted(known) == ["echo", "noop", "python", "shell", "sleep"]
    assert problems_of(tmp_path / "nowhere") == {}


def test_a_plugin_type_can_be_specialised(tmp_path: Path) -> None:
    from agent_sdk import AgentTypeSpec
    from agent_sdk.builtin import EchoAgent
    from controlplane import hookimpl

    class Plugin:
        @hookimpl
        def register_agent_types(self):
            return [
                AgentTypeSpec(
                    name="researcher",
                    capabilities=("research",),
                    description="plugin type",
                    factory=lambda params: EchoAgent(),
                    source="research-plugin",
                )
            ]

    write(tmp_path, "r.yml", "name: domain_researcher\ntype: researcher\n")
    pm = get_plugin_manager(load_entrypoints=False)
    pm.register(Plugin(), name="research-plugin")
    spec = agent_types(pm, make_settings(tmp_path))["domain_researcher"]
    assert (spec.base_type, spec.capabilities, spec.description) == (
        "researcher",
        ("research",),
        "plugin type",
    )
    assert spec.build().agent_type == "domain_researcher"


# --- running the shell and python bases through their YAML types ----------------------------


async def test_wordcount_counts_words(tmp_path: Path) -> None:
    write(tmp_path, "wordcount.yml", WORDCOUNT)
    agent = types_of(tmp_path)["wordcount"].build()
    env = AgentEnvironment()
    result = await env.run(agent, "the quick brown fox")
    assert result.output == "4"
    assert env.output.strip() == "4"


async def test_a_shell_type_without_allow_fails_saying_how_to_enable_it(tmp_path: Path) -> None:
    write(tmp_path, "wc.yml", "name: wc\ntype: shell\nparameters: {command: 'wc -w'}\n")
    agent = types_of(tmp_path)["wc"].build()
    with pytest.raises(PermanentError, match=r"agents\.allow_shell: true.*allow: true"):
        await AgentEnvironment().run(agent, "a b")
    # The setting enables every shell type that does not say otherwise.
    allowed = types_of(tmp_path, **{"agents.allow_shell": True})["wc"].build()
    assert (await AgentEnvironment().run(allowed, "a b")).output == "2"


async def test_a_python_type_calls_its_function_with_the_context(tmp_path: Path) -> None:
    write(tmp_path, "shouter.yml", SHOUTER)
    agent = types_of(tmp_path)["shouter"].build()
    env = AgentEnvironment()
    result = await env.run(agent, "hello")
    assert result.output == "HELLO?!"
    assert env.outputs == ["working"]
    assert [p.message for p in env.progress] == ["shouting"]


# --- for real: a control plane and agent processes -------------------------------------------


async def test_custom_type_is_listed_spawned_and_runs_a_task(
    control_plane: App, stubs: Stubs, maos_home: Path
) -> None:
    path = write(maos_home, "custom_researcher.yml", DOMAIN_RESEARCHER)
    write(maos_home, "broken.yml", "name: [\n")

    listed = await stubs.agents.ListAgentTypes(agents_pb.ListAgentTypesRequest(), timeout=5)
    by_name = {t.name: t for t in listed.agent_types}
    assert "broken" not in by_name and "echo" in by_name
    custom = by_name["domain_researcher"]
    assert (custom.base_type, custom.source, list(custom.capabilities)) == (
        "echo",
        "agents/custom_researcher.yml",
        ["scientific_literature", "patent_research"],
    )
    assert path.exists()
    # Callers see paths relative to MAOS_HOME, never where the server's files are.
    assert [p.split(":")[0] for p in listed.problems] == ["agents/broken.yml"]
    assert str(maos_home) not in str(listed)
    assert custom.spawnable

    # The launcher gives its processes the control plane's MAOS_HOME, where they find the YAML.
    reply = await stubs.agents.SpawnAgents(
        agents_pb.SpawnAgentsRequest(agent_type="domain_researcher", count=1), timeout=PROCESS_START + 5
    )
    [agent] = reply.agents
    assert agent.agent_type == "domain_researcher"
    assert agent.status == enums.AGENT_STATUS_IDLE, agent
    assert sorted(agent.capabilities) == ["patent_research", "scientific_literature"]

    task = await submit(
        stubs, "Research latest developments in quantum computing", agent_type="domain_researcher"
    )
    done = await wait_status(
        stubs, task.name, enums.TASK_STATUS_COMPLETED, enums.TASK_STATUS_FAILED, timeout=20
    )
    assert done.status == enums.TASK_STATUS_COMPLETED, done
    result = await results(stubs, task.name)
    assert result.output == "Research latest developments in quantum computing"
    assert {s.agent for s in result.subtasks} == {agent.name}


async def test_shell_and_python_types_run_in_maos_agent_processes(
    control_plane: App, stubs: Stubs, maos_home: Path, agent_processes
) -> None:
    write(maos_home, "wordcount.yml", WORDCOUNT)
    write(maos_home, "shouter.yml", SHOUTER)
    agent_processes(control_plane.address, "wordcount", home=maos_home)
    agent_processes(control_plane.address, "shouter", home=maos_home)
    await wait_for_agents(control_plane, 2, timeout=PROCESS_START)
    registered = sorted(s.info.agent_type for s in control_plane.engine.sessions.values())
    assert registered == ["shouter", "wordcount"]

    counted = await submit(stubs, "one two three four five", agent_type="wordcount")
    shouted = await submit(stubs, "quiet please", agent_type="shouter")
    for task, expected in ((counted, "5"), (shouted, "QUIET PLEASE?!")):
        done = await wait_status(
            stubs, task.name, enums.TASK_STATUS_COMPLETED, enums.TASK_STATUS_FAILED, timeout=20
        )
        assert done.status == enums.TASK_STATUS_COMPLETED, done
        assert (await results(stubs, task.name)).output == expected


async def test_a_failing_command_fails_the_task_with_its_stderr(
    control_plane: App, stubs: Stubs, maos_home: Path, agent_processes
) -> None:
    write(
        maos_home,
        "grumpy.yml",
        """\
        name: grumpy
        type: shell
        parameters:
          command: "echo 'no thanks' >&2; exit 3"
          allow: true
        """,
    )
    agent_processes(control_plane.address, "grumpy", home=maos_home)
    await wait_for_agents(control_plane, 1, timeout=PROCESS_START)
    task = await submit(stubs, "please", agent_type="grumpy")  # a PermanentError: no retry
    done = await wait_status(
        stubs, task.name, enums.TASK_STATUS_FAILED, enums.TASK_STATUS_COMPLETED, timeout=20
    )
    assert done.status == enums.TASK_STATUS_FAILED
    result = await results(stubs, task.name)
    text = str(result.failure) + str(list(result.subtasks))
    assert "exited with status 3" in text and "no thanks" in text, text


# --- bounds -------------------------------------------------------------------------------

#: 374 bytes of nested aliases ("billion laughs"): 9**8 strings once expanded, quoted whole in the
#: problem of its bad `capabilities` before the aliases were bounded (a 34 MB ListAgentTypes answer).
YAML_BOMB = """\
name: bomb
type: echo
parameters:
  a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
  b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
  c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
  d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
  e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
  f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
  g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
  h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
capabilities: *h
"""

#: More aliases than allowed (72), each cheap.
MANY_ALIASES = "name: many\ntype: echo\nparameters:\n  x: &x 1\n  y: [" + ", ".join(["*x"] * 72) + "]\n"

#: Few aliases (45), but 15**4 nodes once expanded.
WIDE_ALIASES = """\
name: wide
type: echo
parameters:
  a: &a [1,2,3,4,5,6,7,8,9,10,11,12,13,14,15]
  b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]
  c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]
  d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]
"""

RECURSIVE = """\
name: recursive
type: echo
parameters:
  loop: &loop [1, *loop]
"""


def test_yaml_alias_bombs_and_oversized_files_are_skipped_with_their_reason(tmp_path: Path) -> None:
    home = tmp_path / "home"
    write(home, "bomb.yml", YAML_BOMB)
    write(home, "many.yml", MANY_ALIASES)
    write(home, "wide.yml", WIDE_ALIASES)
    write(home, "recursive.yml", RECURSIVE)
    write(home, "huge.yml", DOMAIN_RESEARCHER.replace("domain_researcher", "huge") + "#" * 70_000 + "\n")
    write(home, "fine.yml", DOMAIN_RESEARCHER)
    write(home, "few_aliases.yml", "name: few\ntype: echo\nparameters:\n  x: &x [1, 2]\n  y: *x\n")
    started = time.perf_counter()
    problems = problems_of(home)
    elapsed = time.perf_counter() - started
    assert elapsed < 2.0, elapsed
    assert "more than 10000 YAML nodes" in problems["bomb.yml"]
    assert "more than 64 YAML aliases" in problems["many.yml"]
    assert "more than 10000 YAML nodes" in problems["wide.yml"]
    assert "YAML nodes" in problems["recursive.yml"]
    assert "the limit is 65536 bytes (limits.custom_agent_file_bytes)" in problems["huge.yml"]
    known = types_of(home)
    assert {"domain_researcher", "few"} <= set(known) and not {"bomb", "many", "wide", "huge"} & set(known)
    assert known["few"].parameters["y"] == [1, 2]


def test_a_file_is_parsed_once_per_change(tmp_path: Path) -> None:
    home = tmp_path / "home"
    path = write(home, "custom_researcher.yml", DOMAIN_RESEARCHER)
    parse = custom_agents._parse_version
    assert types_of(home)["domain_researcher"].description == "Researches papers and patents."
    misses = parse.cache_info().misses
    for _ in range(3):
        assert "domain_researcher" in types_of(home)
    assert parse.cache_info().misses == misses  # unchanged file: not read again
    path.write_text(DOMAIN_RESEARCHER.replace("Researches papers and patents.", "Reads a lot, now."))
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1_000_000))
    assert types_of(home)["domain_researcher"].description == "Reads a lot, now."
    assert parse.cache_info().misses == misses + 1


async def test_a_yaml_bomb_does_not_freeze_the_server(
    control_plane: App, stubs: Stubs, maos_home: Path
) -> None:
    write(maos_home, "bomb.yml", YAML_BOMB)
    write(maos_home, "custom_researcher.yml", DOMAIN_RESEARCHER)
    started = time.perf_counter()
    listed = await stubs.agents.ListAgentTypes(agents_pb.ListAgentTypesRequest(), timeout=5)
    assert time.perf_counter() - started < 2.0
    assert "domain_researcher" in {t.name for t in listed.agent_types}
    [problem] = listed.problems
    assert problem.startswith("agents/bomb.yml: ") and "aliases expanded" in problem and len(problem) < 300
