"""The HMI in a real browser: Debian's headless Chromium driven by Playwright, against a real stack
(nats-server, agents, the HTTP adapter). Live updates must arrive over SSE, without a reload.

Needs /usr/bin/chromium (apt-get install chromium); never `playwright install`.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, AsyncIterator

import pytest
from playwright.async_api import Page, async_playwright, expect

from pas.client import PasClient
from pas.config import PasConfig
from pas.server import EmbeddedServer
from pas.stack import Stack
from tests.conftest import ROOT, fast_args
from tests.http_support import BROWSER_ARGS, CHROMIUM, http_cfg, poll

ARTIFACTS = ROOT / "test-artifacts"
AGENTS = '[data-testid^="agent-"]'
WAIT_MS = 15000


class Hmi:
    def __init__(self, stack: Stack, page: Page, client: PasClient) -> None:
        self.stack, self.page, self.client = stack, page, client
        self.url = stack.http_server.url("hmi")

    async def open(self) -> None:
        await self.page.goto(self.url)
        await expect(self.page.get_by_test_id("conn")).to_have_attribute("data-state", "live", timeout=WAIT_MS)
        await self.page.evaluate("window.__noReload = true")

    async def not_reloaded(self) -> bool:
        return bool(await self.page.evaluate("window.__noReload === true"))


@contextlib.asynccontextmanager
async def hmi_on(cfg: PasConfig, url: str, **kw: Any) -> AsyncIterator[Hmi]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium (never `playwright install`)")
    stack = await Stack(cfg, url=url, http=True, **kw).start()
    client = await PasClient.connect(url, timeout_s=10)
    try:
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS, headless=True)
            try:
                page = await browser.new_page(viewport={"width": 1400, "height": 1000})
                errors: list[str] = []
                page.on("pageerror", lambda e: errors.append(str(e)))
                yield Hmi(stack, page, client)
                assert not errors, f"JavaScript errors on the page: {errors}"
            finally:
                await browser.close()
    finally:
        await client.close()
        await stack.stop()


@pytest.fixture
async def hmi(nats_server: EmbeddedServer) -> AsyncIterator[Hmi]:
    async with hmi_on(http_cfg(), nats_server.url) as h:
        yield h


def echo(lane: str, text: str) -> dict[str, Any]:
    return {"lane": lane, "instruction": f"echo {text}", "command": f"echo {text}", "executor": "command"}


async def test_page_shows_every_agent_alive(hmi: Hmi) -> None:
    await hmi.open()
    page = hmi.page
    await expect(page.locator(AGENTS)).to_have_count(26)
    await expect(page.locator(f'{AGENTS}[data-state="alive"]')).to_have_count(26, timeout=WAIT_MS)
    for tier in ("gateway", "root", "architect", "director", "manager", "programmer", "monitor"):
        await expect(page.get_by_test_id(f"tier-{tier}")).to_be_visible()
    await expect(page.get_by_test_id("lane-manager-code").locator(AGENTS)).to_have_count(3)
    await expect(page.get_by_test_id("summary")).to_contain_text("26 alive")


async def test_submitted_jobs_go_live_to_completed(hmi: Hmi) -> None:
    await hmi.open()
    page = hmi.page
    job = {"title": "browser: two lanes", "tasks": [echo("code", "one"), echo("docs", "two"),
                                                    {**echo("code", "x"), "command": "sleep 1", "instruction": "sleep 1"}]}
    run_id = (await hmi.client.submit(job))["run_id"]  # submitted over NATS
    row = page.get_by_test_id(f"run-{run_id}")
    await expect(row).to_be_visible(timeout=WAIT_MS)
    await expect(row).to_have_attribute("data-status", "completed", timeout=WAIT_MS)
    view = page.get_by_test_id("run-view")
    await expect(view.get_by_test_id("run-view-status")).to_have_attribute("data-status", "completed")
    await expect(view.locator('[data-testid^="task-"][data-status="completed"]')).to_have_count(3)
    await expect(view.get_by_test_id("lane-code")).to_have_attribute("data-status", "completed")
    await expect(view.get_by_test_id("lane-docs")).to_have_attribute("data-status", "completed")
    await expect(view.get_by_test_id("task-code-1-01")).to_contain_text("prog-")
    await expect(page.get_by_test_id("log").locator(f'[data-run="{run_id}"]').last).to_contain_text(
        f"run {run_id} completed")

    # The page's own form (HTTP POST /api/submit).
    await page.get_by_test_id("submit-title").fill("browser: from the form")
    await page.get_by_test_id("submit-lane").select_option("devsecops")
    await page.get_by_test_id("submit-command").fill("echo from-the-form")
    await page.get_by_test_id("submit-button").click()
    form_row = page.locator("tr", has_text="browser: from the form")
    await expect(form_row).to_have_attribute("data-status", "completed", timeout=WAIT_MS)
    runs = (await hmi.client.runs())["runs"]
    assert [r["title"] for r in runs][:2] == ["browser: from the form", "browser: two lanes"]
    assert await hmi.not_reloaded()


async def test_model_dropdown_reaches_the_agent(hmi: Hmi) -> None:
    await hmi.open()
    page = hmi.page
    for agent, role, profile in (("mgr-code-01", "mgr", "claude-haiku"), ("prog-005", "prog", "gpt-4o")):
        select = page.get_by_test_id(f"model-{agent}")
        await expect(select).to_have_value(hmi.stack.cfg.agent(agent).model or "")
        await select.select_option(profile)
        await expect(page.get_by_test_id(f"model-note-{agent}")).to_have_attribute("data-model", profile)

        async def health() -> dict[str, Any]:
            return await hmi.client.request(f"pas.{role}.{agent}.health", {})
        h = await poll(health, lambda h: h["model"] == profile, 10, 0.2)
        assert h["model"] == profile
    await expect(page.get_by_test_id("toast")).to_contain_text("prog-005: model qwen-coder-7b → gpt-4o")
    assert await hmi.not_reloaded()


async def test_killed_agent_turns_red(nats_server: EmbeddedServer, pas_procs: Any) -> None:
    async with hmi_on(http_cfg(), nats_server.url, exclude=["prog-010"]) as hmi:
        proc = pas_procs("--only", "prog-010", "--nats-url", nats_server.url, *fast_args(), name="prog010")
        await hmi.open()
        page = hmi.page
        agent = page.get_by_test_id("agent-prog-010")
        await expect(agent).to_have_attribute("data-state", "alive", timeout=WAIT_MS)
        run_id = (await hmi.client.submit({"title": "before the kill", "tasks": [echo("code", "ok")]}))["run_id"]
        await expect(page.get_by_test_id(f"run-{run_id}")).to_have_attribute("data-status", "completed",
                                                                             timeout=WAIT_MS)
        await page.get_by_test_id("model-mgr-docs-01").select_option("gpt-4o-mini")
        await expect(page.get_by_test_id("model-note-mgr-docs-01")).to_have_attribute("data-model", "gpt-4o-mini")
        proc.kill()  # SIGKILL: no goodbye, only missing heartbeats
        await expect(agent).to_have_attribute("data-state", "dead", timeout=WAIT_MS)
        await expect(page.locator(f'{AGENTS}[data-state="alive"]')).to_have_count(25)
        await expect(page.get_by_test_id("summary")).to_contain_text("1 dead")
        color = await agent.locator(".dot").evaluate("e => getComputedStyle(e).backgroundColor")
        assert color == "rgb(208, 52, 44)"  # --dead
        log = page.get_by_test_id("log")
        await expect(log.locator(f'[data-run="{run_id}"]').last).to_contain_text(f"run {run_id} completed")
        await expect(log.locator('[data-type="STATUS"]').last).to_contain_text("agent prog-010 dead")
        assert await hmi.not_reloaded()
        await agent.scroll_into_view_if_needed()
        ARTIFACTS.mkdir(exist_ok=True)
        await page.screenshot(path=str(ARTIFACTS / "hmi.png"), full_page=True)
