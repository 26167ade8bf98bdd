"""Compatibility with the original HTTP PAS (TrentCarter/lnsp-phase-4, README "Coming from the HTTP
PAS"): what its clients (the `verdict` CLI, its integration tests, its services calling each other,
its HMI pages) send and read, served by the adapter on top of PAS's own endpoints.

Additive: everything here is a view of, or a translation onto, what PAS keeps and the NATS requests
it already answers. The views add the original's fields, computed from real records:

    /health          service (its names: "PAS Gateway", "Director-Code", ...), agent_metadata
                     {role, tier, parent, children} from the topology
    GET /runs/{id}   artifacts (result branch, each task's branch and diff stat), actuals (tokens,
                     cost), acceptance_results (each acceptance command's exit code, output tail)
    /status/{id}     Root, Architect, Directors, Managers: `state` in the original's words (STATES)

and the submissions take the original's bodies (pas.surfaces.http.legacy_models): Architect /submit with
approval_mode "auto"/"human" (replies with the plan it made), Director and Manager /submit
{"job_card": ...}, Programmer /execute with the Manager's fields.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Literal

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from pas.base.errors import BadRequest, Conflict, NotFound, PasError, Unavailable
from pas.config.model import AgentConfig, PasConfig
from pas.protocol import subjects as S
from pas.protocol import wire
from pas.protocol.wire.records import ACCEPTANCE_MARK
from pas.surfaces.http.backend import Backend
from pas.surfaces.http.common import Ctx
from pas.surfaces.http.legacy_models import (
    LANE_NAMES,
    LegacyArchitectIn,
    LegacyBudgetIn,
    LegacyCardBody,
    LegacyExecuteIn,
)

log = logging.getLogger("pas.surfaces.http.legacy")

ROLE_NAMES = {"gateway": "gateway", "root": "root", "architect": "architect", "dir": "director", "mgr": "manager",
              "prog": "programmer", "monitor": "monitor"}
"""PAS role -> the original's agent_metadata.role."""
STATES = {"queued": "planning", "waiting_approval": "awaiting_approval", "completed": "completed"}
"""PAS status -> the original's `state` (running: "planning" until the agent's plan is stored, then
"executing", then "validating" once its part is done while Root integrates and ends the run; every
other end -- failed, cancelled, rejected, timeout, budget_exceeded -- "failed")."""
RunStatusFilter = Literal["queued", "running", "waiting_approval", "completed", "failed", "cancelled", "rejected",
                          "error"]
"""GET /runs?status=: PAS's statuses plus the original's "error" (= failed)."""
PLAN_WAIT_S = 45.0  # Architect /submit waits this long for the plan (the original's callers allow 60 s)
POLL_S = 0.1
OUTPUT_TAIL = 2000  # characters of an acceptance command's output in acceptance_results


# ---- /health -------------------------------------------------------------------------------
def service_name(a: AgentConfig) -> str:
    """The original's service name of an agent: "PAS Gateway", "Architect", "Director-Code",
    "Manager-Code-01", "Programmer-001"; an agent id outside that pattern keeps its suffix."""
    suffix = a.id.rsplit("-", 1)[-1]
    lane = LANE_NAMES.get(a.lane or "", a.lane or "")
    return {"gateway": "PAS Gateway", "root": "PAS Root", "architect": "Architect", "monitor": "Heartbeat Monitor",
            "dir": f"Director-{lane}", "mgr": f"Manager-{lane}-{suffix}", "prog": f"Programmer-{suffix}"}[a.role]


def health_fields(cfg: PasConfig, a: AgentConfig) -> dict[str, Any]:
    """The original /health fields PAS's own body lacks (its agent, llm_model, status stay PAS's)."""
    return {"service": service_name(a),
            "agent_metadata": {"role": ROLE_NAMES[a.role], "tier": a.tier, "parent": a.parent,
                               "children": [c.id for c in cfg.agents if c.parent == a.id]}}


# ---- CORS ----------------------------------------------------------------------------------
def install_cors(app: FastAPI, cfg: PasConfig) -> None:
    """settings.http.cors_origins may call this port from a browser (preflights answered); none by default."""
    origins = cfg.settings.http.cors_origins
    if origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(origins), allow_methods=["*"], allow_headers=["*"])


# ---- GET /runs, GET /runs/{id} -------------------------------------------------------------
def runs_filter(status: str | None) -> str | None:
    return "failed" if status == "error" else status


async def _jobs(backend: Backend, run_id: str) -> list[wire.JobRecord]:
    jobs = await backend.store.jobs(run_id)
    return sorted(jobs, key=lambda j: j.job_id)


def _acceptance_tail(output: str) -> str:
    at = output.rfind(ACCEPTANCE_MARK)
    return (output[at + 1:] if at >= 0 else output)[-OUTPUT_TAIL:]


async def run_view(backend: Backend, run_id: str, offset: int = 0, limit: int | None = None) -> dict[str, Any]:
    """The run status (a page of its tasks: pas.runtime.runs.run_view) plus the original's artifacts, actuals
    and acceptance_results."""
    st = await backend.run_status(run_id, offset, limit)
    specs = {tid: spec for j in await _jobs(backend, run_id) for tid, spec in zip(j.tasks, j.specs, strict=False)}
    tasks = st.get("tasks") or []
    st["artifacts"] = {
        "result_branch": st.get("result_branch"),
        "tasks": {t["task_id"]: {"branch": t.get("branch"), "diff_stat": t.get("diff_stat")}
                  for t in tasks if t.get("branch")},
    }
    usage = st.get("usage") or {}
    st["actuals"] = {"tokens_used": usage.get("tokens", 0), "cost_usd": usage.get("cost_usd"),
                     "llm_calls": usage.get("llm_calls", 0), "cost_known": not usage.get("unknown_cost_calls"),
                     "tasks": len(tasks), "tasks_completed": sum(t.get("status") == "completed" for t in tasks)}
    results = {}
    for t in tasks:
        spec = specs.get(t["task_id"])
        if spec is None or not spec.acceptance or t.get("status") not in wire.TERMINAL_TASK:
            continue
        code = t.get("exit_code")
        results[t["task_id"]] = {"command": spec.acceptance, "exit_code": code, "passed": code == 0,
                                 "output_tail": _acceptance_tail(t.get("output") or "")}
    st["acceptance_results"] = results
    return st


# ---- /status/{id} --------------------------------------------------------------------------
def state_of(status: str, planned: bool = True) -> str:
    if status == "running":
        return "executing" if planned else "planning"
    return STATES.get(status, "failed")


def part_state(part: str | None, run: str) -> str:
    """The state of a lane's or job's part of a run: its own status (None: not planned yet) while
    the run goes on -- "validating" once it ended, as the run is integrated -- then the run's."""
    if run == "waiting_approval":
        return STATES[run]
    if part is None:
        return state_of(run, run in wire.TERMINAL_RUN)
    if run in wire.TERMINAL_RUN:
        return state_of(part if part != "completed" else run)
    return "validating" if part in wire.TERMINAL_TASK | wire.TERMINAL_RUN else state_of(part)


def _times(st: dict[str, Any]) -> dict[str, Any]:
    return {"started_at": st.get("started_at"), "completed_at": st.get("completed_at"),
            "duration_s": st.get("duration_s")}


async def _lane(backend: Backend, run_id: str, lane: str) -> wire.LaneRecord | None:
    got = await backend.store.get(S.lane_key(run_id, lane), wire.LaneRecord)
    return got.record if got else None


async def status(ctx: Ctx, a: AgentConfig, ref: str) -> dict[str, Any]:
    """GET /status/{id} of Root, Architect (a run), a Director or Manager (a job card id = run id;
    a manager also takes PAS's <run_id>:<job_id>), with the original's `state`."""
    backend = ctx.backend
    if a.role == "mgr" and ":" in ref:
        rec = await backend.request(S.agent_endpoint(a.role, a.id, "status"), {"id": ref})
        return {**rec, "job_card_id": ref, "state": state_of(rec["status"])}
    st = await backend.run_status(ref)
    base = {"run_id": ref, "status": st["status"], "message": st.get("message", ""), **_times(st)}
    if a.role in ("root", "architect"):
        recs = {lane: await _lane(backend, ref, lane) for lane in st.get("lanes") or []}
        lanes = {LANE_NAMES[lane]: {"state": part_state(rec.status if rec else None, st["status"]),
                                    "director": rec.director if rec else None} for lane, rec in recs.items()}
        ended = bool(recs) and all(r is not None and r.status != "running" for r in recs.values())
        state = "validating" if ended and st["status"] == "running" else state_of(st["status"], any(recs.values()))
        return {**base, "state": state, "lanes": lanes}
    lane = a.lane or ""
    if lane not in (st.get("lanes") or []):
        raise NotFound(f"run {ref!r} has no {LANE_NAMES.get(lane, lane)} lane: {a.id} keeps no job card {ref!r}")
    jobs = [j for j in await _jobs(backend, ref) if j.lane == lane]
    if a.role == "dir":
        rec = await _lane(backend, ref, lane)
        return {**base, "job_card_id": ref, "lane": LANE_NAMES[lane],
                "state": part_state(rec.status if rec else None, st["status"]),
                "managers": {j.manager: part_state(j.status, st["status"]) for j in jobs}}
    mine = {t for j in jobs for t in j.tasks}
    tasks = [t for t in st.get("tasks") or [] if t["task_id"] in mine]
    if not jobs:
        part = None
    elif any(j.status == "running" for j in jobs):
        part = "running"
    else:
        part = "completed" if all(j.status == "completed" for j in jobs) else "failed"
    return {**base, "job_card_id": ref, "lane": LANE_NAMES[lane], "state": part_state(part, st["status"]),
            "managers": sorted({j.manager for j in jobs}),
            "programmers": {t["task_id"]: t.get("programmer") for t in tasks},
            "artifacts": {t["task_id"]: t.get("branch") for t in tasks if t.get("branch")},
            "errors": [f"{t['task_id']}: {t['error']}" for t in tasks if t.get("error")]}


# ---- POST /submit: Architect ---------------------------------------------------------------
async def architect_submit(ctx: Ctx, job: LegacyArchitectIn, idempotency_key: str | None) -> dict[str, Any]:
    """Submit (through the gateway) and reply with the plan the architect, directors and managers
    made: complete, or as far as it got within PLAN_WAIT_S (`plan.complete` says which)."""
    reply = await ctx.backend.submit(job.to_wire(), idempotency_key)
    run_id = reply["run_id"]
    watch_deadline(ctx, run_id, job.budget)
    mode = "human" if job.approval_mode in (True, "human") else "auto"
    plan = await _wait_plan(ctx.backend, run_id, "waiting_approval" if mode == "human" else None)
    return {**reply, "message": "plan ready: approve or reject it on the gateway (POST /runs/{id}/approve)"
            if mode == "human" and plan["complete"] else f"run {plan['status']}", "plan": _plan_out(ctx.cfg, plan, mode)}


async def _wait_plan(backend: Backend, run_id: str, status: str | None) -> dict[str, Any]:
    """The plan once complete (and, in approval mode, once the run waits for the decision)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + PLAN_WAIT_S
    while True:
        plan: dict[str, Any] = await backend.request(S.GATEWAY_PLAN, {"run_id": run_id})
        ready = plan["complete"] and (status is None or plan["status"] == status)
        if ready or plan["status"] in wire.TERMINAL_RUN or loop.time() > deadline:
            # The view reads the jobs before it checks completeness: read again, after, for them all.
            return await backend.request(S.GATEWAY_PLAN, {"run_id": run_id}) if plan["complete"] else plan
        await asyncio.sleep(POLL_S)


def _plan_out(cfg: PasConfig, plan: dict[str, Any], mode: str) -> dict[str, Any]:
    """PAS's plan view in the original ArchitectPlan's terms (lane_allocations, acceptance_gates)."""
    alloc: dict[str, Any] = {}
    gates: dict[str, list[str]] = {}
    for lane in plan["lanes"]:
        name = LANE_NAMES[lane]
        jobs = [j for j in plan["jobs"] if j["lane"] == lane]
        director = next((d.id for d in cfg.by_role("dir", lane)), None)
        alloc[name] = {"lane": name, "director": director, "jobs": [
            {"job_id": j["job_id"], "manager": j["manager"],
             "tasks": [{"task_id": t["task_id"], "status": t["status"], **t["spec"]} for t in j["tasks"]]}
            for j in jobs]}
        gates[name] = [t["spec"]["acceptance"] for j in jobs for t in j["tasks"] if t["spec"].get("acceptance")]
    return {"run_id": plan["run_id"], "status": plan["status"], "approval_mode": mode, "complete": plan["complete"],
            "lane_allocations": alloc, "acceptance_gates": gates, "approval": plan.get("approval")}


# ---- POST /submit {"job_card": ...}: Directors and Managers --------------------------------
async def card_submit(ctx: Ctx, a: AgentConfig, body: LegacyCardBody) -> dict[str, Any]:
    """The card becomes a run of this agent's lane whose id is the card's; the same id again is the
    same run (`duplicate`), as a retry should be."""
    card = body.job_card
    card_id = card.card_id
    role = ROLE_NAMES[a.role]
    job = card.to_job(a.lane or "", a.id, role, card_id)
    if card.llm_config is not None:
        wanted = card.llm_config.litellm_name()
        raise BadRequest(f"job_card.llm_config: PAS picks each programmer's model from its topology (agents.yaml), "
                         f"so a job card cannot; leave llm_config out, or run the task with POST /execute on a "
                         f"programmer that has {wanted!r}: {_who_has(ctx.cfg, wanted)}",
                         detail={"field": "job_card.llm_config", "programmers": _holders(ctx.cfg, wanted)})
    try:
        reply = await ctx.backend.submit(job)
        duplicate = bool(reply.get("duplicate"))
        state = "planning"
    except Conflict:
        st = await ctx.backend.run_status(card_id)
        if st.get("lanes") != [a.lane]:
            raise Conflict(f"job_card.id: {card_id!r} is a run of lanes {st.get('lanes')}, not a "
                           f"{LANE_NAMES.get(a.lane or '', a.lane)} job card", detail={"field": "job_card.id"}) from None
        duplicate, state = True, state_of(st["status"])
    if not duplicate:
        watch_deadline(ctx, card_id, card.budget)
    return {"job_card_id": card_id, "run_id": card_id, "status": "planning" if role == "director" else "accepted",
            "state": state, "duplicate": duplicate, role: a.id,
            "message": f"job card accepted: poll GET /status/{card_id} on this port"}


# ---- time limits ---------------------------------------------------------------------------
_deadlines: set[asyncio.Task[None]] = set()


def watch_deadline(ctx: Ctx, run_id: str, budget: LegacyBudgetIn | None) -> None:
    """The original's duration budget: the adapter cancels the run if it still runs then (held by
    this adapter process: a restart of it forgets the limit)."""
    limit = budget.deadline_s if budget is not None else None
    if limit is None:
        return
    t = asyncio.ensure_future(_cancel_at(ctx.backend, run_id, limit))
    _deadlines.add(t)
    t.add_done_callback(_deadlines.discard)


async def _cancel_at(backend: Backend, run_id: str, limit_s: float) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + limit_s
    try:
        while (left := end - loop.time()) > 0:  # checked now and then, so a finished run frees its watcher
            await asyncio.sleep(min(left, 2.0))
            if (await backend.run_status(run_id))["status"] in wire.TERMINAL_RUN:
                return
        await backend.request(S.GATEWAY_CANCEL, {"run_id": run_id})
        log.warning("run %s cancelled: its time budget of %gs ran out", run_id, limit_s)
    except Conflict:
        return  # it ended meanwhile
    except PasError as e:
        log.warning("run %s: time budget of %gs not enforced: %s", run_id, limit_s, e.message)


# ---- POST /execute: Programmers ------------------------------------------------------------
async def execute(ctx: Ctx, a: AgentConfig, req: LegacyExecuteIn) -> dict[str, Any]:
    body = req.to_wire()
    profile = await _model_for(ctx, a, req)
    if profile is not None:
        body["model"] = profile
    if req.dry_run:
        code, health = await ctx.backend.health(a)
        if code != 200:
            raise Unavailable(f"{a.id} does not answer: {health.get('error')}")
        return {"status": "success", "dry_run": True, "run_id": body["run_id"], "job_id": body["job_id"],
                "programmer": a.id, "exit_code": None, "output": "", "error": None, "artifacts": {},
                "metrics": {"tokens": 0, "cost_usd": 0.0},
                "would_run": {k: body.get(k) for k in ("instruction", "executor", "command", "files", "acceptance",
                                                       "repo", "timeout_s", "budget_usd")}
                | {"model": profile or health.get("model")}}
    return await ctx.backend.request(S.agent_endpoint("prog", a.id, "execute"), body, timeout_s=req.timeout_s + 15.0)


async def _model_for(ctx: Ctx, a: AgentConfig, req: LegacyExecuteIn) -> str | None:
    """The profile `llm_model` names, when it is this programmer's primary or backup (live switches
    included); else 400 naming the programmers that have it. llm_params must agree with the profile."""
    ov = await ctx.backend.model_override(a.id) or {}
    primary, backup = ov.get("model", a.model), ov.get("backup_model", a.backup_model)
    wanted = req.requested_model()
    chosen = req.model or primary
    if wanted is not None:
        chosen = next((m for m in (primary, backup) if m in _profiles(ctx.cfg, wanted)), None)
        if chosen is None:
            raise BadRequest(f"llm_model: {wanted!r} is not {a.id}'s primary ({primary}) or backup ({backup}); "
                             f"{_who_has(ctx.cfg, wanted)}",
                             detail={"field": "llm_model", "programmers": _holders(ctx.cfg, wanted)})
        if req.model is not None and req.model != chosen:
            raise BadRequest(f"model {req.model!r} and llm_model {wanted!r} disagree", detail={"field": "model"})
    if req.llm_params is not None:
        _check_params(ctx.cfg, chosen, req)
    return chosen if wanted is not None or req.model is not None else None


def _profiles(cfg: PasConfig, wanted: str) -> set[str]:
    """The model profiles a name means: a profile's own name, or its litellm model string."""
    return {k for k, p in cfg.models.items() if wanted in (k, p.model)}


def _holders(cfg: PasConfig, wanted: str) -> list[str]:
    """Programmers whose primary or backup profile is `wanted` (per the topology)."""
    named = _profiles(cfg, wanted)
    return [p.id for p in cfg.by_role("prog") if {p.model, p.backup_model} & named]


def _who_has(cfg: PasConfig, wanted: str) -> str:
    off = cfg.settings.http.port_offset
    have = [f"{p} (port {port + off})" for p in _holders(cfg, wanted) if (port := cfg.agent(p).port) is not None]
    if have:
        return "programmers that have it: " + ", ".join(have)
    return "no programmer has it (models.yaml profiles: " + ", ".join(
        f"{k} = {p.model}" for k, p in sorted(cfg.models.items())) + ")"


def _check_params(cfg: PasConfig, profile: str | None, req: LegacyExecuteIn) -> None:
    assert req.llm_params is not None
    prof = cfg.models.get(profile or "")
    for name in ("top_p", "top_k"):
        if getattr(req.llm_params, name) is not None:
            raise BadRequest(f"llm_params.{name}: PAS does not set {name}; leave it out",
                             detail={"field": f"llm_params.{name}"})
    for name in ("temperature", "max_tokens"):
        given = getattr(req.llm_params, name)
        have = getattr(prof, name) if prof else None
        if given is not None and given != have:
            raise BadRequest(f"llm_params.{name}: {given} differs from profile {profile!r}'s {have}; PAS takes "
                             f"{name} from models.yaml (leave it out, or set models.{profile}.{name})",
                             detail={"field": f"llm_params.{name}"})
