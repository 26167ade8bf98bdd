"""Every field the HMI and the replay timeline page show is text, never markup (issue 19, point 4).

A run, its lane, job and task records, its events and comms entries are written on the bus (as an
agent credential could: KV records, run events, comms entries) with `<img src=x onerror=...>` in every
string field; a real run is submitted with it in its title and instruction. In Chromium, neither page
may hold an element made from it nor run its handler, and the text must be shown as written.
"""

from __future__ import annotations

from typing import Any

from playwright.async_api import Page, expect

from pas.protocol import subjects as S
from pas.protocol import wire
from pas.transport.server import EmbeddedServer
from tests.http_support import http_cfg
from tests.test_hmi_browser import WAIT_MS, hmi_on

X = "<img src=x onerror=window.__pwned=1>"
RUN = "r-xss"
CHECK_JS = "() => ({imgs: document.querySelectorAll('img').length, pwned: window.__pwned === 1})"


def forged(run_id: str) -> dict[str, tuple[str, str, bytes]]:
    """name -> (KV bucket or "", key or subject, body): every string field set to X."""
    ts = wire.now()
    run = wire.RunRecord(run_id=run_id, title=X, status="running", created_at=ts, started_at=ts, lanes=["code"],
                         goal=X, message=X, result_branch=X, conflicts=[X], repo=X,
                         approval=wire.Approval(decided_by=X, reason=X, dropped=[X]))
    task = wire.TaskRecord(task_id="code-1-01", run_id=run_id, job_id=X, lane=X, manager=X, executor=X,
                           instruction=X, status="failed", programmer=X, command=X, output=X, error=X, branch=X,
                           diff_stat=X, env=X, started_at=ts, finished_at=ts)
    lane = wire.LaneRecord(run_id=run_id, lane="code", director=X, jobs=["code-1"], status=X, done={X: X})
    job = wire.JobRecord(run_id=run_id, job_id="code-1", lane=X, manager=X, tasks=["code-1-01", X], status=X,
                         done={X: X}, ctx=wire.RunContext(goal=X, repo=X, env=X))

    # A run event's status is one of PAS's (a reader skips any other), and a comms entry's sender and type
    # are those of its subject (a reader skips it otherwise): markup goes in every other field.
    def ev(kind: str, **kw: Any) -> bytes:
        return wire.encode(wire.RunEvent(run_id=run_id, kind=kind, status="running", ts=ts, agent=X, message=X,
                                         **kw))

    def entry(from_agent: str, message: str) -> bytes:
        return wire.encode(wire.CommsEntry(ts=ts, from_agent=from_agent, to_agent=X, msg_type="CMD", message=message,
                                           run_id=run_id, status=X, llm_model=X, metadata={X: X}))

    return {
        "run": (S.KV_RUNS, run_id, wire.encode(run)),
        "task": (S.KV_TREE, S.task_key(run_id, "code-1-01"), wire.encode(task)),
        "lane": (S.KV_TREE, S.lane_key(run_id, "code"), wire.encode(lane)),
        "job": (S.KV_TREE, S.job_key(run_id, "code-1"), wire.encode(job)),
        "ev-run": ("", S.run_status(run_id), ev("run", lane=X, job_id=X, task_id=X)),
        "ev-lane": ("", S.run_lane(run_id, "code"), ev("lane", lane=X, job_id=X)),
        "ev-job": ("", S.run_job(run_id, "code-1"), ev("job", lane=X, job_id=X)),
        "ev-task": ("", S.run_task(run_id, "code-1-01"), wire.encode(task)),
        "comms-submit": ("", S.comms(run_id, "client", "CMD"), entry("client", f"submit {X}")),
        "comms": ("", S.comms(run_id, X, "CMD"), entry(X, X)),
    }


async def no_markup(page: Page) -> None:
    got = await page.evaluate(CHECK_JS)
    assert got == {"imgs": 0, "pwned": False}, got


async def test_markup_in_every_field_stays_text(nats_server: EmbeddedServer) -> None:
    async with hmi_on(http_cfg(), nats_server.url) as hmi:
        page, nc = hmi.page, hmi.client.nc
        js = nc.jetstream()
        await hmi.open()
        for bucket, key, body in forged(RUN).values():
            if bucket:
                await (await js.key_value(bucket)).put(key, body)
            elif S.parse_run(key):  # no stream captures a state event (records are): a live one only
                await nc.publish(key, body)
            else:
                await js.publish(key, body)
        real = (await hmi.client.submit({"title": X, "tasks": [
            {"lane": "docs", "instruction": X, "command": "echo hi", "executor": "command"}]}))["run_id"]
        await expect(page.get_by_test_id(f"run-{real}")).to_have_attribute("data-status", "completed",
                                                                          timeout=WAIT_MS)

        # The forged run by URL: its view, lanes, task row and counts, and the comms log.
        await page.goto(hmi.url + f"/#/runs/{RUN}")
        await expect(page.get_by_test_id("conn")).to_have_attribute("data-state", "live", timeout=WAIT_MS)
        view = page.get_by_test_id("run-view")
        await expect(page.locator("#rv-title")).to_have_text(f"{RUN} — {X}", timeout=WAIT_MS)
        await expect(view.get_by_test_id("task-code-1-01")).to_contain_text(X, timeout=WAIT_MS)
        await expect(page.get_by_test_id(f"run-{RUN}")).to_contain_text(X)
        await page.get_by_test_id("log-filter-run").select_option(RUN)
        entries = page.get_by_test_id("log").get_by_test_id("log-entry")
        # the forged task record's write is an entry too (the server copies record writes into PAS_COMMS)
        await expect(entries.filter(has_text=f"{X} → {X}").filter(has_text=f"task code-1-01 failed: {X}")
                     ).to_have_count(1, timeout=WAIT_MS)
        forged_entries = entries.filter(has_text=f"{X} → {X}").filter(has_not_text="task code-1-01")
        await expect(forged_entries).to_have_count(1, timeout=WAIT_MS)
        await no_markup(page)
        # A live event, after the page loaded: the hub forwards it, the page writes it as text.
        await js.publish(*forged(RUN)["comms"][1:])
        await expect(forged_entries).to_have_count(2, timeout=WAIT_MS)
        await page.get_by_test_id(f"run-{real}").click()
        await expect(page.locator("#rv-title")).to_have_text(f"{real} — {X}", timeout=WAIT_MS)
        await no_markup(page)

        # The replay timeline page of both runs.
        for run_id in (RUN, real):
            await page.goto(hmi.url + f"/api/runs/{run_id}/timeline.html")
            await expect(page.locator("h1")).to_contain_text(X)
            await no_markup(page)
        await expect(page.locator("#run-status")).to_have_text("completed")
