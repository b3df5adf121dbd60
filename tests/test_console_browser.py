"""The agent console and the supervisor dashboard in a real browser (Debian's Chromium driven by Playwright),
against the real daemon in sandbox mode: the softphone is the console's @telnyx/webrtc shim talking to the
simulated carrier, calls are dialled by the real dialer, and what the agent saves is read back from PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import asyncpg
import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from admin_api.services import SERVICES
from crm.roles import Role
from tests.browser import ARGS, ARTIFACTS, chromium
from tests.conftest import PASSWORD, AppFactory, bearer, login
from tests.dialer_setup import make_campaign, sandbox_daemon
from tests.tcp_proxy import TcpProxy

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    executable = chromium()
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(executable), args=ARGS)
        try:
            yield browser
        finally:
            await browser.close()


class PageErrors:
    """Every JavaScript error and console error a page shows: a console test fails on any."""

    def __init__(self, page: Page) -> None:
        self.errors: list[str] = []
        page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc}"))
        page.on("console", lambda m: self.errors.append(f"console: {m.text}") if m.type == "error" else None)


async def _page(browser: Browser, base: str, path: str, email: str) -> tuple[Page, PageErrors]:
    context = await browser.new_context(viewport={"width": 1400, "height": 900}, base_url=base)
    page = await context.new_page()
    errors = PageErrors(page)
    await page.goto(path)
    await page.get_by_label("E-mail").fill(email)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    return page, errors


async def _shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


async def _humans(client: Any, numbers: list[str]) -> None:
    """These numbers answer as people after a short ring and talk until the agent hangs up."""
    sim = client.app[SERVICES].carriers.base_url.removesuffix("/v2")
    async with aiohttp.ClientSession() as http:
        for number in numbers:
            script = {"to": number, "outcome": "human", "ring_ms": 600, "greeting_ms": 300, "talk_ms": 600_000}
            async with http.post(f"{sim}/_sim/scenario", json=script) as response:
                assert response.status == 200, await response.text()


async def _join(agent: Page, cid: int) -> None:
    await agent.get_by_label("Campaign", exact=True).select_option(str(cid))
    await agent.get_by_role("button", name="Join").click()
    await expect(agent.locator("#line")).to_have_text("connected", timeout=15_000)


async def test_an_agent_takes_a_call_and_saves_a_lead_while_the_supervisor_watches(
    make_client: AppFactory,
    role_users: dict[Role, int],
    dialer_db: asyncpg.Pool,
    browser: Browser,
) -> None:
    client = await sandbox_daemon(make_client)
    base = str(client.make_url("")).rstrip("/")
    manager = bearer(await login(client, "campaign_manager@test.example"))
    await _humans(client, [f"+1212555{n:04d}" for n in range(1, 4)])
    cid = await make_campaign(client, manager, mode="progressive", contacts=3)
    agent_id = role_users[Role.AGENT]

    supervisor, supervisor_errors = await _page(browser, base, "/supervisor", "supervisor@test.example")
    await expect(supervisor.locator(f'[data-campaign="{cid}"]')).to_be_visible()

    agent, agent_errors = await _page(browser, base, "/console", "agent@test.example")
    await agent.get_by_label("Campaign", exact=True).select_option(str(cid))
    await agent.get_by_role("button", name="Join").click()
    await expect(agent.locator("#line")).to_have_text("connected", timeout=15_000)
    row = supervisor.locator(f'tr[data-user="{agent_id}"]')
    await expect(row).to_have_attribute("data-state", "paused")

    # Ready by its keyboard shortcut; the dashboard shows the change within a second.
    await agent.locator("body").press("r")
    started = time.monotonic()
    await expect(row).to_have_attribute("data-state", "ready", timeout=1000)
    assert time.monotonic() - started <= 1.0

    # The dialer calls a contact, a person answers and is bridged: the screen pop, the script, the timer.
    await expect(agent.locator("#pop")).to_be_visible(timeout=20_000)
    await expect(agent.locator("#call-state")).to_contain_text("on call", timeout=10_000)
    await expect(agent.locator("#script")).to_contain_text("Hi First")
    await expect(agent.locator("#history")).to_contain_text("First call to this contact")
    await expect(row).to_have_attribute("data-state", "on_call", timeout=1000)
    await expect(agent.locator("#timer")).not_to_have_text("--:--")
    await _shot(agent, "agent-on-call")
    await _shot(supervisor, "supervisor-agent-on-call")

    # Hang up (H), fill the form, choose "Qualified lead" (key 1) and save (Ctrl+Enter).
    await agent.locator("body").press("h")
    await expect(agent.locator("#call-state")).to_contain_text("ended", timeout=10_000)
    await expect(row).to_have_attribute("data-state", "wrap_up", timeout=1000)
    await agent.locator("body").press("1")
    await agent.keyboard.press("Control+Enter")
    await expect(agent.locator("#f-budget-error")).to_have_text("required")  # the form says what is missing
    await agent.get_by_label("Budget").fill("5000")
    await agent.get_by_label("Timeline").select_option("q2")
    await agent.get_by_label("Notes").fill("Wants a demo in March")
    await agent.keyboard.press("Control+Enter")
    await expect(agent.locator("#toast")).to_contain_text("lead #", timeout=10_000)
    await _shot(agent, "agent-saved")

    lead = await dialer_db.fetchrow("SELECT * FROM leads WHERE campaign_id = $1", cid)
    assert lead is not None
    assert lead["form_answers"] == {"budget": 5000, "timeline": "q2"}
    saved = await dialer_db.fetchrow("SELECT * FROM attempt_dispositions WHERE call_attempt_id = $1",
                                     lead["call_attempt_id"])  # fmt: skip
    assert saved["disposition_code"] == "qualified"
    assert saved["notes"] == "Wants a demo in March"
    assert saved["agent_user_id"] == agent_id
    await expect(row).not_to_have_attribute("data-state", "wrap_up", timeout=1000)  # back to work

    # The dashboard's campaign card counts the connect.
    connects = supervisor.locator(f'[data-campaign="{cid}"] [data-figure="connects"]')
    await expect(connects).not_to_have_text("0", timeout=3000)
    await _shot(supervisor, "supervisor-after-call")
    assert agent_errors.errors == []
    assert supervisor_errors.errors == []


async def test_a_dropped_connection_and_a_reload_lose_no_outcome_and_save_none_twice(
    make_client: AppFactory,
    role_users: dict[Role, int],
    dialer_db: asyncpg.Pool,
    browser: Browser,
) -> None:
    client = await sandbox_daemon(make_client)
    assert client.server.port is not None
    proxy = await TcpProxy("127.0.0.1", client.server.port).start()  # the agent's network, which we cut
    try:
        manager = bearer(await login(client, "campaign_manager@test.example"))
        await _humans(client, [f"+1212555{n:04d}" for n in range(1, 3)])
        cid = await make_campaign(client, manager, mode="progressive", contacts=2)
        agent, errors = await _page(browser, f"http://127.0.0.1:{proxy.port}", "/console", "agent@test.example")
        await _join(agent, cid)
        await agent.get_by_role("button", name="Ready").click()
        await expect(agent.locator("#call-state")).to_contain_text("on call", timeout=20_000)
        await agent.get_by_role("button", name="Hang up").click()
        await expect(agent.locator("#state")).to_have_text("wrap up", timeout=10_000)
        await agent.get_by_role("button", name="Not interested").click()
        await agent.get_by_label("Notes").fill("Uses a competitor")

        # The network drops; the agent saves anyway: the outcome waits in the browser, the console says so.
        await proxy.cut()
        await expect(agent.locator("#conn")).to_have_text("reconnecting…")
        await agent.get_by_role("button", name="Save outcome").click()
        await expect(agent.locator("#save")).to_contain_text("Saving")
        assert await dialer_db.fetchval("SELECT count(*) FROM attempt_dispositions") == 0
        await _shot(agent, "agent-saving-offline")

        # The network comes back: the console reconnects, the session resumes and the outcome is sent and saved.
        await proxy.resume()
        await expect(agent.locator("#conn")).to_have_text("connected", timeout=10_000)
        await expect(agent.locator("#toast")).to_contain_text("Outcome saved", timeout=10_000)
        rows = await dialer_db.fetch("SELECT * FROM attempt_dispositions")
        assert [(r["disposition_code"], r["notes"]) for r in rows] == [("not_interested", "Uses a competitor")]

        # An acknowledgement lost with a reload: the same frame is sent again and the daemon saves it once.
        frame = {"type": "disposition", "id": "lost-ack", "attempt_id": rows[0]["call_attempt_id"],
                 "code": "not_interested", "answers": {}, "notes": "Uses a competitor"}  # fmt: skip
        await agent.evaluate("([key, frame]) => localStorage.setItem(key, JSON.stringify(frame))",
                             [f"pivotal.pending.{role_users[Role.AGENT]}", frame])  # fmt: skip
        await agent.reload()
        await expect(agent.locator("#toast")).to_contain_text("Outcome saved", timeout=10_000)
        assert await dialer_db.fetchval("SELECT count(*) FROM attempt_dispositions") == 1
        assert await agent.evaluate("Object.keys(localStorage).filter(k => k.startsWith('pivotal.pending'))") == []
        # the browser reports the connections our cut refused (when a reconnect fell inside it): not page errors
        assert [e for e in errors.errors if "net::ERR_CONNECTION_REFUSED" not in e] == []
    finally:
        await proxy.close()


async def test_a_supervisor_pauses_and_logs_out_an_agent(
    make_client: AppFactory,
    role_users: dict[Role, int],
    dialer_db: asyncpg.Pool,
    browser: Browser,
) -> None:
    client = await sandbox_daemon(make_client)
    base = str(client.make_url("")).rstrip("/")
    manager = bearer(await login(client, "campaign_manager@test.example"))
    cid = await make_campaign(client, manager, mode="preview", contacts=2)
    agent, agent_errors = await _page(browser, base, "/console", "agent@test.example")
    await _join(agent, cid)
    await agent.get_by_role("button", name="Ready").click()
    await expect(agent.locator("#state")).to_have_text("ready")
    # Preview mode: a contact is offered; S skips it and the next one comes.
    offered = agent.locator("#preview-who")
    await expect(offered).to_contain_text("First", timeout=10_000)
    first = await offered.text_content()
    await agent.locator("body").press("s")
    await expect(offered).not_to_have_text(first or "", timeout=10_000)
    await expect(offered).to_contain_text("First", timeout=10_000)

    supervisor, supervisor_errors = await _page(browser, base, "/supervisor", "supervisor@test.example")
    row = supervisor.locator(f'tr[data-user="{role_users[Role.AGENT]}"]')
    await expect(row).to_have_attribute("data-state", "ready")
    await row.get_by_role("button", name="Pause").click()
    await expect(agent.locator("#state")).to_have_text("paused · supervisor", timeout=2000)
    await expect(row).to_have_attribute("data-state", "paused", timeout=1000)

    await row.get_by_role("button", name="Log out").click()
    await row.get_by_role("button", name="Confirm: Log out").click()
    await expect(row).to_have_count(0, timeout=1000)
    await expect(agent.locator("#join")).to_be_visible(timeout=2000)
    await expect(agent.locator("#toast")).to_contain_text("supervisor")
    actions = await dialer_db.fetch(
        "SELECT action, actor_id, entity_id FROM audit_log WHERE action LIKE 'agent.%' ORDER BY id"
    )
    assert [(a["action"], a["actor_id"], a["entity_id"]) for a in actions] == [
        ("agent.force_pause", role_users[Role.SUPERVISOR], str(role_users[Role.AGENT])),
        ("agent.force_logout", role_users[Role.SUPERVISOR], str(role_users[Role.AGENT])),
    ]
    # A theme chosen is remembered by the browser.
    await supervisor.get_by_role("button", name="Theme").click()
    theme = await supervisor.evaluate("document.documentElement.dataset.theme")
    await supervisor.reload()
    await expect(supervisor.locator("html")).to_have_attribute("data-theme", theme)
    await _shot(supervisor, f"supervisor-{theme}")
    assert agent_errors.errors == []
    assert supervisor_errors.errors == []
