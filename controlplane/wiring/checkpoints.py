"""Wiring checkpoints into a built control plane: the gRPC service and the interval job's lifecycle."""

from __future__ import annotations

from typing import Any

import grpc
import pluggy

from agent_sdk.proto.maos.v1 import checkpoint_service_pb2_grpc as checkpoints_grpc
from controlplane.api.servicers.checkpoints import CheckpointServicer
from controlplane.checkpoints.interval import IntervalJob
from controlplane.checkpoints.service import Checkpoints
from controlplane.hookspecs import hookimpl
from controlplane.storage.base import StoresCheckpoints


class _Lifecycle:
    """A plugin object starting the interval job at startup and stopping it at shutdown."""

    def __init__(self, job: IntervalJob):
        self.job = job

    @hookimpl
    def startup(self, app: Any) -> None:
        self.job.start()

    @hookimpl
    def shutdown(self, app: Any) -> Any:
        return self.job.stop()


def install_checkpoints(
    pm: pluggy.PluginManager, engine: Any, storage: Any, settings: Any, server: grpc.aio.Server
) -> Checkpoints:
    """Add the CheckpointService to ``server`` and run the interval job while the app runs.

    With a storage backend lacking the optional ``StoresCheckpoints`` capability, the service
    answers FAILED_PRECONDITION and no interval job runs.
    """
    checkpoints = Checkpoints(engine, storage, settings)
    checkpoints_grpc.add_CheckpointServiceServicer_to_server(CheckpointServicer(checkpoints), server)
    if not isinstance(storage.backend, StoresCheckpoints):
        return checkpoints
    pm.register(
        _Lifecycle(
            IntervalJob(
                checkpoints,
                settings["checkpoints.interval"],
                lambda: engine.state_version,
                settings["checkpoints.cpu_budget"],
            )
        ),
        name="maos-checkpoints",
    )
    return checkpoints
