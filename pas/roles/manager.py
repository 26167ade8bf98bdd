"""Managers: decompose a job card into atomic tasks and spread them over the programmer pool."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

from pas.base.errors import BadRequest, NotFound
from pas.execution.policy import admit, repo_roots
from pas.llm.planner import plan_manager
from pas.protocol import subjects as S
from pas.protocol import wire
from pas.protocol.ids import ID_RULE, is_id
from pas.runtime import approval as A
from pas.runtime import runs as R
from pas.runtime import taskowner
from pas.runtime.agent import EndpointSpec, Role, WorkSpec
from pas.runtime.comms import Entry
from pas.runtime.service import Call, WorkCtx


class ManagerRole(Role):
    description = "PAS Manager: decomposes jobs into tasks for the programmer pool"

    @property
    def lane(self) -> str:
        assert self.me.lane
        return self.me.lane

    def endpoints(self) -> list[EndpointSpec]:
        # Lane-level: shared by the lane's managers as one queue group.
        return [EndpointSpec("submit", S.lane_submit("mgr", self.lane), self.submit, wire.JobCardSubmit,
                             queue_group=f"mgr-{self.lane}"),
                # task records: the programmers report, the managers check the holder and write (pas.runtime.taskowner)
                EndpointSpec("task_started", S.task_started(self.lane, "*"), self.task_started, wire.TaskRecord,
                             queue_group=f"mgr-{self.lane}", concurrent=True, replies=False),
                EndpointSpec("done", S.task_done(self.lane, "*"), self.task_done, wire.ChildDone,
                             queue_group=f"mgr-{self.lane}", concurrent=True)]

    async def task_started(self, rec: wire.TaskRecord, call: Call) -> None:
        await taskowner.started(self.store, rec, S.sender(call.subject), self.lane, S.started_run(call.subject))

    async def task_done(self, done: wire.ChildDone, call: Call) -> dict[str, str]:
        """A programmer's result: stored if it holds the task (Forbidden otherwise), then noted in the job,
        which this lane's managers own, and on up (pas.runtime.runs.note_child_done)."""
        sender = S.sender(call.subject)
        rec = await taskowner.finished(self.store, done, sender, self.lane)
        ev = R.event(rec.run_id, "task", rec.status, rec.programmer or sender, lane=rec.lane, job_id=rec.job_id,
                     task_id=rec.task_id)
        await R.note_child_done(self.walk_ctx(done, call), wire.ChildDone(event=ev, redelivered=done.redelivered))
        return {}

    def work(self) -> list[WorkSpec]:
        w = self.cfg.settings.work
        return [
            WorkSpec(S.STREAM_WORK, S.consumer_mgr(self.lane), wire.JobCard, self.decompose, w.handler_concurrency,
                     w.ack_wait_s),
            WorkSpec(S.STREAM_EVENTS, S.consumer_mgr_release(self.lane), wire.RunEvent, self.release,
                     w.handler_concurrency, w.ack_wait_s),
        ]

    async def submit(self, req: wire.JobCardSubmit, call: Call) -> dict[str, str]:
        """Direct submission of a job card (the legacy POST /submit): queued on the lane's work queue,
        with the run context made here (there is no run above it)."""
        if req.approval:
            raise BadRequest(f"approval mode needs a run: submit the job through {S.GATEWAY_SUBMIT}")
        repo = admit(req.repo, req.env, repo_roots(self.cfg.settings.policy.repo_roots))
        card = wire.JobCard(job_id=req.job_id, run_id=req.run_id, lane=req.lane, tasks=req.tasks,
                            ctx=wire.RunContext(goal=req.goal, repo=repo, env=req.env, priority=req.priority),
                            parent_id=req.parent_id, submitted_by=req.submitted_by)
        await self.bus.publish_js(S.work_mgr(self.lane), card, msg_id=f"{card.run_id}:job:{card.job_id}")
        return {"job_id": card.job_id, "run_id": card.run_id, "status": "queued"}

    async def decompose(self, card: wire.JobCard, ctx: WorkCtx) -> None:
        existing = (await ctx.store.get(R.job_key(card.run_id, card.job_id), wire.JobRecord)
                    if ctx.redelivered else None)  # only a redelivery can find its own earlier plan
        tasks = card.tasks
        if self.agent.llm is not None and existing is None:
            plan, meta = await plan_manager(self.agent.asker(card.run_id), self.lane, card.ctx.goal, card.tasks,
                                            self.cfg.settings.work.max_tasks_per_job)
            tasks = plan.tasks or card.tasks
            if meta.degraded:
                await ctx.store.mark_degraded(card.run_id, f"{self.me.id}: {meta.reason}")
        elif existing is not None and existing.record.specs:
            tasks = existing.record.specs  # a redelivered job card: keep the plan made the first time
        card.tasks = tasks
        task_ids = [f"{card.job_id}-{i + 1:02d}" for i in range(len(card.tasks))]
        if existing is None:  # a redelivery keeps its record (and the completions noted in it)
            await ctx.store.put(R.job_key(card.run_id, card.job_id),
                                wire.JobRecord(run_id=card.run_id, job_id=card.job_id, lane=card.lane,
                                               manager=self.me.id, tasks=task_ids, specs=card.tasks, ctx=card.ctx))
        pending, creates = [], []
        for task_id, spec in zip(task_ids, card.tasks, strict=False):
            rec = wire.TaskRecord(task_id=task_id, run_id=card.run_id, job_id=card.job_id, lane=card.lane,
                                  manager=self.me.id, executor=wire.effective_executor(spec),
                                  instruction=spec.instruction[:2000], command=spec.command)
            # Create-if-absent, confirmed with the job's tasks below (one round trip for all): the store
            # refuses it if the key exists already (a redelivered job card).
            creates.append(ctx.store.create_task(R.task_key(card.run_id, task_id), rec))
            if existing is None:
                ctx.store.remember_task(R.task_key(card.run_id, task_id), rec)  # its holder is checked there
            if card.ctx.approval:
                continue  # held: published when the run is approved (self.release)
            pending.append(self._publish_task(card.ctx, card.run_id, card.job_id, task_id, spec, self.me.id))
        if pending:  # one entry for the job's hand-over to the pool (each programmer logs the task it runs)
            await ctx.log("prog-pool", "CMD", f"job {card.job_id}: {len(pending)} task(s) queued: " + "; ".join(
                f"{t}: {spec.instruction[:200]}" for t, spec in zip(task_ids, card.tasks, strict=False)), "queued",
                metadata={"tasks": task_ids, "executors": [wire.effective_executor(t) for t in card.tasks]})
        # the job's tasks stored in one round trip, not one each; each create's revision is remembered by the
        # store (a programmer's "running" is written only over it)
        await asyncio.gather(*creates, *pending)
        if card.ctx.approval:
            await self._maybe_wait_for_approval(card.run_id)

    def _publish_task(self, run_ctx: wire.RunContext, run_id: str, job_id: str, task_id: str, spec: wire.TaskSpec,
                      manager: str) -> Awaitable[None]:
        work = wire.TaskWork(run_id=run_id, job_id=job_id, task_id=task_id, lane=self.lane, manager=manager,
                             spec=spec, ctx=run_ctx, timeout_s=self.cfg.settings.pool.task_timeout_s)
        return self.bus.publish_js(S.work_prog(wire.band(run_ctx.priority)), work, msg_id=f"{run_id}:task:{task_id}")

    # ---- approval mode (pas.runtime.approval) -------------------------------------------------------
    async def _maybe_wait_for_approval(self, run_id: str) -> None:
        """Every manager checks after storing its job; the last one to finish planning sees the
        whole plan and moves the run to waiting_approval (compare-and-set: exactly once)."""
        if not await A.plan_complete(self.store, run_id):
            return
        timeout = self.cfg.settings.work.approval_timeout_s
        run = await A.request_approval(self.store, run_id, timeout)
        if run is None:
            return  # another manager did it, or the run is no longer running
        # The deadline timer: held by the gateway's pas.work.approval consumer (survives restarts).
        await self.bus.publish_js(S.WORK_APPROVAL, wire.RunRef(run_id=run_id), msg_id=f"{run_id}:approval")
        await self.agent.comms.log(Entry(self.me.id, "gateway", "STATUS", f"plan of {run_id} complete: waiting for approval",
                                         run_id, "waiting_approval"))

    async def release(self, ev: wire.RunEvent, ctx: WorkCtx) -> None:
        """The decision on a run's plan, for this lane: publish the approved tasks, mark the dropped
        (or, on rejection, all) held tasks skipped. Idempotent: only tasks still queued are touched."""
        got = await ctx.store.get(R.lane_key(ev.run_id, self.lane), wire.LaneRecord)
        run = await ctx.store.run(ev.run_id)
        if got is None or run is None or run.record.approval is None:
            return
        approved = ev.status == "approved"
        dropped = set(run.record.approval.dropped)
        tasks = {t.task_id: t for t in await ctx.store.tasks(ev.run_id)}
        pending = []
        for job_id in got.record.jobs:
            jr = await ctx.store.get(R.job_key(ev.run_id, job_id), wire.JobRecord)
            if jr is None:
                continue
            job = jr.record
            for task_id, spec in zip(job.tasks, job.specs, strict=False):
                rec = tasks.get(task_id) or wire.TaskRecord(
                    task_id=task_id, run_id=ev.run_id, job_id=job_id, lane=self.lane, manager=job.manager,
                    executor=wire.effective_executor(spec), instruction=spec.instruction[:2000], command=spec.command)
                if rec.status != "queued":  # released before (a redelivery of this decision)
                    if rec.status == "skipped" and ctx.redelivered:  # its job may not have heard
                        await self._skipped(ctx, ev.run_id, job_id, task_id, approved)
                    continue
                if approved and task_id not in dropped:
                    await self.agent.comms.log(Entry(self.me.id, "prog-pool", "CMD",
                                                     f"task {task_id}: {spec.instruction[:200]}", ev.run_id, "queued",
                                                     metadata={"executor": rec.executor, "approved_by": ev.agent}))
                    pending.append(self._publish_task(job.ctx, ev.run_id, job_id, task_id, spec, job.manager))
                    continue
                rec.status, rec.finished_at = "skipped", wire.now()
                who = wire.decider(ev.agent)
                rec.error = f"dropped from the plan by {who}" if approved else f"plan rejected by {who}"
                await ctx.store.put_task(R.task_key(ev.run_id, task_id), rec)
                ctx.store.remember_task(R.task_key(ev.run_id, task_id), rec)
                # The job counts it as done; on rejection the jobs, lanes and plan end `rejected` the usual way.
                await self._skipped(ctx, ev.run_id, job_id, task_id, approved)
        await asyncio.gather(*pending)

    async def _skipped(self, ctx: WorkCtx, run_id: str, job_id: str, task_id: str, approved: bool) -> None:
        """A held task that will not run, noted in its job here (a manager owns job records: no request to
        the lane's managers, pas.runtime.runs.child_done), then up the usual way."""
        ev = R.event(run_id, "task", "skipped" if approved else "rejected", self.me.id, lane=self.lane, job_id=job_id,
                     task_id=task_id)
        await R.note_child_done(ctx, wire.ChildDone(event=ev, redelivered=ctx.redelivered))

    async def status(self, ref: wire.StatusRef) -> wire.JobRecord:
        run_id, _, job_id = (ref.id or "").partition(":")
        if not (is_id(run_id) and is_id(job_id)):  # they become a KV key: never a wildcard or a dot
            raise BadRequest(f"id {ref.id!r}: expected <run_id>:<job_id> ({ID_RULE})", detail={"field": "id"})
        got = await self.store.get(R.job_key(run_id, job_id), wire.JobRecord)
        if got is None:
            raise NotFound(f"no job {ref.id!r} (use <run_id>:<job_id>)")
        return got.record
