"""``maos health --probe``: the standard gRPC health check without a key, exit 0 or 1 (container probes)."""

from __future__ import annotations

import json
from pathlib import Path

from controlplane.api.server import set_serving
from controlplane.app import App
from tests.cli.conftest import Maos
from tests.harness.certs import Pki
from tests.harness.server import make_settings, start_app


async def test_serving_with_no_key_on_a_server_that_requires_keys(secured: App, maos_home: Path) -> None:
    maos = Maos(secured.address, maos_home)  # no MAOS_TOKEN, no credentials file
    result = await maos("health", "--probe")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"{secured.address}: SERVING"
    result = await maos("-o", "json", "health", "--probe")
    assert json.loads(result.stdout) == {"address": secured.address, "status": "SERVING"}
    # the full check needs a key: the probe is the only part open without one
    assert (await maos("health")).exit_code == 7


async def test_not_serving_exits_1(secured: App, maos_home: Path) -> None:
    maos = Maos(secured.address, maos_home)
    await set_serving(secured.health, False)  # what a draining control plane answers
    result = await maos("health", "--probe")
    assert result.exit_code == 1
    assert "NOT_SERVING" in result.stderr
    await set_serving(secured.health, True)
    assert (await maos("health", "--probe")).exit_code == 0


async def test_unreachable_exits_1(offline_maos: Maos) -> None:
    result = await offline_maos("--timeout", "2", "health", "--probe")
    assert result.exit_code == 1  # not 6: container runtimes read only 1 as unhealthy
    assert "127.0.0.1:1: not reachable (UNAVAILABLE" in result.stderr


async def test_over_tls(maos_home: Path, pki: Pki, tmp_path: Path) -> None:
    app = await start_app(make_settings(maos_home, **pki.server_settings(mutual=False)))
    try:
        maos = Maos(f"127.0.0.1:{app.port}", maos_home)
        ok = await maos("health", "--probe", MAOS_TLS_CA=str(pki.ca))
        assert ok.exit_code == 0, ok.output
        refused = await maos("--timeout", "2", "health", "--probe")  # plaintext against a TLS port
        assert refused.exit_code == 1
        assert "not reachable" in refused.stderr
        missing = await maos("health", "--probe", MAOS_TLS_CA=str(tmp_path / "missing.pem"))
        assert missing.exit_code == 1  # an unusable TLS file is unhealthy too, and says which file
        assert "missing.pem" in missing.stderr
    finally:
        await app.stop(grace=1.0)


async def test_probe_takes_no_component_options(offline_maos: Maos) -> None:
    for extra in (["--component", "database"], ["--all"], ["--continuous"]):
        result = await offline_maos("health", "--probe", *extra)
        assert result.exit_code == 2
        assert "--probe checks the server as a whole" in result.stderr
