"""A run's timeline, built from PAS_EVENTS and PAS_COMMS only (never KV).

    tl = await build(js, "r-1")          # a plain dict, JSON-ready (`pas replay --json` prints it)

Times are seconds relative to submit (the gateway's `queued` event, else the first message of the
run). Steps are every event and comms entry of the run merged by time (stream order within a
stream). Task bars come from the TaskRecord events (queued -> running -> terminal); LLM calls from
the comms `LLM` entries (their time is when the reply came, so a call starts at t - latency).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from nats.js import JetStreamContext

from pas.protocol import subjects as S
from pas.protocol import wire
from pas.runtime import comms
from pas.transport.auth import ANONYMOUS, SERVICE_USERS
from pas.transport.streams import Raw, read_raw

log = logging.getLogger("pas.replay")

TERMINAL = {"completed", "failed", "cancelled", "budget_exceeded", "timeout", "rejected"}
TIERS = ("client", "gateway", "root", "architect", "director", "manager", "programmer", "llm", "other")


SUBMITTERS = (*SERVICE_USERS, ANONYMOUS)
"""Who a client's command is logged as (pas.roles.gateway: the NATS user that sent it): the client tier."""


def tier_of(agent: str) -> str:
    if agent in SUBMITTERS:
        return "client"
    for prefix, tier in (("gateway", "gateway"), ("root", "root"), ("architect", "architect"),
                         ("dir-", "director"), ("mgr-", "manager"), ("prog", "programmer"),
                         ("client", "client"), ("llm", "llm")):
        if agent.startswith(prefix):
            return tier
    return "other"


async def collect(js: JetStreamContext, run_id: str) -> list[Raw]:
    """Every message of the run in both streams."""
    out = [m async for m in read_raw(js, S.STREAM_EVENTS, S.run_events(S.token(run_id)))]
    out += [m async for m in read_raw(js, S.STREAM_COMMS, S.comms_run(run_id))]
    return out


def skipped(m: Raw, why: object) -> None:
    log.warning("run timeline: skipped %s message %d (%s): %s", m.stream, m.seq, m.subject, why)


def decode(m: Raw) -> tuple[datetime, dict[str, Any]] | None:
    """(time, body as a dict) of one message; None (and a WARNING naming it) for a body that is not
    a valid one: no stored message can make a timeline fail."""
    try:
        if m.stream == S.STREAM_COMMS:
            e = comms.stored_entry(m.subject, m.data, m.stored)
            return None if e is None else (e.ts, _fields(e))
        ev = wire.run_event(m.subject, m.data, m.stored)
        if isinstance(ev, wire.TaskRecord):
            return (ev.finished_at or ev.started_at or m.stored), {**_fields(ev), "kind": "taskrec"}
        return None if ev is None else (ev.ts, _fields(ev))
    except Exception as e:
        skipped(m, e)
        return None


def _fields(obj: Any) -> dict[str, Any]:
    return {f: getattr(obj, f) for f in obj.__struct_fields__}  # defaults included


def _rel(ts: datetime, t0: datetime) -> float:
    return round((ts - t0).total_seconds(), 4)


def build_from(run_id: str, msgs: Iterable[Raw]) -> dict[str, Any]:
    rows = []
    for m in msgs:
        got = decode(m)
        if got is not None:
            rows.append((got[0], m, got[1]))
    # merge the two streams by time; within one stream keep the stream's order
    rows.sort(key=lambda r: (r[0], r[1].stream, r[1].seq))
    t0 = next((ts for ts, m, b in rows if m.stream == S.STREAM_EVENTS and b.get("kind") == "run"
               and b.get("status") == "queued"), rows[0][0] if rows else None)
    tl: dict[str, Any] = {"run_id": run_id, "title": "", "parent": None, "status": "unknown", "submitted_at": None,
                          "duration_s": 0.0, "steps": [], "tasks": [], "llm_calls": [], "failovers": [],
                          "critical_path": [], "totals": {"tokens": 0, "cost_usd": 0.0, "llm_calls": 0,
                                                          "unknown_cost_calls": 0, "failovers": 0}}
    if t0 is None:
        return tl
    tl["submitted_at"] = t0.isoformat()
    tasks: dict[str, dict[str, Any]] = {}
    nodes: dict[str, dict[str, Any]] = {}  # "lane:<l>" / "job:<j>" / "plan" -> {start, end, status}
    for ts, m, b in rows:
        t = _rel(ts, t0)
        if m.stream == S.STREAM_COMMS:
            try:
                _comms_step(tl, t, b, m.seq)
            except (ValueError, TypeError) as e:
                skipped(m, e)
            continue
        kind = b.get("kind", "")
        if kind == "taskrec":
            _task_step(tasks, t0, t, b)
            tl["steps"].append({"t": t, "tier": tier_of(b.get("programmer") or b.get("manager", "")),
                                "agent": b.get("programmer") or b.get("manager", ""), "kind": "task",
                                "id": b["task_id"], "status": b["status"], "subject": m.subject, "seq": m.seq,
                                "text": f"task {b['task_id']} {b['status']}"})
            continue
        ident = b.get("task_id") or b.get("job_id") or b.get("lane") or run_id
        done = ".done." in m.subject  # the completion a parent tier consumes (beside the state event)
        tl["steps"].append({"t": t, "tier": tier_of(b.get("agent", "")), "agent": b.get("agent", ""),
                            "kind": f"done.{kind}" if done else kind, "id": ident, "seq": m.seq,
                            "status": b.get("status", ""), "subject": m.subject,
                            "text": b.get("message") or f"{kind} {ident} {b.get('status', '')}"})
        if kind == "run":
            tl["status"] = b["status"]
            if b["status"] in TERMINAL:
                tl["duration_s"] = t
        elif kind in ("lane", "job") and not done:
            key = f"{kind}:{ident}"
            n = nodes.setdefault(key, {"kind": kind, "id": ident, "lane": b.get("lane"), "start": t, "end": None,
                                       "status": b["status"]})
            n["status"] = b["status"]
            if b["status"] in TERMINAL:
                n["end"] = t
    for task in tasks.values():
        task.pop("_attempt_started", None)
    tl["tasks"] = sorted(tasks.values(), key=lambda x: (x["queued_t"] if x["queued_t"] is not None else 1e18,
                                                          x["task_id"]))
    tl["lanes"] = [n for n in nodes.values() if n["kind"] == "lane"]
    tl["jobs"] = [n for n in nodes.values() if n["kind"] == "job"]
    for job in tl["jobs"]:  # managers announce a job when it ends: it started when its first task queued
        queued = [x["queued_t"] for x in tl["tasks"] if x["job_id"] == job["id"] and x["queued_t"] is not None]
        job["start"] = min([job["start"], *queued])
    tl["critical_path"] = critical_path(tl)
    if not tl["duration_s"] and rows:
        tl["duration_s"] = _rel(rows[-1][0], t0)
    return tl


def _llm_call(t: float, agent: str, b: dict[str, Any]) -> dict[str, Any]:
    """An LLM call from its comms entry; ValueError/TypeError for numbers that are not numbers."""
    md = b["metadata"]
    try:
        lat = float(md.get("latency_s") or 0.0)
    except (TypeError, ValueError):
        raise ValueError(f"latency_s {md.get('latency_s')!r} is not a number") from None
    if not 0.0 <= lat < 1e6:
        raise ValueError(f"latency_s {lat!r} is out of range")
    return {"t": t, "start_t": round(max(0.0, t - lat), 4), "agent": agent, "tier": tier_of(agent),
            "profile": str(md.get("profile")), "model": b.get("llm_model"), "tokens_in": int(md.get("tokens_in") or 0),
            "tokens_out": int(md.get("tokens_out") or 0), "tokens": b.get("tokens") or 0, "cost_usd": b.get("cost_usd"),
            "latency_s": lat, "ok": bool(md.get("ok")), "error": md.get("error"),
            "recording": md.get("recording"), "replayed": bool(md.get("replayed")), "failover": False}


def _comms_step(tl: dict[str, Any], t: float, b: dict[str, Any], seq: int) -> None:
    """One comms entry: a step, and an LLM call for an LLM entry (checked first: a bad one adds nothing)."""
    agent = b["from_agent"]
    llm = b["msg_type"] == "LLM" and "profile" in b.get("metadata", {})
    call = _llm_call(t, agent, b) if llm else None
    client = agent in SUBMITTERS
    if b["msg_type"] == "CMD" and client and not tl["title"] and b["message"].startswith("submit "):
        tl["title"] = b["message"][len("submit "):].strip("'\"")
    if b["msg_type"] == "CMD" and client and b.get("metadata", {}).get("parent"):
        tl["parent"] = b["metadata"]["parent"]  # a rerun or fork (pas rerun)
    tl["steps"].append({"t": t, "tier": tier_of(agent), "agent": agent, "kind": f"comms.{b['msg_type']}",
                        "id": b["to_agent"], "status": b.get("status", ""), "subject": "", "comms_seq": seq,
                        "text": f"{agent} -> {b['to_agent']}: {b['message'][:300]}"})
    if call is None:
        return
    calls = tl["llm_calls"]
    prev = next((c for c in reversed(calls) if c["agent"] == agent), None)
    md = b.get("metadata", {})
    if "backup" in md:  # the call says whether it went to the backup profile (every failover, even a failed one)
        call["failover"] = bool(md["backup"])
    else:  # recorded before calls said so: an answer from another profile right after a failure
        call["failover"] = bool(call["ok"] and prev is not None and not prev["ok"] and prev["profile"] != call["profile"])
    if call["failover"]:  # no previous call: the primary's breaker was open, so it was not called
        tl["failovers"].append({"t": t, "agent": agent, "from": prev["profile"] if prev else None,
                                "to": call["profile"], "error": prev["error"] if prev else None})
        tl["totals"]["failovers"] += 1
    calls.append(call)
    tot = tl["totals"]
    tot["llm_calls"] += 1
    tot["tokens"] += call["tokens"]
    if call["cost_usd"] is None:
        tot["unknown_cost_calls"] += 1
    else:
        tot["cost_usd"] = round(tot["cost_usd"] + call["cost_usd"], 8)


def _task_step(tasks: dict[str, dict[str, Any]], t0: datetime, t: float, b: dict[str, Any]) -> None:
    tid = b["task_id"]
    x = tasks.setdefault(tid, {"task_id": tid, "lane": b["lane"], "job_id": b["job_id"], "manager": b["manager"],
                               "executor": b["executor"], "instruction": b["instruction"][:200],
                               "queued_t": None, "running_t": None, "done_t": None, "status": "queued",
                               "programmer": "", "attempts": 0, "exit_code": None, "tokens": 0,
                               "cost_usd": 0.0})
    st = b["status"]
    x["status"] = st
    x["attempts"] = max(x["attempts"], b.get("attempts") or 0)
    if b.get("programmer"):
        x["programmer"] = b["programmer"]
    if st == "queued" and x["queued_t"] is None:
        x["queued_t"] = t  # the queued record carries no time of its own: when the stream stored it
    if b.get("started_at") and x["running_t"] is None:
        x["running_t"] = _rel(_ts(b["started_at"]), t0)  # type: ignore[arg-type]
    if st in TERMINAL:
        x["done_t"] = _rel(_ts(b.get("finished_at")) or t0, t0)
        x["exit_code"], x["tokens"], x["cost_usd"] = b.get("exit_code"), b.get("tokens", 0), b.get("cost_usd")


def _ts(v: Any) -> datetime | None:
    if isinstance(v, datetime):
        return v
    return datetime.fromisoformat(v.replace("Z", "+00:00")) if isinstance(v, str) and v else None


def critical_path(tl: dict[str, Any]) -> list[dict[str, Any]]:
    """The chain that decided when the run ended: the lane that finished last, its job that finished
    last, that job's task that finished last (with the LLM calls of the agents on that chain)."""
    path: list[dict[str, Any]] = []
    lanes = [n for n in tl.get("lanes", []) if n["end"] is not None]
    if not lanes:
        return path
    lane = max(lanes, key=lambda n: n["end"])
    path.append({"kind": "lane", "id": lane["id"], "start_t": lane["start"], "end_t": lane["end"]})
    jobs = [n for n in tl.get("jobs", []) if n["end"] is not None and n.get("lane") == lane["id"]]
    if jobs:
        job = max(jobs, key=lambda n: n["end"])
        path.append({"kind": "job", "id": job["id"], "start_t": job["start"], "end_t": job["end"]})
        tasks = [x for x in tl["tasks"] if x["job_id"] == job["id"] and x["done_t"] is not None]
        if tasks:
            task = max(tasks, key=lambda x: x["done_t"])
            path.append({"kind": "task", "id": task["task_id"], "start_t": task["queued_t"],
                         "end_t": task["done_t"], "programmer": task["programmer"]})
    return path


async def build(js: JetStreamContext, run_id: str) -> dict[str, Any]:
    return build_from(run_id, await collect(js, run_id))


def format_step(s: dict[str, Any]) -> str:
    return f"  +{s['t']:8.3f}s {s['tier']:<10} {s['agent']:<14} {s['kind']:<14} {s['status']:<10} {s['text'][:120]}"


def format_text(tl: dict[str, Any]) -> str:
    """The timeline as text: steps by time, then task bars, LLM calls, the critical path."""
    out = [f"run {tl['run_id']} {tl['title']!r} {tl['status']} in {tl['duration_s']:.2f}s "
           f"(submitted {tl['submitted_at']}{', rerun of ' + tl['parent'] if tl['parent'] else ''})"]
    out += [format_step(s) for s in tl["steps"]]
    out.append("tasks (queued -> running -> done):")
    for x in tl["tasks"]:
        fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
        out.append(f"  {x['task_id']:<22} {x['status']:<15} {fmt(x['queued_t'])} -> {fmt(x['running_t'])} -> "
                   f"{fmt(x['done_t'])}  {x['programmer'] or '-'} attempts={x['attempts']}")
    out.append("llm calls:")
    for c in tl["llm_calls"]:
        cost = "unknown" if c["cost_usd"] is None else f"${c['cost_usd']:.6f}"
        out.append(f"  +{c['t']:8.3f}s {c['agent']:<14} {c['profile']} {c['model']} tok={c['tokens']} cost={cost} "
                   f"{c['latency_s'] * 1000:.0f}ms{' FAILOVER' if c['failover'] else ''}"
                   f"{' (replayed)' if c['replayed'] else ''}"
                   f"{'' if c['ok'] else ' FAILED: ' + str(c['error'])}")
    tot = tl["totals"]
    out.append(f"totals: {tot['llm_calls']} llm calls, {tot['tokens']} tokens, ${tot['cost_usd']:.6f} "
               f"({tot['unknown_cost_calls']} of unknown cost), {tot['failovers']} failovers")
    out.append("critical path: " + (" -> ".join(f"{p['kind']} {p['id']} [{p['start_t']}..{p['end_t']}]"
                                                for p in tl["critical_path"]) or "-"))
    return "\n".join(out)
