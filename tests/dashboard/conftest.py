"""The dashboard in a real browser: Debian's chromium, driven headless by Playwright (its async API).

The control plane runs in the test's event loop (the production ``build_app``, access control
on, the dashboard on an ephemeral port) with a real ``sleep`` agent process, so the browser
sees real tasks move. Playwright and chromium missing: skipped, or failed under CI=true
(:func:`tests.harness.services.fail_or_skip`). Set ``MAOS_CHROMIUM`` to use another binary.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from controlplane.app import App
from tests.harness.server import AgentProcess, admin_key, make_settings, start_app, wait_for_agents
from tests.harness.services import fail_or_skip

#: Seconds a browser expectation waits for the page (live updates included).
WAIT_MS = 30_000


def chromium_path() -> str:
    """The chromium binary: ``MAOS_CHROMIUM``, else Debian's ``/usr/bin/chromium``, else one on PATH."""
    for candidate in (
        os.environ.get("MAOS_CHROMIUM", ""),
        "/usr/bin/chromium",
        shutil.which("chromium") or "",
        shutil.which("chromium-browser") or "",
    ):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    fail_or_skip(
        "chromium is not installed (apt-get install chromium), needed for the dashboard's browser tests"
    )


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    """A headless chromium (a fresh one per test: no state leaks between tests)."""
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        fail_or_skip("the playwright package is not installed (pip install -e '.[test]')")
    path = chromium_path()
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=path, headless=True)
        try:
            yield browser
        finally:
            await browser.close()


@dataclass
class Dashboard:
    """A control plane serving the dashboard, with an admin key and a connected ``sleep`` agent."""

    app: App
    key: str
    home: Path
    url: str = ""
    agents: list[AgentProcess] = field(default_factory=list)

    def cli(self, *args: str, key: str | None = None) -> subprocess.CompletedProcess[str]:
        """The real ``maos`` CLI in a subprocess, against this control plane with ``key`` (the admin's)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("MAOS_")}
        env.update(
            {
                "MAOS_HOME": str(self.home),
                "MAOS_ADDR": self.app.address,
                "MAOS_TOKEN": key or self.key,
                "NO_COLOR": "1",
                "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
            }
        )
        return subprocess.run(
            [sys.executable, "-m", "maos_cli.main", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )

    async def user_key(self, email: str, role: str) -> str:
        """A key of a new user holding ``role``."""
        user = await self.app.access.create_user(email, [role])
        _, key = await self.app.storage.call(self.app.access.issue_key_sync, user["id"], email)
        return key


@pytest.fixture
async def dashboard(maos_home: Path) -> AsyncIterator[Dashboard]:
    """A secured control plane with its dashboard on an ephemeral port and one real ``sleep`` agent."""
    app = await start_app(make_settings(maos_home, **{"security.auth": "required"}), dashboard=True)
    board = Dashboard(
        app=app, key=await admin_key(app), home=maos_home, url=f"http://127.0.0.1:{app.dashboard_port}/"
    )
    try:
        board.agents.append(AgentProcess(app.address, "sleep", "--token", app.launcher.token))
        await wait_for_agents(app, 1)
        yield board
    finally:
        for agent in board.agents:
            await asyncio.to_thread(agent.stop)
        await app.stop(grace=1.0)


async def sign_in(page: Any, url: str, key: str) -> None:
    """Open the dashboard and sign in with ``key`` through the form, as a person does."""
    await page.goto(url)
    await page.get_by_label("API key").fill(key)
    await page.get_by_role("button", name="Sign in").click()
