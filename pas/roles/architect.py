"""Architect: starts a run, splits it into lanes and hands each lane to its Director. A finished lane
is reported by its director on pas.architect.lanes.done; the architect, the plan record's only writer,
notes it and announces the finished plan (pas.runtime.runs.note_child_done)."""

from __future__ import annotations

import asyncio
from typing import Any

from pas.base.errors import PasError
from pas.llm.planner import plan_architect
from pas.protocol import subjects as S
from pas.protocol import wire
from pas.runtime import runs as R
from pas.runtime.agent import EndpointSpec, Role, WorkSpec
from pas.runtime.service import WorkCtx
from pas.runtime.store import Versioned


async def _none() -> None:
    return None


class ArchitectRole(Role):
    description = "PAS Architect: splits a job into lanes"

    def endpoints(self) -> list[EndpointSpec]:
        return [self.child_done_endpoint(S.ARCHITECT_DONE, "architect")]  # plan records

    def work(self) -> list[WorkSpec]:
        w = self.cfg.settings.work
        return [
            WorkSpec(S.STREAM_WORK, S.CONSUMER_ARCHITECT, wire.PlanWork, self.plan, w.handler_concurrency,
                     w.ack_wait_s),
        ]

    async def plan(self, ref: wire.PlanWork, ctx: WorkCtx) -> None:
        got: Versioned[wire.RunRecord] | None
        req: Versioned[wire.JobSubmit] | None
        if ref.run is not None and ref.job is not None and not ctx.redelivered:
            got, req = Versioned(ref.run, ref.rev), Versioned(ref.job, 0)  # as the gateway created them (the update checks)
        else:
            got, req = await asyncio.gather(ctx.store.run(ref.run_id), ctx.store.request(ref.run_id))
        if got is None or got.record.status in wire.TERMINAL_RUN:
            return  # no such run, or over (cancelled while queued)
        if req is None:
            raise PasError(f"run {ref.run_id}: its request is missing from KV")
        job = req.record
        lanes: list[Any] = got.record.lanes
        briefs = dict.fromkeys(lanes, job.goal or job.title)
        with_model = not job.tasks and bool(job.goal) and self.agent.llm is not None
        # Only a redelivery can find its own plan (and the lanes finished since): it stands.
        old = await ctx.store.get(R.plan_key(ref.run_id), wire.PlanRecord) if ctx.redelivered else None
        if old is not None:
            lanes = old.record.lanes
        plan = None if old is not None or with_model else self._plan_record(ref.run_id, lanes)
        # The start (compare-and-set on the run just read) and, without a model to ask, the plan
        # record: one round trip. The plan is written before any lane is handed out, so a lane
        # always finds it when it finishes.
        run, _ = await asyncio.gather(ctx.store.start_run(ref.run_id, got),
                                      ctx.store.put(R.plan_key(ref.run_id), plan) if plan else _none())
        if run is None:  # not queued: a redelivery (go on planning), or over
            got = await ctx.store.run(ref.run_id)
            if got is None or got.record.status in wire.TERMINAL_RUN:
                return
            run = got.record
        if with_model and old is None:
            # Plan lanes with the model; explicit tasks already name their lanes.
            goal = job.goal or ""  # (with_model: there is one)
            lp, meta = await plan_architect(self.agent.asker(run.run_id), goal, self.cfg.lanes(),
                                            requested=list[str](job.lanes) if job.lanes else None)
            chosen = {x.lane for x in lp.lanes}
            lanes = [lane for lane in S.LANES if lane in chosen] or lanes
            briefs = {x.lane: x.brief or goal for x in lp.lanes}
            if meta.degraded or lanes != run.lanes:
                await ctx.store.mark_degraded(run.run_id, meta.reason if meta.degraded else "", lanes)
            await ctx.store.put(R.plan_key(run.run_id), self._plan_record(run.run_id, lanes))
        pending = []
        run_ctx = wire.RunContext.of(job)  # set here, once: every tier below carries it unchanged
        for lane in lanes:
            tasks = [t for t in job.tasks or [] if t.lane == lane]
            work = wire.LaneWork(run_id=run.run_id, lane=lane, brief=briefs.get(lane) or run_ctx.goal, tasks=tasks,
                                 ctx=run_ctx)
            await ctx.log(f"dir-{lane}", "CMD", f"lane {lane}: {len(tasks)} task(s)", "running")
            pending.append(self.bus.publish_js(S.work_dir(lane), work, msg_id=f"{run.run_id}:lane:{lane}"))
        await asyncio.gather(*pending)  # one round trip for all the lanes

    def _plan_record(self, run_id: str, lanes: list[str]) -> wire.PlanRecord:
        return wire.PlanRecord(run_id=run_id, lanes=lanes, architect=self.me.id)
