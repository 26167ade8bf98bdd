"""pas.footprint: `pas up` (26 agents, one process) as a child against a separate nats-server: VmRSS
once healthy, and start -> every agent's health endpoint answering; with and without the HTTP adapter."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from nats.aio.client import Client as NATS
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout

from benchmarks.pas_common import connect
from benchmarks.procs import ChildPas, descendants, free_port_offset, lost_port_race, status_kb
from benchmarks.run import BenchContext, register
from benchmarks.stats import Figure
from pas.config.model import load_config
from pas.protocol import subjects as S


async def _all_healthy(nc: NATS, subjects: dict[str, str], pending: set[str]) -> None:
    async def probe(aid: str) -> None:
        try:
            await nc.request(subjects[aid], b"", timeout=0.5)
            pending.discard(aid)
        except (TimeoutError, NoRespondersError, NatsTimeout):
            pass

    await asyncio.gather(*(probe(a) for a in list(pending)))


async def _footprint_trial(ctx: BenchContext, url: str, nc: NATS, i: int, http: bool) -> dict[str, Any]:
    cfg = load_config()
    subjects = {a.id: S.agent_endpoint(a.role, a.id, "health") for a in cfg.agents}
    args = ["--nats-url", url]
    if http:
        args += ["-c", f"settings.http.port_offset={free_port_offset(cfg)}"]
    else:
        args.append("--no-http")
    child = ChildPas(args, ctx.data_dir / f"footprint-{i}", f"up-{'http' if http else 'nohttp'}")
    pending = set(subjects)
    child.spawn()
    try:
        assert child.proc is not None
        deadline = time.monotonic() + 60
        while pending:
            if child.proc.poll() is not None:
                raise RuntimeError(f"pas up exited {child.proc.returncode}: {child.log.read_text()[-2000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"agents not healthy in 60 s: {sorted(pending)}")
            await _all_healthy(nc, subjects, pending)
            if pending:
                await asyncio.sleep(0.01)
        t_healthy = time.perf_counter() - child.t_start
        await child.wait_ready(30)  # HTTP adapter (if any) up as well
        t_ready = time.perf_counter() - child.t_start
        pid = child.proc.pid
        at_healthy = status_kb(pid)
        await asyncio.sleep(2.0)  # a couple of heartbeats later, idle
        later = status_kb(pid)
        kids = descendants(pid)
        kids_kb = sum(status_kb(k).get("VmRSS", 0) for k in kids)
        return {"http": http, "healthy_s": t_healthy, "ready_file_s": t_ready, "agents": len(subjects),
                "rss_kb_at_healthy": at_healthy.get("VmRSS", 0), "rss_kb_idle_2s": later.get("VmRSS", 0),
                "hwm_kb": later.get("VmHWM", 0), "threads": later.get("Threads", 0),
                "children": len(kids), "children_rss_kb": kids_kb,
                "rss_mb": (max(at_healthy.get("VmRSS", 0), later.get("VmRSS", 0)) + kids_kb) / 1024}
    finally:
        child.terminate()


async def _retrying(ctx: BenchContext, url: str, nc: NATS, i: int, http: bool) -> dict[str, Any]:
    for attempt in range(3):
        try:
            return await _footprint_trial(ctx, url, nc, i, http)
        except RuntimeError as e:
            if not (http and lost_port_race(e)) or attempt == 2:
                raise
    raise AssertionError("unreachable")


@register("pas.footprint")
async def pas_footprint(ctx: BenchContext) -> list[Figure]:
    try:
        import pas.surfaces.http.adapter  # noqa: F401

        variants = [True, False]
    except ImportError:
        variants = [False]
    srv = await ctx.start_server("pas-footprint")
    nc = await connect(srv.url, "bench-footprint")
    results: dict[bool, list[dict[str, Any]]] = {v: [] for v in variants}
    try:
        if not ctx.quick:  # one unmeasured start first: provisions the streams/KV on the fresh server, warms the page cache
            await _footprint_trial(ctx, srv.url, nc, -1, False)
        for i in range(ctx.sizes.footprint_trials):
            for v in variants:
                results[v].append(await _retrying(ctx, srv.url, nc, i, v))
    finally:
        await nc.close()
    ctx.details["pas.footprint"] = {("default (HTTP adapter on)" if v else "--no-http"): r for v, r in results.items()}
    out: list[Figure] = []
    for v in variants:
        rs = results[v]
        label = "default `pas up` (HTTP adapter on, ports offset to a free range)" if v else "`pas up --no-http`"
        suffix = "" if v == variants[0] else ".no_http"
        rss = max(r["rss_mb"] for r in rs)
        up = max(r["healthy_s"] for r in rs)
        n_ag = rs[0]["agents"]
        rss_samples = ", ".join(f"{r['rss_mb']:.0f}" for r in rs)
        up_samples = ", ".join(f"{r['healthy_s']:.2f}" for r in rs)
        out.append(Figure(f"pas.footprint.rss_mb{suffix}", rss, "MB", target="<= 250 MB", passed=rss <= 250,
                          note=(f"worst of {len(rs)}: VmRSS of {label}, {n_ag} agents in one process, nats-server "
                                f"separate; max of at-healthy and 2 s idle; samples "
                                f"{rss_samples} MB")))
        out.append(Figure(f"pas.footprint.startup_s{suffix}", up, "s", target="<= 3 s", passed=up <= 3.0,
                          note=(f"worst of {len(rs)}: spawn of {label} -> all {n_ag} agents' health endpoints "
                                f"answer; samples {up_samples} s")))
    return out

