"""Screenshots of the dashboard's main views for the docs: ``python -m tests.dashboard.screenshots [DIR]``.

Starts a control plane (access control on, the dashboard on a free port) with real agent
processes, gives it a little work through the HTTP API (a finished plan of several steps, one
that runs, one that waits for it), then has headless chromium
(``/usr/bin/chromium`` or ``MAOS_CHROMIUM``) save one PNG per view in DIR (``docs/dashboard``).
"""

from __future__ import annotations

import asyncio
import logging
import sys
import tempfile
from pathlib import Path

import requests

from tests.harness.server import AgentProcess, admin_key, make_settings, start_app, wait_for, wait_for_agents

VIEWS = [
    ("overview", "#/", "Overview"),
    ("tasks", "#/tasks", "Tasks"),
    ("task", None, None),  # the finished plan's detail
    ("agents", "#/agents", "Agents"),
    ("queue", "#/queue", "Queue"),
    ("logs", "#/logs", "Logs"),
    ("metrics", "#/metrics", "Metrics"),
]


async def main(out: Path) -> None:
    """Make the screenshots in ``out``."""
    from playwright.async_api import async_playwright

    from tests.dashboard.conftest import chromium_path

    out.mkdir(parents=True, exist_ok=True)
    logging.getLogger("controlplane").setLevel(
        logging.INFO
    )  # the control plane's own lines reach the log view
    home = Path(tempfile.mkdtemp(prefix="maos-shots-")) / "home"
    app = await start_app(
        make_settings(home, **{"security.auth": "required", "metrics.history.interval": 1.0}), dashboard=True
    )
    agents = [
        AgentProcess(app.address, kind, "--token", app.launcher.token) for kind in ("sleep", "sleep", "echo")
    ]
    try:
        await wait_for_agents(app, len(agents), timeout=30)
        key = await admin_key(app)
        base = f"http://127.0.0.1:{app.dashboard_port}"

        def submit(task: dict) -> str:
            answer = requests.post(
                f"{base}/v1/tasks",
                json={"task": task},
                timeout=10,
                headers={"Authorization": f"Bearer {key}"},
            )
            answer.raise_for_status()
            return answer.json()["task"]["name"].removeprefix("tasks/")

        plan = await asyncio.to_thread(
            submit,
            {
                "description": "Compare three storage engines for our event log:\n- PostgreSQL\n- SQLite\n- Redis streams",
                "taskType": "analysis",
                "priority": "PRIORITY_HIGH",
                "agentType": "sleep",
                "metadata": {"sleep_seconds": "1", "sleep_steps": "2"},
            },
        )
        await asyncio.to_thread(
            submit,
            {
                "description": "Summarise the on-call week",
                "agentType": "echo",
                "metadata": {"echo_log": "read 42 incidents from the on-call log"},
            },
        )

        def finished(task_id: str) -> bool:
            answer = requests.get(
                f"{base}/v1/tasks/{task_id}", timeout=10, headers={"Authorization": f"Bearer {key}"}
            )
            return answer.json()["task"]["status"] == "TASK_STATUS_COMPLETED"

        await wait_for(
            lambda: asyncio.to_thread(finished, plan), 30, interval=0.2, message="the plan to finish"
        )
        long = await asyncio.to_thread(
            submit,
            {
                "description": "Index every repository (a long step)",
                "agentType": "sleep",
                "metadata": {"sleep_seconds": "600", "sleep_steps": "60"},
            },
        )
        await asyncio.to_thread(
            submit,
            {
                "description": "Report on the index",
                "agentType": "echo",
                "priority": "PRIORITY_CRITICAL",
                "dependsOn": [f"tasks/{long}"],
            },
        )
        logging.getLogger("controlplane.scheduler").warning("agents/echo lease renewed late (example line)")

        def sampled() -> bool:
            history = requests.get(
                f"{base}/v1/metrics:history", timeout=10, headers={"Authorization": f"Bearer {key}"}
            )
            return history.json().get("samples", 0) >= 8

        await wait_for(lambda: asyncio.to_thread(sampled), 60, interval=1.0, message="a few metrics samples")

        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=chromium_path(), headless=True)
            page = await browser.new_page(viewport={"width": 1280, "height": 820}, color_scheme="light")
            await page.goto(base + "/")
            await page.screenshot(path=str(out / "signin.png"))
            await page.get_by_label("API key").fill(key)
            await page.get_by_role("button", name="Sign in").click()
            await page.get_by_role("navigation", name="Main").wait_for()
            for name, hash_, heading in VIEWS:
                await page.goto(f"{base}/{hash_ or f'#/tasks/{plan}'}")
                if heading:
                    await page.get_by_role("heading", name=heading, exact=True).wait_for()
                else:
                    await page.locator("svg.plan g.node.s-completed").nth(3).wait_for()
                if name not in ("metrics", "task"):
                    await page.locator(".live.on").wait_for()
                if name == "task":
                    await page.get_by_text("finished", exact=True).wait_for()
                if name == "metrics":
                    await page.locator("figure.chart svg path.line").first.wait_for()
                if name == "logs":
                    await page.locator("#log-lines li").first.wait_for()
                await page.screenshot(path=str(out / f"{name}.png"), full_page=name in ("task", "metrics"))
                print(out / f"{name}.png")
            await page.emulate_media(color_scheme="dark")  # the same page in the dark theme
            await page.goto(f"{base}/#/agents")
            await page.locator(".live.on").wait_for()
            await page.screenshot(path=str(out / "agents-dark.png"))
            print(out / "agents-dark.png")
            await browser.close()
    finally:
        for agent in agents:
            agent.stop()
        await app.stop(grace=1.0)


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/dashboard")))
