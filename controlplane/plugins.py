"""The plugin manager: built-ins and ``maos`` entry points, through the same hooks.

One broken installed plugin does not stop MAOS: a plugin whose module fails to
import, whose hooks do not match the specifications (a misspelt hook name) or
whose ``register_*`` hook raises is skipped, with one warning in the log, and
listed by ``maos plugins list`` (:attr:`MaosPluginManager.problems`).
"""

from __future__ import annotations

import difflib
import functools
import importlib.metadata
import inspect
import logging
import os
import sys
from collections.abc import Callable
from typing import Any

import pluggy

from controlplane import hookspecs

log = logging.getLogger(__name__)

#: The entry-point group MAOS loads plugins from.
ENTRY_POINT_GROUP = "maos"

#: Built-in plugins, registered exactly like third-party ones (trylast, so plugins win).
DEFAULT_PLUGINS = (
    "controlplane.storage.sql.plugin",
    "controlplane.builtin_plugin",
)


class Distribution:
    """The distribution a plugin was installed with (what ``pm.list_plugin_distinfo()`` pairs it with)."""

    def __init__(self, dist: importlib.metadata.Distribution) -> None:
        self._dist = dist

    @property
    def project_name(self) -> str:
        """The distribution's name (``maos-plugin-example``)."""
        return str(self._dist.metadata["name"])

    def __getattr__(self, name: str) -> Any:  # version, metadata, ...
        return getattr(self._dist, name)


class MaosPluginManager(pluggy.PluginManager):
    """A pluggy manager that keeps what went wrong with the installed plugins."""

    def __init__(self, *, quiet: bool = False) -> None:
        super().__init__("maos")
        #: One sentence per problem (a plugin skipped, a hook that failed), oldest first, no repeats.
        self.problems: list[str] = []
        self._quiet = quiet
        self._installed: list[tuple[Any, Distribution]] = []

    def list_plugin_distinfo(self) -> list[tuple[Any, Any]]:
        """``(plugin, distribution)`` of every plugin registered from an entry point."""
        return [*super().list_plugin_distinfo(), *self._installed]

    def report(self, problem: str) -> None:
        """Log ``problem`` as a warning (unless quiet) and keep it, once."""
        if problem not in self.problems:
            self.problems.append(problem)
            if not self._quiet:
                log.warning("%s", problem)


def get_plugin_manager(load_entrypoints: bool = True) -> MaosPluginManager:
    """A fresh plugin manager with the hookspecs, built-ins and (optionally) installed plugins."""
    pm = MaosPluginManager()
    pm.add_hookspecs(hookspecs)
    if load_entrypoints:
        load_entry_points(pm)
    for module_name in DEFAULT_PLUGINS:
        module = __import__(module_name, fromlist=["_"])
        pm.register(module, name=module_name)
    pm.check_pending()
    if os.environ.get("MAOS_TRACE_PLUGINS"):
        pm.trace.root.setwriter(lambda text: sys.stderr.write(text))
        pm.enable_tracing()
    return pm


def installed_plugin_manager(quiet: bool = True) -> MaosPluginManager:
    """A manager with only the installed plugins (no built-ins): cheap, for their settings or commands.

    Args:
        quiet: Keep problems without logging them (reading settings: get_plugin_manager() reports
            the same problems where they matter).
    """
    pm = MaosPluginManager(quiet=quiet)
    pm.add_hookspecs(hookspecs)
    load_entry_points(pm)
    return pm


def load_entry_points(pm: MaosPluginManager) -> None:
    """Register every plugin of the ``maos`` entry-point group, skipping (and reporting) broken ones.

    A plugin is skipped when its module cannot be imported, when pluggy refuses
    its hook implementations, or when one of them names no hook (a misspelt
    hook). The ``register_*`` hooks of the plugins loaded here are guarded: one
    that raises is reported and counts as returning nothing.
    """
    for name, entry_point in installed_entry_points(tuple(sys.path)):
        if pm.get_plugin(name) is not None or pm.is_blocked(name):
            continue  # as pluggy does: the first distribution of a name wins
        try:
            plugin = entry_point.load()
            pm.register(plugin, name=name)
            # An entry point read from a distribution's metadata always knows its distribution.
            pm._installed.append((plugin, Distribution(entry_point.dist)))  # type: ignore[arg-type]
            unknown = _unknown_hooks(pm, plugin)
            if unknown:
                raise pluggy.PluginValidationError(plugin, unknown)
        except Exception as exc:  # noqa: BLE001  (any failure of one plugin: skip it, keep MAOS running)
            if pm.get_plugin(name) is not None:
                pm._installed = [(p, d) for p, d in pm._installed if p is not pm.get_plugin(name)]
                pm.unregister(name=name)
            validation = isinstance(exc, pluggy.PluginValidationError)
            detail = str(exc) if validation else f"{type(exc).__name__}: {exc}"
            pm.report(f"plugin {name} skipped: {detail}")
            continue
        for caller in pm.get_hookcallers(plugin) or []:
            if not caller.name.startswith("register_"):
                continue
            for impl in caller.get_hookimpls():
                if impl.plugin is plugin and not (impl.wrapper or impl.hookwrapper):
                    # pluggy declares HookImpl.function Final; the guard replaces it on purpose.
                    impl.function = _guarded(pm, name, caller.name, impl.function)  # type: ignore[misc]


@functools.lru_cache(maxsize=8)
def installed_entry_points(path: tuple[str, ...]) -> list[tuple[str, importlib.metadata.EntryPoint]]:
    """The ``maos`` entry points of the distributions on ``path`` (``sys.path``), by name.

    Reading every distribution's metadata takes milliseconds and settings are
    loaded often (each command, each test), so the answer is kept per
    ``sys.path``: a distribution installed into a directory already on the path
    while a process runs is seen by the next process.
    """
    found: list[tuple[str, importlib.metadata.EntryPoint]] = []
    for dist in importlib.metadata.distributions(path=list(path)):
        found.extend((ep.name, ep) for ep in dist.entry_points if ep.group == ENTRY_POINT_GROUP)
    return sorted(found, key=lambda item: item[0])


def _unknown_hooks(pm: pluggy.PluginManager, plugin: Any) -> str:
    """Why ``plugin`` implements hooks that do not exist ("" when it does not)."""
    known = [name for name in vars(pm.hook) if not name.startswith("_") and getattr(pm.hook, name).has_spec()]
    wrong = []
    for caller in pm.get_hookcallers(plugin) or []:
        own = [impl for impl in caller.get_hookimpls() if impl.plugin is plugin]
        if caller.has_spec() or all(impl.optionalhook for impl in own):
            continue
        close = difflib.get_close_matches(caller.name, known, n=1, cutoff=0.6)
        wrong.append(f"{caller.name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    return f"unknown hook {', '.join(wrong)}; docs/plugin_hooks.md lists the hooks" if wrong else ""


def _guarded(
    pm: MaosPluginManager, plugin: str, hook: str, function: Callable[..., Any]
) -> Callable[..., Any]:
    """``function`` reporting an exception it raises and returning nothing instead."""

    @functools.wraps(function)
    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001  (one plugin's failure must not stop MAOS)
            pm.report(
                f"plugin {plugin}: {hook} failed ({type(exc).__name__}: {exc}); what it registers is left out"
            )
            return None

    return call


async def await_me_maybe(value: Any) -> Any:
    """Resolve a hook result that may be a value, a callable or an awaitable."""
    if callable(value):
        value = value()
    if inspect.isawaitable(value):
        value = await value
    return value
