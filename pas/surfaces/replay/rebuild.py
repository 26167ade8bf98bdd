"""`pas replay --rebuild RUN`: the KV run tree (pas_runs[<run>], pas_tree[<run>.*]) re-derived from the
run's PAS_EVENTS alone, and compared with what KV holds.

Derived per key, the fields the events determine:
    <run>               status, lanes
    <run>.plan          lanes, architect, status
    <run>.lane.<lane>   director, jobs, status
    <run>.job.<job>     manager, tasks, status
    <run>.task.<task>   every field of the last TaskRecord event (status, programmer, attempts, ...)
Keys the events cannot rebuild (<run>.request, .usage, .rerun, .divergence, .forked) are not compared.
"""

from __future__ import annotations

import json
from typing import Any

from nats.js import JetStreamContext

from pas.protocol import subjects as S
from pas.protocol import wire
from pas.transport.streams import read_raw

TASK_FIELDS = ("task_id", "job_id", "lane", "manager", "executor", "instruction", "status", "programmer",
               "command", "exit_code", "attempts", "branch", "diff_stat", "tokens")


async def derive(js: JetStreamContext, run_id: str) -> dict[str, dict[str, Any]]:
    tree: dict[str, dict[str, Any]] = {}
    run: dict[str, Any] = {"status": "unknown", "lanes": []}
    tree[run_id] = run
    async for m in read_raw(js, S.STREAM_EVENTS, S.run_events(S.token(run_id))):
        parsed = S.parse_run(m.subject)
        if parsed is None:
            continue
        rest = [parsed.kind, *parsed.rest]
        try:
            ev = wire.run_event(m.subject, m.data, m.stored)
        except Exception:
            continue
        if isinstance(ev, wire.TaskRecord):
            t = ev
            tree[S.task_key(run_id, t.task_id)] = {f: _plain(getattr(t, f)) for f in TASK_FIELDS}
            job = tree.setdefault(S.job_key(run_id, t.job_id), {"manager": t.manager, "tasks": [],
                                                                "status": "running"})
            if t.task_id not in job["tasks"]:
                job["tasks"].append(t.task_id)
                job["tasks"].sort()
            lane = tree.setdefault(S.lane_key(run_id, t.lane), {"director": f"dir-{t.lane}", "jobs": [],
                                                               "status": "running"})
            if t.job_id not in lane["jobs"]:
                lane["jobs"].append(t.job_id)
                lane["jobs"].sort()
            continue
        if ev is None:
            continue
        if rest[0] == "status" and ev.kind == "run":
            run["status"] = ev.status
        elif rest[0] == "lane" and ev.lane:
            lane = tree.setdefault(S.lane_key(run_id, ev.lane), {"director": ev.agent, "jobs": [], "status": ""})
            lane["director"], lane["status"] = ev.agent, ev.status
            if ev.lane not in run["lanes"]:
                run["lanes"].append(ev.lane)
        elif rest[0] == "job" and ev.job_id:
            job = tree.setdefault(S.job_key(run_id, ev.job_id), {"manager": ev.agent, "tasks": [], "status": ""})
            job["manager"], job["status"] = ev.agent, ev.status
        elif rest[0] == "plan" or rest[:2] == ["done", "plan"]:
            tree[S.plan_key(run_id)] = {"architect": ev.agent, "status": ev.status}
    run["lanes"].sort()
    if S.plan_key(run_id) in tree:
        tree[S.plan_key(run_id)]["lanes"] = list(run["lanes"])
    return tree


def _plain(v: Any) -> Any:
    return v if v is None or isinstance(v, (str, int, float, bool)) else str(v)


async def kv_tree(js: JetStreamContext, run_id: str) -> dict[str, dict[str, Any]]:
    """What KV holds for the run (latest value per key; deleted keys left out)."""
    held: dict[str, dict[str, Any] | None] = {}
    try:
        async for m in read_raw(js, S.kv_stream(S.KV_RUNS), S.kv_subject(S.KV_RUNS, run_id)):
            held[run_id] = _value(m)
        async for m in read_raw(js, S.kv_stream(S.KV_TREE), S.kv_subject(S.KV_TREE, S.run_keys(run_id))):
            bucket_key = S.parse_kv(m.subject)
            if bucket_key is not None:
                held[bucket_key[1]] = _value(m)
    except Exception as e:
        if "not found" not in str(e).lower():
            raise
    return {k: v for k, v in held.items() if v is not None}


def _value(m: Any) -> dict[str, Any] | None:
    if m.headers and m.headers.get("KV-Operation") in ("DEL", "PURGE"):
        return None
    try:
        v = json.loads(m.data)
    except ValueError:
        return None
    return v if isinstance(v, dict) else None


def _normal(key: str, run_id: str, v: dict[str, Any]) -> dict[str, Any]:
    if key == run_id:
        return {"status": v.get("status"), "lanes": sorted(v.get("lanes") or [])}
    if key.endswith(".plan"):
        return {"architect": v.get("architect"), "status": v.get("status", "running"),
                "lanes": sorted(v.get("lanes") or [])}
    if ".lane." in key:
        return {"director": v.get("director"), "jobs": sorted(v.get("jobs") or []), "status": v.get("status", "running")}
    if ".job." in key:
        return {"manager": v.get("manager"), "tasks": sorted(v.get("tasks") or []), "status": v.get("status", "running")}
    defaults = {"status": "queued", "programmer": "", "attempts": 0, "tokens": 0}
    return {f: v.get(f, defaults.get(f)) for f in TASK_FIELDS}


async def compare(js: JetStreamContext, run_id: str) -> dict[str, Any]:
    derived = await derive(js, run_id)
    held = {k: v for k, v in (await kv_tree(js, run_id)).items()
            if not k.endswith(S.SIDE_KEYS)}
    diffs: list[dict[str, Any]] = []
    for key in sorted(set(derived) | set(held)):
        if key not in held:
            diffs.append({"key": key, "problem": "missing in KV", "derived": derived[key]})
            continue
        if key not in derived:
            diffs.append({"key": key, "problem": "in KV but not in the events", "kv": held[key]})
            continue
        d, k = _normal(key, run_id, derived[key]), _normal(key, run_id, held[key])
        for f in d:
            if d[f] != k.get(f):
                diffs.append({"key": key, "field": f, "derived": d[f], "kv": k.get(f)})
    return {"run_id": run_id, "keys_derived": len(derived), "keys_in_kv": len(held), "same": not diffs,
            "differences": diffs, "derived": derived}


def format_text(rep: dict[str, Any]) -> str:
    out = [f"run {rep['run_id']}: {rep['keys_derived']} keys derived from {S.STREAM_EVENTS}, "
           f"{rep['keys_in_kv']} in KV: "
           + ("identical" if rep["same"] else f"{len(rep['differences'])} difference(s)")]
    for d in rep["differences"]:
        if "field" in d:
            out.append(f"  {d['key']}.{d['field']}: events say {d['derived']!r}, KV holds {d['kv']!r}")
        else:
            out.append(f"  {d['key']}: {d['problem']}")
    return "\n".join(out)
