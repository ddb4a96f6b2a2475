"""After switching ``database.primary_url``, the CLI says why its key is refused and ``maos init`` mends it."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.cli.conftest import Maos
from tests.harness.server import start_app, wait_for

pytestmark = pytest.mark.postgres


async def test_switching_to_postgresql_then_maos_init(tmp_path: Path, postgres_url: str) -> None:
    home = tmp_path / "home"
    maos = Maos("127.0.0.1:1", home)
    assert (await maos("init")).exit_code == 0
    credentials = yaml.safe_load((home / "credentials").read_text())
    assert credentials["database"].startswith("sqlite:///")

    plain_url = postgres_url.replace("postgresql+psycopg://", "postgresql://")
    assert (await maos("config", "set", "database.primary_url", plain_url)).exit_code == 0
    from controlplane.config import load_settings

    app = await start_app(
        load_settings(
            home=home,
            environ={},
            overrides={
                "server.metrics_port": 0,
                "server.http_port": 0,
                "server.dashboard_port": 0,
                "agents.pool": {},
            },
        )
    )
    try:
        maos = Maos(app.address, home)
        refused = await maos("status")
        assert refused.exit_code == 7
        assert "was issued by sqlite:///" in refused.stderr and "run `maos init`" in refused.stderr

        mended = await maos("init")
        assert mended.exit_code == 0, mended.output
        assert f"created {home / 'credentials'}" in mended.stdout
        assert yaml.safe_load((home / "credentials").read_text())["database"].startswith("postgresql")

        # The control plane reads keys issued outside it (by `maos init`) within about a second.
        async def accepted() -> bool:
            return (await maos("status")).exit_code == 0

        await wait_for(accepted, 10, interval=0.2, message="the new admin key to be accepted")
        # Run again, with the key of this database already there: nothing changes.
        token = yaml.safe_load((home / "credentials").read_text())["token"]
        assert (await maos("init")).exit_code == 0
        assert yaml.safe_load((home / "credentials").read_text())["token"] == token
        # --new-admin-key issues another one, keeping config.yml.
        assert (await maos("init", "--new-admin-key")).exit_code == 0
        assert yaml.safe_load((home / "credentials").read_text())["token"] != token
        assert yaml.safe_load((home / "config.yml").read_text())["database"]["primary_url"] == plain_url
    finally:
        await app.stop(grace=1.0)
