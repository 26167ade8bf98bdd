"""What every PAS figure producer shares: a PAS to measure (agents in this process on a fresh
nats-server), jobs, run watching, and reading a run's tasks back from KV.

The figures themselves are one module per figure (benchmarks/fig_*.py), each set against the floor
measured earlier in the same run; every producer uses a nats-server of its own (ctx.start_server) so
no figure sees another's streams. Nothing here needs an API key.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from datetime import datetime
from typing import Any

import nats
from nats.aio.client import Client as NATS

from benchmarks.run import BenchContext
from pas.config.model import load_config
from pas.protocol import subjects as S
from pas.protocol import wire
from pas.surfaces.stack import Stack
from pas.transport.client import PasClient

TERMINAL = wire.TERMINAL_RUN
LANES = S.LANES

# Failover settings: short deadlines so a run takes seconds (reported with the figures).
FAILOVER_SETTINGS = {"settings.pool.ack_wait_s": 2, "settings.heartbeat.interval_s": 1}


def override_list(d: dict[str, Any]) -> list[str]:
    return [f"{k}={v}" for k, v in d.items()]


def cli_override_args(d: dict[str, Any]) -> list[str]:
    out: list[str] = []
    for o in override_list(d):
        out += ["-c", o]
    return out


async def connect(url: str, name: str) -> NATS:
    return await nats.connect(url, name=name, allow_reconnect=False, connect_timeout=5)


def echo_task(lane: str, text: str = "x") -> dict[str, Any]:
    return {"lane": lane, "instruction": text, "executor": "echo"}


def command_task(lane: str, command: str) -> dict[str, Any]:
    return {"lane": lane, "instruction": command, "command": command, "executor": "command"}


class RunWatch:
    """Terminal status of runs, from pas.run.<run>.status events (subscribed before submitting)."""

    def __init__(self, nc: NATS) -> None:
        self.nc = nc
        self.done: dict[str, tuple[float, str]] = {}
        self._waiters: dict[str, asyncio.Future[tuple[float, str]]] = {}
        self._subs: list[Any] = []

    async def watch(self, run_id: str) -> None:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[tuple[float, str]] = loop.create_future()
        self._waiters[run_id] = fut

        async def cb(m: Any) -> None:
            t = time.perf_counter()
            try:
                st = json.loads(m.data).get("status")
            except ValueError:
                return
            if st in TERMINAL and not fut.done():
                self.done[run_id] = (t, st)
                fut.set_result((t, st))

        self._subs.append(await self.nc.subscribe(S.run_status(run_id), cb=cb))

    async def wait(self, run_id: str, timeout_s: float) -> tuple[float, str]:
        return await asyncio.wait_for(asyncio.shield(self._waiters[run_id]), timeout_s)

    async def close(self) -> None:
        for s in self._subs:
            with contextlib.suppress(Exception):
                await s.unsubscribe()
        self._subs.clear()


@contextlib.asynccontextmanager
async def pas_stack(ctx: BenchContext, name: str, overrides: list[str] | None = None, **stack_kw: Any) -> Any:
    """A fresh nats-server, a Stack of agents in this process, and a client connection. In a quick run the
    figures that need the default stack (no overrides, no options) share one, started by the first of them
    and stopped when the run ends: their run ids differ, and a quick run shows that each figure works rather
    than measuring it apart from the others, as the full run does."""
    if ctx.quick and not overrides and not stack_kw:
        yield await _shared_stack(ctx)
        return
    srv = await ctx.start_server(name)
    cfg = load_config(overrides=overrides or [])
    st = Stack(cfg, url=srv.url, name=f"bench-{name}", **stack_kw)
    await st.start()
    nc = await connect(srv.url, f"bench-{name}-client")
    try:
        yield srv, cfg, st, nc
    finally:
        with contextlib.suppress(Exception):
            await nc.close()
        await st.stop()
        await asyncio.to_thread(srv.stop)


async def _shared_stack(ctx: BenchContext) -> tuple[Any, Any, Stack, NATS]:
    """The quick run's one default stack, as pas_stack yields it (started on first use)."""
    got = ctx.shared.get("pas_stack")
    if got is None:
        srv = await ctx.start_server("pas-shared")
        cfg = load_config()
        st = await Stack(cfg, url=srv.url, name="bench-shared").start()
        nc = await connect(srv.url, "bench-shared-client")

        async def close() -> None:
            with contextlib.suppress(Exception):
                await nc.close()
            await st.stop()

        ctx.on_close(close)
        got = ctx.shared["pas_stack"] = (srv, cfg, st, nc)
    return got


def pct(x: float) -> float:
    return x * 100.0


def nc_stats(st: Stack) -> dict[str, int]:
    nc = st.bus.nc if st.bus is not None else None
    return dict(nc.stats) if nc is not None else {}


def per_unit(before: dict[str, int], after: dict[str, int], units: int) -> dict[str, float]:
    """NATS protocol traffic of the PAS process (its one connection) per job / task."""
    return {k: round((after.get(k, 0) - before.get(k, 0)) / units, 2)
            for k in ("out_msgs", "in_msgs", "out_bytes", "in_bytes")} if units else {}


async def _gather_bounded(coros: list[Any], limit: int = 200) -> list[Any]:
    out: list[Any] = []
    for i in range(0, len(coros), limit):
        out += await asyncio.gather(*coros[i:i + limit])
    return out


async def run_tasks(js: Any, run_id: str) -> list[dict[str, Any]]:
    """Every task record of a run, read key by key down the run's own tree in KV
    (pas_runs[run].lanes -> pas_tree[run.lane.L].jobs -> [run.job.J].tasks -> [run.task.T]).

    Deliberately no KeyValue.watch()/keys() and no consumer at all: under load a nats-py 2.16 watch
    can end before delivering anything, and every watch leaves an ephemeral consumer behind for
    5 minutes, which runs into nats-server's consumer limit (see benchmarks/NOTES.md)."""
    runs = await js.key_value(S.KV_RUNS)
    tree = await js.key_value(S.KV_TREE)

    async def get(kv: Any, key: str) -> dict[str, Any] | None:
        try:
            e = await kv.get(key)
        except Exception:
            return None
        return json.loads(e.value) if e.value else None

    run = await get(runs, run_id)
    if run is None:
        return []
    lanes = [x for x in await _gather_bounded([get(tree, f"{run_id}.lane.{ln}") for ln in run.get("lanes") or []]) if x]
    job_ids = [j for lane in lanes for j in lane.get("jobs") or []]
    jobs = [x for x in await _gather_bounded([get(tree, f"{run_id}.job.{j}") for j in job_ids]) if x]
    task_ids = [t for job in jobs for t in job.get("tasks") or []]
    return [x for x in await _gather_bounded([get(tree, f"{run_id}.task.{t}") for t in task_ids]) if x]


async def diagnose(js: Any, run_ids: list[str]) -> dict[str, Any]:
    """Where unfinished runs stand: run status, lanes, jobs and tasks by status (from KV)."""
    runs = await js.key_value(S.KV_RUNS)
    tree = await js.key_value(S.KV_TREE)
    out: dict[str, Any] = {}
    for rid in run_ids:
        try:
            run = json.loads((await runs.get(rid)).value)
        except Exception as e:
            out[rid] = f"no run record ({e!r})"
            continue
        info: dict[str, Any] = {"status": run.get("status"), "lanes": {}}
        for ln in run.get("lanes") or []:
            try:
                lane = json.loads((await tree.get(f"{rid}.lane.{ln}")).value)
            except Exception:
                info["lanes"][ln] = "no lane record"
                continue
            jobs: dict[str, int] = {}
            tasks: dict[str, int] = {}
            for j in lane.get("jobs") or []:
                try:
                    job = json.loads((await tree.get(f"{rid}.job.{j}")).value)
                except Exception:
                    jobs["missing"] = jobs.get("missing", 0) + 1
                    continue
                jobs[job["status"]] = jobs.get(job["status"], 0) + 1
                if job["status"] == "running":
                    for t in job.get("tasks") or []:
                        try:
                            st = json.loads((await tree.get(f"{rid}.task.{t}")).value)["status"]
                        except Exception:
                            st = "missing"
                        tasks[st] = tasks.get(st, 0) + 1
            info["lanes"][ln] = {"status": lane.get("status"), "jobs": jobs, "tasks_of_running_jobs": tasks}
        out[rid] = info
    return out


async def wait_runs(js: Any, watch: RunWatch, run_ids: list[str], t0: float, timeout_s: float,
                     stall_s: float = 15.0) -> list[str]:
    """Wait for every run's terminal status; give up (returning the unfinished ones) when PAS_EVENTS
    has not grown for stall_s (nothing moves any more) or after timeout_s."""
    last, changed = -1, time.perf_counter()
    while True:
        pending = [r for r in run_ids if r not in watch.done]
        if not pending:
            return []
        try:
            await watch.wait(pending[0], 2.0)
            continue
        except TimeoutError:
            pass
        try:
            msgs = (await js.stream_info(S.STREAM_EVENTS)).state.messages
        except Exception:
            msgs = last
        now = time.perf_counter()
        if msgs != last:
            last, changed = msgs, now
        elif now - changed > stall_s:
            return pending
        if now - t0 > timeout_s:
            return pending


def hang_summary(diag: dict[str, Any]) -> str:
    parts = []
    for rid, info in diag.items():
        if not isinstance(info, dict):
            parts.append(f"{rid}: {info}")
            continue
        stuck = [f"lane {ln} {v.get('status')} with jobs {v.get('jobs')}" for ln, v in info.get("lanes", {}).items()
                 if isinstance(v, dict) and v.get("status") == "running"]
        parts.append(f"{rid} {info.get('status')}: " + ("; ".join(stuck) or "no lane running"))
    return " | ".join(parts)


async def consumer_count(js: Any, stream: str) -> int:
    try:
        return int((await js.stream_info(stream)).state.consumer_count)
    except Exception:
        return -1


async def one_job(client: PasClient, watch: RunWatch, run_id: str, job: dict[str, Any],
                   timeout_s: float = 30.0) -> tuple[float, str]:
    await watch.watch(run_id)
    await client.nc.flush()  # the subscription is in place before the clock starts
    t0 = time.perf_counter()
    await client.submit({**job, "run_id": run_id})
    t1, status = await watch.wait(run_id, timeout_s)
    return t1 - t0, status


def iso_ts(v: str) -> float:
    return datetime.fromisoformat(v.replace("Z", "+00:00")).timestamp()

