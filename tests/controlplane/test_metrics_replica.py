"""Every metric the control plane exports carries a ``replica`` label naming it."""

from __future__ import annotations

import asyncio
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from agent_sdk.proto.maos.v1 import system_service_pb2 as system_pb
from tests.harness.exposition import without_replica
from tests.harness.server import Stubs, free_port, make_settings, start_app


def _samples(text: str) -> list:
    return [s for family in text_string_to_metric_families(text) for s in family.samples]


async def test_every_exported_sample_is_labelled_with_the_replica(tmp_path: Path) -> None:
    port = free_port()
    app = await start_app(
        make_settings(tmp_path, **{"server.metrics_port": port, "server.replica_id": "cp-7"})
    )
    stubs = Stubs(app.address)
    try:
        await stubs.system.GetStatus(system_pb.GetStatusRequest())  # an RPC: a labelled grpc_ series

        def scrape(query: str = "") -> str:
            return (
                urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics{query}", timeout=5).read().decode()
            )

        body = await asyncio.to_thread(scrape)
        samples = _samples(body)
        names = {s.name for s in samples}
        assert {"maos_build_info", "maos_tasks_pending", "grpc_server_handled_total"} <= names
        assert [s for s in samples if s.labels.get("replica") != "cp-7"] == []
        assert 'maos_agent_lease_expirations_total{replica="cp-7"} 0.0' in body  # one without other labels
        assert 'maos_tasks_pending{queue="high"} 0.0' in without_replica(body)

        only = _samples(await asyncio.to_thread(scrape, "?name[]=maos_build_info"))
        assert [(s.name, s.labels["replica"]) for s in only] == [("maos_build_info", "cp-7")]

        summary = await stubs.system.GetMetricsSummary(
            system_pb.GetMetricsSummaryRequest(include_exposition=True)
        )
        assert summary.samples and all(s.labels["replica"] == "cp-7" for s in summary.samples)
        assert all(s.labels["replica"] == "cp-7" for s in _samples(summary.exposition))
        # the registry itself keeps its label sets (code reading a series by its labels is unaffected)
        assert app.metrics.registry.get_sample_value("maos_build_info", {"version": app_version()}) == 1.0
    finally:
        await stubs.close()
        await app.stop(grace=1.0)


def app_version() -> str:
    from controlplane.version import __version__

    return __version__
