"""hmi: the dashboard under a big job (issue 22), in headless Chromium against the real stack.

A one-lane job of hmi_tasks echo tasks and a 20-task job beside it run three times on one PAS (agents in
this process, the HTTP adapter in a process of its own, as `pas up` runs it; PAS_BENCH_HMI_ADAPTER=thread
runs it in a thread of this process instead, as before): with no browser, with hmi_pages plain SSE readers, and with
hmi_pages Chromium pages open, one of them traced (?trace=1: when each task state and comms entry
reached the page, when each row was painted) and showing the big run. Readers and browser run in a
process of their own, as a user's browser does. Figures:

- hmi.task_lag.p95 / .max   bus -> painted row, for the task rows on screen (<= 250 ms / <= 1 s);
  the bus time is when the server stored the state (its PAS_EVENTS copy's timestamp);
- hmi.missing               final task states and comms entries of the small job that never reached
                            the page (0);
- hmi.evaluate.p95          page.evaluate('1') round trips sampled every 100 ms during the job (<= 100 ms);
- hmi.renderer_mb           the largest renderer's resident memory at the end (<= 300 MB);
- hmi.throughput_ratio      tasks/s with the pages open / without (>= 0.9);
- hmi.hub_ratio             the same with plain SSE readers instead of browsers: the hub alone (>= 0.9).

PAS_HMI_CHROME_TRACE=FILE writes a Chromium performance trace of the pages during the job (open it
in chrome://tracing or Perfetto); PAS_HMI_CPU_PROFILE=FILE the traced page's JavaScript CPU profile
(a .cpuprofile: Chromium's DevTools, or speedscope). Needs /usr/bin/chromium and playwright (the dev
extras); never `playwright install`. The JSON details split the lag (bus -> the page's handler, by
task state) and say how long the hub held items before a flush.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from benchmarks.pas_common import RunWatch, echo_task, pas_stack
from benchmarks.procs import busy_s, cpu_s, free_port_offset
from benchmarks.run import BenchContext, register
from benchmarks.stats import Figure, percentile
from pas.config.model import load_config
from pas.protocol import subjects as S
from pas.runtime.comms import read_numbered
from pas.transport.client import PasClient
from pas.transport.streams import ReadOptions, read_raw

CHROMIUM = "/usr/bin/chromium"
BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
SMALL = 20
PERF_METRICS = ("TaskDuration", "ScriptDuration", "LayoutDuration", "RecalcStyleDuration", "LayoutCount",
                "RecalcStyleCount", "Nodes", "JSHeapUsedSize")


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


class CpuUse:
    """Where the CPU went during a run: PAS's agents (this process), nats-server, the adapter's process,
    and the whole machine (every core; the rest is browsers, readers and anything else)."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.runs: dict[str, dict[str, float]] = {}

    @contextlib.contextmanager
    def measure(self, tag: str) -> Any:
        t0, b0 = time.monotonic(), busy_s()
        c0 = {k: cpu_s(p) for k, p in self.pids.items()}
        yield
        got = {k: round(cpu_s(p) - c0[k], 2) for k, p in self.pids.items()}
        wall = time.monotonic() - t0
        self.runs[tag] = {"wall_s": round(wall, 2), **got, "machine": round(busy_s() - b0, 2),
                          "cores": os.cpu_count() or 1}

    def summary(self, tag: str) -> str:
        r = self.runs.get(tag, {})
        parts = ", ".join(f"{k} {r[k] / r['wall_s']:.2f}" for k in (*self.pids, "machine") if k in r)
        return f"{tag}: cores busy {parts} (of {r.get('cores')})"


def _rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


async def _renderers(browser: Any) -> list[dict[str, Any]]:
    cdp = await browser.new_browser_cdp_session()
    info = await cdp.send("SystemInfo.getProcessInfo")
    return [p for p in info["processInfo"] if p["type"] == "renderer"]


async def _renderer_mb(browser: Any) -> float:
    return max((_rss_mb(p["id"]) for p in await _renderers(browser)), default=0.0)


async def _renderer_cpu_s(browser: Any) -> float:
    """CPU seconds all the pages' renderers have used: what the browser takes from PAS."""
    return sum(p["cpuTime"] for p in await _renderers(browser))


async def browser_side(url: str, n_pages: int) -> None:
    """The browser, in a process of its own (as a user's is: PAS's loop must neither delay the
    page.evaluate round trips measured here nor be slowed by them). Protocol on stdin/stdout, one JSON
    line each: it prints {"ready": true} once every page is live; reads {"want_tasks", "want_comms"}
    (the end of the job: what the traced page must have received); prints the result."""
    from playwright.async_api import async_playwright

    def say(obj: Any) -> None:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS, headless=True)
        try:
            pages = [await browser.new_page(viewport={"width": 1400, "height": 900}) for _ in range(n_pages)]
            await pages[0].goto(url + "/?trace=1#/runs/hmi-big")
            for pg in pages[1:]:
                await pg.goto(url + "/")
            for pg in pages:
                await pg.wait_for_selector('[data-testid="conn"][data-state="live"]', timeout=30000)
            cdp = await pages[0].context.new_cdp_session(pages[0])
            await cdp.send("Performance.enable")
            before = {m["name"]: m["value"] for m in (await cdp.send("Performance.getMetrics"))["metrics"]}
            cpu0 = await _renderer_cpu_s(browser)
            chrome_trace = os.environ.get("PAS_HMI_CHROME_TRACE")  # a performance trace of the traced page
            if chrome_trace:
                await browser.start_tracing(page=pages[0], path=chrome_trace, screenshots=False)
            cpu_profile = os.environ.get("PAS_HMI_CPU_PROFILE")  # where the traced page's script time goes
            if cpu_profile:
                await cdp.send("Profiler.enable")
                await cdp.send("Profiler.start")
            say({"ready": True})
            told = asyncio.ensure_future(asyncio.to_thread(sys.stdin.readline))
            samples: list[float] = []
            while not told.done():
                t = time.perf_counter()
                await pages[0].evaluate("1")
                samples.append((time.perf_counter() - t) * 1000)
                await asyncio.sleep(0.1)
            want = json.loads(told.result())
            after = {m["name"]: m["value"] for m in (await cdp.send("Performance.getMetrics"))["metrics"]}
            cpu_s = await _renderer_cpu_s(browser) - cpu0
            if chrome_trace:
                await browser.stop_tracing()
            if cpu_profile:
                Path(cpu_profile).write_text(json.dumps((await cdp.send("Profiler.stop"))["profile"]))
            metrics = {k: round(after[k] - before.get(k, 0), 3) for k in PERF_METRICS if k in after}
            deadline = time.monotonic() + 30
            while True:  # the page may still be catching up when the runs end
                trace = await pages[0].evaluate("S.trace.dump()")
                got = {int(k) for k, (run, _) in trace["comms"].items() if run == "hmi-small"}
                missing = len(set(want["want_tasks"]) - set(trace["received"])) + len(set(want["want_comms"]) - got)
                if missing == 0 or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.5)
            say({"samples": samples, "trace": trace, "missing": missing, "metrics": metrics, "renderer_cpu_s": cpu_s,
                 "renderer_mb": await _renderer_mb(browser)})
        finally:
            await browser.close()


async def raw_readers(url: str, n: int) -> None:
    """n plain SSE readers of /api/events (no browser), in a process of their own: what the hub alone
    costs PAS. Same protocol as browser_side; the result counts the bytes read."""
    import httpx

    total = 0

    async def read() -> None:
        nonlocal total
        async with httpx.AsyncClient(timeout=None) as c, c.stream("GET", url + "/api/events") as r:
            async for chunk in r.aiter_bytes():
                total += len(chunk)

    readers = [asyncio.ensure_future(read()) for _ in range(n)]
    await asyncio.sleep(1.0)
    sys.stdout.write(json.dumps({"ready": True}) + "\n")
    sys.stdout.flush()
    await asyncio.to_thread(sys.stdin.readline)
    for r in readers:
        r.cancel()
    await asyncio.gather(*readers, return_exceptions=True)
    sys.stdout.write(json.dumps({"bytes": total}) + "\n")
    sys.stdout.flush()


async def bus_times(js: Any, run_ids: list[str]) -> dict[str, float]:
    """When each task state of these runs was on the bus: the time the server stored the record write (the
    task bucket's own stream; the page hears of it through the bucket's republish). A live subscriber's clock
    was late whenever its process waited for CPU or a GIL: in PAS's process, and in one of its own on a
    saturated machine, it stamped states after the page had drawn them (lag < 0). Keyed run/task/status, ms
    since the epoch."""
    bus: dict[str, float] = {}
    for run_id in run_ids:
        subject = S.kv_subject(S.KV_TREE, S.task_key(run_id, "*"))
        async for m in read_raw(js, S.kv_stream(S.KV_TREE), subject, ReadOptions(complete=True)):
            if m.data:
                task_id = m.subject.rsplit(".", 1)[1]
                bus.setdefault(f"{run_id}/{task_id}/{json.loads(m.data).get('status')}", m.stored.timestamp() * 1000)
    return bus


@contextlib.asynccontextmanager
async def _side(url: str, pages: int, mode: str) -> AsyncIterator[asyncio.subprocess.Process]:
    """`python -m benchmarks.fig_hmi MODE URL N` (browser_side or raw_readers), ready."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "benchmarks.fig_hmi", mode, url, str(pages),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, limit=2**26,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)})
    try:
        await _line(proc, 120)
        yield proc
    finally:
        if proc.stdin is not None:
            proc.stdin.close()  # a side still waiting for the end ends too
        try:
            await asyncio.wait_for(proc.wait(), 60)
        except TimeoutError:
            proc.kill()


async def _tell(proc: asyncio.subprocess.Process, obj: Any) -> Any:
    """The end of the job, and the side's result."""
    assert proc.stdin is not None
    proc.stdin.write((json.dumps(obj) + "\n").encode())
    await proc.stdin.drain()
    return await _line(proc, 120)


async def _line(proc: asyncio.subprocess.Process, timeout_s: float) -> Any:
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), timeout_s)
    if not line:
        raise RuntimeError(f"the browser process ended (exit {await proc.wait()})")
    return json.loads(line)


@register("hmi")
async def hmi_figures(ctx: BenchContext) -> list[Figure]:
    n = ctx.sizes.hmi_tasks
    offset = free_port_offset(load_config())
    hub_stats: dict[str, float] = {}
    # the adapter as `pas up` runs it, in a process of its own; PAS_BENCH_HMI_ADAPTER=thread: in a thread of PAS's
    mode = "thread" if os.environ.get("PAS_BENCH_HMI_ADAPTER") == "thread" else "process"
    async with pas_stack(ctx, "hmi", overrides=[f"settings.http.port_offset={offset}"], http=mode) as (
            srv, _cfg, st, nc):
        client = PasClient(nc, timeout_s=120)
        await _run(client, nc, "warm", 50)
        assert st.http_server is not None
        pids = {"agents": os.getpid(), "nats-server": srv.proc.pid}
        if (child := getattr(st.http_server, "proc", None)) is not None:
            pids["adapter"] = child.pid
        cpu = CpuUse(pids)
        with cpu.measure("bare"):
            bare_s = await _run(client, nc, "bare", n)
        url = st.http_server.url("hmi")
        async with _side(url, ctx.sizes.hmi_pages, "raw") as proc:
            with cpu.measure("raw"):
                raw_s = await _run(client, nc, "raw", n)
            await _tell(proc, {})
        async with _side(url, ctx.sizes.hmi_pages, "browser") as proc:
            hub = getattr(st.http_server, "hub", None)  # in this process: its flush statistics
            chunks0, held0 = (hub.stats.chunks, hub.stats.held_ms) if hub else (0, 0.0)
            with cpu.measure("pages"):
                with_s = await _run(client, nc, "hmi", n)
            if hub:
                chunks = hub.stats.chunks - chunks0
                hub_stats = {"chunks": chunks, "held_ms_mean": (hub.stats.held_ms - held0) / max(1, chunks),
                             "held_ms_max": hub.stats.held_ms_max}
            want_comms = [seq async for seq, _ in read_numbered(nc.jetstream(), run_id="hmi-small")]
            want_tasks = [f"hmi-small/{t['task_id']}/completed" for t in (await client.status("hmi-small"))["tasks"]]
            side = await _tell(proc, {"want_tasks": want_tasks, "want_comms": want_comms})
        bus = await bus_times(nc.jetstream(), [j["run_id"] for j in _jobs("hmi", n)])
    trace, samples, missing = side["trace"], side["samples"], side["missing"]
    lags = [t - bus[k] for k, t in trace["painted"].items() if k.startswith("hmi-") and k in bus]
    # Where the lag of those rows goes: bus -> the page's handler (hub flush, SSE, the renderer's queue)
    # and handler -> painted (the page's render spacing and the frame).
    got = [trace["received"][k] - bus[k] for k in trace["painted"] if k.startswith("hmi-") and k in bus
           and k in trace["received"]]
    by_status: dict[str, list[float]] = {}
    for k, t in trace["painted"].items():
        if k.startswith("hmi-") and k in bus:
            by_status.setdefault(k.rsplit("/", 1)[1], []).append(t - bus[k])
    ratio = bare_s / with_s if with_s else 0.0
    raw_ratio = bare_s / raw_s if raw_s else 0.0
    ctx.details["hmi"] = {"tasks": n, "small": SMALL, "pages": ctx.sizes.hmi_pages, "bare_s": bare_s,
                          "with_pages_s": with_s, "with_raw_readers_s": raw_s, "painted_rows_measured": len(lags),
                          "gaps_filled": trace["gaps"], "lag_to_handler_p50_p95": [percentile(got, 50), percentile(got, 95)],
                          "lag_p50": percentile(lags, 50), "hub": hub_stats,
                          "lag_by_status_n_p50_max": {st: [len(v), percentile(v, 50), max(v)] for st, v in by_status.items()},
                          "evaluate_samples": len(samples), "small_comms": len(want_comms),
                          "renderer_cpu_s": side["renderer_cpu_s"], "traced_page_metrics": side["metrics"],
                          "adapter": mode, "cpu": cpu.runs}
    shape = f"{n}-task one-lane job + {SMALL}-task job, {ctx.sizes.hmi_pages} pages (1400x900)"
    p95, mx = percentile(lags, 95), max(lags, default=float("nan"))
    ev95 = percentile(samples, 95)
    return [
        Figure("hmi.task_lag.p95", p95, "ms", target="<= 250 ms", passed=p95 <= 250,
               note=f"bus -> painted row, {len(lags)} on-screen task states; {shape}"),
        Figure("hmi.task_lag.max", mx, "ms", target="<= 1000 ms", passed=mx <= 1000),
        Figure("hmi.missing", float(missing), "items", target="0",
               passed=missing == 0 and len(want_tasks) == SMALL,
               note=f"final states of {SMALL} tasks + {len(want_comms)} comms entries of the small job"),
        Figure("hmi.evaluate.p95", ev95, "ms", target="<= 100 ms", passed=ev95 <= 100,
               note=f"{len(samples)} page.evaluate('1') during the job"),
        Figure("hmi.renderer_mb", side["renderer_mb"], "MB", target="<= 300 MB", passed=side["renderer_mb"] <= 300),
        Figure("hmi.throughput_ratio", ratio, "x", target=">= 0.9x", passed=ratio >= 0.9,
               note=f"{n + SMALL} tasks in {with_s:.2f} s with the pages open, {bare_s:.2f} s without; "
                    f"the renderers used {side['renderer_cpu_s']:.1f} CPU-s; {cpu.summary('bare')}; "
                    f"{cpu.summary('pages')}"),
        Figure("hmi.hub_ratio", raw_ratio, "x", target=">= 0.9x", passed=raw_ratio >= 0.9,
               note=f"the hub alone: {ctx.sizes.hmi_pages} plain SSE readers (no browser), {raw_s:.2f} s; "
                    f"{cpu.summary('raw')}"),
    ]


if __name__ == "__main__":  # a side: browser_side or raw_readers
    asyncio.run((browser_side if sys.argv[1] == "browser" else raw_readers)(sys.argv[2], int(sys.argv[3])))
