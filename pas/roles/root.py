"""PAS Root: owns each run's lifecycle: queued -> running -> completed | failed | cancelled."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import msgspec

from pas.base.errors import PasError
from pas.execution.integrate import integrate
from pas.protocol import subjects as S
from pas.protocol import wire
from pas.runtime import runs as R
from pas.runtime.agent import Role, WorkSpec
from pas.runtime.comms import Entry
from pas.runtime.service import WorkCtx

log = logging.getLogger("pas.root")


class RootRole(Role):
    description = "PAS Root: ends runs (integrates their branches, records the final status)"

    def work(self) -> list[WorkSpec]:
        w = self.cfg.settings.work
        return [WorkSpec(S.STREAM_EVENTS, S.CONSUMER_ROOT_DONE, wire.RunEvent, self.end_run, w.handler_concurrency,
                         w.ack_wait_s)]

    async def end_run(self, told: wire.RunEvent, ctx: WorkCtx) -> None:
        """done.plan says a plan finished; the plan record (the architect's alone) says whether it did and
        how: a forged or early done.plan ends nothing."""
        got = ctx.store.cached_run(told.run_id)  # the ending is a compare-and-set: it checks
        key = R.plan_key(told.run_id)  # as this process's architect wrote it, else the store
        plan = ctx.store.read_soon(key, wire.PlanRecord)
        if got is None or got.record.repo:  # integration acts on the repository: from the stored record only
            got = await ctx.store.run(told.run_id)
        stored = await plan
        if got is None:
            return
        if stored is None or stored.record.status == "running":
            log.warning("done.plan for run %s ignored: its plan record is %s", told.run_id,
                        "missing" if stored is None else "still running")
            return
        ev = R.plan_event(stored.record)
        run = got.record
        if run.status in wire.TERMINAL_RUN:
            return  # ended before (a redelivery): its record's write was its event
        end = msgspec.structs.replace(run)  # the ending, worked out on a copy; `run` stays as read
        end.status = ev.status if ev.status in ("completed", "cancelled") else "failed"
        end.finished_at = wire.now()
        end.message = ev.message + (f"; {run.message}" if run.message else "")  # keep degraded notes
        if end.status != "cancelled":
            await self._integrate(end)
        # The ending's write is the run's terminal event (the server fans it out, pas.runtime.runs).
        if await ctx.store.finish_run(end, got) is not None:
            await ctx.log("gateway", "STATUS", f"run {run.run_id} {end.status}", end.status)

    async def _integrate(self, run: wire.RunRecord) -> None:
        """Merge the completed tasks' branches into pas/<run>/result (pas.execution.integrate), when the run
        has a repository on this machine and some task changed files. A conflict fails the run."""
        repo = run.repo
        if not repo:
            return
        tasks = await self.store.tasks(run.run_id)
        if not any(t.branch and t.diff_stat and t.status == "completed" for t in tasks):
            return  # nothing to bring together
        if not (Path(repo) / ".git").exists():
            run.message += f"; not integrated: repository {repo} is not on this machine"
            return
        try:
            res = await asyncio.to_thread(integrate, Path(repo), run.run_id,
                                          [{"task_id": t.task_id, "status": t.status, "branch": t.branch}
                                           for t in tasks], protected=run.protected_paths)
        except PasError as e:
            log.warning("run %s: integration failed: %s", run.run_id, e.message)
            run.message += f"; integration failed: {e.message}"
            return
        run.result_branch, run.conflicts = res.branch, [str(c) for c in res.conflicts + res.refused]
        text = f"integrated {len(res.merged)} task branch(es) into {res.branch}"
        if not res.ok:
            text += f"; {res.reason()}"
            if run.status == "completed":
                run.status = "failed"
            run.message = res.reason() + (f"; {run.message}" if run.message else "")
        await self.agent.comms.log(Entry(self.me.id, "gateway", "RESPONSE", text, run.run_id,
                                         "conflict" if not res.ok else "ok",
                                         metadata={"merged": res.merged, "skipped": res.skipped, "conflicts": run.conflicts}))
