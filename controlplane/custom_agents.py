"""Custom agent types: ``$MAOS_HOME/agents/*.yml`` files that specialise a registered type.

A file names the type and the base type it specialises, and may replace its
capabilities and add parameters::

    # ~/.maos/agents/custom_researcher.yml
    name: domain_researcher          # the new type (letters, digits, _ or -; starts with a letter)
    type: researcher                 # the base type: any registered type, or another custom type
    description: Researches papers and patents.
    capabilities: [scientific_literature, patent_research]   # default: the base type's
    max_concurrency: 2               # default: the base type's
    parameters:                      # merged over the base type's parameters
      timeout: 7200
    mcp_servers:                     # tools from MCP servers (model-backed bases; see docs/mcp-tools.md)
      - name: facts
        command: ["python", "facts_server.py"]
    specialized_tools: [lookup_fact] # optional allow-list of tool names (also accepted under parameters)

``mcp_servers`` and ``specialized_tools`` are handed to the base type's agent as parameters of
those names; the base type checks them (``AgentTypeSpec.validate``) when the file is loaded, reports
what does not stop it (``AgentTypeSpec.advisory``: ``maos agent types`` shows it as a warning), and
says why it cannot run (``AgentTypeSpec.precondition``: an MCP server that cannot start).

An agent of the custom type is the base type's agent built with the merged
parameters; it registers under the custom name (so a task submitted with
``agent_type: domain_researcher`` runs on it) with the custom capabilities.

Files are looked at each time the agent types are collected (the
``register_agent_types`` hook), so a new file is picked up without a restart;
a file is read and parsed again only when its size or modification time
changed. A broken file is logged and skipped, never breaking the others; its
problem is returned in :attr:`CustomAgentTypes.problems` (``maos plugins list``
shows them).

The files are untrusted input, bounded like any other (issue 11): a file larger
than ``limits.custom_agent_file_bytes`` is skipped unread, and YAML aliases
are limited (:data:`MAX_ALIASES`, and :data:`MAX_NODES` nodes once expanded),
so a few hundred bytes of nested aliases (a "billion laughs" file) cannot
freeze the server.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from agent_sdk.agent import Agent
from agent_sdk.types import AgentBacking, AgentTypeSpec
from controlplane.config import Settings
from controlplane.domain.limits import QUOTE_CHARS, clip, quote

log = logging.getLogger(__name__)

#: The same rule as a task's agent_type and an agent's Register.agent_type.
TYPE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_\-]{0,62}")
FIELDS = (
    "name",
    "type",
    "description",
    "capabilities",
    "max_concurrency",
    "parameters",
    "mcp_servers",
    "specialized_tools",
)
#: Top-level fields handed to the base type's agent as parameters of the same name.
TOOL_FIELDS = ("mcp_servers", "specialized_tools")
PATTERNS = ("*.yml", "*.yaml")
#: Most aliases (``*name``) a file may use ...
MAX_ALIASES = 64
#: ... and most YAML nodes it may hold with every alias expanded.
MAX_NODES = 10_000
#: The default of ``limits.custom_agent_file_bytes``.
MAX_FILE_BYTES = 64 * 1024


@dataclass(frozen=True)
class Problem:
    """Why one file was skipped."""

    path: Path
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


@dataclass
class CustomAgentTypes:
    """What the agents folder holds: the usable types and the files that were skipped."""

    directory: Path
    specs: list[AgentTypeSpec] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


@dataclass(frozen=True)
class _Definition:
    path: Path
    name: str
    base: str
    description: str
    capabilities: tuple[str, ...] | None
    max_concurrency: int | None
    parameters: Mapping[str, Any]
    #: The :data:`TOOL_FIELDS` the file gives at its top level.
    tool_fields: tuple[str, ...] = ()


class _Invalid(ValueError):
    """A file's content is not a valid definition."""


def agents_dir(settings: Settings) -> Path:
    """``$MAOS_HOME/agents``."""
    return settings.home / "agents"


def is_custom(spec: Any, settings: Settings) -> bool:
    """Whether ``spec`` was made from a file of the agents folder."""
    source = str(getattr(spec, "source", ""))
    return bool(getattr(spec, "base_type", "")) and Path(source).parent == agents_dir(settings)


def shown_path(path: Path | str, settings: Settings) -> str:
    """``path`` as callers of the API see it: relative to ``MAOS_HOME`` when inside it."""
    try:
        return str(Path(path).relative_to(settings.home))
    except ValueError:
        return Path(path).name if Path(path).is_absolute() else str(path)


class _BoundedLoader(yaml.SafeLoader):  # type: ignore[misc]  # PyYAML ships no type hints
    """A safe loader that counts aliases as it composes, and refuses more than :data:`MAX_ALIASES`."""

    aliases = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            self.aliases += 1
            if self.aliases > MAX_ALIASES:
                raise _Invalid(f"uses more than {MAX_ALIASES} YAML aliases")
        return super().compose_node(parent, index)


def _expanded_nodes(root: yaml.Node) -> int:
    """How many nodes ``root`` holds with every alias expanded (stops counting past :data:`MAX_NODES`)."""
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in active:  # an alias inside its own anchor: endless once expanded
            return MAX_NODES + 1
        active.add(key)
        total = 1
        if isinstance(node, yaml.SequenceNode):
            children: list[yaml.Node] = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            children = [part for pair in node.value for part in pair]
        else:
            children = []
        for child in children:
            total = min(total + size(child), MAX_NODES + 1)
            if total > MAX_NODES:
                break
        active.discard(key)
        sizes[key] = total
        return total

    return size(root)


def _load_yaml(text: str) -> Any:
    """``yaml.safe_load`` with aliases bounded (``_Invalid`` past the bounds)."""
    loader = _BoundedLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded_nodes(node) > MAX_NODES:
            raise _Invalid(f"holds more than {MAX_NODES} YAML nodes with its aliases expanded")
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _files(directory: Path) -> list[Path]:
    if not directory.is_dir():
        return []
    return sorted({p for pattern in PATTERNS for p in directory.glob(pattern) if p.is_file()})


def _parse(path: Path, max_bytes: int = MAX_FILE_BYTES) -> _Definition:
    """Read and check one file, once per change of its size or modification time.

    Raises:
        _Invalid: what is wrong with the file (with YAML line numbers).
    """
    try:
        stat = path.stat()
    except OSError as exc:
        raise _Invalid(f"cannot be read: {exc.strerror or exc}") from None
    outcome = _parse_version(path, stat.st_mtime_ns, stat.st_size, max_bytes)
    if isinstance(outcome, _Invalid):
        raise _Invalid(str(outcome))
    return outcome


@functools.lru_cache(maxsize=512)
def _parse_version(path: Path, mtime_ns: int, size: int, max_bytes: int) -> _Definition | _Invalid:
    """The definition in one version of a file, or what is wrong with it (cached by version)."""
    try:
        return _read(path, size, max_bytes)
    except _Invalid as exc:
        return exc.with_traceback(None)


def _read(path: Path, size: int, max_bytes: int) -> _Definition:
    if size > max_bytes:
        raise _Invalid(f"is {size} bytes; the limit is {max_bytes} bytes (limits.custom_agent_file_bytes)")
    try:
        with path.open("rb") as file:
            raw = file.read(max_bytes + 1)  # the file may have grown since it was measured
        if len(raw) > max_bytes:
            raise _Invalid(f"is over {max_bytes} bytes (limits.custom_agent_file_bytes)")
        text = raw.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise _Invalid(f"cannot be read: {exc}") from None
    try:
        data = _load_yaml(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise _Invalid(f"is not valid YAML{where}: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise _Invalid(f"is not valid YAML: {exc}") from None
    if not isinstance(data, Mapping):
        raise _Invalid(
            "must be a mapping with at least `name` and `type`"
            + (" (the file is empty)" if data is None else f", not a {type(data).__name__}")
        )
    unknown = [clip(str(k), QUOTE_CHARS) for k in data if k not in FIELDS]
    if unknown:
        raise _Invalid(f"unknown field(s) {', '.join(sorted(unknown)[:5])}; allowed: {', '.join(FIELDS)}")
    for key in ("name", "type"):
        if key not in data:
            raise _Invalid(f"`{key}` is required")
        if not isinstance(data[key], str) or not TYPE_NAME.fullmatch(data[key]):
            raise _Invalid(
                f"`{key}` {quote(data[key])} must start with a letter and hold only letters, "
                "digits, "
                "'_' or '-' (max 63)"
            )
    name, base = data["name"], data["type"]
    if name == base:
        raise _Invalid(f"`type` cannot be the type itself ({name!r})")
    description = data.get("description", "")
    if description is None:
        description = ""
    if not isinstance(description, str):
        raise _Invalid("`description` must be a string")
    capabilities = data.get("capabilities")
    if capabilities is not None:
        if isinstance(capabilities, str) or not isinstance(capabilities, list):
            raise _Invalid("`capabilities` must be a list of strings")
        for index, capability in enumerate(capabilities):
            if not isinstance(capability, str) or not capability.strip():
                raise _Invalid(f"`capabilities[{index}]` must be a non-empty string, not {quote(capability)}")
        capabilities = tuple(c.strip() for c in capabilities)
    max_concurrency = data.get("max_concurrency")
    if max_concurrency is not None and (
        isinstance(max_concurrency, bool)
        or not isinstance(max_concurrency, int)
        or not 1 <= max_concurrency <= 1024
    ):
        raise _Invalid(f"`max_concurrency` must be an integer from 1 to 1024, not {quote(max_concurrency)}")
    parameters = data.get("parameters") or {}
    if not isinstance(parameters, Mapping):
        raise _Invalid("`parameters` must be a mapping")
    bad_keys = [k for k in parameters if not isinstance(k, str)]
    if bad_keys:
        raise _Invalid(f"`parameters` keys must be strings, not {quote(bad_keys[0])}")
    parameters = dict(parameters)
    tool_fields = tuple(key for key in TOOL_FIELDS if data.get(key) is not None)
    for key in tool_fields:
        if key in parameters:
            raise _Invalid(f"`{key}` is given both at the top level and under `parameters`; keep one")
        parameters[key] = data[key]
    return _Definition(path, name, base, description, capabilities, max_concurrency, parameters, tool_fields)


def _specialise(definition: _Definition, base: AgentTypeSpec) -> AgentTypeSpec:
    """The spec of a custom type: the base type's agent, renamed, with merged parameters."""
    name = definition.name
    capabilities = (
        definition.capabilities if definition.capabilities is not None else tuple(base.capabilities)
    )

    def factory(parameters: Mapping[str, Any]) -> Agent:
        agent = base.factory({**base.parameters, **parameters})
        # Instance attributes shadow the class's: the worker registers the custom name and capabilities.
        agent.agent_type = name  # type: ignore[misc]
        agent.capabilities = list(capabilities)  # type: ignore[misc]
        if definition.max_concurrency is not None:
            agent.max_concurrency = definition.max_concurrency  # type: ignore[misc]
        return agent

    return AgentTypeSpec(
        name=name,
        capabilities=capabilities,
        description=definition.description or base.description or f"Custom {base.name} agent",
        factory=factory,
        max_concurrency=definition.max_concurrency or base.max_concurrency,
        base_type=base.name,
        parameters={**base.parameters, **definition.parameters},
        source=str(definition.path),
        environment=tuple(base.environment),
        backing=base.backing,
        precondition=base.precondition,
        validate=base.validate,
        advisory=base.advisory,
    )


def _check_tools(definition: _Definition, spec: AgentTypeSpec, base: AgentTypeSpec) -> None:
    """Tool settings need a model-backed base; the base type checks their content (nothing is started)."""
    if definition.tool_fields and base.backing == AgentBacking.OFFLINE:
        raise _Invalid(
            f"`{definition.tool_fields[0]}` needs a model-backed base type: agents of "
            f"{base.name!r} run no model, so they use no tools"
        )
    if spec.validate is None:
        return
    try:
        spec.validate(spec.parameters)
    except ValueError as exc:
        raise _Invalid(str(exc)) from None


def _is_sdk_builtin(spec: AgentTypeSpec) -> bool:
    return getattr(spec.factory, "__module__", "") == "agent_sdk.builtin"


def _check_builds(spec: AgentTypeSpec, base: AgentTypeSpec) -> None:
    """Build an agent of a type based on the SDK's built-ins (cheap, no side effects) to check its parameters.

    Types based on a plugin's type are not built here: their factory may be
    costly or need credentials, and reports its own errors when the agent starts.
    """
    try:
        agent = spec.build()
    except Exception as exc:  # noqa: BLE001  (any failure of the factory is the file's problem)
        raise _Invalid(f"parameters rejected by base type {base.name!r}: {exc}") from None
    problem = getattr(agent, "configuration_error", "")
    if problem:
        raise _Invalid(problem)


def load_custom_agent_types(
    settings: Settings, known: Mapping[str, AgentTypeSpec], *, log_problems: bool = True
) -> CustomAgentTypes:
    """The custom types of ``$MAOS_HOME/agents`` that specialise ``known`` types (or each other).

    Args:
        settings: Settings of this process (``settings.home`` locates the folder).
        known: The types registered by plugins and built-ins, by name.
        log_problems: Log a warning for each skipped file.

    Returns:
        The usable types (in file-name order) and one problem per skipped file.
    """
    found = CustomAgentTypes(agents_dir(settings))
    definitions: list[_Definition] = []
    seen: dict[str, Path] = {}
    max_bytes = settings["limits.custom_agent_file_bytes"]
    for path in _files(found.directory):
        try:
            definition = _parse(path, max_bytes)
            if definition.name in known:
                owner = getattr(known[definition.name], "source", "")
                raise _Invalid(
                    f"agent type {definition.name!r} already exists (from {owner}); choose another name"
                )
            if definition.name in seen:
                raise _Invalid(
                    f"agent type {definition.name!r} is also defined in {seen[definition.name].name}"
                )
        except _Invalid as exc:
            found.problems.append(Problem(path, str(exc)))
            continue
        seen[definition.name] = path
        definitions.append(definition)

    # Resolve bases; a custom type may specialise another custom type, so repeat until nothing changes.
    resolved: dict[str, AgentTypeSpec] = {}
    cheap = {name for name, spec in known.items() if _is_sdk_builtin(spec)}
    pending = list(definitions)
    while pending:
        progress = False
        for definition in list(pending):
            base = known.get(definition.base) or resolved.get(definition.base)
            if base is None:
                continue
            pending.remove(definition)
            progress = True
            spec = _specialise(definition, base)
            try:
                _check_tools(definition, spec, base)
                if definition.base in cheap:
                    cheap.add(definition.name)
                    _check_builds(spec, base)
            except _Invalid as exc:
                found.problems.append(Problem(definition.path, str(exc)))
                continue
            resolved[definition.name] = spec
        if not progress:
            break
    names = sorted({*known, *resolved})
    for definition in pending:
        custom_pending = {d.name for d in pending}
        if definition.base in custom_pending:
            message = f"base type {definition.base!r} cannot be resolved (a cycle, or its own file is broken)"
        elif definition.base in seen:
            message = f"base type {definition.base!r} was skipped (see {seen[definition.base].name})"
        else:
            message = f"unknown base type {definition.base!r}; known types: {', '.join(names) or 'none'}"
        found.problems.append(Problem(definition.path, message))
    found.specs = [resolved[d.name] for d in definitions if d.name in resolved]
    found.problems.sort(key=lambda p: str(p.path))
    for problem in found.problems if log_problems else []:
        log.warning("custom agent type skipped: %s", problem)
    return found


def registered_types(results: Iterable[Iterable[Any] | None]) -> dict[str, AgentTypeSpec]:
    """Types by name from the results of ``register_agent_types`` (first name wins, as in agent_types())."""
    known: dict[str, AgentTypeSpec] = {}
    for specs in results:
        for spec in specs or []:
            known.setdefault(spec.name, spec)
    return known


def custom_agent_types(pm: Any, settings: Settings) -> CustomAgentTypes:
    """The custom types and problems as a plugin manager ``pm`` sees them (for ``maos plugins list``)."""
    everything = registered_types(pm.hook.register_agent_types(settings=settings))
    known = {name: spec for name, spec in everything.items() if not is_custom(spec, settings)}
    return load_custom_agent_types(settings, known, log_problems=False)
