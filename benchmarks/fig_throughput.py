"""pas.throughput: many `echo` tasks through the pool of 10 programmers, first submit -> every run
terminal, set against the work-queue floor (benchmarks.run.workqueue_floor: the faster of its two
shapes in the same run; target >= 0.5x), in two shapes:

- pas.throughput        tp_tasks tasks in tp_jobs jobs submitted at once, round-robin over the 5 lanes;
- pas.throughput_1lane  one job of tp1_tasks tasks, all in one lane (a user's big job).

Every task is then read back from KV: each must have completed, once.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from benchmarks.pas_common import (
    LANES,
    RunWatch,
    consumer_count,
    diagnose,
    echo_task,
    hang_summary,
    iso_ts,
    nc_stats,
    one_job,
    pas_stack,
    per_unit,
    run_tasks,
    wait_runs,
)
from benchmarks.procs import CpuMeter
from benchmarks.run import BenchContext, register, workqueue_floor
from benchmarks.stats import Figure, rate
from pas.protocol import subjects as S
from pas.transport.client import PasClient

TARGET_RATIO = 0.5


async def _measure(ctx: BenchContext, tag: str, jobs: list[list[dict[str, Any]]]) -> dict[str, Any]:
    """Submit every job at once to a fresh PAS, wait for all runs; what happened, as a details dict.
    tag names the server and prefixes the run ids."""
    n = sum(len(j) for j in jobs)
    async with pas_stack(ctx, f"pas-{tag}") as (srv, cfg, st, nc):
        client = PasClient(nc, timeout_s=120)
        watch = RunWatch(nc)
        try:
            # warm-up: one small job through every lane (consumers bound, code paths warm)
            _, wst = await one_job(client, watch, f"{tag}-warm", {"title": "warm",
                                   "tasks": [echo_task(LANES[i % 5]) for i in range(20)]}, 60)
            run_ids = [f"{tag}-{i}" for i in range(len(jobs))]
            bodies = [{"title": f"{tag} {i}", "run_id": rid, "tasks": jobs[i]} for i, rid in enumerate(run_ids)]
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
            hung = await wait_runs(js, watch, run_ids, t0, timeout_s=max(120.0, n / 20))
            cpu.stop()
            traffic = per_unit(stats0, nc_stats(st), n)
            ends = [watch.done[r] for r in run_ids if r in watch.done]
            statuses = [watch.done[r][1] if r in watch.done else "not terminal" for r in run_ids]
            diagnosis = await diagnose(js, hung) if hung else {}
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
                        last_finish = max(last_finish, iso_ts(t["finished_at"]))
                    per_prog[t.get("programmer") or "?"] = per_prog.get(t.get("programmer") or "?", 0) + 1
            tree_consumers = await consumer_count(js, f"KV_{S.KV_TREE}")
        finally:
            await watch.close()
    # a run that never ended: the rate up to the last task finished (and the figure fails)
    elapsed = (last_finish - t0_wall) if hung else max(t for t, _ in ends) - t0
    ok = not hung and completed == n and all(s == "completed" for s in statuses) and wst == "completed"
    return {
        "tasks": n, "jobs": len(jobs), "tasks_per_job": [len(j) for j in jobs], "elapsed_s": elapsed,
        "tasks_per_s": rate(n if not hung else completed, elapsed), "ok": ok,
        "submit_s": t_submitted - t0, "completed": completed, "run_statuses": statuses,
        "tasks_redelivered": attempts_gt1, "per_programmer": dict(sorted(per_prog.items())),
        "programmers": 10, "cpu": cpu.result, "hung_runs": diagnosis, "pas_nats_traffic_per_task": traffic,
        "kv_tree_consumers_after": tree_consumers, "max_tasks_per_job_card": cfg.settings.work.max_tasks_per_job,
    }


def _figure(ctx: BenchContext, name: str, d: dict[str, Any], shape: str) -> Figure:
    ctx.details[name.removesuffix(".tasks_per_s")] = d
    floor = workqueue_floor(ctx)
    value = d["tasks_per_s"]
    ratio = value / floor.value if floor and floor.value else None
    note = (f"{shape} (job cards of <= {d['max_tasks_per_job_card']}), first submit -> last run terminal; "
            f"{d['completed']}/{d['tasks']} completed on {len(d['per_programmer'])} programmers")
    if d["hung_runs"]:
        note += (f"; HUNG: {len(d['hung_runs'])} run(s) never reached a terminal status "
                 f"({hang_summary(d['hung_runs'])}); value = completed tasks / (submit -> last task finished)")
    elif not d["ok"]:
        note += "; INCOMPLETE"
    return Figure(name, value, "tasks/s", floor_name=floor.name if floor else None,
                  floor_value=floor.value if floor else None, target=f">= {TARGET_RATIO}x the faster work-queue floor",
                  passed=bool(d["ok"] and ratio is not None and ratio >= TARGET_RATIO), note=note)


@register("pas.throughput")
async def pas_throughput(ctx: BenchContext) -> list[Figure]:
    n, jobs = ctx.sizes.tp_tasks, ctx.sizes.tp_jobs
    per_job = [n // jobs + (1 if i < n % jobs else 0) for i in range(jobs)]
    bodies = [[echo_task(LANES[k % 5], f"t{k}") for k in range(m)] for m in per_job]
    d = await _measure(ctx, "tp", bodies)
    return [_figure(ctx, "pas.throughput.tasks_per_s", d,
                    f"{n} echo tasks in {jobs} jobs submitted at once, tasks round-robin over the 5 lanes")]


@register("pas.throughput_1lane")
async def pas_throughput_1lane(ctx: BenchContext) -> list[Figure]:
    n = ctx.sizes.tp1_tasks
    d = await _measure(ctx, "tp1", [[echo_task("code", f"t{k}") for k in range(n)]])
    return [_figure(ctx, "pas.throughput_1lane.tasks_per_s", d, f"1 job of {n} echo tasks, all in lane code")]
