"""Programmers: the pool. Each pulls tasks from pas.work.prog.<band> (pas.runtime.priority) when it has a free slot (so dispatch
is least-loaded by construction), runs them in the task's own workspace, and pushes the result up.

A programmer that dies mid-task stops sending in-progress acks; after the ack deadline JetStream
redelivers the task to another programmer. The task record counts attempts; the done event has a
deterministic message id, so there is exactly one result.
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from pas.base.errors import BadRequest, BudgetExceeded, PasError, Retry
from pas.base.redact import redact
from pas.base.textsafe import cap
from pas.execution.executors import Bounds, ExecResult, open_workspace, run_argv, run_command
from pas.execution.policy import admit, check_command, repo_roots
from pas.execution.repoenv import EnvError, RepoEnv
from pas.execution.repoenv import resolve as resolve_env
from pas.execution.sandbox import Box
from pas.llm.client import Asker
from pas.protocol import subjects as S
from pas.protocol import wire
from pas.protocol.wire.records import ACCEPTANCE_MARK
from pas.runtime import runs as R
from pas.runtime.agent import EndpointSpec, Role, WorkSpec
from pas.runtime.service import Call, WorkCtx, task_status

log = logging.getLogger("pas.programmer")

QUICK_EXECUTORS = ("echo", "command")
"""Executors whose tasks report their start only once they have run settings.pool.start_report_after_s."""
REPORT_FOR_S = 120.0  # how long a finished task's result is re-offered to owners that do not answer


async def _none() -> None:
    return None


@dataclass(frozen=True)
class Direct:
    """What a direct request (POST /execute) may choose for its one task: which of the programmer's
    two profiles leads, and a cost cap below the per-job one."""

    model: str | None = None
    cost_cap: float | None = None

    def models(self, primary: str | None, backup: str | None) -> tuple[str, str | None]:
        """(primary, backup) for this task: the chosen profile first, the other one as its backup."""
        assert primary  # _dispatch checked that the programmer has a model
        if self.model is None or self.model == primary:
            return primary, backup
        return self.model, primary


NO_DIRECT = Direct()


class ProgrammerRole(Role):
    description = "PAS Programmer: runs atomic tasks in its own workspace"

    def __init__(self, agent: Any) -> None:
        super().__init__(agent)
        self.capacity = self.me.capacity or self.cfg.settings.pool.capacity
        self.running: dict[str, asyncio.Task[Any]] = {}  # task key -> task
        self.current_run: str | None = None
        # Per process: two processes running the same agent ids (two stacks on one machine) must not
        # clear each other's task directories.
        self.scratch = Path(tempfile.gettempdir()) / "pas-scratch" / f"{self.me.id}-{os.getpid()}"
        self._cancelled: set[str] = set()  # task keys cancelled because their run was cancelled
        self._runs_seen: dict[str, bool] = {}  # run id -> cancelled?
        self.box = Box.from_policy(self.cfg.settings.policy)

    def endpoints(self) -> list[EndpointSpec]:
        return [
            EndpointSpec("execute", S.agent_endpoint("prog", self.me.id, "execute"), self.execute,
                         wire.ExecuteRequest),
            EndpointSpec("pool_execute", S.PROG_EXECUTE, self.execute, wire.ExecuteRequest, queue_group="prog"),
        ]

    def work(self) -> list[WorkSpec]:
        p = self.cfg.settings.pool
        bands = tuple(S.consumer_prog(b) for b in wire.PRIORITIES)  # highest first (pas.runtime.priority)
        return [WorkSpec(S.STREAM_WORK, bands[0], wire.TaskWork, self.run_task, self.capacity, p.ack_wait_s,
                         bands=bands, band_subjects=tuple(S.work_prog(b) for b in wire.PRIORITIES),
                         wake_subject=S.WORK_PROG_ALL, burst=p.priority_burst)]

    async def start(self) -> None:
        await asyncio.to_thread(self.box.problem)  # probe bwrap once, off the event loop
        await self.agent.listen(S.RUN_CANCEL_ALL, wire.RunEvent, self._on_cancel)

    def beat(self) -> tuple[str, str | None, float, str]:
        n = len(self.running)
        if n:
            return "running", self.current_run, 0.0, f"{n} task(s): {', '.join(sorted(self.running))[:200]}"
        return "ok", None, 0.0, "idle"

    async def _cancelled_run(self, run_id: str) -> bool:
        """Was this run cancelled? Looked up once per run; after that the cancel subscription (live
        since start) keeps the answer current, so a big run costs one lookup, not one per task."""
        if run_id not in self._runs_seen:
            if len(self._runs_seen) > 10000:
                self._runs_seen.clear()
            # This process's own last write of the run, when it made one (written after the cancel
            # subscription started, so a later cancel is heard), else the stored record.
            got = await self.store.known_run(run_id)
            self._runs_seen[run_id] = got is not None and got.record.status == "cancelled"
        return self._runs_seen[run_id]

    async def _on_cancel(self, ev: wire.RunEvent) -> None:
        run_id = ev.run_id
        self._runs_seen[run_id] = True
        for key, t in list(self.running.items()):
            if key.startswith(run_id + "."):
                self._cancelled.add(key)
                t.cancel()

    # ---- the pool ------------------------------------------------------------------------
    async def run_task(self, work: wire.TaskWork, ctx: WorkCtx) -> None:
        key = R.task_key(work.run_id, work.task_id)
        first = not ctx.redelivered
        # Only a redelivery can find a record with a result or an earlier attempt in it.
        got, cancelled = await asyncio.gather(
            ctx.store.task(key) if not first else _none(),
            self._cancelled_run(work.run_id))
        rec = got.record if got else wire.TaskRecord(
            task_id=work.task_id, run_id=work.run_id, job_id=work.job_id, lane=work.lane, manager=work.manager,
            executor=wire.effective_executor(work.spec), instruction=work.spec.instruction[:2000],
            command=work.spec.command)
        if rec.status in wire.TERMINAL_TASK:  # a replay: the result exists; make sure it went up
            return await R.child_done(ctx, self._done_event(rec))
        rec.attempts = ctx.attempt
        rec.programmer = self.me.id
        limit = self.cfg.settings.pool.max_deliver
        if rec.attempts > limit:
            rec.status, rec.finished_at = "failed", wire.now()
            rec.error = f"gave up after {limit} attempts (its programmers died or timed out each time)"
            return await self._finish(ctx, rec)
        if cancelled:
            rec.status, rec.error, rec.finished_at = "cancelled", "run cancelled", wire.now()
            return await self._finish(ctx, rec)
        rec.status, rec.started_at = "running", wire.now()
        renv = self._repo_env(work)
        rec.env = renv if isinstance(renv, str) else renv.description if renv else None
        rec.sandbox = self.box.mode
        self.current_run = work.run_id
        t = asyncio.ensure_future(self._execute(work, renv))
        self.running[key] = t
        try:
            await self._report_start(work, rec, t)
            result = await t
        except asyncio.CancelledError:
            if key not in self._cancelled:
                t.cancel()
                raise  # we are being shut down: leave the task for redelivery
            result = ExecResult(status="cancelled", error="run cancelled")
        finally:
            self.running.pop(key, None)
            self._cancelled.discard(key)
        rec.status = cast(wire.TaskStatusValue, result.status)  # an executor's statuses are task statuses
        rec.exit_code = result.exit_code
        rec.output = cap(redact(result.output), wire.MAX_OUTPUT, tail=True)
        rec.error = cap(redact(result.error), wire.MAX_ERROR)
        rec.tokens, rec.cost_usd = result.tokens, result.cost_usd
        rec.branch = result.extra.get("branch")
        rec.diff_stat = result.extra.get("diff_stat")  # bounded by Workspace.finish
        rec.finished_at = wire.now()
        await self._finish(ctx, rec)

    async def _report_start(self, work: wire.TaskWork, rec: wire.TaskRecord, t: asyncio.Future[Any]) -> None:
        """Once the task has run pool.start_report_after_s (at once if 0), one message: the lane's managers
        record this programmer as the task's holder and write the record (the server makes it the task's
        event): pas.runtime.taskowner; PAS_COMMS stores the same message as this programmer's "run task"
        entry (subjects.STARTED_TO_COMMS), its ack checked in the background. A task that ends sooner is
        reported by its result alone (queued -> its end, with started_at): two messages fewer for it. A task
        that asks a model (llm, aider) reports at once: its calls are filed under the task it runs (`pas rerun
        --from task:<id>` finds the programmer's task by its running record)."""
        after = self.cfg.settings.pool.start_report_after_s
        if after > 0 and rec.executor in QUICK_EXECUTORS:
            await asyncio.wait((t,), timeout=after)
            if t.done():
                return
        await self.bus.publish_js_nowait(S.task_started(work.lane, self.me.id, work.run_id), wire.encode(rec))

    def _done_event(self, rec: wire.TaskRecord) -> wire.RunEvent:
        return R.event(rec.run_id, "task", rec.status, rec.programmer or self.me.id, lane=rec.lane,
                       job_id=rec.job_id, task_id=rec.task_id)

    async def _finish(self, ctx: WorkCtx, rec: wire.TaskRecord) -> None:
        """The result goes to the job's managers in this same handler (pas.runtime.runs.child_done): they own
        the task and job records, store the result if this programmer holds the task (the server makes the
        record the task's event and its RESPONSE comms entry), note it in the job and walk on up. A crash
        before the ack leaves the work to be redelivered, and the redelivery only re-announces (the record
        is terminal)."""
        await self._report(ctx, rec)

    async def _report(self, ctx: WorkCtx, rec: wire.TaskRecord) -> None:
        """Hand the result to the managers, who alone write the record. Until one has it stored, the
        result lives only here: an owner that does not answer (a node cut off, an election) is asked
        again while the work item is kept in progress, instead of letting the item's redelivery run the
        task a second time. The report is idempotent: a finished record is never written again."""
        deadline = asyncio.get_running_loop().time() + REPORT_FOR_S
        while True:
            try:
                return await R.child_done(ctx, self._done_event(rec), task=rec)
            except Retry as e:
                if asyncio.get_running_loop().time() + e.delay_s > deadline:
                    raise  # given up: the redelivery re-runs the task
                log.warning("%s: task %s: %s; reporting again in %.0fs", self.me.id, rec.task_id, e.message, e.delay_s)
                await ctx.in_progress()
                await asyncio.sleep(e.delay_s)
                await ctx.in_progress()

    def _repo_env(self, work: wire.TaskWork) -> RepoEnv | str | None:
        """The environment the task runs in (pas.execution.repoenv); a string is why none could be chosen;
        None for echo tasks, which run nothing."""
        if wire.effective_executor(work.spec) == "echo":
            return None
        try:
            return resolve_env(work.ctx.repo, work.ctx.env, self.cfg.settings.pool.env)
        except EnvError as e:
            return f"unusable environment: {e.message}"

    async def _execute(self, work: wire.TaskWork, renv: RepoEnv | str | None,
                       direct: Direct = NO_DIRECT) -> ExecResult:
        spec = work.spec
        executor = wire.effective_executor(spec)
        if executor == "echo":
            return ExecResult(status="completed", output=spec.instruction, exit_code=0)
        if not isinstance(renv, RepoEnv):
            return ExecResult(status="failed", error=str(renv or "no environment"))
        try:
            ws = await open_workspace(work.ctx.repo, work.run_id, work.task_id, self.scratch)
        except PasError as e:
            return ExecResult(status="failed", error=f"workspace: {e.message}")
        try:
            try:
                result = await self._dispatch(executor, work, ws.path, renv, direct)
            except BudgetExceeded as e:
                result = ExecResult(status=task_status(e), error=e.message)
            if ws.branch:
                result.extra["branch"] = ws.branch
                try:
                    result.extra["diff_stat"] = await ws.finish(work.task_id) or ""
                except PasError as e:  # the work is not on the branch: the task did not complete
                    result.extra["diff_stat"] = ""
                    why = f"could not commit the task's work (worktree kept at {ws.path}): {e.message}"
                    result.status, result.error = "failed", why + (f"; {result.error}" if result.error else "")
            return result
        finally:
            await ws.remove()

    def _bounds(self, work: wire.TaskWork) -> Bounds:
        pool = self.cfg.settings.pool
        return Bounds(work.timeout_s, pool.output_cap_bytes, pool.output_kill_bytes)

    async def _dispatch(self, executor: str, work: wire.TaskWork, cwd: Path, renv: RepoEnv,
                        direct: Direct) -> ExecResult:
        spec = work.spec
        policy = self.cfg.settings.policy
        problem = self.box.problem()
        if problem:
            return ExecResult(status="failed", error=f"refused: no sandbox for {executor} tasks: {problem}; "
                                                     "or set settings.policy.sandbox: off")
        if self.box.off:
            log.warning("%s: task %s runs WITHOUT a sandbox (settings.policy.sandbox: off)", self.me.id, work.task_id)
        if executor == "command":
            return await run_command(spec.command or spec.instruction, policy.command_allowlist, cwd,
                                     self._bounds(work), renv, box=self.box)
        if not self.agent.model:
            return ExecResult(status="failed", error=f"executor {executor!r} needs a model; {self.me.id} has none")
        if executor == "llm":
            return await self._llm(work, cwd, renv, direct)
        if executor == "aider":
            return await self._aider(work, cwd, renv, direct)
        return ExecResult(status="failed", error=f"unknown executor {executor!r}")

    async def _llm(self, work: wire.TaskWork, cwd: Path, renv: RepoEnv, direct: Direct) -> ExecResult:
        from pas.execution.edit_loop import EditTask, run_llm_edit

        llm = self.agent.router()
        policy = self.cfg.settings.policy

        async def acceptance(command: str, workdir: Path) -> tuple[int, str]:
            argv = check_command(command, policy.command_allowlist, workdir)  # raises CommandRefused
            r = await run_argv(renv.argv(argv), workdir, self._bounds(work), box=self.box, env=renv.env)
            return (r.exit_code if r.exit_code is not None else -1), r.output + (f"\n{r.error}" if r.error else "")

        budget = await llm.task_budget(work.run_id)
        if direct.cost_cap is not None:
            budget.cost_usd_max = (direct.cost_cap if budget.cost_usd_max is None
                                   else min(budget.cost_usd_max, direct.cost_cap))
        primary, backup = direct.models(self.agent.model, self.agent.backup_model)
        res = await run_llm_edit(
            Asker(llm, self.me.id, primary, backup, work.run_id),
            EditTask(cwd, work.spec.instruction, work.spec.files, work.spec.acceptance,
                     policy.filesystem_allowlist or None),
            acceptance, max_fix_iterations=self.cfg.settings.llm.max_fix_iterations, budget=budget,
        )
        status = res.status  # a BudgetExceeded met by the loop ends it budget_exceeded
        out = res.diff
        if res.acceptance_exit is not None:
            out += f"{ACCEPTANCE_MARK}{work.spec.acceptance}` exit {res.acceptance_exit}\n{res.acceptance_output}"
        return ExecResult(status=status, output=out, exit_code=res.acceptance_exit, tokens=res.tokens,
                          cost_usd=res.cost_usd, error=res.error or "",
                          extra={"iterations": str(res.iterations), "model": res.model_used or ""})

    async def _aider(self, work: wire.TaskWork, cwd: Path, renv: RepoEnv, direct: Direct) -> ExecResult:
        from pas.execution.aider import AiderSetup, run_aider
        from pas.execution.edit_loop import EditTask

        budget = await self.agent.router().task_budget(work.run_id)
        budget.check()  # BudgetExceeded: the task ends budget_exceeded (_execute)
        prof = self.agent.router().profiles[direct.models(self.agent.model, self.agent.backup_model)[0]]
        res = await run_aider(AiderSetup(self.cfg.settings.llm.aider_binary, prof.model, prof.api_base, prof.api_key_env),
                              EditTask(cwd, work.spec.instruction, work.spec.files), work.timeout_s,
                              base_env=renv.env, box=self.box)
        # aider does not report tokens or cost to PAS: recorded as unknown, never invented.
        return ExecResult(status=res.status, output=(res.diff + "\n" + res.output).strip(), exit_code=res.exit_code,
                          error=res.error or "", tokens=0, cost_usd=None)

    # ---- direct execution (legacy POST /execute) ----------------------------------------------
    async def execute(self, req: wire.ExecuteRequest, call: Call) -> dict[str, Any]:
        direct = self._direct(req)
        spec = wire.TaskSpec(lane="code", instruction=req.instruction, executor=req.executor, command=req.command,
                             files=req.files, acceptance=req.acceptance)
        # The request is an edge like the gateway: the same repository and environment rules
        # (pas.execution.policy.admit; the ids are checked by the wire type).
        repo = admit(req.repo, req.env, repo_roots(self.cfg.settings.policy.repo_roots))
        work = wire.TaskWork(run_id=req.run_id, job_id=req.job_id, task_id=f"x-{id(req):x}", lane="code",
                             manager="", spec=spec, ctx=wire.RunContext(repo=repo, env=req.env), timeout_s=req.timeout_s)
        renv = self._repo_env(work)
        r = await self._execute(work, renv, direct)
        if renv is not None:
            r.extra["env"] = renv if isinstance(renv, str) else renv.description
        return {"status": EXECUTE_STATUS.get(r.status, "error"),
                "run_id": req.run_id, "job_id": req.job_id, "programmer": self.me.id, "exit_code": r.exit_code,
                "output": cap(redact(r.output), wire.MAX_OUTPUT, tail=True),
                "error": cap(redact(r.error), wire.MAX_ERROR) or None,
                "artifacts": dict(r.extra), "metrics": {"tokens": r.tokens, "cost_usd": r.cost_usd}}

    def _direct(self, req: wire.ExecuteRequest) -> Direct:
        """The model and cost cap a direct request asks for: only this programmer's own profiles."""
        mine = [m for m in (self.agent.model, self.agent.backup_model) if m]
        if req.model is not None and req.model not in mine:
            raise BadRequest(f"model {req.model!r} is not {self.me.id}'s primary or backup ({', '.join(mine)})")
        if req.budget_usd is not None and wire.effective_executor(
                wire.TaskSpec(lane="code", instruction=req.instruction, executor=req.executor,
                              command=req.command)) == "aider":
            raise BadRequest("budget_usd cannot cap an aider task: aider reports no cost to PAS")
        return Direct(model=req.model, cost_cap=req.budget_usd)


EXECUTE_STATUS = {"completed": "success", "timeout": "timeout", "budget_exceeded": "budget_exceeded"}
"""A direct execution's status in the original's words (success|error|timeout|budget_exceeded)."""
