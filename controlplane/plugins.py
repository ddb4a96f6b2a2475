"""The plugin manager: built-ins and ``maos`` entry points, through the same hooks."""

from __future__ import annotations

import inspect
import os
import sys
from typing import Any

import pluggy

from controlplane import hookspecs

#: Built-in plugins, registered exactly like third-party ones (trylast, so plugins win).
DEFAULT_PLUGINS = (
    "controlplane.storage.sql.plugin",
    "controlplane.builtin_plugin",
)


def get_plugin_manager(load_entrypoints: bool = True) -> pluggy.PluginManager:
    """A fresh plugin manager with the hookspecs, built-ins and (optionally) installed plugins."""
    pm = pluggy.PluginManager("maos")
    pm.add_hookspecs(hookspecs)
    if load_entrypoints:
        pm.load_setuptools_entrypoints("maos")
    for module_name in DEFAULT_PLUGINS:
        module = __import__(module_name, fromlist=["_"])
        pm.register(module, name=module_name)
    pm.check_pending()
    if os.environ.get("MAOS_TRACE_PLUGINS"):
        pm.trace.root.setwriter(lambda text: sys.stderr.write(text))
        pm.enable_tracing()
    return pm


async def await_me_maybe(value: Any) -> Any:
    """Resolve a hook result that may be a value, a callable or an awaitable."""
    if callable(value):
        value = value()
    if inspect.isawaitable(value):
        value = await value
    return value
