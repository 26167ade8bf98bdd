"""Approval mode: a run's plan waits for a decision before any programmer starts.

All of the wait lives in KV and streams, none in memory, so it survives a restart of every process:

- `pas_runs[<run>].approval`: `pending` -> `approved` | `rejected`, by compare-and-set (one decision wins);
- the planned tasks: their `pas_tree` job and task records (task status `queued`), not yet published
  to `pas.work.prog.<band>`;
- `pas.work.approval`: one work item per waiting run, naked with a delay until the run's deadline,
  so the gateway that holds it then (any one, after any restart) ends the run `rejected`;
- `pas.run.<run>.release.<lane>`: the decision for a lane, consumed by its managers (durable
  `mgr-<lane>-release`), who publish the approved tasks and mark dropped ones `skipped`.
"""

from __future__ import annotations

from datetime import timedelta

from pas.base.errors import BadRequest, Conflict, NotFound
from pas.protocol import subjects as S
from pas.protocol import wire
from pas.runtime import runs as R
from pas.runtime.store import RunStore

TIMED_OUT = "approval timed out"


async def plan_complete(store: RunStore, run_id: str) -> bool:
    """Has every tier planned? The architect's lanes each have a director's record, and every job
    card of those has its manager's record. Bails out at the first missing record."""
    got = await store.get(S.plan_key(run_id), wire.PlanRecord)
    if got is None:
        return False
    for lane in got.record.lanes:
        lr = await store.get(S.lane_key(run_id, lane), wire.LaneRecord)
        if lr is None:
            return False
        for job_id in lr.record.jobs:
            if await store.get(S.job_key(run_id, job_id), wire.JobRecord) is None:
                return False
    return True


async def request_approval(store: RunStore, run_id: str, timeout_s: float) -> wire.RunRecord | None:
    """running -> waiting_approval, once: the run if this caller made the change, else None."""

    def change(run: wire.RunRecord) -> bool:
        if run.status != "running" or run.approval is not None:
            return False
        t = wire.now()
        run.status = "waiting_approval"
        run.approval = wire.Approval(requested_at=t, deadline=t + timedelta(seconds=timeout_s))
        return True

    return await store.update_run(run_id, change)


async def decide(store: RunStore, d: wire.Decision, approve: bool, by: str) -> wire.RunRecord:
    """Record a decision on a waiting run: approved (back to running, minus the dropped tasks) or
    rejected (the run ends). 404 unknown run, 409 not waiting, 400 unknown task id to drop."""
    if approve and d.drop:
        planned = {t for j in await store.jobs(d.run_id) for t in j.tasks}
        unknown = sorted(set(d.drop) - planned)
        if unknown:
            raise BadRequest(f"run {d.run_id!r} has no task(s) {unknown}", detail={"unknown": unknown})
    state: dict[str, str] = {}

    def change(run: wire.RunRecord) -> bool:
        state["status"] = run.status
        if run.status != "waiting_approval" or run.approval is None or run.approval.status != "pending":
            return False
        a = run.approval
        a.decided_at, a.decided_by, a.reason = wire.now(), by, d.reason
        if approve:
            a.status, a.dropped = "approved", sorted(set(d.drop))
            run.status = "running"
        else:
            a.status = "rejected"
            run.status, run.finished_at = "rejected", a.decided_at
            run.message = f"rejected by {wire.decider(by)}" + (f": {d.reason}" if d.reason else "")
        return True

    run = await store.update_run(d.run_id, change)
    if run is not None:
        return run
    if "status" not in state:
        raise NotFound(f"no run {d.run_id!r}")
    raise Conflict(f"run {d.run_id!r} is {state['status']}, not waiting_approval")


async def announce(store: RunStore, run: wire.RunRecord) -> None:
    """Tell every lane's managers the decision (idempotent: message ids), then note it done."""
    assert run.approval is not None
    got = await store.get(S.plan_key(run.run_id), wire.PlanRecord)
    lanes = got.record.lanes if got else run.lanes
    for lane in lanes:
        ev = R.event(run.run_id, "approval", run.approval.status, run.approval.decided_by, lane=lane,
                     message=run.approval.reason)
        await R.emit(store.bus, S.run_release(run.run_id, lane), ev, msg_id=f"{run.run_id}:release:{lane}")

    def change(r: wire.RunRecord) -> bool:
        if r.approval is None or r.approval.released:
            return False
        r.approval.released = True
        return True

    await store.update_run(run.run_id, change)


async def plan_view(store: RunStore, run_id: str) -> wire.PlanView:
    got = await store.run(run_id)
    if got is None:
        raise NotFound(f"no run {run_id!r}")
    run = got.record
    jobs = await store.jobs(run_id)
    status = {t.task_id: t.status for t in await store.tasks(run_id)}
    order = {lane: i for i, lane in enumerate(S.LANES)}
    jobs.sort(key=lambda j: (order.get(j.lane, 99), j.job_id))
    return wire.PlanView(
        run_id=run.run_id, title=run.title, status=run.status, lanes=run.lanes,
        jobs=[wire.PlanJob(job_id=j.job_id, lane=j.lane, manager=j.manager,
                           tasks=[wire.PlanTask(task_id=t, status=status.get(t, "queued"), spec=s)
                                  for t, s in zip(j.tasks, j.specs, strict=False)]) for j in jobs],
        complete=await plan_complete(store, run_id), approval_mode=run.approval_mode, approval=run.approval)
