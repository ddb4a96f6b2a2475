"""The dashboard in a real browser: sign in, live tasks from the CLI, detail, agents, refusals."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from pathlib import Path
from typing import Any

from controlplane.domain.model import AgentStatus
from tests.dashboard.conftest import WAIT_MS, Dashboard, sign_in
from tests.harness.server import stored_audit


def _expect() -> Any:
    from playwright.async_api import expect

    expect.set_options(timeout=WAIT_MS)
    return expect


async def _page(browser: Any) -> tuple[Any, list[str]]:
    """A page of a fresh context, and every URL it requests (to check no key is ever in one)."""
    context = await browser.new_context()
    page = await context.new_page()
    urls: list[str] = []
    page.on("request", lambda request: urls.append(request.url))
    page.on("pageerror", lambda error: urls.append(f"pageerror: {error}"))
    return page, urls


async def test_sign_in_and_watch_a_cli_task_complete_live(dashboard: Dashboard, browser: Any) -> None:
    expect = _expect()
    page, urls = await _page(browser)
    await sign_in(page, dashboard.url, dashboard.key)
    await expect(page.get_by_role("navigation", name="Main")).to_be_visible()
    await expect(page.locator("#who")).to_contain_text("admin")
    await page.get_by_role("link", name="Tasks", exact=True).click()
    await expect(page.locator(".live")).to_have_text("live")

    # Submitted from the real CLI while the page is open: the list shows it without a reload.
    done = await asyncio.to_thread(
        dashboard.cli,
        "task",
        "submit",
        "Compare these fruits:\n- apples\n- pears\n- plums",
        "--agent-type",
        "sleep",
        "--metadata",
        "sleep_seconds=1.5",
        "--metadata",
        "sleep_steps=3",
        "-o",
        "json",
    )
    assert done.returncode == 0, done.stderr
    task_id = json.loads(done.stdout)["task_id"].removeprefix("tasks/")
    row = page.locator(f'tr[data-task="{task_id}"]')
    await expect(row).to_be_visible()
    await expect(row.locator(".badge")).to_have_text(
        "RUNNING"
    )  # three 1.5 s steps on one slot, then a synthesis
    await expect(row.locator(".badge")).to_have_text("COMPLETED")

    # Its detail: the plan as a graph, the subtasks, the output, usage.
    await row.get_by_role("link", name=task_id).click()
    await expect(page).to_have_url(re.compile(rf"#/tasks/{task_id}$"))
    await expect(page.locator("svg.plan g.node")).to_have_count(4)
    await expect(page.locator("svg.plan path.edge")).to_have_count(3)
    await expect(page.locator("svg.plan g.node.s-completed")).to_have_count(4)
    await expect(page.locator("tr[data-subtask]")).to_have_count(4)
    await expect(page.locator("#task-output")).to_contain_text("slept 1.5 s")
    await expect(page.get_by_role("heading", name="Usage and cost")).to_be_visible()
    await expect(page.locator("#task-cost")).to_have_text(re.compile(r"^\$"))

    # The key lives in the tab's sessionStorage, never in a URL nor in localStorage.
    assert await page.evaluate("sessionStorage.getItem('maos.key')") == dashboard.key
    assert await page.evaluate("localStorage.length") == 0
    assert urls and not [
        u for u in urls if dashboard.key in u or "maos_key" in u or u.startswith("pageerror")
    ], urls


async def test_a_task_detail_follows_a_running_task(dashboard: Dashboard, browser: Any) -> None:
    expect = _expect()
    page, _ = await _page(browser)
    await sign_in(page, dashboard.url, dashboard.key)
    await expect(page.get_by_role("navigation", name="Main")).to_be_visible()
    done = await asyncio.to_thread(
        dashboard.cli,
        "task",
        "submit",
        "One slow step",
        "--agent-type",
        "sleep",
        "--metadata",
        "sleep_seconds=4",
        "--metadata",
        "sleep_steps=4",
        "-o",
        "json",
    )
    assert done.returncode == 0, done.stderr
    task_id = json.loads(done.stdout)["task_id"].removeprefix("tasks/")
    await page.goto(f"{dashboard.url}#/tasks/{task_id}")
    status = page.locator(".summary .badge").first
    await expect(status).to_have_text("RUNNING")
    await expect(status).to_have_text("COMPLETED")  # the stream moved it, no reload
    await expect(page.locator("svg.plan g.node.s-completed")).to_have_count(1)


async def test_pause_an_agent(dashboard: Dashboard, browser: Any) -> None:
    expect = _expect()
    page, _ = await _page(browser)
    await sign_in(page, dashboard.url, dashboard.key)
    await page.get_by_role("link", name="Agents").click()
    [agent_id] = list(dashboard.app.engine.agents)
    row = page.locator(f'tr[data-agent="{agent_id}"]')
    await expect(row.locator(".badge")).to_have_text("IDLE")
    await row.get_by_role("button", name=f"Pause {agent_id}").click()
    await expect(row.locator(".badge")).to_have_text("PAUSED")
    assert dashboard.app.engine.agents[agent_id].status == AgentStatus.PAUSED
    # The pause went through the API with the user's key: audited as the admin's call.
    records = await stored_audit(dashboard.app)
    assert [r for r in records if r["method"].endswith("/PauseAgent") and r["principal"] == "users/admin"]
    await row.get_by_role("button", name=f"Resume {agent_id}").click()
    await expect(row.locator(".badge")).to_have_text("IDLE")


async def test_a_viewer_is_refused_the_admin_page_and_actions(dashboard: Dashboard, browser: Any) -> None:
    expect = _expect()
    key = await dashboard.user_key("vera@example.com", "viewer")
    page, _ = await _page(browser)
    await sign_in(page, dashboard.url, key)
    nav = page.get_by_role("navigation", name="Main")
    await expect(nav.get_by_role("link", name="Tasks")).to_be_visible()
    await expect(nav.get_by_role("link", name="Audit")).to_have_count(0)
    # Typed by hand, the admin page is refused by the server, and says so.
    await page.goto(f"{dashboard.url}#/audit")
    await expect(page.get_by_role("alert")).to_contain_text("Permission denied")
    # No agent actions are offered; the agents themselves are visible.
    await page.goto(f"{dashboard.url}#/agents")
    await expect(page.locator("tr[data-agent]")).to_have_count(1)
    await expect(page.get_by_role("button", name=re.compile("^(Pause|Drain|Terminate) "))).to_have_count(0)
    # Even a hand-made call with the viewer's key is refused by the server (and audited as DENY).
    [agent_id] = list(dashboard.app.engine.agents)
    status = await page.evaluate(
        """async (agent) => (await fetch(`/v1/agents/${agent}:pause`, {method: "POST", body: "{}",
             headers: {Authorization: `Bearer ${sessionStorage.getItem("maos.key")}`}})).status""",
        agent_id,
    )
    assert status == 403
    assert dashboard.app.engine.agents[agent_id].status != AgentStatus.PAUSED
    denied = await stored_audit(dashboard.app)
    assert [r for r in denied if r["method"].endswith("/PauseAgent") and r["decision"] == "DENY"]


async def test_a_bad_key_gets_a_clear_error(dashboard: Dashboard, browser: Any) -> None:
    expect = _expect()
    page, urls = await _page(browser)
    await sign_in(page, dashboard.url, "maos_key_not_a_real_key")
    await expect(page.get_by_role("alert")).to_contain_text("not accepted")
    await expect(page.get_by_label("API key")).to_be_focused()
    await expect(page.get_by_role("navigation", name="Main")).to_be_hidden()
    assert await page.evaluate("sessionStorage.getItem('maos.key')") is None
    assert not [u for u in urls if "maos_key" in u]
    # A reload does not sign anyone in; sign-out forgets the key.
    await sign_in(page, dashboard.url, dashboard.key)
    await expect(page.get_by_role("navigation", name="Main")).to_be_visible()
    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_label("API key")).to_be_visible()
    assert await page.evaluate("sessionStorage.getItem('maos.key')") is None


async def test_every_page_shows_its_data(dashboard: Dashboard, browser: Any) -> None:
    expect = _expect()
    page, urls = await _page(browser)
    await sign_in(page, dashboard.url, dashboard.key)
    await expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    await expect(page.locator(".cards").first).to_contain_text("connected agents")
    await expect(page.get_by_label("Replicas")).to_contain_text("(this one)")  # the replica registry
    await page.goto(f"{dashboard.url}#/queue")
    await expect(page.get_by_text("Nothing waits")).to_be_visible()
    await page.goto(f"{dashboard.url}#/logs")
    await expect(page.locator(".live")).to_have_text("live")
    logging.getLogger("controlplane.scheduler").warning("a line for the dashboard")  # followed live
    await expect(page.locator("#log-lines")).to_contain_text("a line for the dashboard")
    await page.get_by_label("Contains").fill("nothing says this")
    await page.get_by_label("Contains").press("Enter")
    await expect(page.locator("#log-lines li")).to_have_count(0)
    await page.get_by_label("follow").uncheck()
    await page.get_by_label("Contains").fill("for the dashboard")
    await page.get_by_label("Contains").press("Enter")
    await expect(page.locator("#log-lines")).to_contain_text("a line for the dashboard")
    await page.goto(f"{dashboard.url}#/metrics")
    await expect(page.locator("figure.chart").first).to_be_visible()
    await page.goto(f"{dashboard.url}#/checkpoints")
    await page.get_by_role("button", name="Take a checkpoint").click()
    await expect(page.locator("#checkpoint-list tbody tr")).to_have_count(1)
    await page.goto(f"{dashboard.url}#/config")
    await expect(page.locator("#config-list")).to_contain_text("server.dashboard_port")
    await page.goto(f"{dashboard.url}#/audit")
    await expect(page.locator("#audit-list")).to_contain_text("CreateCheckpoint")
    assert not [u for u in urls if u.startswith("pageerror")], urls


async def test_the_page_needs_nothing_from_elsewhere(dashboard: Dashboard, browser: Any) -> None:
    page, urls = await _page(browser)
    await sign_in(page, dashboard.url, dashboard.key)
    await _expect()(page.get_by_role("heading", name="Overview")).to_be_visible()
    assert all(u.startswith(dashboard.url) or u.startswith("data:") for u in urls), urls


def test_the_assets_ship_in_the_package() -> None:
    import controlplane.dashboard.server as server

    static = Path(server.__file__).parent / "static"
    assert (static / "index.html").is_file() and (static / "js" / "app.js").is_file()
    assert "http" not in (static / "index.html").read_text().split("<body>")[0].replace("http-equiv", "")


async def test_without_access_control_the_dashboard_opens_directly(maos_home: Path, browser: Any) -> None:
    from tests.harness.server import make_settings, start_app

    app = await start_app(make_settings(maos_home, **{"security.auth": "off"}), dashboard=True)
    try:
        page, _ = await _page(browser)
        await page.goto(f"http://127.0.0.1:{app.dashboard_port}/")
        expect = _expect()
        await expect(page.get_by_role("heading", name="Overview")).to_be_visible()
        await expect(page.get_by_label("API key")).to_have_count(0)
        await expect(page.get_by_role("button", name="Sign out")).to_be_hidden()
    finally:
        await app.stop(grace=1.0)
