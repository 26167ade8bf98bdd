"""Run state: per-node records in KV (pas_runs, pas_tree) and the events that announce changes.

No run state lives only in memory: a run's view is derived from its keys on demand, so any
process can die and any other can carry on. One key per task keeps writes O(1) per change.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeAlias

from nats.js.errors import KeyWrongLastSequenceError

from pas import subjects as S
from pas import wire
from pas.bus import Bus
from pas.lastwrite import cached, run_entry, update

# Re-exported for the roles (R.put_parent, ...): the records this process wrote are in pas.lastwrite.
from pas.lastwrite import cached_run as cached_run
from pas.lastwrite import put_parent as put_parent
from pas.lastwrite import remember_run as remember_run

# The KV keys are built in pas.subjects; re-exported because the roles use them as R.task_key, ...
from pas.subjects import job_key as job_key
from pas.subjects import lane_key as lane_key
from pas.subjects import plan_key as plan_key
from pas.subjects import request_key as request_key
from pas.subjects import task_key as task_key

if TYPE_CHECKING:
    from pas.service import WorkCtx


async def get_run(bus: Bus, run_id: str) -> tuple[wire.RunRecord, int] | None:
    return await bus.kv_get(S.KV_RUNS, run_id, wire.RunRecord)


async def update_run(bus: Bus, run_id: str, change: Callable[[wire.RunRecord], Awaitable[bool] | bool],
                     read: tuple[wire.RunRecord, int] | None = None) -> wire.RunRecord | None:
    """The one way pas_runs is written after the run's creation: compare-and-set. change() edits the
    record and says whether to write; it is called again on a lost race. `read`: the record and
    revision the caller has just read (saves the first read). The run if this caller wrote it, else
    None (no such run, or change() declined)."""
    while True:
        got, read = read or cached_run(bus, run_id) or await get_run(bus, run_id), None
        if got is None:
            return None
        run, rev = got
        ok = change(run)
        if not isinstance(ok, bool):
            ok = await ok
        if not ok:
            return None
        try:
            await update(bus, S.KV_RUNS, run_id, run_entry(run_id), run, rev)
            return run
        except KeyWrongLastSequenceError:
            continue  # another writer (or our own write whose ack was lost): read again


async def known_run(bus: Bus, run_id: str) -> tuple[wire.RunRecord, int] | None:
    """cached_run(), else the stored record."""
    return cached_run(bus, run_id) or await get_run(bus, run_id)


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


REPLY_HEADROOM = 64 * 1024
"""What a reply leaves free of the server's max_payload (headers, the service envelope)."""


def reply_budget(bus: Bus) -> int:
    """Bytes a status or runs reply may use: the connection's max_payload less the headroom."""
    return max(REPLY_HEADROOM, int(bus.nc.max_payload or 1024 * 1024) - REPLY_HEADROOM)


def fitting(items: list[Any], budget: int) -> int:
    """How many of items, from the first, fit in budget bytes encoded (at least one: every record
    is bounded where it is stored, so one always fits; a page never stalls)."""
    used = 0
    for n, item in enumerate(items):
        used += len(wire.encode(item)) + 1
        if used > budget and n:
            return n
    return len(items)


async def run_view(bus: Bus, run_id: str, offset: int = 0, limit: int | None = None) -> wire.RunStatus | None:
    """The run with a page of its tasks (task id order, from offset, at most limit): the page is
    cut where the reply would pass max_payload, and next_offset says where the rest starts."""
    got = await get_run(bus, run_id)
    if got is None:
        return None
    run, _ = got
    tasks = await tasks_of(bus, run_id)
    tasks.sort(key=lambda t: t.task_id)
    page = tasks[offset:offset + limit if limit else None]
    # Outputs are capped tighter for big pages (the full output is in each task's KV record), so a
    # big run usually fits in one reply; the cut below makes sure any page does.
    cap = wire.MAX_OUTPUT if len(page) <= 50 else max(200, 600_000 // len(page))
    for t in page:
        if len(t.output) > cap:
            t.output = "..." + t.output[-cap:]
    from pas.usage import get_usage

    used, _ = await get_usage(bus, run_id)  # every LLM call of the run, at every tier
    unknown = used.unknown_cost_calls + sum(1 for t in tasks if t.cost_usd is None)  # aider tasks
    conflicts = [c[:1000] for c in run.conflicts[:50]]
    if len(run.conflicts) > len(conflicts):
        conflicts.append(f"... {len(run.conflicts) - len(conflicts)} more conflicts")
    view = wire.RunStatus(
        run_id=run.run_id, title=run.title, status=run.status, created_at=run.created_at,
        started_at=run.started_at, finished_at=run.finished_at, lanes=run.lanes, tasks=[],
        usage=wire.Usage(tokens=used.tokens, cost_usd=round(used.cost_usd, 8), llm_calls=used.calls,
                         unknown_cost_calls=unknown),
        message=run.message[:8192], degraded=run.degraded, priority=run.priority, approval=run.approval,
        result_branch=run.result_branch, conflicts=conflicts, tasks_total=len(tasks), offset=offset,
    )
    view.tasks = page[:fitting(page, reply_budget(bus) - len(wire.encode(view)))]
    end = offset + len(view.tasks)
    view.next_offset = end if end < len(tasks) else None
    return view


async def list_runs(bus: Bus, limit: int = 50, status: str | None = None, offset: int = 0) -> wire.RunsReply:
    """The newest runs (optionally with one status), a page of at most `limit` from `offset`."""
    runs: list[wire.RunRecord] = await bus.kv_values(S.KV_RUNS, ">", wire.RunRecord)
    if status:
        runs = [r for r in runs if r.status == status]
    runs.sort(key=lambda r: r.created_at, reverse=True)
    page = [
        wire.RunSummary(run_id=r.run_id, title=r.title, status=r.status, created_at=r.created_at,
                        finished_at=r.finished_at)
        for r in runs[offset:offset + limit]
    ]
    page = page[:fitting(page, reply_budget(bus))]
    end = offset + len(page)
    return wire.RunsReply(runs=page, total=len(runs), next_offset=end if end < len(runs) else None)


async def mark_degraded(bus: Bus, run_id: str, reason: str, lanes: list[str] | None = None) -> None:
    """Record that a tier fell back to the offline planner (and, for the architect, the lanes chosen),
    by compare-and-set, so a concurrent note from another tier is not lost."""

    def change(run: wire.RunRecord) -> bool:
        if reason:
            run.degraded = True
            run.message = (run.message + "; " if run.message else "") + f"degraded: {reason}"[:500]
        if lanes is not None:
            run.lanes = lanes
        return True

    await update_run(bus, run_id, change)


Read: TypeAlias = "asyncio.Future[tuple[Any, int] | None]"
Announce: TypeAlias = "Callable[[wire.PlanRecord], Awaitable[None]]"


async def record_child_done(bus: Bus, key: str, typ: type[Any], child: str, status: str, children: str,
                            first: Read | None = None, announce: Announce | None = None
                            ) -> tuple[Any, bool, Read | None] | None:
    """Note that one child (task of a job, job of a lane) finished, with compare-and-set on the
    parent's record: O(1) reads per completion however many children there are. Returns
    (record, finished_now, ahead); finished_now is True for exactly one caller, the one whose update
    completed the set. None if the record does not exist. `first`: the parent's record, being read
    already; `ahead`: when this update finishes the parent, the read of the grandparent's record,
    started alongside the update (one round trip per tier instead of two)."""
    async with _parent_lock(bus, key):  # siblings in this process take turns; other processes retry CAS
        return await _record(bus, key, typ, {child: status}, children, first, announce)


async def record_children_done(bus: Bus, key: str, typ: type[Any], child: str, status: str, children: str,
                               first: Read | None = None, announce: Announce | None = None
                               ) -> tuple[Any, bool, Read | None] | None:
    """record_child_done, where siblings finishing in this process at the same time share one
    compare-and-set: while one sibling's write is in flight, the next ones wait for the lock, and
    the first of them to get it writes them all (group commit). The one whose write it was gets the
    result; the others get None: they have nothing more to do (the writer goes up if the parent
    finished). Not for a redelivery, which may have to re-announce (record_child_done)."""
    waiting = bus.carried.setdefault(key, {})
    mine: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    waiting[child] = (status, mine)
    async with _parent_lock(bus, key):
        if mine.done():  # a sibling's write carried this completion
            if first is not None:
                first.cancel()
            mine.result()  # (raises what that write raised: this completion is then retried)
            return None
        batch = bus.carried.pop(key, {})
        try:
            res = await _record(bus, key, typ, {c: st for c, (st, _) in batch.items()}, children, first, announce)
        except BaseException as e:
            for _, fut in batch.values():
                if fut is not mine and not fut.done():
                    fut.set_exception(e if isinstance(e, Exception) else RuntimeError("the sibling's write stopped"))
            raise
        for _, fut in batch.values():
            if fut is not mine and not fut.done():
                fut.set_result(None)
        return res


def _parent_lock(bus: Bus, key: str) -> asyncio.Lock:
    locks = bus.locks
    if len(locks) > 10000:
        for k in [k for k, lk in locks.items() if not lk.locked()]:
            del locks[k]
    return locks.setdefault(key, asyncio.Lock())


def read_ahead(bus: Bus, ev: wire.RunEvent) -> Read:
    """Start reading the record of the parent of the child ev announces (from this process's
    last write of it, when there is one: no round trip)."""
    key, _ = _parent_key(ev)
    return _read(bus, key, _PARENT[ev.kind][0])


def _read(bus: Bus, key: str, typ: type[Any]) -> Read:
    if (got := cached(bus, key, typ)) is not None:
        done: Read = asyncio.get_running_loop().create_future()
        done.set_result(got)
        return done
    return asyncio.ensure_future(bus.kv_get(S.KV_TREE, key, typ))


async def _record(bus: Bus, key: str, typ: type[Any], done: dict[str, str], children: str,
                  first: Read | None, announce: Announce | None = None) -> tuple[Any, bool, Read | None] | None:
    while True:
        # Under the lock, this process's own last write is newer than a read started before it.
        if (got := cached(bus, key, typ)) is None:
            got = await (first if first is not None else _read(bus, key, typ))
        elif first is not None:
            first.cancel()  # not needed (a no-op when it came from the cache too)
        first = None
        if got is None:
            return None
        rec, rev = got
        if rec.status != "running":
            return rec, False, None  # finished before (a redelivery): the caller re-announces
        rec.done.update(done)
        total = getattr(rec, children)
        ahead, up = None, None
        if all(c in rec.done for c in total):
            rec.status = rollup([rec.done[c] for c in total])
            up = _up(rec)
            if up is not None:
                ahead = read_ahead(bus, up)
            elif len(total) == 1:  # a one-lane plan: no sibling can race it, so announce it alongside
                ahead = bus.spawn(announce(rec) if announce is not None else _emit_plan(bus, rec))
        try:
            await update(bus, S.KV_TREE, key, key, rec, rev)
        except KeyWrongLastSequenceError:
            if ahead is not None and up is not None:
                ahead.cancel()  # (a plan's announcement stands: the same message id, re-sent below)
            continue  # a sibling finished at the same moment (or our own write's ack was lost): read again
        except BaseException:
            if ahead is not None:
                ahead.cancel()
            raise
        return rec, rec.status != "running", ahead


def _up(rec: Any) -> wire.RunEvent | None:
    """The event a finished job or lane record will send up (for read_ahead), None for a plan."""
    if isinstance(rec, wire.JobRecord):
        return event(rec.run_id, "job", rec.status, rec.manager, lane=rec.lane, job_id=rec.job_id)
    if isinstance(rec, wire.LaneRecord):
        return event(rec.run_id, "lane", rec.status, rec.director, lane=rec.lane)
    return None


# ---- a parent finishes when its last child does: task -> job -> lane -> plan ------------------
_PARENT: dict[str, tuple[type[Any], str]] = {
    "task": (wire.JobRecord, "tasks"), "job": (wire.LaneRecord, "jobs"), "lane": (wire.PlanRecord, "lanes")}


def _parent_key(ev: wire.RunEvent) -> tuple[str, str]:
    """(parent record key, child id) of the child ev announces."""
    if ev.kind == "task":
        return job_key(ev.run_id, ev.job_id or ""), ev.task_id or ""
    if ev.kind == "job":
        return lane_key(ev.run_id, ev.lane or ""), ev.job_id or ""
    return plan_key(ev.run_id), ev.lane or ""


async def child_done(ctx: WorkCtx, ev: wire.RunEvent, first: Read | None = None) -> None:
    """A child (task, job or lane, as ev says) reached a terminal status: note it in its parent's
    record (compare-and-set, O(1) reads), and when it was the last child, finish the parent in this
    same handler and go up: job -> lane -> plan. A finished plan is announced on done.plan, where
    root ends the run. Safe to repeat (a redelivery after a crash): a parent already finished is
    walked through again, and the announcements carry message ids. `first`: read_ahead(ev), if
    the caller started it."""
    while ev.kind in _PARENT:
        typ, children = _PARENT[ev.kind]
        key, child = _parent_key(ev)
        record = record_child_done if ctx.redelivered else record_children_done
        res = await record(ctx.bus, key, typ, child, ev.status, children, first,
                           lambda plan: _announce_plan(ctx, plan))
        if res is None or res[0].status == "running":
            return  # no such parent, or it still has children running
        parent, now, first = res
        announced = isinstance(parent, wire.PlanRecord) and first is not None
        if announced:
            assert first is not None
            await first  # done.plan, sent alongside the plan's write (a one-lane plan)
        ev = await _finished(ctx, parent, now, announced)


async def _finished(ctx: WorkCtx, rec: Any, now: bool, announced: bool = False) -> wire.RunEvent:
    """Log and announce a parent that just finished (`now`) or, on a redelivery, had finished."""
    again = now or ctx.redelivered
    if isinstance(rec, wire.JobRecord):
        ev = event(rec.run_id, "job", rec.status, rec.manager, lane=rec.lane, job_id=rec.job_id)
        if now:
            done = sum(1 for s in rec.done.values() if s == "completed")
            await ctx.log(f"dir-{rec.lane}", "RESPONSE", f"job {rec.job_id} {rec.status}: {done}/{len(rec.tasks)} "
                          "tasks completed", rec.status, sender=rec.manager)
        if again:
            await ctx.publish(S.run_job(rec.run_id, rec.job_id), ev)
        return ev
    if isinstance(rec, wire.LaneRecord):
        return await lane_finished(ctx, rec, f"{len(rec.jobs)} job(s)", now, again)
    plan: wire.PlanRecord = rec
    ev = plan_event(plan)
    if now and not announced:  # (an announced plan logged its entry before done.plan: _announce_plan)
        await ctx.log("root", "RESPONSE", f"all lanes done: {ev.message}", plan.status, sender=plan.architect)
    if not announced:
        await ctx.emit(S.done_plan(plan.run_id), ev, msg_id=plan_done_id(plan.run_id))  # root ends the run
    return ev


async def _announce_plan(ctx: WorkCtx, plan: wire.PlanRecord) -> None:
    """A one-lane plan's ending, sent while its record is written: the architect's entry first, then
    done.plan, so root's STATUS entry (logged once done.plan arrives) stays the run's last."""
    ev = plan_event(plan)
    await ctx.log("root", "RESPONSE", f"all lanes done: {ev.message}", plan.status, sender=plan.architect)
    await ctx.emit(S.done_plan(plan.run_id), ev, msg_id=plan_done_id(plan.run_id))


def plan_event(plan: wire.PlanRecord) -> wire.RunEvent:
    summary = ", ".join(f"{lane}={plan.done.get(lane, '?')}" for lane in plan.lanes)
    return event(plan.run_id, "plan", plan.status, plan.architect, message=summary)


def plan_done_id(run_id: str) -> str:
    return f"{run_id}:done:plan"


async def _emit_plan(bus: Bus, plan: wire.PlanRecord) -> None:
    """done.plan, sent while the plan's own record is being written (one-lane plans)."""
    await bus.publish_js(S.done_plan(plan.run_id), plan_event(plan), msg_id=plan_done_id(plan.run_id))


async def lane_finished(ctx: WorkCtx, lane: wire.LaneRecord, message: str, now: bool = True,
                        again: bool = True) -> wire.RunEvent:
    ev = event(lane.run_id, "lane", lane.status, lane.director, lane=lane.lane, message=message)
    if now:
        await ctx.log("architect", "RESPONSE", f"lane {lane.lane} {lane.status}: {message}", lane.status,
                      sender=lane.director)
    if again:
        await ctx.publish(S.run_lane(lane.run_id, lane.lane), ev)
    return ev
