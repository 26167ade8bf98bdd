"""pas.parallel: 20 `sleep 1` command tasks on 10 programmers; makespan against the ideal 2 s."""

from __future__ import annotations

import itertools
import json

from benchmarks.pas_common import LANES, RunWatch, command_task, iso_ts, one_job, pas_stack, pct, run_tasks
from benchmarks.run import BenchContext, register
from benchmarks.stats import Figure
from pas.protocol import subjects as S
from pas.transport.client import PasClient


@register("pas.parallel")
async def pas_parallel(ctx: BenchContext) -> list[Figure]:
    n = ctx.sizes.parallel_tasks
    progs = 10
    ideal = n * 1.0 / progs
    async with pas_stack(ctx, "pas-parallel") as (_srv, _cfg, _st, nc):
        client = PasClient(nc, timeout_s=30)
        watch = RunWatch(nc)
        try:
            await one_job(client, watch, "par-warm",
                                    {"title": "warm", "tasks": [command_task(LANES[i % 5], "true") for i in range(10)]},
                                    60)
            job = {"title": "parallel", "tasks": [command_task(LANES[i % 5], "sleep 1") for i in range(n)]}
            makespan, status = await one_job(client, watch, "par-1", job, 120)
            tasks = await run_tasks(nc.jetstream(timeout=30), "par-1")
            run = json.loads((await (await nc.jetstream().key_value(S.KV_RUNS)).get("par-1")).value)
        finally:
            await watch.close()
    windows = [(iso_ts(t["started_at"]), iso_ts(t["finished_at"])) for t in tasks
               if t.get("started_at") and t.get("finished_at")]
    peak = max((sum(1 for s, e in windows if s <= s0 < e) for s0, _ in windows), default=0)
    created = iso_ts(run["created_at"])
    span_tasks = (max(e for _, e in windows) - min(s for s, _ in windows)) if windows else float("nan")
    first_start = (min(s for s, _ in windows) - created) if windows else float("nan")
    ok = status == "completed" and len(tasks) == n and all(t["status"] == "completed" for t in tasks)
    eff = ideal / makespan
    by_prog: dict[str, list[tuple[float, float]]] = {}
    for t in tasks:
        if t.get("started_at") and t.get("finished_at"):
            by_prog.setdefault(t["programmer"], []).append((iso_ts(t["started_at"]), iso_ts(t["finished_at"])))
    gaps = []
    for w in by_prog.values():
        w.sort()
        gaps += [b[0] - a[1] for a, b in itertools.pairwise(w)]
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
        Figure("pas.parallel.efficiency", pct(eff), "%", target=">= 90%", passed=bool(ok and eff >= 0.9), note=note),
        Figure("pas.parallel.makespan_s", makespan, "s", floor_name="ideal (20 x 1 s / 10 programmers)",
               floor_value=ideal, target="", passed=None if ok else False),
    ]

