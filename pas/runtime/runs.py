"""The completion walk, over the run store (pas.runtime.store): a child's owner tells its parent's.

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
from pas.runtime.store import Parent, parent_of
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
