"""Architect: starts a run, splits it into lanes and hands each lane to its Director. The lanes
report back without a hop of their own (pas.runs.child_done finishes the plan)."""

from __future__ import annotations

import asyncio

from pas import runs as R
from pas import subjects as S
from pas import wire
from pas.agent import Role, WorkSpec
from pas.errors import PasError
from pas.planner import plan_architect
from pas.service import WorkCtx


class ArchitectRole(Role):
    description = "PAS Architect: splits a job into lanes"

    def work(self) -> list[WorkSpec]:
        w = self.cfg.settings.work
        return [
            WorkSpec(S.STREAM_WORK, S.CONSUMER_ARCHITECT, wire.RunRef, self.plan, w.handler_concurrency, w.ack_wait_s),
        ]

    async def plan(self, ref: wire.RunRef, ctx: WorkCtx) -> None:
        def start(run: wire.RunRecord) -> bool:
            if run.status != "queued":
                return False
            run.status, run.started_at = "running", wire.now()
            return True

        run, req = await asyncio.gather(R.update_run(self.bus, ref.run_id, start),
                                        self.bus.kv_get(S.KV_TREE, R.request_key(ref.run_id), wire.JobSubmit))
        if run is not None:
            await ctx.publish(S.run_status(run.run_id), R.event(run.run_id, "run", "running", self.me.id))
        else:  # not queued: a redelivery (go on planning), or over, or no such run
            got = await R.get_run(self.bus, ref.run_id)
            if got is None or got[0].status in wire.TERMINAL_RUN:
                return
            run = got[0]
        if req is None:
            raise PasError(f"run {run.run_id}: its request is missing from KV")
        job = req[0]
        lanes, briefs = run.lanes, dict.fromkeys(run.lanes, job.goal or job.title)
        # Only a redelivery can find its own plan (and the lanes finished since): it stands.
        old = await self.bus.kv_get(S.KV_TREE, R.plan_key(run.run_id), wire.PlanRecord) if ctx.redelivered else None
        if old is not None:
            lanes = old[0].lanes
        elif not job.tasks and job.goal and self.bus.llm is not None:
            # Plan lanes with the model; explicit tasks already name their lanes.
            plan, meta = await plan_architect(self.bus.llm, self.me.id, self.agent.model, self.agent.backup_model,
                                              job.goal, self.cfg.lanes(), run.run_id, requested=job.lanes)
            chosen = {lp.lane for lp in plan.lanes}
            lanes = [lane for lane in S.LANES if lane in chosen] or lanes
            briefs = {lp.lane: lp.brief or job.goal for lp in plan.lanes}
            if meta.degraded or lanes != run.lanes:
                await R.mark_degraded(self.bus, run.run_id, meta.reason if meta.degraded else "", lanes)
        if old is None:
            await self.bus.kv_put(S.KV_TREE, R.plan_key(run.run_id),
                                  wire.PlanRecord(run_id=run.run_id, lanes=lanes, architect=self.me.id))
        for lane in lanes:
            tasks = [t for t in job.tasks or [] if t.lane == lane]
            work = wire.LaneWork(run_id=run.run_id, lane=lane, goal=job.goal or job.title,
                                 brief=briefs.get(lane) or job.goal or job.title, tasks=tasks, repo=job.repo,
                                 env=job.env, priority=job.priority, approval=job.approval_mode)
            await ctx.log(f"dir-{lane}", "CMD", f"lane {lane}: {len(tasks)} task(s)", "running")
            await self.bus.publish_js(S.work_dir(lane), work, msg_id=f"{run.run_id}:lane:{lane}")
