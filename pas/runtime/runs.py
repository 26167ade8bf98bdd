"""Run state: per-node records in KV (pas_runs, pas_tree), written here and in pas.runtime.lastwrite.

No run state lives only in memory: a run's view is derived from its keys on demand, so any
process can die and any other can carry on. One key per task keeps writes O(1) per change.

One write per fact: a record written is its own event. The server republishes every write of a run's
records as pas.run.<run>.<rest> and sources it into PAS_EVENTS (pas.transport.bus), so nothing here
publishes a progress event: the record writes (update_run, put_parent, the compare-and-sets of
record_child_done, a task's put) are the one place events come from. What PAS still publishes on
pas.run.> are commands for agents (emit): cancel, release, done.plan.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeAlias, cast

from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.errors import KeyWrongLastSequenceError

from pas.base.errors import BadRequest, Retry
from pas.protocol import subjects as S
from pas.protocol import wire

# The KV keys are built in pas.protocol.subjects; re-exported because the roles use them as R.task_key, ...
from pas.protocol.subjects import job_key as job_key
from pas.protocol.subjects import lane_key as lane_key
from pas.protocol.subjects import plan_key as plan_key
from pas.protocol.subjects import request_key as request_key
from pas.protocol.subjects import task_key as task_key
from pas.runtime.lastwrite import cached, run_entry, update

# Re-exported for the roles (R.put_parent, ...): the records this process wrote are in pas.runtime.lastwrite.
from pas.runtime.lastwrite import cached_run as cached_run
from pas.runtime.lastwrite import put_parent as put_parent
from pas.runtime.lastwrite import remember_run as remember_run
from pas.transport import tracing
from pas.transport.bus import Bus
from pas.transport.client import raise_for

if TYPE_CHECKING:
    from pas.runtime.service import WorkCtx


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
    """A command others act on (cancel, release, done.plan): stored and acknowledged before we go on.
    Never a state change: those are the records' writes, fanned out by the server."""
    await bus.publish_js(subject, ev, msg_id=msg_id)


def event(run_id: str, kind: str, status: str, agent: str, **kw: Any) -> wire.RunEvent:
    """A RunEvent; kind and status come from PAS's own records here (checked where events are read)."""
    return wire.RunEvent(run_id=run_id, kind=cast(Any, kind), status=cast(Any, status), ts=wire.now(), agent=agent,
                         **kw)


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
    from pas.runtime.usage import get_usage

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


async def record_child_done(bus: Bus, key: str, typ: type[Any], child: str, status: str,
                            children: str) -> tuple[Any, bool] | None:
    """Note that one child (task of a job, job of a lane) finished, with compare-and-set on the
    parent's record: O(1) reads per completion however many children there are. Returns
    (record, finished_now); finished_now is True for exactly one caller, the one whose update
    completed the set. None if the record does not exist."""
    async with _parent_lock(bus, key):  # siblings in this process take turns; other processes retry CAS
        return await _record(bus, key, typ, {child: status}, children)


async def record_children_done(bus: Bus, key: str, typ: type[Any], child: str, status: str,
                               children: str) -> tuple[Any, bool] | None:
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
            mine.result()  # (raises what that write raised: this completion is then retried)
            return None
        batch = bus.carried.pop(key, {})
        try:
            res = await _record(bus, key, typ, {c: st for c, (st, _) in batch.items()}, children)
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


def read_record(bus: Bus, key: str, typ: type[Any]) -> Read:
    """A pas_tree record as this process last wrote it (pas.runtime.lastwrite), else its read from the store."""
    if (got := cached(bus, key, typ)) is not None:
        done: Read = asyncio.get_running_loop().create_future()
        done.set_result(got)
        return done
    return asyncio.ensure_future(bus.kv_get(S.KV_TREE, key, typ))


async def _record(bus: Bus, key: str, typ: type[Any], done: dict[str, str], children: str) -> tuple[Any, bool] | None:
    while True:
        # Under the lock, this process's own last write is newer than any read.
        got = cached(bus, key, typ) or await bus.kv_get(S.KV_TREE, key, typ)
        if got is None:
            return None
        rec, rev = got
        if rec.status != "running":
            return rec, False  # finished before (a redelivery): the caller re-announces
        total = getattr(rec, children)
        rec.done.update({c: st for c, st in done.items() if c in total})  # (a child it does not have: no note)
        if all(c in rec.done for c in total):
            rec.status = rollup([rec.done[c] for c in total])
        try:
            await update(bus, S.KV_TREE, key, key, rec, rev)
        except KeyWrongLastSequenceError:
            continue  # a sibling finished at the same moment (or our own write's ack was lost): read again
        return rec, rec.status != "running"


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


def owner_subject(ev: wire.RunEvent, sender: str) -> str:
    """Where the owner of the parent of the child ev announces listens: a task's job (and the task's own
    record) is its lane's managers', told by the programmer `sender` under its own id; a job's lane its
    director's, a lane's plan the architect's."""
    if ev.kind == "task":
        return S.task_done(ev.lane or "", sender)
    if ev.kind == "job":
        return S.child_done("dir", ev.lane or "")
    return S.ARCHITECT_DONE


async def child_done(ctx: WorkCtx, ev: wire.RunEvent, task: wire.TaskRecord | None = None) -> None:
    """A child (task, job or lane, as ev says) reached a terminal status: tell the owner of its parent's
    record, which notes it there (note_child_done) and, when it was the last child, finishes the parent
    and tells the next owner up: job -> lane -> plan -> done.plan. Each record is written by its owner
    only (pas.transport.auth). Returns when the whole walk above is done, so the caller's work item is settled
    only then: a walk cut short (an owner down, a timeout) is retried by the item's redelivery. `task`: a
    programmer's result, which the managers store (pas.runtime.taskowner)."""
    body = wire.encode(wire.ChildDone(event=ev, redelivered=ctx.redelivered, task=task))
    subject = owner_subject(ev, ctx.agent_id)
    try:
        reply = await ctx.bus.nc.request(subject, body, timeout=ctx.bus.cfg.settings.work.ack_wait_s,
                                         headers=tracing.inject(None))
    except (NoRespondersError, NatsTimeoutError) as e:
        raise Retry(f"{subject}: {type(e).__name__}: the owner of the {ev.kind}'s parent did not answer",
                    delay_s=2.0) from None
    raise_for(reply)


async def note_child_done(ctx: WorkCtx, done: wire.ChildDone) -> None:
    """The owner's half of child_done: note the child in the parent's record (compare-and-set, O(1) reads;
    siblings finishing together in this process share one write) and, if that finished the parent,
    announce it and tell the next owner up. A parent found finished already (a repeated walk) is
    announced again and the walk goes on: every announcement carries a message id or is a watcher's
    event, and a finished record is never finished twice."""
    ev = done.event
    if ev.kind not in _PARENT:
        raise BadRequest(f"no parent record for a {ev.kind!r} event")
    typ, children = _PARENT[ev.kind]
    key, child = _parent_key(ev)
    record = record_child_done if done.redelivered else record_children_done
    res = await record(ctx.bus, key, typ, child, ev.status, children)
    if res is None or res[0].status == "running":
        return  # no such parent, or it still has children running (or a sibling's write carried this one)
    up = await _finished(ctx, res[0])  # (ctx.redelivered: a repeated walk, announced again)
    if up.kind in _PARENT:
        await child_done(ctx, up)


async def _finished(ctx: WorkCtx, rec: Any) -> wire.RunEvent:
    """A parent that finished: its event for the walk up. Its record's write was its event and its comms
    entry (the server sources it into PAS_COMMS, pas.runtime.comms.stored_entry). A finished plan is told
    to root by done.plan, also on a repeated walk."""
    ev = wire.record_event(rec)
    if isinstance(rec, wire.PlanRecord):
        await ctx.emit(S.done_plan(rec.run_id), ev, msg_id=plan_done_id(rec.run_id))  # root ends the run
    return ev


def plan_event(plan: wire.PlanRecord) -> wire.RunEvent:
    return wire.record_event(plan)


def plan_done_id(run_id: str) -> str:
    return f"{run_id}:done:plan"
