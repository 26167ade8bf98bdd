"""Gateway: where jobs come in (pas.gateway.submit/status/runs/cancel)."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from pas.base.errors import BadRequest, CommandRefused, Conflict, Forbidden, NotFound, Retry
from pas.execution.policy import admit, check_command, check_inside, repo_roots
from pas.protocol import subjects as S
from pas.protocol import wire
from pas.protocol.ids import is_id
from pas.runtime import approval as A
from pas.runtime import runs as R
from pas.runtime.agent import EndpointSpec, Role, WorkSpec
from pas.runtime.comms import Entry
from pas.runtime.service import Call, WorkCtx
from pas.transport import auth, tracing


def new_run_id() -> str:
    return "r-" + wire.now().strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)


def plan_lanes(job: wire.JobSubmit) -> list[str]:
    wanted = set(job.lanes or []) | {t.lane for t in job.tasks or []}
    return [lane for lane in S.LANES if lane in wanted] or ["code"]


class GatewayRole(Role):
    description = "PAS Gateway: submit jobs, query and cancel runs"

    def endpoints(self) -> list[EndpointSpec]:
        acting: list[tuple[str, str, Callable[[Any, Call], Awaitable[Any]], type[Any]]] = [
                  ("submit", S.GATEWAY_SUBMIT, self.submit, wire.JobSubmit),
                  ("cancel", S.GATEWAY_CANCEL, self.cancel, wire.RunRef),
                  ("approve", S.GATEWAY_APPROVE, self.approve, wire.Decision),
                  ("reject", S.GATEWAY_REJECT, self.reject, wire.Decision)]
        return [
            EndpointSpec("run_status", S.GATEWAY_STATUS, self.run_status, wire.StatusQuery),
            EndpointSpec("runs", S.GATEWAY_RUNS, self.runs, wire.RunsQuery),
            EndpointSpec("plan", S.GATEWAY_PLAN, self.plan, wire.RunRef),
            *(EndpointSpec(name, subject, handler, typ) for name, subject, handler, typ in acting),
            # the same, as the NATS user that alone may publish the subject (pas.transport.auth)
            *(EndpointSpec(f"{name}_as", S.gateway_as("*", name), handler, typ) for name, _, handler, typ in acting),
        ]

    @staticmethod
    def identity(call: Call) -> str:
        """Who asks, as the server authenticated it: the user of pas.gateway.as.<user>.*, else `anonymous`
        (the plain subjects, which several users may publish). Comms entries of clients' commands name it,
        never a `by` the client wrote."""
        return S.requester(call.subject) or auth.ANONYMOUS

    @staticmethod
    def may_act(run: wire.RunRecord, call: Call) -> None:
        """Cancel, approve, reject: a user of auth.OWN_RUNS_ONLY only on the runs it submitted."""
        who = S.requester(call.subject)
        if who in auth.OWN_RUNS_ONLY and run.submitted_by != who:
            raise Forbidden(f"run {run.run_id!r} was not submitted by {who!r}: it may act only on its own runs",
                            detail={"submitted_by": run.submitted_by})

    def work(self) -> list[WorkSpec]:
        w = self.cfg.settings.work
        return [WorkSpec(S.STREAM_WORK, S.CONSUMER_APPROVAL, wire.RunRef, self.approval_timer,
                         w.handler_concurrency, w.ack_wait_s)]

    def validate(self, job: wire.JobSubmit) -> list[str]:
        lanes = plan_lanes(job)
        for lane in lanes:
            if not self.cfg.by_role("dir", lane) or not self.cfg.by_role("mgr", lane):
                raise BadRequest(f"lane {lane!r} has no director or manager in this topology")
        job.repo = admit(job.repo, job.env, repo_roots(self.cfg.settings.policy.repo_roots))
        repo = Path(job.repo) if job.repo else None
        if repo is None and job.protected_paths:
            raise BadRequest("protected_paths needs a repo: without one, tasks change nothing that is kept")
        allow = self.cfg.settings.policy.command_allowlist
        # Without a repo, tasks run in a scratch directory: paths are checked against a stand-in root.
        root = repo or Path("/pas-scratch-root")
        for i, t in enumerate(job.tasks or []):
            where = f"tasks[{i}]"
            for f in t.files:
                try:
                    check_inside(f, root)
                except CommandRefused as e:
                    raise BadRequest(f"{where}: {e.message}") from None
            if wire.effective_executor(t) == "command":
                try:
                    check_command(t.command or t.instruction, allow, root)
                except CommandRefused as e:
                    raise BadRequest(f"{where}: {e.message}", detail=e.detail) from None
        return lanes

    async def submit(self, job: wire.JobSubmit, call: Call) -> wire.SubmitReply:
        lanes = self.validate(job)
        key = call.headers.get("Nats-Msg-Id") or call.headers.get("Idempotency-Key") or job.idempotency_key
        run_id = job.run_id or new_run_id()
        tracing.tag({"pas.run_id": run_id})
        if key:
            h = hashlib.sha256(key.encode()).hexdigest()[:40]
            # a nonce per attempt: a second submit of the same run id reads as a duplicate, not as created
            existing = await self.store.dedupe(h, run_id, secrets.token_hex(8))
            if existing is not None:
                got = await self.store.run(existing)
                return wire.SubmitReply(run_id=existing, status=got.record.status if got else "queued", duplicate=True)
        run = wire.RunRecord(run_id=run_id, title=job.title, status="queued", created_at=wire.now(),
                             lanes=lanes, budget=job.budget or wire.Budget(), goal=(job.goal or "")[:2000],
                             priority=job.priority, approval_mode=job.approval_mode, repo=job.repo,
                             protected_paths=job.protected_paths, submitted_by=S.requester(call.subject))
        # The job, kept once, and the run (Conflict if the run exists).
        body = wire.encode(job)
        rev = await self.store.create_run(run, body)
        await self.agent.comms.log(Entry(self.identity(call), self.me.id, "CMD", f"submit {job.title!r}", run_id, "queued",
                                         metadata={"lanes": lanes, "tasks": len(job.tasks or [])}))
        # Straight to the architect: root ends runs (integration, final status); starting one is no hop.
        # The run and the job go along, so the architect reads neither back.
        work = wire.PlanWork(run_id=run_id, run=run, rev=rev, job=job if len(body) <= wire.CARRY_BYTES else None)
        await self.bus.publish_js(S.WORK_ARCHITECT, work, msg_id=f"{run_id}:architect")
        await self.agent.comms.log(Entry(self.me.id, "architect", "CMD", f"plan run {run_id}: {job.title}", run_id, "queued"))
        return wire.SubmitReply(run_id=run_id, status="queued")

    async def run_status(self, q: wire.StatusQuery, call: Call) -> wire.RunStatus:
        view = await self.store.view(q.run_id, q.offset, q.limit)
        if view is None:
            raise NotFound(f"no run {q.run_id!r}")
        return view

    async def runs(self, q: wire.RunsQuery, call: Call) -> wire.RunsReply:
        return await self.store.page(q.limit, q.status, q.offset)

    async def cancel(self, ref: wire.RunRef, call: Call) -> wire.RunSummary:
        run = await self.store.cancel_run(ref.run_id, lambda r: self.may_act(r, call))
        await R.emit(self.bus, S.run_cancel(run.run_id), R.event(run.run_id, "run", "cancelled", self.me.id))
        await self.agent.comms.log(Entry(self.identity(call), self.me.id, "CMD", f"cancel {run.run_id}", run.run_id, "cancelled"))
        return wire.RunSummary(run_id=run.run_id, title=run.title, status=run.status,
                               created_at=run.created_at, finished_at=run.finished_at)

    # ---- approval mode (pas.runtime.approval) ---------------------------------------------------------
    async def plan(self, ref: wire.RunRef, call: Call) -> wire.PlanView:
        return await A.plan_view(self.store, ref.run_id)

    async def approve(self, d: wire.Decision, call: Call) -> wire.RunSummary:
        return await self._decide(d, True, call)

    async def reject(self, d: wire.Decision, call: Call) -> wire.RunSummary:
        if d.drop:
            raise BadRequest("drop is for approve; reject rejects the whole plan")
        return await self._decide(d, False, call)

    async def _decide(self, d: wire.Decision, approve: bool, call: Call) -> wire.RunSummary:
        got = await self.store.run(d.run_id)
        if got is not None:  # (an unknown run: A.decide says so)
            self.may_act(got.record, call)
        by = d.by or "anonymous"
        run = await A.decide(self.store, d, approve, by)
        assert run.approval is not None
        verb = "approve" if approve else "reject"
        # The entry names who asked; `by` (what the request says, kept in the plan's record) is metadata.
        await self.agent.comms.log(Entry(self.identity(call), self.me.id, "CMD", f"{verb} plan of {run.run_id}"
                                         + (f" dropping {', '.join(run.approval.dropped)}" if run.approval.dropped else "")
                                         + (f": {d.reason}" if d.reason else ""), run.run_id, run.approval.status,
                                         metadata={"by": by, "decision": run.approval.status,
                                                   "dropped": run.approval.dropped, "reason": d.reason}))
        # Should this gateway die before the managers are told, the item makes another one finish it.
        await self.bus.publish_js(S.WORK_APPROVAL, wire.RunRef(run_id=run.run_id), msg_id=f"{run.run_id}:decided")
        await self._announce_decision(run)
        return wire.RunSummary(run_id=run.run_id, title=run.title, status=run.status,
                               created_at=run.created_at, finished_at=run.finished_at)

    async def _announce_decision(self, run: wire.RunRecord) -> None:
        """Tell the lanes' managers (the run record's write was the decision's event)."""
        assert run.approval is not None
        await A.announce(self.store, run)

    async def approval_timer(self, ref: wire.RunRef, ctx: WorkCtx) -> None:
        """pas.work.approval: held until the run's deadline (nak with delay), so the timeout
        survives restarts; it also finishes a decision whose announcement a crash cut short."""
        got = await self.store.run(ref.run_id)
        if got is None or got.record.approval is None:
            return
        run = got.record
        a = run.approval
        assert a is not None
        if a.status != "pending":
            if not a.released and run.status != "cancelled":
                await self._announce_decision(run)
            return
        if run.status != "waiting_approval":
            return  # cancelled while waiting
        left = (a.deadline - wire.now()).total_seconds() if a.deadline else 0.0
        if left > 0:
            raise Retry("approval pending", delay_s=min(left, 3600.0) + 0.05)
        try:
            run = await A.decide(self.store, wire.Decision(run_id=run.run_id, reason=A.TIMED_OUT), False, self.me.id)
        except (Conflict, NotFound):
            return  # decided at the same moment
        await self.agent.comms.log(Entry(self.me.id, self.me.id, "STATUS", f"reject plan of {run.run_id}: {A.TIMED_OUT}",
                                         run.run_id, "rejected", metadata={"by": self.me.id, "decision": "rejected",
                                                                          "reason": A.TIMED_OUT}))
        await self._announce_decision(run)

    async def status(self, ref: wire.StatusRef) -> wire.RunStatus:
        if ref.id is None or not is_id(ref.id):
            raise NotFound(f"no run {ref.id!r}")
        return await self.run_status(wire.StatusQuery(run_id=ref.id), Call("", {}, ""))
