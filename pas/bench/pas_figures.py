"""The PAS-side figures, each set against the floor measured earlier in the same run.

Registered as producers of pas.bench.run (they run after the floors, in this order):

- pas.latency     a 1-task `echo` job, submit -> terminal status event, through every tier
                  (gateway -> root -> architect -> director -> manager -> programmer and the done
                  events back up); p50/p99 over sequential jobs. Floors: js_chain, core_chain, http_chain.
- pas.throughput  many `echo` tasks through the pool of 10 programmers, a few jobs submitted at once,
                  first submit -> every run terminal. Floor: workqueue_raw.
- pas.parallel    20 `sleep 1` command tasks on 10 programmers: makespan against the ideal 2 s.
- pas.failover    SIGKILL of a busy programmer's process (`pas up --only prog-001`) -> its task
                  completed by another programmer; and -> the dead-agent alert.
- pas.footprint   `pas up` (26 agents, one process) as a child against a separate nats-server:
                  VmRSS once healthy, and start -> every agent's health endpoint answering.
- pas.comms       N comms entries written to PAS_COMMS, then read back with pas.comms.read().

Every producer uses a nats-server of its own (ctx.start_server) so no figure sees another's
streams; the PAS agents run in this process (pas.stack.Stack) except where a separate process is
the point (failover, footprint). Nothing here needs an API key.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import nats
from nats.aio.client import Client as NATS
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout

from pas import subjects as S
from pas import wire
from pas.bench.run import BenchContext, register
from pas.bench.stats import Figure, Summary, ms, rate
from pas.client import PasClient
from pas.config import PasConfig, load_config
from pas.stack import Stack

TERMINAL = wire.TERMINAL_RUN
LANES = S.LANES

# Failover settings: short deadlines so a run takes seconds (reported with the figures).
FAILOVER_SETTINGS = {"settings.pool.ack_wait_s": 2, "settings.heartbeat.interval_s": 1}


def _overrides(d: dict[str, Any]) -> list[str]:
    return [f"{k}={v}" for k, v in d.items()]


def _cli_overrides(d: dict[str, Any]) -> list[str]:
    out: list[str] = []
    for o in _overrides(d):
        out += ["-c", o]
    return out


async def _connect(url: str, name: str) -> NATS:
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
async def _pas(ctx: BenchContext, name: str, overrides: list[str] | None = None, **stack_kw: Any) -> Any:
    """A fresh nats-server, a Stack of agents in this process, and a client connection."""
    srv = await ctx.start_server(name)
    cfg = load_config(overrides=overrides or [])
    st = Stack(cfg, url=srv.url, name=f"bench-{name}", **stack_kw)
    await st.start()
    nc = await _connect(srv.url, f"bench-{name}-client")
    try:
        yield srv, cfg, st, nc
    finally:
        with contextlib.suppress(Exception):
            await nc.close()
        await st.stop()
        await asyncio.to_thread(srv.stop)


def _pct(x: float) -> float:
    return x * 100.0


def cpu_s(pid: int | None = None) -> float:
    """CPU seconds (user + system) used so far by a process (default: this one, every thread)."""
    if pid is None:
        return time.process_time()
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return float("nan")


def nc_stats(st: Stack) -> dict[str, int]:
    nc = st.bus.nc if st.bus is not None else None
    return dict(nc.stats) if nc is not None else {}


def per_unit(before: dict[str, int], after: dict[str, int], units: int) -> dict[str, float]:
    """NATS protocol traffic of the PAS process (its one connection) per job / task."""
    return {k: round((after.get(k, 0) - before.get(k, 0)) / units, 2)
            for k in ("out_msgs", "in_msgs", "out_bytes", "in_bytes")} if units else {}


class CpuMeter:
    """CPU used by this process and by the nats-server between start() and stop()."""

    def __init__(self, server_pid: int | None) -> None:
        self.server_pid = server_pid
        self.py0 = self.srv0 = self.t0 = 0.0
        self.result: dict[str, float] = {}

    def start(self) -> None:
        self.t0, self.py0 = time.perf_counter(), cpu_s()
        self.srv0 = cpu_s(self.server_pid) if self.server_pid else float("nan")

    def stop(self) -> dict[str, float]:
        wall = time.perf_counter() - self.t0
        py = cpu_s() - self.py0
        srv = (cpu_s(self.server_pid) - self.srv0) if self.server_pid else float("nan")
        self.result = {"wall_s": round(wall, 3), "python_cpu_s": round(py, 3), "nats_server_cpu_s": round(srv, 3),
                       "python_cpu_util": round(py / wall, 3) if wall else float("nan"),
                       "nats_server_cpu_util": round(srv / wall, 3) if wall else float("nan")}
        return self.result


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
        except Exception:  # noqa: BLE001 - missing key
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


async def _diagnose(js: Any, run_ids: list[str]) -> dict[str, Any]:
    """Where unfinished runs stand: run status, lanes, jobs and tasks by status (from KV)."""
    runs = await js.key_value(S.KV_RUNS)
    tree = await js.key_value(S.KV_TREE)
    out: dict[str, Any] = {}
    for rid in run_ids:
        try:
            run = json.loads((await runs.get(rid)).value)
        except Exception as e:  # noqa: BLE001
            out[rid] = f"no run record ({e!r})"
            continue
        info: dict[str, Any] = {"status": run.get("status"), "lanes": {}}
        for ln in run.get("lanes") or []:
            try:
                lane = json.loads((await tree.get(f"{rid}.lane.{ln}")).value)
            except Exception:  # noqa: BLE001
                info["lanes"][ln] = "no lane record"
                continue
            jobs: dict[str, int] = {}
            tasks: dict[str, int] = {}
            for j in lane.get("jobs") or []:
                try:
                    job = json.loads((await tree.get(f"{rid}.job.{j}")).value)
                except Exception:  # noqa: BLE001
                    jobs["missing"] = jobs.get("missing", 0) + 1
                    continue
                jobs[job["status"]] = jobs.get(job["status"], 0) + 1
                if job["status"] == "running":
                    for t in job.get("tasks") or []:
                        try:
                            st = json.loads((await tree.get(f"{rid}.task.{t}")).value)["status"]
                        except Exception:  # noqa: BLE001
                            st = "missing"
                        tasks[st] = tasks.get(st, 0) + 1
            info["lanes"][ln] = {"status": lane.get("status"), "jobs": jobs, "tasks_of_running_jobs": tasks}
        out[rid] = info
    return out


async def _wait_runs(js: Any, watch: RunWatch, run_ids: list[str], t0: float, timeout_s: float,
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
        except asyncio.TimeoutError:
            pass
        try:
            msgs = (await js.stream_info(S.STREAM_EVENTS)).state.messages
        except Exception:  # noqa: BLE001
            msgs = last
        now = time.perf_counter()
        if msgs != last:
            last, changed = msgs, now
        elif now - changed > stall_s:
            return pending
        if now - t0 > timeout_s:
            return pending


def _hang_summary(diag: dict[str, Any]) -> str:
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
    except Exception:  # noqa: BLE001
        return -1


# ---- 1. latency ----------------------------------------------------------------------------
async def _one_job(client: PasClient, watch: RunWatch, run_id: str, job: dict[str, Any],
                   timeout_s: float = 30.0) -> tuple[float, str]:
    await watch.watch(run_id)
    await client.nc.flush()  # the subscription is in place before the clock starts
    t0 = time.perf_counter()
    await client.submit({**job, "run_id": run_id})
    t1, status = await watch.wait(run_id, timeout_s)
    return t1 - t0, status


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

    sub = await nc.subscribe(f"pas.run.{run_id}.>", cb=cb)
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
    job = {"title": "latency", "tasks": [echo_task("code")]}
    async with _pas(ctx, "pas-latency") as (srv, cfg, st, nc):
        client = PasClient(nc, timeout_s=10)
        watch = RunWatch(nc)
        lat: list[float] = []
        errors = 0
        cpu = CpuMeter(srv.proc.pid if srv.proc else None)
        try:
            for j in range(sz.latency_warmup + sz.latency_n):
                if j == sz.latency_warmup:
                    cpu.start()
                    stats0 = nc_stats(st)
                try:
                    dt, status = await _one_job(client, watch, f"lat-{j:05d}", job)
                    ok = status == "completed"
                except (asyncio.TimeoutError, Exception):  # noqa: BLE001
                    dt, ok = 30.0, False
                if j >= sz.latency_warmup:
                    lat.append(dt)
                    errors += 0 if ok else 1
            cpu.stop()
            traffic = per_unit(stats0, nc_stats(st), sz.latency_n)
            traces = [await _traced_job(client, f"trace-{k:03d}", job) for k in range(sz.latency_traced)]
        finally:
            await watch.close()
    s = Summary.of(lat)
    stages = _stage_medians(traces)
    tenth = max(1, len(lat) // 10)
    ctx.details["pas.latency"] = {
        "n": len(lat), "warmup": sz.latency_warmup, "errors": errors, "latency_s": s.to_dict(),
        "job": job, "stages_ms_median": stages, "traced_jobs": len(traces),
        "cpu_measured_jobs": cpu.result, "pas_nats_traffic_per_job": traffic,
        "p50_first_tenth_ms": ms(Summary.of(lat[:tenth]).p50), "p50_last_tenth_ms": ms(Summary.of(lat[-tenth:]).p50),
    }
    note = (f"1-task echo job, submit -> terminal pas.run.<run>.status event; n={len(lat)} sequential jobs "
            f"after {sz.latency_warmup} warm-up")
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
            out.append(Figure(f"pas.latency.{pct}{suffix}", ms(val), "ms",
                              floor_name=ref.name if ref else None, floor_value=ref.value if ref else None,
                              target=target, passed=passed, note=note if not suffix else ""))
    return out


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


# ---- 2. throughput -------------------------------------------------------------------------
@register("pas.throughput")
async def pas_throughput(ctx: BenchContext) -> list[Figure]:
    sz = ctx.sizes
    n, jobs = sz.tp_tasks, sz.tp_jobs
    per_job = [n // jobs + (1 if i < n % jobs else 0) for i in range(jobs)]
    async with _pas(ctx, "pas-throughput") as (srv, cfg, st, nc):
        client = PasClient(nc, timeout_s=120)
        watch = RunWatch(nc)
        try:
            # warm-up: one small job through every lane (consumers bound, code paths warm)
            _, wst = await _one_job(client, watch, "tp-warm", {"title": "warm",
                                    "tasks": [echo_task(LANES[i % 5]) for i in range(20)]}, 60)
            run_ids = [f"tp-{i}" for i in range(jobs)]
            bodies = [{"title": f"throughput {i}", "run_id": rid,
                       "tasks": [echo_task(LANES[k % 5], f"t{k}") for k in range(per_job[i])]}
                      for i, rid in enumerate(run_ids)]
            for rid in run_ids:
                await watch.watch(rid)
            await nc.flush()
            cpu = CpuMeter(srv.proc.pid if srv.proc else None)
            cpu.start()
            stats0 = nc_stats(st)
            t0, t0_wall = time.perf_counter(), time.time()
            await asyncio.gather(*(client.submit(b) for b in bodies))
            t_submitted = time.perf_counter()
            js = nc.jetstream(timeout=30)
            hung = await _wait_runs(js, watch, run_ids, t0, timeout_s=max(120.0, n / 20))
            cpu.stop()
            traffic = per_unit(stats0, nc_stats(st), n)
            ends = [watch.done[r] for r in run_ids if r in watch.done]
            statuses = [watch.done[r][1] if r in watch.done else "not terminal" for r in run_ids]
            diagnosis = await _diagnose(js, hung) if hung else {}
            # verify: every task of every run completed, once
            completed = attempts_gt1 = 0
            last_finish = 0.0
            per_prog: dict[str, int] = {}
            for rid in run_ids:
                for t in await run_tasks(js, rid):
                    if t["status"] == "completed":
                        completed += 1
                    if t.get("attempts", 1) > 1:
                        attempts_gt1 += 1
                    if t.get("finished_at"):
                        last_finish = max(last_finish, _ts(t["finished_at"]))
                    per_prog[t.get("programmer") or "?"] = per_prog.get(t.get("programmer") or "?", 0) + 1
            tree_consumers = await consumer_count(js, f"KV_{S.KV_TREE}")
        finally:
            await watch.close()
    if hung:  # some run never ended: report the rate up to the last task finished, and fail
        elapsed = last_finish - t0_wall
    else:
        elapsed = max(t for t, _ in ends) - t0
    value = rate(n if not hung else completed, elapsed)
    floor = ctx.figure("workqueue_raw.tasks_per_s")
    ok = not hung and completed == n and all(s == "completed" for s in statuses) and wst == "completed"
    ratio_ = value / floor.value if floor and floor.value else None
    passed = bool(ok and value >= 2000 and ratio_ is not None and ratio_ >= 0.25)
    ctx.details["pas.throughput"] = {
        "tasks": n, "jobs": jobs, "tasks_per_job": per_job, "elapsed_s": elapsed,
        "submit_s": t_submitted - t0, "completed": completed, "run_statuses": statuses,
        "tasks_redelivered": attempts_gt1, "per_programmer": dict(sorted(per_prog.items())),
        "programmers": 10, "cpu": cpu.result, "hung_runs": diagnosis, "pas_nats_traffic_per_task": traffic,
        "kv_tree_consumers_after": tree_consumers,
    }
    note = (f"{n} echo tasks in {jobs} jobs submitted at once (tasks round-robin over the 5 lanes; job cards "
            f"of <= {cfg.settings.work.max_tasks_per_job}), first submit -> last run terminal; "
            f"{completed}/{n} completed on {len(per_prog)} programmers")
    if hung:
        note += (f"; HUNG: {len(hung)} run(s) never reached a terminal status ({_hang_summary(diagnosis)}); "
                 f"value = completed tasks / (submit -> last task finished)")
    elif not ok:
        note += "; INCOMPLETE"
    return [Figure("pas.throughput.tasks_per_s", value, "tasks/s", floor_name=floor.name if floor else None,
                   floor_value=floor.value if floor else None,
                   target=">= 2,000 tasks/s and >= 0.25x floor", passed=passed, note=note)]


# ---- 3. parallel efficiency ----------------------------------------------------------------
def _ts(v: str) -> float:
    return datetime.fromisoformat(v.replace("Z", "+00:00")).timestamp()


@register("pas.parallel")
async def pas_parallel(ctx: BenchContext) -> list[Figure]:
    n = ctx.sizes.parallel_tasks
    progs = 10
    ideal = n * 1.0 / progs
    async with _pas(ctx, "pas-parallel") as (srv, cfg, st, nc):
        client = PasClient(nc, timeout_s=30)
        watch = RunWatch(nc)
        try:
            _, wst = await _one_job(client, watch, "par-warm",
                                    {"title": "warm", "tasks": [command_task(LANES[i % 5], "true") for i in range(10)]},
                                    60)
            job = {"title": "parallel", "tasks": [command_task(LANES[i % 5], "sleep 1") for i in range(n)]}
            makespan, status = await _one_job(client, watch, "par-1", job, 120)
            tasks = await run_tasks(nc.jetstream(timeout=30), "par-1")
            run = json.loads((await (await nc.jetstream().key_value(S.KV_RUNS)).get("par-1")).value)
        finally:
            await watch.close()
    windows = [(_ts(t["started_at"]), _ts(t["finished_at"])) for t in tasks if t.get("started_at") and t.get("finished_at")]
    peak = max((sum(1 for s, e in windows if s <= s0 < e) for s0, _ in windows), default=0)
    created = _ts(run["created_at"])
    span_tasks = (max(e for _, e in windows) - min(s for s, _ in windows)) if windows else float("nan")
    first_start = (min(s for s, _ in windows) - created) if windows else float("nan")
    ok = status == "completed" and len(tasks) == n and all(t["status"] == "completed" for t in tasks)
    eff = ideal / makespan
    by_prog: dict[str, list[tuple[float, float]]] = {}
    for t in tasks:
        if t.get("started_at") and t.get("finished_at"):
            by_prog.setdefault(t["programmer"], []).append((_ts(t["started_at"]), _ts(t["finished_at"])))
    gaps = []
    for w in by_prog.values():
        w.sort()
        gaps += [b[0] - a[1] for a, b in zip(w, w[1:])]
    last_end = max((e for _, e in windows), default=float("nan"))
    ctx.details["pas.parallel"] = {
        "tasks": n, "programmers": progs, "ideal_s": ideal, "makespan_s": makespan, "efficiency": eff,
        "task_window_span_s": span_tasks, "created_to_first_task_start_s": first_start, "peak_concurrency": peak,
        "gap_between_tasks_on_a_programmer_s": sorted(round(g, 4) for g in gaps),
        "last_task_end_to_terminal_status_s": makespan - (last_end - created),
        "distinct_programmers": len({t["programmer"] for t in tasks}),
        "task_durations_s": sorted(round(e - s, 3) for s, e in windows),
        "task_start_offsets_s": sorted(round(s0 - created, 3) for s0, _ in windows),
    }
    note = (f"{n} x `sleep 1` (command executor) on {progs} programmers; makespan = submit -> terminal status "
            f"= {makespan:.2f} s (ideal {ideal:.0f} s); task windows span {span_tasks:.2f} s, peak concurrency {peak}")
    if not ok:
        note += "; NOT ALL COMPLETED"
    return [
        Figure("pas.parallel.efficiency", _pct(eff), "%", target=">= 90%", passed=bool(ok and eff >= 0.9), note=note),
        Figure("pas.parallel.makespan_s", makespan, "s", floor_name="ideal (20 x 1 s / 10 programmers)",
               floor_value=ideal, target="", passed=None if ok else False),
    ]


# ---- 4. failover ---------------------------------------------------------------------------
class ChildPas:
    """`python -m pas up ...` in its own process group (so SIGKILL takes it alone)."""

    def __init__(self, args: list[str], workdir: Path, name: str) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.ready = workdir / f"{name}.ready"
        self.log = workdir / f"{name}.log"
        self.ready.unlink(missing_ok=True)
        self.args = [sys.executable, "-m", "pas", "up", "--ready-file", str(self.ready), *args]
        self.cwd = workdir
        self.proc: subprocess.Popen[bytes] | None = None
        self.t_start = 0.0

    def spawn(self) -> None:
        fh = self.log.open("ab")
        self.t_start = time.perf_counter()
        self.proc = subprocess.Popen(self.args, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     cwd=str(self.cwd), start_new_session=True,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1"})
        fh.close()

    async def wait_ready(self, timeout_s: float = 60.0) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout_s
        while not self.ready.exists():
            if self.proc.poll() is not None:
                raise RuntimeError(f"pas up exited {self.proc.returncode}: {self.log.read_text()[-2000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"pas up not ready in {timeout_s}s: {self.log.read_text()[-2000:]}")
            await asyncio.sleep(0.01)

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def terminate(self, timeout_s: float = 20.0) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()


@dataclass
class FailoverTrial:
    kill_to_redelivered_s: float = float("nan")  # SIGKILL -> task running on another programmer
    kill_to_done_s: float = float("nan")  # SIGKILL -> task completed by another programmer
    kill_to_alert_s: float = float("nan")  # SIGKILL -> pas.alert.agent.prog-001 kind=dead
    killed_after_s: float = float("nan")  # how long the task had been running on prog-001
    taken_by: str = ""
    attempts: int = 0
    status: str = ""
    events: list[str] = field(default_factory=list)


async def _failover_trial(ctx: BenchContext, i: int) -> FailoverTrial:
    from pas.roles import new_agent
    from pas.comms import CommsLog

    tr = FailoverTrial()
    overrides = _overrides(FAILOVER_SETTINGS)
    run_id = f"fo-{i}"
    async with _pas(ctx, f"pas-failover-{i}", overrides, exclude=["prog-*"]) as (srv, cfg, st, nc):
        child = ChildPas(["--nats-url", srv.url, "--only", "prog-001", "--no-http",
                          *_cli_overrides(FAILOVER_SETTINGS)], ctx.data_dir / f"failover-{i}", "prog001")
        others: list[Any] = []
        loop = asyncio.get_running_loop()
        running_001: asyncio.Future[float] = loop.create_future()
        marks: dict[str, float] = {}
        finished: asyncio.Future[None] = loop.create_future()
        alerted: asyncio.Future[None] = loop.create_future()

        async def on_task(m: Any) -> None:
            t = time.perf_counter()
            try:
                rec = json.loads(m.data)
            except ValueError:
                return
            prog, status = rec.get("programmer", ""), rec.get("status")
            tr.events.append(f"{status}@{prog or '-'}")
            if status == "running" and prog == "prog-001" and not running_001.done():
                running_001.set_result(t)
            elif status == "running" and prog and prog != "prog-001":
                marks.setdefault("redelivered", t)
            elif status in wire.TERMINAL_TASK and prog != "prog-001" and not finished.done():
                marks["done"] = t
                tr.taken_by, tr.attempts, tr.status = prog, int(rec.get("attempts") or 0), status
                finished.set_result(None)
            elif status in wire.TERMINAL_TASK and prog == "prog-001" and not finished.done():
                tr.status = f"{status} on prog-001 before the kill"
                finished.set_result(None)

        async def on_alert(m: Any) -> None:
            t = time.perf_counter()
            try:
                kind = json.loads(m.data).get("kind")
            except ValueError:
                return
            if kind == "dead" and not alerted.done():
                marks["alert"] = t
                alerted.set_result(None)

        subs = [await nc.subscribe(f"pas.run.{run_id}.task.>", cb=on_task),
                await nc.subscribe(S.alert_agent("prog-001"), cb=on_alert)]
        try:
            child.spawn()
            await child.wait_ready()
            await asyncio.sleep(1.5 * FAILOVER_SETTINGS["settings.heartbeat.interval_s"])  # monitor has seen it beat
            client = PasClient(nc, timeout_s=10)
            await nc.flush()
            await client.submit({"title": "failover", "run_id": run_id, "tasks": [command_task("code", "sleep 1")]})
            t_running = await asyncio.wait_for(running_001, 20)
            # the rest of the pool, idle and pulling, before the kill
            for k in range(2, 11):
                a = new_agent(st.bus, cfg.agent(f"prog-{k:03d}"), CommsLog(st.bus.nc))  # type: ignore[arg-type]
                await a.start()
                others.append(a)
            await st.bus.nc.flush()  # type: ignore[union-attr]
            if finished.done():
                raise RuntimeError(f"task ended before the kill ({tr.status})")
            t_kill = time.perf_counter()
            child.kill()
            tr.killed_after_s = t_kill - t_running
            await asyncio.wait_for(asyncio.gather(finished, alerted), 30)
            if "done" in marks:
                tr.kill_to_done_s = marks["done"] - t_kill
            if "redelivered" in marks:
                tr.kill_to_redelivered_s = marks["redelivered"] - t_kill
            tr.kill_to_alert_s = marks["alert"] - t_kill
        finally:
            child.kill()
            for s in subs:
                with contextlib.suppress(Exception):
                    await s.unsubscribe()
            await asyncio.gather(*(a.stop() for a in others), return_exceptions=True)
    return tr


@register("pas.failover")
async def pas_failover(ctx: BenchContext) -> list[Figure]:
    trials = [await _failover_trial(ctx, i) for i in range(ctx.sizes.failover_trials)]
    ack = float(FAILOVER_SETTINGS["settings.pool.ack_wait_s"])
    hb = float(FAILOVER_SETTINGS["settings.heartbeat.interval_s"])
    done = [t.kill_to_done_s for t in trials]
    alert = [t.kill_to_alert_s for t in trials]
    ok = all(t.status == "completed" and t.taken_by and t.taken_by != "prog-001" for t in trials)
    settings = ", ".join(f"{k.removeprefix('settings.')}={v}" for k, v in FAILOVER_SETTINGS.items())
    ctx.details["pas.failover"] = {"settings": FAILOVER_SETTINGS, "missed_beats": 2,
                                   "trials": [t.__dict__ for t in trials]}
    worst_done, worst_alert = max(done), max(alert)
    redel = ", ".join(f"{t.kill_to_redelivered_s:.2f}" for t in trials)
    return [
        Figure("pas.failover.kill_to_done_s", worst_done, "s",
               target=f"<= ack deadline + 2 s = {ack + 2:.0f} s", passed=bool(ok and worst_done <= ack + 2),
               note=(f"worst of {len(trials)}: SIGKILL of `pas up --only prog-001` running a `sleep 1` task -> task "
                     f"completed by another programmer (includes the 1 s re-run); samples "
                     f"{', '.join(f'{x:.2f}' for x in done)} s; kill -> running elsewhere {redel} s; {settings}")),
        Figure("pas.failover.kill_to_alert_s", worst_alert, "s",
               target=f"<= 2.5 heartbeat intervals = {2.5 * hb:.1f} s", passed=bool(worst_alert <= 2.5 * hb),
               note=(f"worst of {len(trials)}: SIGKILL -> pas.alert.agent.prog-001 (dead); samples "
                     f"{', '.join(f'{x:.2f}' for x in alert)} s; missed_beats=2; {settings}")),
    ]


# ---- 5. footprint --------------------------------------------------------------------------
def _status_kb(pid: int) -> dict[str, int]:
    out: dict[str, int] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, val = line.partition(":")
            if key in ("VmRSS", "VmHWM", "Threads"):
                out[key] = int(val.split()[0])
    except (OSError, ValueError, IndexError):
        pass
    return out


def _descendants(pid: int) -> list[int]:
    out: list[int] = []
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            for tid in os.listdir(f"/proc/{p}/task"):
                kids = Path(f"/proc/{p}/task/{tid}/children").read_text().split()
                for k in kids:
                    out.append(int(k))
                    todo.append(int(k))
        except OSError:
            pass
    return out


def _free_port_offset(cfg: PasConfig) -> int:
    """An offset that puts every agent port and the HMI on free ports (so the default `pas up`,
    HTTP adapter included, can run next to anything else on this machine)."""
    ports = [a.port for a in cfg.agents if a.port is not None] + [cfg.settings.http.hmi_port]
    for off in range(30000, 59000 - max(ports), 217):
        socks = []
        try:
            for p in ports:
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                socks.append(s)
                s.bind((cfg.settings.http.host, p + off))
            return off
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free port range for the HTTP adapter")


async def _all_healthy(nc: NATS, subjects: dict[str, str], pending: set[str]) -> None:
    async def probe(aid: str) -> None:
        try:
            await nc.request(subjects[aid], b"", timeout=0.5)
            pending.discard(aid)
        except (NoRespondersError, NatsTimeout, asyncio.TimeoutError):
            pass

    await asyncio.gather(*(probe(a) for a in list(pending)))


async def _footprint_trial(ctx: BenchContext, url: str, nc: NATS, i: int, http: bool) -> dict[str, Any]:
    cfg = load_config()
    subjects = {a.id: S.agent_endpoint(a.role, a.id, "health") for a in cfg.agents}
    args = ["--nats-url", url]
    if http:
        args += ["-c", f"settings.http.port_offset={_free_port_offset(cfg)}"]
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
        at_healthy = _status_kb(pid)
        await asyncio.sleep(2.0)  # a couple of heartbeats later, idle
        later = _status_kb(pid)
        kids = _descendants(pid)
        kids_kb = sum(_status_kb(k).get("VmRSS", 0) for k in kids)
        return {"http": http, "healthy_s": t_healthy, "ready_file_s": t_ready, "agents": len(subjects),
                "rss_kb_at_healthy": at_healthy.get("VmRSS", 0), "rss_kb_idle_2s": later.get("VmRSS", 0),
                "hwm_kb": later.get("VmHWM", 0), "threads": later.get("Threads", 0),
                "children": len(kids), "children_rss_kb": kids_kb,
                "rss_mb": (max(at_healthy.get("VmRSS", 0), later.get("VmRSS", 0)) + kids_kb) / 1024}
    finally:
        child.terminate()


@register("pas.footprint")
async def pas_footprint(ctx: BenchContext) -> list[Figure]:
    try:
        import pas.http.adapter  # noqa: F401

        variants = [True, False]
    except ImportError:
        variants = [False]
    srv = await ctx.start_server("pas-footprint")
    nc = await _connect(srv.url, "bench-footprint")
    results: dict[bool, list[dict[str, Any]]] = {v: [] for v in variants}
    try:
        # one unmeasured start first: provisions the streams/KV on the fresh server, warms the page cache
        await _footprint_trial(ctx, srv.url, nc, -1, False)
        for i in range(ctx.sizes.footprint_trials):
            for v in variants:
                results[v].append(await _footprint_trial(ctx, srv.url, nc, i, v))
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


# ---- 6. comms log replay -------------------------------------------------------------------
@register("pas.comms")
async def pas_comms(ctx: BenchContext) -> list[Figure]:
    from pas import comms as comms_mod
    from pas.bus import Bus

    n = ctx.sizes.comms_n
    srv = await ctx.start_server("pas-comms")
    cfg = load_config()
    bus = await Bus.open(srv.url, cfg, name="bench-comms")
    try:
        log = comms_mod.CommsLog(bus.nc, cfg.settings.comms.preview_chars)
        agents = [a.id for a in cfg.agents]
        types = ("CMD", "STATUS", "RESPONSE")
        t0 = time.perf_counter()
        for k in range(n):
            await log.log(agents[k % len(agents)], agents[(k + 1) % len(agents)], types[k % 3],
                          f"task code-1-{k % 10:02d}: bench entry {k}", f"r-bench-{k // 100:05d}", "running",
                          metadata={"k": k})
        await bus.nc.flush()
        deadline = time.monotonic() + 60
        stored = 0
        while time.monotonic() < deadline:
            stored = (await bus.js.stream_info(S.STREAM_COMMS)).state.messages
            if stored >= n:
                break
            await asyncio.sleep(0.05)
        write_s = time.perf_counter() - t0
        reads: list[tuple[int, float]] = []
        for _ in range(ctx.sizes.comms_reads):
            count = 0
            t0 = time.perf_counter()
            async for _e in comms_mod.read(bus.js):
                count += 1
            reads.append((count, time.perf_counter() - t0))
    finally:
        await bus.close()
        await asyncio.to_thread(srv.stop)
    rates = [rate(c, s) for c, s in reads]
    value = statistics.median(rates)
    ok = stored == n and all(c == n for c, _ in reads)
    ctx.details["pas.comms"] = {"entries": n, "stored": stored, "write_s": write_s, "write_per_s": rate(stored, write_s),
                                "reads": [{"entries": c, "seconds": s, "per_s": rate(c, s)} for c, s in reads]}
    note = (f"{n} entries written with CommsLog.log ({rate(stored, write_s):,.0f}/s, stored {stored}), then read "
            f"back with pas.comms.read(js) (all of PAS_COMMS); median of {len(reads)} reads: "
            f"{', '.join(f'{c} in {s:.2f} s' for c, s in reads)}")
    if not ok:
        note += "; COUNT MISMATCH"
    return [Figure("pas.comms.replay_per_s", value, "entries/s", target=">= 50,000 entries/s",
                   passed=bool(ok and value >= 50000), note=note)]
