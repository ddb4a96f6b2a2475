"""Wiring observation into a built control plane: the observer, and the history sampler's lifecycle."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pluggy

from controlplane.hookspecs import hookimpl
from controlplane.observability.history import HistorySampler
from controlplane.observability.observer import Observer


@dataclass
class Observability:
    """The observer (resources now) and the history sampler of one control plane."""

    observer: Observer
    history: HistorySampler


class _Lifecycle:
    """A plugin object starting the sampler at startup and stopping it at shutdown."""

    def __init__(self, sampler: HistorySampler):
        self.sampler = sampler

    @hookimpl
    def startup(self, app: Any) -> None:
        self.sampler.start()

    @hookimpl
    def shutdown(self, app: Any) -> Any:
        return self.sampler.stop()


def install_observability(
    pm: pluggy.PluginManager, engine: Any, storage: Any, launcher: Any, metrics: Any, settings: Any
) -> Observability:
    """Make the observer and the history sampler, which samples while the app runs."""
    observer = Observer(engine, storage, launcher, metrics)
    sampler = HistorySampler(
        storage,
        observer.figures,
        engine.replica,
        settings["metrics.history.interval"],
        settings["metrics.history.retention"],
    )
    pm.register(_Lifecycle(sampler), name="maos-metrics-history")
    return Observability(observer, sampler)
