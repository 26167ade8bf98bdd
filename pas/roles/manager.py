"""Managers: decompose a job card into atomic tasks and spread them over the programmer pool."""

from __future__ import annotations

import asyncio

from nats.aio.msg import Msg

from pas import runs as R
from pas import subjects as S
from pas import wire
from pas.agent import EndpointSpec, Role, StatusRef, WorkSpec
from pas.planner import plan_manager
from pas.errors import NotFound
from pas.service import Call


class ManagerRole(Role):
    description = "PAS Manager: decomposes jobs into tasks for the programmer pool"

    @property
    def lane(self) -> str:
        assert self.me.lane
        return self.me.lane

    def endpoints(self) -> list[EndpointSpec]:
        # Lane-level: shared by the lane's managers as one queue group.
        return [EndpointSpec("submit", S.lane_submit("mgr", self.lane), self.submit, wire.JobCard,
                             queue_group=f"mgr-{self.lane}")]

    def work(self) -> list[WorkSpec]:
        w = self.cfg.settings.work
        return [
            WorkSpec(S.STREAM_WORK, S.consumer_mgr(self.lane), wire.JobCard, self.decompose, w.handler_concurrency,
                     w.ack_wait_s),
            WorkSpec(S.STREAM_EVENTS, S.consumer_mgr_done(self.lane), wire.RunEvent, self.task_done,
                     w.handler_concurrency, w.ack_wait_s),
        ]

    async def submit(self, card: wire.JobCard, call: Call) -> dict[str, str]:
        """Direct submission of a job card (the legacy POST /submit): queued on the lane's work queue."""
        await self.bus.publish_js(S.work_mgr(self.lane), card, msg_id=f"{card.run_id}:job:{card.job_id}")
        return {"job_id": card.job_id, "run_id": card.run_id, "status": "queued"}

    async def decompose(self, card: wire.JobCard, msg: Msg) -> None:
        redelivered = bool(msg is not None and msg.metadata and msg.metadata.num_delivered > 1)
        existing = (await self.bus.kv_get(S.KV_TREE, R.job_key(card.run_id, card.job_id), wire.JobRecord)
                    if redelivered else None)  # only a redelivery can find its own earlier plan
        tasks = card.tasks
        if self.bus.llm is not None and existing is None:
            plan, meta = await plan_manager(self.bus.llm, self.me.id, self.agent.model, self.agent.backup_model,
                                            self.lane, card.goal, card.tasks, card.run_id,
                                            self.cfg.settings.work.max_tasks_per_job)
            tasks = plan.tasks or card.tasks
            if meta.degraded:
                await R.mark_degraded(self.bus, card.run_id, f"{self.me.id}: {meta.reason}")
        elif existing is not None and existing[0].specs:
            tasks = existing[0].specs  # a redelivered job card: keep the plan made the first time
        card = wire.JobCard(job_id=card.job_id, run_id=card.run_id, lane=card.lane, tasks=tasks, goal=card.goal,
                            repo=card.repo, env=card.env, parent_id=card.parent_id, submitted_by=card.submitted_by,
                            priority=card.priority)
        task_ids = [f"{card.job_id}-{i + 1:02d}" for i in range(len(card.tasks))]
        if existing is None:  # a redelivery keeps its record (and the completions noted in it)
            await self.bus.kv_put(S.KV_TREE, R.job_key(card.run_id, card.job_id),
                                  wire.JobRecord(run_id=card.run_id, job_id=card.job_id, lane=card.lane,
                                                 manager=self.me.id, tasks=task_ids, specs=card.tasks))
        await self.agent.comms.log(self.me.id, card.submitted_by or f"dir-{self.lane}", "RESPONSE",
                                   f"accepted job {card.job_id}", card.run_id, "running")
        timeout = self.cfg.settings.pool.task_timeout_s
        pending = []
        for task_id, spec in zip(task_ids, card.tasks):
            rec = wire.TaskRecord(task_id=task_id, run_id=card.run_id, job_id=card.job_id, lane=card.lane,
                                  manager=self.me.id, executor=wire.effective_executor(spec),
                                  instruction=spec.instruction[:2000], command=spec.command)
            # Create-if-absent without a round trip: the store refuses it if the key exists already
            # (a redelivered job card), and the programmer copes with a record it cannot find.
            await self.bus.nc.publish(f"$KV.{S.KV_TREE}.{R.task_key(card.run_id, task_id)}", wire.encode(rec),
                                      headers={"Nats-Expected-Last-Subject-Sequence": "0"})
            await self.bus.publish(S.run_task(card.run_id, task_id), rec)
            work = wire.TaskWork(run_id=card.run_id, job_id=card.job_id, task_id=task_id, lane=card.lane,
                                 manager=self.me.id, spec=spec, repo=card.repo, env=card.env,
                                 timeout_s=timeout)
            await self.agent.comms.log(self.me.id, "prog-pool", "CMD", f"task {task_id}: {spec.instruction[:200]}",
                                       card.run_id, "queued", metadata={"executor": rec.executor})
            pending.append(self.bus.publish_js(S.WORK_PROG, work, msg_id=f"{card.run_id}:task:{task_id}"))
        await asyncio.gather(*pending)  # the job's tasks are stored in one round trip, not one each

    async def task_done(self, ev: wire.RunEvent, msg: Msg) -> None:
        if not ev.job_id or not ev.task_id:
            return
        res = await R.record_child_done(self.bus, R.job_key(ev.run_id, ev.job_id), wire.JobRecord, ev.task_id,
                                        ev.status, "tasks")
        if res is None:
            return
        job, finished_now = res
        if job.status == "running":
            return  # other tasks of the job are still running
        if finished_now:
            done = sum(1 for s in job.done.values() if s == "completed")
            await self.agent.comms.log(self.me.id, f"dir-{self.lane}", "RESPONSE",
                                       f"job {job.job_id} {job.status}: {done}/{len(job.tasks)} tasks completed",
                                       ev.run_id, job.status)
        # Announce (again, on a redelivery after a crash): deduplicated by the message id.
        jev = R.event(ev.run_id, "job", job.status, self.me.id, lane=self.lane, job_id=job.job_id)
        await R.notify(self.bus, S.run_job(ev.run_id, job.job_id), jev)
        await R.emit(self.bus, S.done_job(ev.run_id, self.lane, job.job_id), jev,
                     msg_id=f"{ev.run_id}:done:job:{job.job_id}")

    async def status(self, ref: StatusRef):  # type: ignore[no-untyped-def]
        run_id, _, job_id = (ref.id or "").partition(":")
        got = await self.bus.kv_get(S.KV_TREE, R.job_key(run_id, job_id), wire.JobRecord) if job_id else None
        if got is None:
            raise NotFound(f"no job {ref.id!r} (use <run_id>:<job_id>)")
        return got[0]
