"""The completion walk and the run views, over the run store (pas.runtime.store).

One write per fact: a record written is its own event. The server republishes every write of a run's
records as pas.run.<run>.<rest> and sources it into PAS_EVENTS (pas.transport.bus), so nothing here
publishes a progress event: the record writes (the store's) are the one place events come from. What PAS
still publishes on pas.run.> are commands for agents (emit): cancel, release, done.plan.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError

from pas.base.errors import BadRequest, Retry
from pas.protocol import subjects as S
from pas.protocol import wire

# The KV keys are built in pas.protocol.subjects; re-exported because the roles use them as R.task_key, ...
from pas.protocol.subjects import job_key as job_key
from pas.protocol.subjects import lane_key as lane_key
from pas.protocol.subjects import plan_key as plan_key
from pas.protocol.subjects import request_key as request_key
from pas.protocol.subjects import task_key as task_key
from pas.runtime.store import Parent, RunStore, parent_of
from pas.transport import tracing
from pas.transport.bus import Bus
from pas.transport.client import raise_for

if TYPE_CHECKING:
    from pas.runtime.service import WorkCtx


async def emit(bus: Bus, subject: str, ev: wire.RunEvent, msg_id: str | None = None) -> None:
    """A command others act on (cancel, release, done.plan): stored and acknowledged before we go on.
    Never a state change: those are the records' writes, fanned out by the server."""
    await bus.publish_js(subject, ev, msg_id=msg_id)


def event(run_id: str, kind: str, status: str, agent: str, **kw: Any) -> wire.RunEvent:
    """A RunEvent; kind and status come from PAS's own records here (checked where events are read)."""
    return wire.RunEvent(run_id=run_id, kind=cast(Any, kind), status=cast(Any, status), ts=wire.now(), agent=agent,
                         **kw)


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


async def run_view(store: RunStore, run_id: str, offset: int = 0, limit: int | None = None) -> wire.RunStatus | None:
    """The run with a page of its tasks (task id order, from offset, at most limit): the page is
    cut where the reply would pass max_payload, and next_offset says where the rest starts."""
    got = await store.run(run_id)
    if got is None:
        return None
    run = got.record
    tasks = await store.tasks(run_id)
    tasks.sort(key=lambda t: t.task_id)
    page = tasks[offset:offset + limit if limit else None]
    # Outputs are capped tighter for big pages (the full output is in each task's KV record), so a
    # big run usually fits in one reply; the cut below makes sure any page does.
    cap = wire.MAX_OUTPUT if len(page) <= 50 else max(200, 600_000 // len(page))
    for t in page:
        if len(t.output) > cap:
            t.output = "..." + t.output[-cap:]
    from pas.runtime.usage import get_usage

    used, _ = await get_usage(store.bus, run_id)  # every LLM call of the run, at every tier
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
    view.tasks = page[:fitting(page, reply_budget(store.bus) - len(wire.encode(view)))]
    end = offset + len(view.tasks)
    view.next_offset = end if end < len(tasks) else None
    return view


async def list_runs(store: RunStore, limit: int = 50, status: str | None = None, offset: int = 0) -> wire.RunsReply:
    """The newest runs (optionally with one status), a page of at most `limit` from `offset`."""
    runs = await store.runs()
    if status:
        runs = [r for r in runs if r.status == status]
    runs.sort(key=lambda r: r.created_at, reverse=True)
    page = [
        wire.RunSummary(run_id=r.run_id, title=r.title, status=r.status, created_at=r.created_at,
                        finished_at=r.finished_at)
        for r in runs[offset:offset + limit]
    ]
    page = page[:fitting(page, reply_budget(store.bus))]
    end = offset + len(page)
    return wire.RunsReply(runs=page, total=len(runs), next_offset=end if end < len(runs) else None)


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
    ref = parent_of(ev)
    if ref is None:
        raise BadRequest(f"no parent record for a {ev.kind!r} event")
    note = ctx.store.note_child if done.redelivered else ctx.store.note_children
    res = await note(ref, ev.status)
    if res is None or res.parent.status == "running":
        return  # no such parent, or it still has children running (or a sibling's write carried this one)
    up = await _finished(ctx, res.parent, res.finished_now)  # (ctx.redelivered: a repeated walk, announced again)
    if parent_of(up) is not None:
        await child_done(ctx, up)


async def _finished(ctx: WorkCtx, rec: Parent, now: bool) -> wire.RunEvent:
    """Log a parent that just finished (`now`; its record's write was its event) and return its event
    for the walk up. The owner logs as itself (pas.transport.auth grants each agent its own comms
    subjects only). A finished plan is told to root by done.plan, also on a repeated walk; its entry is
    logged before done.plan goes, so root's STATUS entry stays the run's last."""
    if isinstance(rec, wire.JobRecord):
        ev = wire.record_event(rec)
        if now:
            await ctx.log(f"dir-{rec.lane}", "RESPONSE", f"job {rec.job_id} {rec.status}: {ev.message}", rec.status)
        return ev
    if isinstance(rec, wire.LaneRecord):
        return await lane_finished(ctx, rec, f"{len(rec.jobs)} job(s)", now)
    plan: wire.PlanRecord = rec
    ev = plan_event(plan)
    if now:
        await ctx.log("root", "RESPONSE", f"all lanes done: {ev.message}", plan.status)
    await ctx.emit(S.done_plan(plan.run_id), ev, msg_id=plan_done_id(plan.run_id))  # root ends the run
    return ev


def plan_event(plan: wire.PlanRecord) -> wire.RunEvent:
    return wire.record_event(plan)


def plan_done_id(run_id: str) -> str:
    return f"{run_id}:done:plan"


async def lane_finished(ctx: WorkCtx, lane: wire.LaneRecord, message: str, now: bool = True) -> wire.RunEvent:
    """The lane's event for the walk up (its record, written just before, is what watchers see)."""
    ev = wire.record_event(lane)
    if now:
        await ctx.log("architect", "RESPONSE", f"lane {lane.lane} {lane.status}: {message}", lane.status)
    return ev
