"""Run state: per-node records in KV (pas_runs, pas_tree) and the events that announce changes.

No run state lives only in memory: a run's view is derived from its keys on demand, so any
process can die and any other can carry on. One key per task keeps writes O(1) per change.
"""

from __future__ import annotations

import asyncio
from typing import Any

from nats.js.errors import KeyWrongLastSequenceError

from pas import subjects as S
from pas import wire
from pas.bus import Bus

# The KV keys are built in pas.subjects; re-exported because the roles use them as R.task_key, ...
from pas.subjects import job_key as job_key
from pas.subjects import lane_key as lane_key
from pas.subjects import plan_key as plan_key
from pas.subjects import request_key as request_key
from pas.subjects import task_key as task_key


async def get_run(bus: Bus, run_id: str) -> tuple[wire.RunRecord, int] | None:
    return await bus.kv_get(S.KV_RUNS, run_id, wire.RunRecord)


async def put_run(bus: Bus, run: wire.RunRecord) -> None:
    await bus.kv_put(S.KV_RUNS, run.run_id, run)


async def is_cancelled(bus: Bus, run_id: str) -> bool:
    got = await get_run(bus, run_id)
    return got is not None and got[0].status == "cancelled"


async def emit(bus: Bus, subject: str, ev: wire.RunEvent, msg_id: str | None = None) -> None:
    """An event others act on (done.*, terminal status): stored and acknowledged before we go on."""
    await bus.publish_js(subject, ev, msg_id=msg_id)


async def notify(bus: Bus, subject: str, ev: wire.RunEvent) -> None:
    """A progress event for watchers (queued, running, lane/job changes): captured by PAS_EVENTS
    without a round trip; the KV records stay the truth."""
    await bus.publish(subject, ev)


def event(run_id: str, kind: str, status: str, agent: str, **kw: Any) -> wire.RunEvent:
    return wire.RunEvent(run_id=run_id, kind=kind, status=status, ts=wire.now(), agent=agent, **kw)


def rollup(statuses: list[str]) -> str:
    """Status of a parent from its children's terminal statuses."""
    if any(s == "cancelled" for s in statuses):
        return "cancelled"
    if any(s == "rejected" for s in statuses):
        return "rejected"  # the plan was rejected (approval mode): its held tasks never ran
    # A task dropped at approval ("skipped") does not fail its job.
    return "completed" if all(s in ("completed", "skipped") for s in statuses) else "failed"


async def tasks_of(bus: Bus, run_id: str) -> list[wire.TaskRecord]:
    return await bus.kv_values(S.KV_TREE, S.tasks_of(run_id), wire.TaskRecord)


async def run_view(bus: Bus, run_id: str) -> wire.RunStatus | None:
    got = await get_run(bus, run_id)
    if got is None:
        return None
    run, _ = got
    tasks = await tasks_of(bus, run_id)
    tasks.sort(key=lambda t: t.task_id)
    # Keep the reply well under NATS's max payload (1 MB by default) however many tasks a run has:
    # each task's output is capped, tighter for big runs (the full output is in its KV record).
    cap = wire.MAX_OUTPUT if len(tasks) <= 50 else max(200, 600_000 // len(tasks))
    for t in tasks:
        if len(t.output) > cap:
            t.output = "..." + t.output[-cap:]
    from pas.usage import get_usage

    used, _ = await get_usage(bus, run_id)  # every LLM call of the run, at every tier
    unknown = used.unknown_cost_calls + sum(1 for t in tasks if t.cost_usd is None)  # aider tasks
    return wire.RunStatus(
        run_id=run.run_id, title=run.title, status=run.status, created_at=run.created_at,
        started_at=run.started_at, finished_at=run.finished_at, lanes=run.lanes, tasks=tasks,
        usage=wire.Usage(tokens=used.tokens, cost_usd=round(used.cost_usd, 8), llm_calls=used.calls,
                         unknown_cost_calls=unknown),
        message=run.message, degraded=run.degraded, priority=run.priority, approval=run.approval,
        result_branch=run.result_branch, conflicts=run.conflicts,
    )


async def list_runs(bus: Bus, limit: int = 50, status: str | None = None) -> list[wire.RunSummary]:
    runs: list[wire.RunRecord] = await bus.kv_values(S.KV_RUNS, ">", wire.RunRecord)
    if status:
        runs = [r for r in runs if r.status == status]
    runs.sort(key=lambda r: r.created_at, reverse=True)
    return [
        wire.RunSummary(run_id=r.run_id, title=r.title, status=r.status, created_at=r.created_at,
                        finished_at=r.finished_at)
        for r in runs[:limit]
    ]


async def mark_degraded(bus: Bus, run_id: str, reason: str, lanes: list[str] | None = None) -> None:
    """Record that a tier fell back to the offline planner (and, for the architect, the lanes chosen).
    Compare-and-set, so a concurrent note from another tier is not lost (a few tries)."""
    for attempt in range(5):
        got = await get_run(bus, run_id)
        if got is None:
            return
        run, rev = got
        if reason:
            run.degraded = True
            run.message = (run.message + "; " if run.message else "") + f"degraded: {reason}"[:500]
        if lanes is not None:
            run.lanes = lanes
        try:
            await bus.kv_update(S.KV_RUNS, run_id, wire.encode(run), rev)
            return
        except KeyWrongLastSequenceError:
            continue
    await put_run(bus, run)  # still contended after 5 tries: last writer wins


async def finish_node(bus: Bus, key: str, record: Any, revision: int) -> bool:
    """Move a plan/lane/job record to its terminal state with compare-and-set: exactly one of the
    handlers that see the last child finish wins (and reports up); the others return False."""
    try:
        await bus.kv_update(S.KV_TREE, key, wire.encode(record), revision)
    except KeyWrongLastSequenceError:
        return False
    return True


async def record_child_done(bus: Bus, key: str, typ: type[Any], child: str, status: str,
                            children: str) -> tuple[Any, bool] | None:
    """Note that one child (task of a job, job of a lane) finished, with compare-and-set on the
    parent's record: O(1) reads per completion however many children there are. Returns
    (record, finished_now); finished_now is True for exactly one caller, the one whose update
    completed the set. None if the record does not exist."""
    async with _parent_lock(bus, key):  # siblings in this process take turns; other processes retry CAS
        return await _record(bus, key, typ, child, status, children)


def _parent_lock(bus: Bus, key: str) -> asyncio.Lock:
    locks = bus.locks
    if len(locks) > 10000:
        for k in [k for k, lk in locks.items() if not lk.locked()]:
            del locks[k]
    return locks.setdefault(key, asyncio.Lock())


async def _record(bus: Bus, key: str, typ: type[Any], child: str, status: str,
                  children: str) -> tuple[Any, bool] | None:
    while True:
        got = await bus.kv_get(S.KV_TREE, key, typ)
        if got is None:
            return None
        rec, rev = got
        if rec.status != "running":
            return rec, False  # finished before (a redelivery): the caller re-announces
        rec.done[child] = status
        total = getattr(rec, children)
        if all(c in rec.done for c in total):
            rec.status = rollup([rec.done[c] for c in total])
        try:
            await bus.kv_update(S.KV_TREE, key, wire.encode(rec), rev)
        except KeyWrongLastSequenceError:
            continue  # a sibling finished at the same moment (or our own write's ack was lost): read again
        return rec, rec.status != "running"
