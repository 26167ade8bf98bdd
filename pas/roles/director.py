"""Directors: one per lane; turn a lane into job cards for the lane's Managers."""

from __future__ import annotations

import asyncio

from pas.llm.planner import deterministic_director, plan_director
from pas.protocol import subjects as S
from pas.protocol import wire
from pas.runtime import runs as R
from pas.runtime.agent import EndpointSpec, Role, WorkSpec
from pas.runtime.service import WorkCtx


def job_cards(work: wire.LaneWork, max_tasks: int) -> list[list[wire.TaskSpec]]:
    """The offline plan: explicit tasks in chunks of max_tasks; a bare goal -> one echo task."""
    plan = deterministic_director(work.lane, work.brief or work.ctx.goal, list(work.tasks), max_tasks)
    return [j.tasks for j in plan.jobs]


def _false() -> asyncio.Future[bool]:
    done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
    done.set_result(False)
    return done


class DirectorRole(Role):
    description = "PAS Director: hands a lane's work to its Managers"

    @property
    def lane(self) -> str:
        assert self.me.lane
        return self.me.lane

    def endpoints(self) -> list[EndpointSpec]:
        return [self.child_done_endpoint(S.child_done("dir", self.lane), f"dir-{self.lane}")]  # lane records

    def work(self) -> list[WorkSpec]:
        w = self.cfg.settings.work
        return [
            WorkSpec(S.STREAM_WORK, S.consumer_dir(self.lane), wire.LaneWork, self.split, w.handler_concurrency,
                     w.ack_wait_s),
        ]

    async def split(self, work: wire.LaneWork, ctx: WorkCtx) -> None:
        max_tasks = self.cfg.settings.work.max_tasks_per_job
        plan_with_model = not work.tasks and self.agent.llm is not None
        # The architect started the run a moment ago. Asked again before a model call (it costs) and
        # on a redelivery; otherwise a lane cut short by a cancel ends at its tasks: every programmer
        # checks the run before its first task of it, and hears the cancel while running one.
        cancelled: asyncio.Future[bool] = (asyncio.ensure_future(ctx.store.is_cancelled(work.run_id))
                                           if plan_with_model or ctx.redelivered else _false())
        if (plan_with_model or ctx.redelivered) and await cancelled:  # no model call for a cancelled run
            return await self._finish(ctx, work.run_id, "cancelled", "run cancelled before planning")
        if plan_with_model:
            plan, meta = await plan_director(self.agent.asker(work.run_id), self.lane, work.ctx.goal, work.brief, [],
                                             max_tasks)
            chunks = [j.tasks for j in plan.jobs if j.tasks] or job_cards(work, max_tasks)
            if meta.degraded:
                await ctx.store.mark_degraded(work.run_id, f"{self.me.id}: {meta.reason}")
        else:
            chunks = job_cards(work, max_tasks)
        job_ids = [f"{self.lane}-{i + 1}" for i in range(len(chunks))]
        existing = None
        if ctx.redelivered:  # only a redelivery can find its own earlier plan
            existing = await ctx.store.get(R.lane_key(work.run_id, self.lane), wire.LaneRecord)
        if existing is None:  # the cancel check's read and this write in one round trip
            lane = wire.LaneRecord(run_id=work.run_id, lane=self.lane, director=self.me.id, jobs=job_ids)
            stop, _ = await asyncio.gather(cancelled, ctx.store.put(R.lane_key(work.run_id, self.lane), lane))
            if stop:  # _finish replaces the record just written
                return await self._finish(ctx, work.run_id, "cancelled", "run cancelled before planning")
        elif existing.record.jobs != job_ids:
            return  # a redelivery whose (model) plan differs: the first plan's job cards stand
        pending = []
        for job_id, tasks in zip(job_ids, chunks, strict=False):
            card = wire.JobCard(job_id=job_id, run_id=work.run_id, lane=work.lane, tasks=tasks, ctx=work.ctx,
                                parent_id=work.run_id, submitted_by=self.me.id)
            await ctx.log(f"mgr-{self.lane}", "CMD", f"job {job_id}: {len(tasks)} task(s)", "queued")
            pending.append(self.bus.publish_js(S.work_mgr(self.lane), card, msg_id=f"{work.run_id}:job:{job_id}"))
        await asyncio.gather(*pending)  # one round trip for all the lane's job cards

    async def _finish(self, ctx: WorkCtx, run_id: str, status: str, message: str) -> None:
        lane = wire.LaneRecord(run_id=run_id, lane=self.lane, director=self.me.id, jobs=[], status=status)
        await ctx.store.put(R.lane_key(run_id, self.lane), lane)
        await R.child_done(ctx, await R.lane_finished(ctx, lane, message))
