"""`pas diff RUN_A RUN_B`: two runs side by side (a run and its rerun or fork): plans, task outcomes,
the diffs the tasks committed, tokens and cost.

Plans are the KV records (pas_tree[<run>.plan] lanes, each job's planned task specs); task outcomes
and usage come from the gateway's status; diffs from the task branches in the run's repository
(`git show <branch>`: the task's commit; none when the task changed nothing).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from pas.execution.gitsafe import run_git
from pas.protocol import subjects as S
from pas.protocol import wire
from pas.runtime.store import RunStore


async def _git_show(repo: str, branch: str) -> str:
    rc, out = await run_git(Path(repo), "show", "--format=", "--no-color", "--end-of-options", branch)
    return out if rc == 0 else ""


async def side(store: RunStore, client: Any, run_id: str) -> dict[str, Any]:
    st = await client.status(run_id)
    req = await store.request(run_id)
    plan = await store.get(S.plan_key(run_id), wire.PlanRecord)
    jobs = await store.jobs(run_id)
    repo = req.record.repo if req else None
    tasks = {}
    for t in st["tasks"]:
        diff = await _git_show(repo, t["branch"]) if repo and t.get("branch") and t.get("diff_stat") else ""
        tasks[t["task_id"]] = {"lane": t["lane"], "instruction": t["instruction"], "status": t["status"],
                               "exit_code": t.get("exit_code"), "diff": diff,
                               "diff_sha256": hashlib.sha256(diff.encode()).hexdigest() if diff else None}
    return {"run_id": run_id, "title": st["title"], "status": st["status"],
            "lanes": plan.record.lanes if plan else st["lanes"],
            "jobs": {j.job_id: wire.to_builtins(j.specs) for j in jobs},
            "tasks": tasks, "tokens": st["usage"]["tokens"], "cost_usd": st["usage"]["cost_usd"],
            "llm_calls": st["usage"]["llm_calls"]}


def compare(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    jobs = {}
    for j in sorted(set(a["jobs"]) | set(b["jobs"])):
        ja, jb = a["jobs"].get(j), b["jobs"].get(j)
        jobs[j] = {"same": ja == jb, "a": ja, "b": jb}
    tasks = []
    for t in sorted(set(a["tasks"]) | set(b["tasks"])):
        ta, tb = a["tasks"].get(t), b["tasks"].get(t)
        row: dict[str, Any] = {"task_id": t, "a": _outcome(ta), "b": _outcome(tb)}
        row["same_outcome"] = row["a"] == row["b"]
        da, db = (ta or {}).get("diff") or "", (tb or {}).get("diff") or ""  # a task one run lacks changed nothing
        row["same_diff"] = da == db
        if not row["same_diff"]:
            row["diff_a"], row["diff_b"] = da, db
        tasks.append(row)
    plan_same = a["lanes"] == b["lanes"] and all(j["same"] for j in jobs.values())
    return {"a": a["run_id"], "b": b["run_id"], "status": [a["status"], b["status"]],
            "plan": {"same": plan_same, "lanes": [a["lanes"], b["lanes"]], "jobs": jobs},
            "tasks": tasks, "tokens": [a["tokens"], b["tokens"]], "cost_usd": [a["cost_usd"], b["cost_usd"]],
            "llm_calls": [a["llm_calls"], b["llm_calls"]],
            "same": plan_same and all(t["same_outcome"] and t["same_diff"] for t in tasks)}


def _outcome(t: dict[str, Any] | None) -> dict[str, Any] | None:
    return None if t is None else {"status": t["status"], "exit_code": t["exit_code"],
                                   "instruction": t["instruction"], "diff_sha256": t["diff_sha256"]}


def format_text(d: dict[str, Any]) -> str:
    out = [f"{d['a']} ({d['status'][0]}) vs {d['b']} ({d['status'][1]}): " + ("same" if d["same"] else "different")]
    p = d["plan"]
    out.append(f"plan: {'same' if p['same'] else 'different'}; lanes {p['lanes'][0]} vs {p['lanes'][1]}")
    for j, row in p["jobs"].items():
        if not row["same"]:
            out.append(f"  job {j}: {row['a']} vs {row['b']}")
    for t in d["tasks"]:
        a, b = t["a"] or {}, t["b"] or {}
        mark = "same" if t["same_outcome"] and t["same_diff"] else "DIFFERENT"
        out.append(f"task {t['task_id']}: {a.get('status', '-')} vs {b.get('status', '-')}, "
                   f"diff {'same' if t['same_diff'] else 'different'} [{mark}]")
        if not t["same_diff"]:
            for sign, run, text, rec in (("---", d["a"], t["diff_a"], a), ("+++", d["b"], t["diff_b"], b)):
                out.append(f"  {sign} {run}" + (f"\n{_indent(text)}" if text else
                                               " (no such task)" if not rec else " (the task changed nothing)"))
    out.append(f"tokens: {d['tokens'][0]} vs {d['tokens'][1]}; cost: ${d['cost_usd'][0]} vs ${d['cost_usd'][1]}; "
               f"llm calls: {d['llm_calls'][0]} vs {d['llm_calls'][1]}")
    return "\n".join(out)


def _indent(text: str) -> str:
    return "\n".join("    " + ln for ln in text.splitlines()[:80])
