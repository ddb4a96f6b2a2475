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
the host awaits (``controlplane.plugins.await_me_maybe``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from controlplane.config import Settings
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

    Args:
        settings: The control plane's resolved settings.

    Returns:
        A list of planners (:class:`controlplane.domain.planning.Planner`). A
        task is planned by the first planner (in hook order: plugins before
        built-ins) whose ``accepts(task)`` is true; the deterministic built-in
        planner accepts every task and runs last. A planner's ``plan`` that
        takes a ``pool`` keyword is told the agent types connected or
        launchable; every plan is fitted to them before it runs. One that
        takes a ``pacer`` keyword gets the control plane's
        :class:`controlplane.pacing.Pacer`, to take a permit for each model
        call as agents do.

    Example::

        @hookimpl
        def register_planners(settings):
            return [OnlyResearchPlanner()]  # accepts(task): task.task_type == "research"
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
