"""The HMI in a real browser: Debian's headless Chromium driven by Playwright, against a real stack
(nats-server, agents, the HTTP adapter). Live updates must arrive over SSE, without a reload.

Needs /usr/bin/chromium (apt-get install chromium); never `playwright install`.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import msgspec
import pytest
from playwright.async_api import Page, async_playwright, expect

from pas.config.model import PasConfig
from pas.protocol import subjects as S
from pas.protocol.wire import CommsEntry
from pas.surfaces.stack import Stack
from pas.transport.client import PasClient
from pas.transport.server import EmbeddedServer
from tests.conftest import ROOT, fast_args, wait_for
from tests.fakellm import FakeLLM, Reply
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


async def test_log_is_in_time_order_not_arrival_order(hmi: Hmi) -> None:
    """Entries from several processes reach the stream out of order; the log shows them by time."""
    await hmi.open()
    now = datetime.now(UTC)
    for label, ts in (("later", now), ("earlier", now - timedelta(seconds=1))):
        entry = CommsEntry(ts=ts, from_agent="prog-001", to_agent="mgr-code-01", msg_type="STATUS",
                           message=f"{label} entry", run_id="r-order")
        await hmi.client.nc.publish(S.comms("r-order", "prog-001", "STATUS"), msgspec.json.encode(entry))
    lines = hmi.page.get_by_test_id("log").locator('[data-run="r-order"]')
    await expect(lines).to_have_count(2, timeout=WAIT_MS)
    await expect(lines.first).to_contain_text("earlier entry")
    await expect(lines.last).to_contain_text("later entry")


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
        await wait_for(lambda: log_shows(page, run_id, text=f"run {run_id} completed"), WAIT_MS / 1000, 0.2)
        await wait_for(lambda: log_shows(page, type="STATUS", text="agent prog-010 dead"), WAIT_MS / 1000, 0.2)
        assert await hmi.not_reloaded()
        await agent.scroll_into_view_if_needed()
        ARTIFACTS.mkdir(exist_ok=True)
        await page.screenshot(path=str(ARTIFACTS / "hmi.png"), full_page=True)


async def test_cancel_button_cancels_a_running_run(hmi: Hmi) -> None:
    await hmi.open()
    page = hmi.page
    slow = {"lane": "code", "instruction": "sleep 30", "command": "sleep 30", "executor": "command"}
    run_id = (await hmi.client.submit({"title": "browser: cancel me", "tasks": [slow]}))["run_id"]
    row = page.get_by_test_id(f"run-{run_id}")
    view = page.get_by_test_id("run-view")
    await expect(row).to_have_attribute("data-status", "running", timeout=WAIT_MS)
    await expect(view.get_by_test_id("task-code-1-01")).to_have_attribute("data-status", "running", timeout=WAIT_MS)
    button = row.get_by_test_id(f"cancel-{run_id}")
    await button.click()
    await expect(row).to_have_attribute("data-status", "cancelled", timeout=WAIT_MS)
    await expect(button).to_have_count(0)  # an ended run has nothing to cancel
    await expect(view.get_by_test_id("run-view-status")).to_have_attribute("data-status", "cancelled")
    await expect(view.get_by_test_id("task-code-1-01")).to_have_attribute("data-status", "cancelled",
                                                                           timeout=WAIT_MS)
    await expect(page.get_by_test_id("toast")).to_contain_text(f"{run_id} cancelled")
    assert await hmi.not_reloaded()

    # The gateway agrees, over NATS and over HTTP; the sleep was stopped, not waited for.
    async def status() -> dict[str, Any]:
        return await hmi.client.status(run_id)
    st = await poll(status, lambda st: st["tasks"][0]["status"] == "cancelled", 10, 0.2)
    assert st["status"] == "cancelled" and st["finished_at"]
    t = st["tasks"][0]
    if t.get("finished_at"):
        took = datetime.fromisoformat(t["finished_at"]) - datetime.fromisoformat(t["started_at"])
        assert took.total_seconds() < 20, t
    async with httpx.AsyncClient(timeout=10) as c:
        r = await c.get(hmi.stack.http_server.url("gateway") + f"/runs/{run_id}")
        assert r.status_code == 200 and r.json()["status"] == "cancelled"
        r = await c.post(hmi.url + f"/api/runs/{run_id}/cancel")
        assert r.status_code == 409  # already cancelled


# The log holds only the rows in view (virtualised): scroll it from top to end, half a view at a time,
# and read every row shown on the way (by PAS_COMMS sequence), then leave it at its end again (it
# scrolls from its end: scrollTop runs from minus its height to 0).
ROWS_JS = """async log => {
  const frame = () => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));
  const rows = new Map();
  log.scrollTop = -log.scrollHeight;
  await frame();
  for (;;) {
    for (const e of log.querySelectorAll('[data-testid="log-entry"]')) rows.set(e.dataset.seq, {
      run: e.dataset.run, type: e.dataset.type, runText: e.querySelector('.run').textContent.trim(),
      typeText: e.querySelector('.type').textContent.trim(), who: e.querySelector('.who').textContent.trim(),
      msg: e.querySelector('.msg').textContent});
    const before = log.scrollTop;
    log.scrollTop += log.clientHeight / 2;
    if (log.scrollTop === before) break;
    await frame();
  }
  return [...rows.values()];
}"""


async def log_rows(page: Page) -> list[dict[str, str]]:
    """Every row of the comms log as shown: its attributes and the text of its cells."""
    rows = await page.get_by_test_id("log").evaluate(ROWS_JS)
    for r in rows:
        r["from"], _, r["to"] = r["who"].partition(" → ")
    return rows


async def log_shows(page: Page, run: str | None = None, type: str | None = None, text: str = "") -> bool:
    """Some row of the comms log (anywhere in it, scrolled to) is of this run and type and holds text."""
    return any((run is None or r["run"] == run) and (type is None or r["type"] == type) and text in r["msg"]
               for r in await log_rows(page))


def key(run: str | None, frm: str, to: str, typ: str, msg: str) -> tuple[str, ...]:
    return (run or "", frm, to, typ, msg)


async def rows_match_api(hmi: Hmi, **query: str) -> bool:
    """The page's log holds exactly what GET /api/comms returns for the same filters."""
    async with httpx.AsyncClient(timeout=10) as c:
        entries = (await c.get(hmi.url + "/api/comms", params={"limit": 200, **query})).json()["entries"]
    want = sorted(key(e["run_id"], e["from_agent"], e["to_agent"], e["msg_type"], e["message"]) for e in entries)
    got = sorted(key(r["run"], r["from"], r["to"], r["typeText"], r["msg"]) for r in await log_rows(hmi.page))
    return bool(want) and got == want


async def test_comms_log_filters(hmi: Hmi) -> None:
    await hmi.open()
    page = hmi.page
    log = page.get_by_test_id("log")
    f_run, f_agent, f_type = (page.get_by_test_id(f"log-filter-{f}") for f in ("run", "agent", "type"))
    a = (await hmi.client.submit({"title": "filter a", "tasks": [echo("code", "a")]}))["run_id"]
    b = (await hmi.client.submit({"title": "filter b", "tasks": [echo("docs", "b")]}))["run_id"]
    for r in (a, b):
        await expect(page.get_by_test_id(f"run-{r}")).to_have_attribute("data-status", "completed", timeout=WAIT_MS)
        await expect(log.locator(f'[data-run="{r}"]', has_text=f"run {r} completed")).to_have_count(1,
                                                                                                timeout=WAIT_MS)
    prog_a = (await hmi.client.status(a))["tasks"][0]["programmer"]
    assert prog_a
    unfiltered = await log_rows(page)
    assert {"CMD", "RESPONSE", "STATUS"} <= {r["type"] for r in unfiltered}
    assert {a, b} <= {r["run"] for r in unfiltered}

    # type
    await f_type.select_option("CMD")
    await expect(log.locator('[data-testid="log-entry"]:not([data-type="CMD"])')).to_have_count(0, timeout=WAIT_MS)
    await wait_for(lambda: rows_match_api(hmi, type="CMD"), 10, 0.2)
    rows = await log_rows(page)
    assert rows and all(r["type"] == r["typeText"] == "CMD" for r in rows), rows
    assert {a, b} <= {r["run"] for r in rows}

    # run
    await f_type.select_option("")
    await f_run.select_option(a)
    await expect(log.locator(f'[data-testid="log-entry"]:not([data-run="{a}"])')).to_have_count(0, timeout=WAIT_MS)
    await wait_for(lambda: rows_match_api(hmi, run=a), 10, 0.2)
    rows = await log_rows(page)
    assert rows and all(r["run"] == r["runText"] == a for r in rows), rows
    assert {"CMD", "RESPONSE", "STATUS"} <= {r["type"] for r in rows}
    assert any(r["type"] == "STATUS" and r["msg"] == f"run {a} completed" for r in rows), rows

    # agent
    await f_run.select_option("")
    await f_agent.select_option(prog_a)
    await wait_for(lambda: rows_match_api(hmi, agent=prog_a), 10, 0.2)
    rows = await log_rows(page)
    assert rows and all(prog_a in (r["from"], r["to"]) for r in rows), rows

    # all three at once: the one reply of a's programmer
    await f_run.select_option(a)
    await f_type.select_option("RESPONSE")
    await expect(log.get_by_test_id("log-entry")).to_have_count(1, timeout=WAIT_MS)
    [row] = await log_rows(page)
    assert (row["run"], row["from"], row["type"]) == (a, prog_a, "RESPONSE")
    assert row["msg"] == "task code-1-01 completed"

    # Live entries obey the filters too: type CMD only, then a new run and a sentinel after it.
    await f_run.select_option("")
    await f_agent.select_option("")
    await f_type.select_option("CMD")
    await wait_for(lambda: rows_match_api(hmi, type="CMD"), 10, 0.2)
    c = (await hmi.client.submit({"title": "filter c", "tasks": [echo("data", "c")]}))["run_id"]
    await expect(page.get_by_test_id(f"run-{c}")).to_have_attribute("data-status", "completed", timeout=WAIT_MS)
    d = (await hmi.client.submit({"title": "filter sentinel", "tasks": [echo("data", "d")]}))["run_id"]
    # the user's submit (from the run record) and the gateway's hand-over (from the request record) reach
    # PAS_COMMS through two sources, in either order: wait for the submit entry, wherever it is
    await expect(log.locator(f'[data-run="{d}"]', has_text="submit")).to_have_count(1, timeout=WAIT_MS)
    rows = await log_rows(page)
    assert all(r["type"] == r["typeText"] == "CMD" for r in rows), rows
    assert any(r["run"] == c and "job data-1: 1 task(s) queued" in r["msg"] for r in rows), rows
    assert await hmi.not_reloaded()

    # No filter: everything again, of every type.
    await f_type.select_option("")
    await wait_for(lambda: log_shows(page, c, "STATUS"), WAIT_MS / 1000, 0.2)


def cells(headers: list[str], texts: list[str]) -> dict[str, str]:
    assert len(headers) == len(texts), (headers, texts)
    return dict(zip(headers, texts, strict=False))


async def test_run_view_columns_of_a_completed_run(nats_server: EmbeddedServer, fake_llm: FakeLLM) -> None:
    """Attempts, timings, tokens and cost in the run view, for an LLM task (priced model) and a
    command task, against what the gateway reports."""
    import litellm

    litellm.register_model({"openai/hmi-priced": {"input_cost_per_token": 0.001, "output_cost_per_token": 0.002,
                                                  "litellm_provider": "openai", "mode": "chat"}})
    fake_llm.default("hmi-priced", Reply("FILE: hello.py\n<<<<<<< CONTENT\nprint('hello')\n>>>>>>> END\n",
                                         prompt_tokens=100, completion_tokens=20))
    cfg = http_cfg()
    cfg.models["hmi-priced"] = fake_llm.profile("hmi-priced")
    for a in cfg.agents:
        if a.role == "prog":
            a.model, a.backup_model = "hmi-priced", None
    async with hmi_on(cfg, nats_server.url) as hmi:
        await hmi.open()
        page = hmi.page
        job = {"title": "browser: columns", "tasks": [
            {"lane": "code", "instruction": "write hello.py", "executor": "llm"},
            {"lane": "docs", "instruction": "sleep 1", "command": "sleep 1", "executor": "command"}]}
        run_id = (await hmi.client.submit(job))["run_id"]
        row = page.get_by_test_id(f"run-{run_id}")
        await expect(row).to_have_attribute("data-status", "completed", timeout=WAIT_MS)
        view = page.get_by_test_id("run-view")
        await expect(view.get_by_test_id("run-view-status")).to_have_attribute("data-status", "completed")
        await expect(view.locator('[data-testid^="task-"][data-status="completed"]')).to_have_count(2)
        meta = page.locator("#rv-meta")
        await expect(meta).to_contain_text("120 tokens · $0.1400")  # the gateway's usage, once fetched

        st = await hmi.client.status(run_id)
        assert st["usage"]["tokens"] == 120 and abs(st["usage"]["cost_usd"] - 0.14) < 1e-9, st["usage"]
        tasks = {t["task_id"]: t for t in st["tasks"]}
        headers = await view.locator("table.tasks thead th").all_inner_texts()
        assert {"tries", "started", "secs", "tokens", "cost"} <= set(headers), headers
        for task_id, tokens, cost in (("code-1-01", "120", "$0.1400"), ("docs-1-01", "0", "$0.0000")):
            t = tasks[task_id]
            c = cells(headers, await view.get_by_test_id(f"task-{task_id}").locator("td").all_inner_texts())
            assert c["tries"] == str(t["attempts"]) == "1", c
            assert re.fullmatch(r"\d\d:\d\d:\d\d\.\d{3}", c["started"]), c
            assert c["started"] == await page.evaluate("ts => fmtTime(ts)", t["started_at"])
            took = (datetime.fromisoformat(t["finished_at"]) - datetime.fromisoformat(t["started_at"])).total_seconds()
            assert abs(float(c["secs"]) - took) <= 0.01, (c, took)
            assert (c["tokens"], c["cost"]) == (tokens, cost) and int(c["tokens"]) == t["tokens"], c
            assert c["programmer"] == t["programmer"] and c["status"] == "completed"
        assert float(cells(headers, await view.get_by_test_id("task-docs-1-01").locator("td").all_inner_texts())
                     ["secs"]) >= 1.0  # sleep 1
        # The runs table: tasks done of all, and the run's duration.
        run_cells = await row.locator("td").all_inner_texts()
        assert run_cells[3] == "2/2" and float(run_cells[5]) >= 1.0, run_cells
        assert re.search(r"· (\d+\.\d+) s ·", await meta.inner_text())
        assert len(fake_llm.requests_for("hmi-priced")) == 1


async def test_requests_stay_same_origin_and_nothing_polls(hmi: Hmi) -> None:
    page = hmi.page
    seen: list[tuple[float, str]] = []
    page.on("request", lambda r: seen.append((time.monotonic(), r.url)))
    page.on("websocket", lambda ws: seen.append((time.monotonic(), ws.url)))
    await hmi.open()
    # Some activity first: a run going live makes the page fetch its detail.
    run_id = (await hmi.client.submit({"title": "browser: origin", "tasks": [echo("code", "o")]}))["run_id"]
    await expect(page.get_by_test_id(f"run-{run_id}")).to_have_attribute("data-status", "completed", timeout=WAIT_MS)
    await expect(page.get_by_test_id("log").locator(f'[data-run="{run_id}"]', has_text=f"run {run_id} completed")
                 ).to_have_count(1, timeout=WAIT_MS)
    start = time.monotonic()
    await page.wait_for_timeout(3000)  # the measurement window, not a wait for a condition
    await expect(page.get_by_test_id("conn")).to_have_attribute("data-state", "live")
    await expect(page.locator(f'{AGENTS}[data-state="alive"]')).to_have_count(26)  # beats kept coming

    origin = "{0.scheme}://{0.netloc}".format(urlsplit(hmi.url))
    urls = [u for _, u in seen]
    assert "/api/agents" in {urlsplit(u).path for u in urls}, urls
    foreign = [u for u in urls if not u.startswith(origin + "/")]
    assert not foreign, f"requests leaving {origin}: {foreign}"
    paths = Counter(urlsplit(u).path for u in urls)
    assert paths["/api/events"] == 1, paths  # one SSE stream, never reopened
    idle = Counter(urlsplit(u).path for t, u in seen if t >= start and urlsplit(u).path != "/api/events")
    assert all(n <= 4 for n in idle.values()), f"polled faster than once a second in 3 s: {idle}"
