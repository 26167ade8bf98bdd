"""pas.latency: a 1-task `echo` job, submit -> terminal status event, through every tier (gateway ->
root -> architect -> director -> manager -> programmer and the done events back up); p50/p99 over
sequential jobs, set against js_chain (target <= 2x), core_chain and http_chain of the same run.

Two start modes, both measured from a client connection of this process, as users submit:
- pas.latency       the agents in this process (pas.surfaces.stack.Stack), no HTTP adapter;
- pas.latency_up    `pas up` started as a separate process, as users start it, HTTP adapter on.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from typing import Any

from benchmarks.pas_common import TERMINAL, RunWatch, connect, echo_task, nc_stats, one_job, pas_stack, per_unit
from benchmarks.procs import ChildPas, CpuMeter, free_port_offset, lost_port_race
from benchmarks.run import BenchContext, register
from benchmarks.stats import Figure, Summary, ms
from pas.config.model import load_config
from pas.protocol import subjects as S
from pas.transport.client import PasClient

JOB: dict[str, Any] = {"title": "latency", "tasks": [echo_task("code")]}


async def _sequential(client: PasClient, watch: RunWatch, prefix: str, warmup: int, n: int,
                      on_measured: Any = None) -> tuple[list[float], int]:
    """warmup + n jobs one after another; (latencies of the last n, how many did not complete)."""
    lat: list[float] = []
    errors = 0
    for j in range(warmup + n):
        if j == warmup and on_measured is not None:
            on_measured()
        try:
            dt, status = await one_job(client, watch, f"{prefix}-{j:05d}", JOB)
            ok = status == "completed"
        except Exception:
            dt, ok = 30.0, False
        if j >= warmup:
            lat.append(dt)
            errors += 0 if ok else 1
    return lat, errors


def _figures(ctx: BenchContext, name: str, lat: list[float], errors: int, note: str) -> list[Figure]:
    s = Summary.of(lat)
    if errors:
        note += f"; {errors} ERRORS"
    out: list[Figure] = []
    for pct, val in (("p50", s.p50), ("p99", s.p99)):
        for floor, suffix in (("js_chain", ""), ("core_chain", ".vs_core"), ("http_chain", ".vs_http")):
            ref = ctx.figure(f"{floor}.{pct}")
            target, passed = "", None
            if pct == "p50" and floor == "js_chain":
                target = "<= 2x js_chain.p50"
                passed = bool(ref and not errors and ms(val) <= 2 * ref.value)
            elif errors:
                passed = False
            out.append(Figure(f"{name}.{pct}{suffix}", ms(val), "ms",
                              floor_name=ref.name if ref else None, floor_value=ref.value if ref else None,
                              target=target, passed=passed, note=note if not suffix else ""))
    return out


async def _traced_job(client: PasClient, run_id: str, job: dict[str, Any]) -> list[tuple[str, float]]:
    """Submit one job while recording when each pas.run.<run>.> event arrives (ms after submit)."""
    nc = client.nc
    events: list[tuple[str, float]] = []
    done = asyncio.get_running_loop().create_future()
    t0 = 0.0

    async def cb(m: Any) -> None:
        t = time.perf_counter()
        try:
            body = json.loads(m.data)
        except ValueError:
            return
        tail = m.subject.split(".", 3)[3]  # status, lane.code, task.<id>, done.task.code.<id>, ...
        kind = tail.split(".")[0]
        if kind in ("task", "job"):
            tail = kind
        elif kind == "done":
            tail = ".".join(tail.split(".")[:2])
        events.append((f"{tail}:{body.get('status')}", ms(t - t0)))
        if m.subject.endswith(".status") and body.get("status") in TERMINAL and not done.done():
            done.set_result(None)

    sub = await nc.subscribe(S.run_events(run_id), cb=cb)
    await nc.flush()
    try:
        t0 = time.perf_counter()
        await client.submit({**job, "run_id": run_id})
        events.append(("submit reply", ms(time.perf_counter() - t0)))
        await asyncio.wait_for(done, 30)
    finally:
        await sub.unsubscribe()
    return events



@register("pas.latency")
async def pas_latency(ctx: BenchContext) -> list[Figure]:
    sz = ctx.sizes
    async with pas_stack(ctx, "pas-latency") as (srv, _cfg, st, nc):
        client = PasClient(nc, timeout_s=10)
        watch = RunWatch(nc)
        cpu = CpuMeter(srv.proc.pid if srv.proc else None)
        stats0: dict[str, int] = {}

        def measured() -> None:
            cpu.start()
            stats0.update(nc_stats(st))

        try:
            lat, errors = await _sequential(client, watch, "lat", sz.latency_warmup, sz.latency_n, measured)
            cpu.stop()
            traffic = per_unit(stats0, nc_stats(st), sz.latency_n)
            traces = [await _traced_job(client, f"trace-{k:03d}", JOB) for k in range(sz.latency_traced)]
        finally:
            await watch.close()
    s = Summary.of(lat)
    tenth = max(1, len(lat) // 10)
    ctx.details["pas.latency"] = {
        "n": len(lat), "warmup": sz.latency_warmup, "errors": errors, "latency_s": s.to_dict(),
        "job": JOB, "stages_ms_median": _stage_medians(traces), "traced_jobs": len(traces),
        "cpu_measured_jobs": cpu.result, "pas_nats_traffic_per_job": traffic,
        "p50_first_tenth_ms": ms(Summary.of(lat[:tenth]).p50), "p50_last_tenth_ms": ms(Summary.of(lat[-tenth:]).p50),
    }
    return _figures(ctx, "pas.latency", lat, errors,
                    f"agents in this process; 1-task echo job, submit -> terminal pas.run.<run>.status event; "
                    f"n={len(lat)} sequential jobs after {sz.latency_warmup} warm-up")


@register("pas.latency_up")
async def pas_latency_up(ctx: BenchContext) -> list[Figure]:
    """The same jobs against `pas up` in its own process (default: HTTP adapter and HMI on)."""
    sz = ctx.sizes
    srv = await ctx.start_server("pas-latency-up")
    cfg = load_config()
    nc = None
    for attempt in range(3):
        child = ChildPas(["--nats-url", srv.url, "-c", f"settings.http.port_offset={free_port_offset(cfg)}"],
                         ctx.data_dir / "latency-up", f"up{attempt}")
        child.spawn()
        try:
            await child.wait_ready()
            break
        except RuntimeError as e:
            child.kill()
            if not lost_port_race(e) or attempt == 2:
                await asyncio.to_thread(srv.stop)
                raise
    keep = False
    try:
        nc = await connect(srv.url, "bench-latency-up-client")
        client = PasClient(nc, timeout_s=10)
        watch = RunWatch(nc)
        cpu = CpuMeter(child.proc.pid if child.proc else None)
        try:
            lat, errors = await _sequential(client, watch, "latup", sz.latency_warmup, sz.latency_n, cpu.start)
            cpu.stop()
        finally:
            await watch.close()
        keep = ctx.quick and not errors  # a quick run's pas.cli runs its commands against this `pas up` too
    finally:
        if nc is not None:
            await nc.close()
        if keep:
            ctx.shared["pas_up"] = srv.url
            ctx.on_close(lambda: asyncio.to_thread(child.terminate))
        else:
            await asyncio.to_thread(child.terminate)
            await asyncio.to_thread(srv.stop)
    ctx.details["pas.latency_up"] = {"n": len(lat), "warmup": sz.latency_warmup, "errors": errors,
                                     "latency_s": Summary.of(lat).to_dict(), "job": JOB,
                                     "pas_up_cpu": cpu.result, "http_adapter": True}
    return _figures(ctx, "pas.latency_up", lat, errors,
                    f"`pas up` as a separate process (HTTP adapter on, ports offset to a free range), submitted "
                    f"from this process over NATS; 1-task echo job, submit -> terminal status event; "
                    f"n={len(lat)} sequential jobs after {sz.latency_warmup} warm-up")



def _stage_medians(traces: list[list[tuple[str, float]]]) -> list[tuple[str, float]]:
    """Median arrival (ms after submit) of each event label, in order of arrival."""
    per: dict[str, list[float]] = {}
    for tr in traces:
        seen: set[str] = set()
        for label, t in tr:
            if label in seen:
                continue
            seen.add(label)
            per.setdefault(label, []).append(t)
    rows = [(label, round(statistics.median(v), 3)) for label, v in per.items()]
    rows.sort(key=lambda r: r[1])
    return rows

