"""hmi: the dashboard under a big job (issue 22), in headless Chromium against the real stack.

A one-lane job of hmi_tasks echo tasks and a 20-task job beside it run twice on one PAS (agents and
HTTP adapter in this process): once with no browser, then with hmi_pages pages open, one of them
traced (?trace=1: when each task state and comms entry reached the page, when each row was painted)
and showing the big run. Figures:

- hmi.task_lag.p95 / .max   bus -> painted row, for the task rows on screen (<= 250 ms / <= 1 s);
  the bus time is when this process's own subscription to pas.run.*.task.* saw the state;
- hmi.missing               final task states and comms entries of the small job that never reached
                            the page (0);
- hmi.evaluate.p95          page.evaluate('1') round trips sampled every 100 ms during the job (<= 100 ms);
- hmi.renderer_mb           the largest renderer's resident memory at the end (<= 300 MB);
- hmi.throughput_ratio      tasks/s with the pages open / without (>= 0.9).

Needs /usr/bin/chromium and playwright (the dev extras); never `playwright install`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import socket
import threading
import time
from typing import Any

from benchmarks.pas_common import RunWatch, echo_task, pas_stack
from benchmarks.run import BenchContext, register
from benchmarks.stats import Figure, percentile
from pas import subjects as S
from pas.client import PasClient
from pas.comms import read_numbered
from pas.config import load_config

CHROMIUM = "/usr/bin/chromium"
BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
SMALL = 20


def _free_offset() -> int:
    """A port offset where every adapter port binds (below the ephemeral range)."""
    from pas.http.adapter import port_plan

    base = list(port_plan(load_config()).values())
    for _ in range(200):
        off = random.randrange(10000 - min(base), 32000 - max(base), 7)
        try:
            socks = []
            for p in base:
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", p + off))
            return off
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free port range for the HTTP adapter")


def _jobs(tag: str, n: int) -> list[dict[str, Any]]:
    return [{"title": f"{tag} big", "run_id": f"{tag}-big", "tasks": [echo_task("code") for _ in range(n)]},
            {"title": f"{tag} small", "run_id": f"{tag}-small", "tasks": [echo_task("docs") for _ in range(SMALL)]}]


async def _run(client: PasClient, nc: Any, tag: str, n: int) -> float:
    """Both jobs at once; seconds from the first submit to the last terminal status."""
    watch = RunWatch(nc)
    try:
        jobs = _jobs(tag, n)
        for j in jobs:
            await watch.watch(j["run_id"])
        await nc.flush()
        t0 = time.perf_counter()
        await asyncio.gather(*(client.submit(j) for j in jobs))
        ends = [await watch.wait(j["run_id"], max(300.0, n / 5)) for j in jobs]
        return max(t for t, _ in ends) - t0
    finally:
        await watch.close()


def _rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


async def _renderer_mb(browser: Any) -> float:
    cdp = await browser.new_browser_cdp_session()
    info = await cdp.send("SystemInfo.getProcessInfo")
    return max((_rss_mb(p["id"]) for p in info["processInfo"] if p["type"] == "renderer"), default=0.0)


class BrowserSide:
    """Chromium and its pages, driven from a thread with its own event loop: the agents' loop (this
    process is `pas up`) must not delay the page.evaluate round trips it measures, nor be slowed by them."""

    def __init__(self, url: str, pages: int) -> None:
        self.url, self.n_pages = url, pages
        self.ready, self.stop = threading.Event(), threading.Event()
        self.want_tasks: set[str] = set()  # set before stop: what the traced page must have received
        self.want_comms: set[int] = set()
        self.samples: list[float] = []
        self.trace: dict[str, Any] = {}
        self.missing = -1
        self.renderer_mb = 0.0

    def run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        from playwright.async_api import async_playwright

        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS, headless=True)
            try:
                pages = [await browser.new_page(viewport={"width": 1400, "height": 900}) for _ in range(self.n_pages)]
                await pages[0].goto(self.url + "/?trace=1#/runs/hmi-big")
                for pg in pages[1:]:
                    await pg.goto(self.url + "/")
                for pg in pages:
                    await pg.wait_for_selector('[data-testid="conn"][data-state="live"]', timeout=30000)
                self.ready.set()
                while not self.stop.is_set():
                    t = time.perf_counter()
                    await pages[0].evaluate("1")
                    self.samples.append((time.perf_counter() - t) * 1000)
                    await asyncio.sleep(0.1)
                deadline = time.monotonic() + 30
                while True:  # the page may still be catching up when the runs end
                    self.trace = await pages[0].evaluate("S.trace.dump()")
                    got = {int(k) for k, (run, _) in self.trace["comms"].items() if run == "hmi-small"}
                    self.missing = len(self.want_tasks - set(self.trace["received"])) + len(self.want_comms - got)
                    if self.missing == 0 or time.monotonic() > deadline:
                        break
                    await asyncio.sleep(0.5)
                self.renderer_mb = await _renderer_mb(browser)
            finally:
                self.ready.set()
                await browser.close()


@register("hmi")
async def hmi_figures(ctx: BenchContext) -> list[Figure]:
    n = ctx.sizes.hmi_tasks
    offset = _free_offset()
    bus: dict[str, float] = {}  # run/task/status -> when this process saw it (ms since the epoch)

    async def on_task(m: Any) -> None:
        got = S.parse_run(m.subject)
        if got is None or got.kind != "task":
            return
        st = json.loads(m.data).get("status")
        bus.setdefault(f"{got.run_id}/{got.rest[0]}/{st}", time.time() * 1000)

    async with pas_stack(ctx, "hmi", overrides=[f"settings.http.port_offset={offset}"], http=True) as (
            _srv, _cfg, st, nc):
        client = PasClient(nc, timeout_s=120)
        sub = await nc.subscribe(S.run_task("*", "*"), cb=on_task)
        await _run(client, nc, "warm", 50)
        bare_s = await _run(client, nc, "bare", n)
        side = BrowserSide(st.http_server.url("hmi"), ctx.sizes.hmi_pages)
        browser = asyncio.ensure_future(asyncio.to_thread(side.run))
        try:
            await asyncio.to_thread(side.ready.wait, 120)
            with_s = await _run(client, nc, "hmi", n)
            side.want_comms = {seq async for seq, _ in read_numbered(nc.jetstream(), run_id="hmi-small")}
            side.want_tasks = {f"hmi-small/{t['task_id']}/completed"
                               for t in (await client.status("hmi-small"))["tasks"]}
        finally:
            side.stop.set()
            await browser
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
    trace, samples, missing = side.trace, side.samples, side.missing
    lags = [t - bus[k] for k, t in trace["painted"].items() if k.startswith("hmi-") and k in bus]
    ratio = bare_s / with_s if with_s else 0.0
    ctx.details["hmi"] = {"tasks": n, "small": SMALL, "pages": ctx.sizes.hmi_pages, "bare_s": bare_s,
                          "with_pages_s": with_s, "painted_rows_measured": len(lags), "gaps_filled": trace["gaps"],
                          "evaluate_samples": len(samples), "small_comms": len(side.want_comms)}
    shape = f"{n}-task one-lane job + {SMALL}-task job, {ctx.sizes.hmi_pages} pages (1400x900)"
    p95, mx = percentile(lags, 95), max(lags, default=float("nan"))
    ev95 = percentile(samples, 95)
    return [
        Figure("hmi.task_lag.p95", p95, "ms", target="<= 250 ms", passed=p95 <= 250,
               note=f"bus -> painted row, {len(lags)} on-screen task states; {shape}"),
        Figure("hmi.task_lag.max", mx, "ms", target="<= 1000 ms", passed=mx <= 1000),
        Figure("hmi.missing", float(missing), "items", target="0",
               passed=missing == 0 and len(side.want_tasks) == SMALL,
               note=f"final states of {SMALL} tasks + {len(side.want_comms)} comms entries of the small job"),
        Figure("hmi.evaluate.p95", ev95, "ms", target="<= 100 ms", passed=ev95 <= 100,
               note=f"{len(samples)} page.evaluate('1') during the job"),
        Figure("hmi.renderer_mb", side.renderer_mb, "MB", target="<= 300 MB", passed=side.renderer_mb <= 300),
        Figure("hmi.throughput_ratio", ratio, "x", target=">= 0.9x", passed=ratio >= 0.9,
               note=f"{n + SMALL} tasks in {with_s:.2f} s with the pages open, {bare_s:.2f} s without"),
    ]
