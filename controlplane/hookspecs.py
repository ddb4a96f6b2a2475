"""The MAOS plugin contract (pluggy project name ``maos``).

Plugins are discovered through the ``maos`` entry-point group; built-in
features are plugins registered through these same hooks. Every hook is
documented in ``docs/plugin_hooks.md`` (a test keeps the two in sync).
Hooks evolve by adding arguments, never by removing them.
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

    Returns:
        A list of factories. The control plane asks each, in order, whether
        it handles the configured database URL (``factory.handles(url)``) and
        uses the first that does; see :class:`controlplane.storage.base.StorageBackendFactory`.

    Example::

        @hookimpl
        def register_storage_backends():
            return [MyBackendFactory()]
    """


# --- planning ----------------------------------------------------------------


@hookspec
def register_planners(settings: Settings) -> list[Planner]:
    """Register task planners.

    Args:
        settings: The control plane's resolved settings.

    Returns:
        A list of planners. A task is planned by the first planner (in hook
        order: plugins before built-ins) whose ``accepts(task)`` is true; the
        deterministic built-in planner accepts every task and runs last.
    """


# --- agents ------------------------------------------------------------------


@hookspec
def register_agent_types(settings: Settings) -> list[Any]:
    """Register agent types that ``maos agent spawn`` and ``maos start --agents`` can launch.

    Args:
        settings: The control plane's resolved settings.

    Returns:
        A list of :class:`agent_sdk.AgentTypeSpec` (name, capabilities,
        description, and how to run the agent).
    """


# --- lifecycle ---------------------------------------------------------------


@hookspec
def startup(app: Any) -> Any:
    """Called once the control plane is built, before it serves.

    Args:
        app: The :class:`controlplane.app.App`.

    Returns:
        Nothing, or an awaitable that is awaited before serving.
    """


@hookspec
def shutdown(app: Any) -> Any:
    """Called when the control plane stops, after it stops serving.

    Args:
        app: The :class:`controlplane.app.App`.

    Returns:
        Nothing, or an awaitable that is awaited.
    """
