"""The MAOS plugin contract (pluggy project name ``maos``).

Plugins are discovered through the ``maos`` entry-point group; built-in
features are plugins registered through these same hooks (marked
``trylast=True``, so a plugin's implementation runs before them). Every hook
is documented in ``docs/plugin_hooks.md`` (``tests/plugins/test_docs.py``
keeps the two in sync). Hooks evolve by adding arguments, never by removing
them; an implementation may accept fewer arguments than its spec.

None of these hooks is ``firstresult``: every implementation is called and
the host combines the results (``register_*`` hooks return lists). pluggy
calls hooks synchronously; the lifecycle hooks may return an awaitable, which
the host awaits (``controlplane.plugins.await_me_maybe``). An installed plugin
whose ``register_*`` hook raises is reported (``maos plugins list``) and what
it would register is left out; the rest of MAOS goes on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import click

    from controlplane.config import Option, Settings
    from controlplane.domain.planning import Planner
    from controlplane.storage.base import StorageBackendFactory

hookspec = pluggy.HookspecMarker("maos")
hookimpl = pluggy.HookimplMarker("maos")


# --- storage -----------------------------------------------------------------


@hookspec
def register_storage_backends() -> list[StorageBackendFactory]:
    """Register storage backends.

    Called once when the control plane opens its storage. Not firstresult:
    every implementation is called; not awaited.

    Returns:
        A list of factories. The control plane asks each, in order (plugins
        before the built-in SQLAlchemy backend), whether it handles the
        configured database URL (``factory.handles(url)``) and uses the first
        that does; see :class:`controlplane.storage.base.StorageBackendFactory`.

    Example::

        @hookimpl
        def register_storage_backends():
            return [MyBackendFactory()]
    """


# --- planning ----------------------------------------------------------------


@hookspec
def register_planners(settings: Settings) -> list[Planner]:
    """Register task planners.

    Called once when the control plane is built. Not firstresult: every
    implementation is called; not awaited.

    A task is planned by the first planner, in hook order, whose
    ``accepts(task)`` is true. Hook order is pluggy's: ``tryfirst``
    implementations, then the others newest-registered first, then
    ``trylast`` ones (the built-in deterministic planner, which accepts every
    task). The Claude plugin's model planner is an ordinary implementation that
    accepts every task once an Anthropic key is set, so a plugin planner that
    must see tasks before it is marked ``@hookimpl(tryfirst=True)``.

    Args:
        settings: The control plane's resolved settings (the plugin's own included).

    Returns:
        A list of planners (:class:`controlplane.domain.planning.Planner`:
        ``name``, ``accepts(task: Task) -> bool`` and
        ``async plan(task: Task) -> ExecutionPlan``, types of
        :mod:`controlplane.domain.model`). A ``plan`` that takes a ``pool``
        keyword is told the agent types connected or launchable; every plan is
        fitted to them before it runs. ``maos task analyze`` shows the plan of
        a draft (``--type``, ``--metadata``, ``--context`` reach ``accepts``). A ``plan``
        that takes a ``pacer`` keyword gets the control plane's
        :class:`controlplane.pacing.Pacer`, to take a permit for each model
        call as agents do.

    Example::

        @hookimpl(tryfirst=True)
        def register_planners(settings):
            return [TicketPlanner()]  # accepts(task): "ticket" in task.metadata
    """


# --- agents ------------------------------------------------------------------


@hookspec
def register_agent_types(settings: Settings) -> list[Any]:
    """Register agent types that ``maos agent spawn``, ``maos start --agents`` and ``maos-agent run`` can run.

    Called whenever the types are collected (ListAgentTypes, SpawnAgents, at
    start, and by ``maos-agent run --type NAME`` in the agent's own process),
    so implementations should be cheap. Not firstresult: every implementation
    is called; when two register the same name, the one called first (a
    plugin before the built-ins) wins. Not awaited. The built-in plugin also
    wraps this hook to add the custom types of ``$MAOS_HOME/agents/*.yml``,
    which may specialise any type registered here.

    Args:
        settings: The resolved settings of the calling process.

    Returns:
        A list of :class:`agent_sdk.AgentTypeSpec` (name, capabilities,
        description, and the factory that builds the agent from its parameters).

    Example::

        @hookimpl
        def register_agent_types(settings):
            return [AgentTypeSpec(name="reverser", capabilities=("text",),
                                  description="Reverses its instructions.",
                                  factory=lambda params: Reverser(), source="maos-plugin-example")]
    """


# --- settings and commands -------------------------------------------------------


@hookspec
def register_settings() -> list[Option]:
    """Register a plugin's settings: a section of ``config.yml`` of its own.

    Called whenever settings are loaded (by the control plane, ``maos-agent``
    and the CLI), before any other hook, so it takes no arguments and must be
    cheap. Not firstresult: every implementation is called; not awaited.

    Each setting is a :class:`controlplane.config.Option` whose key is
    ``section.name`` (lower case, dotted). A plugin owns the sections it
    registers: a section of MAOS's own, or one another plugin registered, is
    refused (the plugin's settings are then left out and the problem is shown
    by ``maos plugins list``). Values come, like MAOS's own, from defaults,
    ``config.yml``, ``MAOS_SECTION_NAME`` variables and ``${VAR}`` references,
    are checked by the option's ``parse`` (a bad value stops ``maos start``
    with the key), are shown by ``maos config get`` and written by ``maos
    config set``; hooks read them as ``settings["section.name"]``. A section
    of ``config.yml`` that no installed plugin registers is reported as a
    warning when MAOS starts.

    Returns:
        A list of :class:`controlplane.config.Option`.

    Example::

        @hookimpl
        def register_settings():
            return [Option("tickets.url", parse_text, "", "Where the ticket planner reads tickets.")]
    """


@hookspec
def register_commands(cli: click.Group) -> list[click.Command]:
    """Register commands of the ``maos`` command line.

    Called once per ``maos`` invocation, the first time a command is looked up
    that MAOS does not have itself (or when ``maos --help`` lists them); not
    awaited. Not firstresult: every implementation is called and the commands
    they return are added to ``cli``. A command whose name MAOS already uses is
    left out with a warning; an implementation that raises is reported on
    stderr and the rest of the command line works.

    Args:
        cli: The ``maos`` group, to add subcommands to existing groups
            (``cli.commands["task"]``) or to read its options.

    Returns:
        A list of :class:`click.Command` (or groups).

    Example::

        @hookimpl
        def register_commands(cli):
            @click.command(help="Say hello.")
            def hello():
                click.echo("hello")
            return [hello]
    """


# --- lifecycle ---------------------------------------------------------------


@hookspec
def startup(app: Any) -> Any:
    """Called once the control plane has recovered its state, before it serves.

    Not firstresult: every implementation is called. May return an awaitable
    (or a callable returning one), which is awaited before the server starts.

    Args:
        app: The :class:`controlplane.app.App`.

    Returns:
        Nothing, or an awaitable that is awaited before serving.

    Example::

        @hookimpl
        def startup(app):
            async def warm_up():
                await my_cache.connect()
            return warm_up()
    """


@hookspec
def shutdown(app: Any) -> Any:
    """Called when the control plane stops, after it stops serving.

    Not firstresult: every implementation is called. May return an awaitable
    (or a callable returning one), which is awaited before storage closes.

    Args:
        app: The :class:`controlplane.app.App`.

    Returns:
        Nothing, or an awaitable that is awaited.

    Example::

        @hookimpl
        def shutdown(app):
            return my_cache.close()  # a coroutine
    """
