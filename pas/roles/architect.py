"""Architect: splits a run into lanes and hands each lane to its Director."""

from __future__ import annotations

from nats.aio.msg import Msg

from pas import runs as R
from pas import subjects as S
from pas import wire
from pas.agent import Role, WorkSpec
from pas.errors import PasError
from pas.planner import plan_architect


class ArchitectRole(Role):
    description = "PAS Architect: splits a job into lanes"

    def work(self) -> list[WorkSpec]:
        w = self.cfg.settings.work
        return [
            WorkSpec(S.STREAM_WORK, S.CONSUMER_ARCHITECT, wire.RunRef, self.plan, w.handler_concurrency, w.ack_wait_s),
            WorkSpec(S.STREAM_EVENTS, S.CONSUMER_ARCH_DONE, wire.RunEvent, self.lane_done, w.handler_concurrency, w.ack_wait_s),
        ]

    async def plan(self, ref: wire.RunRef, msg: Msg) -> None:
        got = await R.get_run(self.bus, ref.run_id)
        if got is None or got[0].status in wire.TERMINAL_RUN:
            return
        run = got[0]
        req = await self.bus.kv_get(S.KV_TREE, R.request_key(run.run_id), wire.JobSubmit)
        if req is None:
            raise PasError(f"run {run.run_id}: its request is missing from KV")
        job = req[0]
        lanes, briefs = run.lanes, {lane: job.goal or job.title for lane in run.lanes}
        if not job.tasks and job.goal and self.bus.llm is not None:
            # Plan lanes with the model; explicit tasks already name their lanes.
            plan, meta = await plan_architect(self.bus.llm, self.me.id, self.agent.model, self.agent.backup_model,
                                              job.goal, self.cfg.lanes(), run.run_id, requested=job.lanes)
            chosen = {lp.lane for lp in plan.lanes}
            lanes = [lane for lane in S.LANES if lane in chosen] or lanes
            briefs = {lp.lane: lp.brief or job.goal for lp in plan.lanes}
            if meta.degraded or lanes != run.lanes:
                await R.mark_degraded(self.bus, run.run_id, meta.reason if meta.degraded else "", lanes)
        await self.bus.kv_put(S.KV_TREE, R.plan_key(run.run_id),
                              wire.PlanRecord(run_id=run.run_id, lanes=lanes, architect=self.me.id))
        for lane in lanes:
            tasks = [t for t in job.tasks or [] if t.lane == lane]
            work = wire.LaneWork(run_id=run.run_id, lane=lane, goal=job.goal or job.title,  # type: ignore[arg-type]
                                 brief=briefs.get(lane) or job.goal or job.title, tasks=tasks, repo=job.repo,
                                 env=job.env, priority=job.priority, approval=job.approval_mode)
            await self.agent.comms.log(self.me.id, f"dir-{lane}", "CMD",
                                       f"lane {lane}: {len(tasks)} task(s)", run.run_id, "running")
            await self.bus.publish_js(S.work_dir(lane), work, msg_id=f"{run.run_id}:lane:{lane}")

    async def lane_done(self, ev: wire.RunEvent, msg: Msg) -> None:
        got = await self.bus.kv_get(S.KV_TREE, R.plan_key(ev.run_id), wire.PlanRecord)
        if got is None:
            return
        plan, rev = got
        summary = ""
        if plan.status == "running":
            statuses = []
            for lane in plan.lanes:
                lr = await self.bus.kv_get(S.KV_TREE, R.lane_key(ev.run_id, lane), wire.LaneRecord)
                if lr is None or lr[0].status == "running":
                    return  # not every lane is done yet
                statuses.append(lr[0].status)
            plan.status = R.rollup(statuses)
            if not await R.finish_node(self.bus, R.plan_key(ev.run_id), plan, rev):
                return  # another handler saw the last lane finish at the same moment: it reports
            summary = ", ".join(f"{lane}={s}" for lane, s in zip(plan.lanes, statuses))
            await self.agent.comms.log(self.me.id, "root", "RESPONSE", f"all lanes done: {summary}",
                                       ev.run_id, plan.status)
        # Announce (again, on a redelivery after a crash): deduplicated by the message id.
        await R.emit(self.bus, S.done_plan(ev.run_id),
                     R.event(ev.run_id, "plan", plan.status, self.me.id, message=summary),
                     msg_id=f"{ev.run_id}:done:plan")
