"""Jobs end to end over NATS: submit, decompose down the tiers, run on the pool, results back up."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from pas.base.errors import BadRequest, Conflict, NotFound
from pas.protocol import subjects as S
from pas.runtime import comms
from pas.surfaces.demo import SAMPLE
from pas.surfaces.stack import Stack
from pas.transport.client import PasClient
from tests.conftest import ROOT, make_cfg, wait_for
from tests.module_stack import module_stack

# Every test but the worktree one (its own stack and config) submits runs of its own to one stack.
pytestmark = pytest.mark.asyncio(loop_scope="module")
stack, nc, client = module_stack()

JS_DIR = ROOT / "tests" / "js"


def task(lane: str, command: str, **kw: Any) -> dict[str, Any]:
    return {"lane": lane, "instruction": command, "command": command, "executor": "command", **kw}


def make_repo(tmp: Path) -> Path:
    repo = tmp / "repo"
    shutil.copytree(SAMPLE, repo, ignore=shutil.ignore_patterns(".venv", "__pycache__"))
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=repo, check=True)
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init"], cwd=repo, check=True)
    return repo


async def test_js_client_job_completes_through_every_tier(stack: Any) -> None:
    node = shutil.which("node")
    assert node and (JS_DIR / "node_modules" / "@nats-io" / "transport-node").exists(), "run scripts/setup.sh --dev"
    job = {"title": "from node", "tasks": [task("code", "echo from-node"), task("docs", "true")]}
    p = await asyncio.create_subprocess_exec(node, str(JS_DIR / "submit.mjs"), stack.url, "js-run-1",
                                             json.dumps(job), stdout=asyncio.subprocess.PIPE,
                                             stderr=asyncio.subprocess.PIPE, cwd=str(JS_DIR))
    out, err = await asyncio.wait_for(p.communicate(), 90)
    assert p.returncode == 0, err.decode()
    res = json.loads(out)
    assert res["ack"] == {"run_id": "js-run-1", "status": "queued", "duplicate": False}
    assert res["terminal"] == "completed"
    st = res["status"]
    assert st["status"] == "completed" and st["lanes"] == ["code", "docs"]
    outputs = {t["task_id"]: t for t in st["tasks"]}
    assert outputs["code-1-01"]["output"].strip() == "from-node" and outputs["code-1-01"]["exit_code"] == 0
    assert all(t["programmer"].startswith("prog-") and t["manager"].startswith("mgr-") for t in st["tasks"])
    async def senders() -> set[str]:  # the record writes' entries: there once the server copied them
        got = {e.from_agent async for e in comms.read(stack.bus.js, run_id="js-run-1")}
        return got if "root" in got else set()

    # the submitter (a plain submit: anonymous), then every tier, each by its record's writes or its own entries
    seen = await wait_for(senders, timeout_s=20, interval_s=0.2)
    assert {"anonymous", "gateway", "root", "architect", "dir-code", "dir-docs"} <= seen
    assert any(s.startswith("mgr-code-") for s in seen) and any(s.startswith("prog-") for s in seen)


async def test_goal_without_tasks_is_one_task_per_lane(stack: Any, client: Any) -> None:
    await client.submit({"title": "goal only", "goal": "tidy up", "lanes": ["docs", "code", "data"], "run_id": "g1"})
    st = await client.wait("g1", timeout_s=30)
    assert st["status"] == "completed" and st["lanes"] == ["code", "data", "docs"]
    assert sorted(t["lane"] for t in st["tasks"]) == ["code", "data", "docs"]
    # no model planned them (no keys): each lane echoes the goal and says so
    assert all(t["executor"] == "echo" and t["output"].startswith("not planned by a model")
               and t["output"].endswith(": tidy up") for t in st["tasks"]), st["tasks"]


async def test_idempotent_submission(stack: Any, client: Any) -> None:
    job = {"title": "once", "tasks": [task("code", "true")]}
    a = await client.submit(job, msg_id="same-key-1")
    b = await client.submit(job, msg_id="same-key-1")
    assert a["run_id"] == b["run_id"] and b["duplicate"] is True
    c = await client.submit({**job, "idempotency_key": "k2"})
    d = await client.submit({**job, "idempotency_key": "k2"})
    assert c["run_id"] == d["run_id"] != a["run_id"]
    await client.wait(a["run_id"], timeout_s=30)
    runs = (await client.runs(limit=100))["runs"]
    assert sum(1 for r in runs if r["title"] == "once") == 2
    with pytest.raises(Conflict):
        await client.submit({"title": "x", "run_id": a["run_id"]})


@pytest.mark.parametrize(
    "job, fragment",
    [
        ({"title": "x", "lanes": ["frontend"]}, "lanes"),
        ({"title": ""}, "title"),
        ({"title": "x", "tasks": [task("code", "rm -rf /")]}, "not on the allowlist"),
        ({"title": "x", "tasks": [task("code", "git diff ../../etc/passwd")]}, "escapes the workspace"),
        ({"title": "x", "tasks": [{"lane": "code", "instruction": "x", "executor": "echo", "files": ["../up.py"]}]},
         "escapes"),
        ({"title": "x", "tasks": [{"lane": "code", "instruction": "y" * (1024 * 1024), "executor": "echo"}]},
         "instruction"),
        ({"title": "x", "tasks": [task("code", "echo a && rm -rf /")]}, "shell operators"),
        ({"title": "x", "run_id": "bad id with spaces"}, "run_id"),
        ({"title": "x", "repo": f"{tempfile.gettempdir()}/pas-no-such-repo"}, "not a git repository"),
        ({"title": "x", "repo": "/nonexistent/repo"}, "outside settings.policy.repo_roots"),
    ],
    ids=["unknown-lane", "empty-title", "not-allowlisted", "path-escape", "file-escape", "1mb-instruction",
         "shell-operator", "bad-run-id", "bad-repo", "repo-outside-roots"],
)
async def test_bad_jobs_get_structured_errors(stack: Any, client: Any, job: dict[str, Any], fragment: str) -> None:
    with pytest.raises(BadRequest) as e:
        await client.submit(job)
    assert fragment in e.value.message and e.value.code == 400
    ok = await client.submit({"title": "still serving", "tasks": [task("code", "true")]})
    assert (await client.wait(ok["run_id"], timeout_s=30))["status"] == "completed"


async def test_failing_command_is_a_failed_task(stack: Any, client: Any) -> None:
    await client.submit({"title": "fails", "run_id": "f1", "tasks": [task("code", "python -m pytest --definitely-bad"),
                                                                      task("docs", "true")]})
    st = await client.wait("f1", timeout_s=60)
    assert st["status"] == "failed"
    t = {x["task_id"]: x for x in st["tasks"]}
    assert t["code-1-01"]["status"] == "failed" and t["code-1-01"]["exit_code"] not in (0, None)
    assert t["code-1-01"]["error"].startswith(f"exit code {t['code-1-01']['exit_code']}") and t["code-1-01"]["output"]
    assert t["docs-1-01"]["status"] == "completed"


async def test_status_404_runs_and_cancel(stack: Any, client: Any) -> None:
    with pytest.raises(NotFound):
        await client.status("nope")
    with pytest.raises(NotFound):
        await client.cancel("nope")
    await client.submit({"title": "long", "run_id": "c1", "tasks": [task("code", "sleep 30"), task("data", "sleep 30")]})

    async def running() -> bool:
        st = await client.status("c1")
        return sum(1 for t in st["tasks"] if t["status"] == "running") == 2

    from tests.conftest import wait_for

    await wait_for(running, 20)
    res = await client.cancel("c1")
    assert res["status"] == "cancelled"
    with pytest.raises(Conflict):
        await client.cancel("c1")

    async def all_cancelled() -> Any:
        st = await client.status("c1")
        return st if all(t["status"] == "cancelled" for t in st["tasks"]) else None

    st = await wait_for(all_cancelled, 10)
    assert st["status"] == "cancelled" and st["finished_at"]
    runs = (await client.runs(limit=10, status="cancelled"))["runs"]
    assert [r["run_id"] for r in runs] == ["c1"]


async def test_worktree_per_task_with_branch_and_diff(nats_server: Any, tmp_path: Path) -> None:
    cfg = make_cfg('settings.policy.command_allowlist=["touch *", "git status*", "python -m pytest*"]')
    repo = make_repo(tmp_path)
    async with Stack(cfg, url=nats_server.url), await PasClient.connect(nats_server.url, timeout_s=10) as client:
        # The sample project needs pytest: this job names its environment (the test's interpreter).
        await client.submit({"title": "wt", "run_id": "wt1", "repo": str(repo), "env": sys.executable, "tasks": [
            task("code", "touch a.txt"), task("code", "touch b.txt"), task("docs", "git status --short"),
            task("code", "python -m pytest -q -p no:cacheprovider tests")]})
        st = await client.wait("wt1", timeout_s=60)
    assert st["status"] == "completed", st
    t = {x["task_id"]: x for x in st["tasks"]}
    assert t["code-1-01"]["branch"] == "pas/wt1/code-1-01" and "a.txt" in t["code-1-01"]["diff_stat"]
    assert "b.txt" in t["code-1-02"]["diff_stat"] and "a.txt" not in t["code-1-02"]["diff_stat"]
    assert t["docs-1-01"]["diff_stat"] == ""
    assert "3 passed" in t["code-1-03"]["output"]
    assert t["code-1-03"]["env"].startswith(f"interpreter {sys.executable} (job env")
    branches = subprocess.run(["git", "branch", "--list", "pas/wt1/*"], cwd=repo, capture_output=True,
                              text=True).stdout
    assert "pas/wt1/code-1-01" in branches and "pas/wt1/docs-1-01" in branches
    shown = subprocess.run(["git", "show", "--stat", "pas/wt1/code-1-01"], cwd=repo, capture_output=True,
                           text=True).stdout
    assert "a.txt" in shown
    main_files = subprocess.run(["git", "ls-files"], cwd=repo, capture_output=True, text=True).stdout
    assert "a.txt" not in main_files  # the main checkout is untouched


async def test_task_events_published(stack: Any, client: Any, nc: Any) -> None:
    sub = await nc.subscribe("pas.run.ev1.>")
    await client.submit({"title": "events", "run_id": "ev1", "tasks": [task("code", "true")]})
    await client.wait("ev1", timeout_s=30)
    seen = []
    while True:
        try:
            m = await sub.next_msg(timeout=0.5)
        except Exception:
            break
        seen.append((m.subject, json.loads(m.data).get("status")))
    subjects = [s for s, _ in seen]
    assert ("pas.run.ev1.status", "queued") in seen and ("pas.run.ev1.status", "completed") in seen
    states = [st for s, st in seen if s == "pas.run.ev1.task.code-1-01"]
    # a task this short may report no start (settings.pool.start_report_after_s): then queued -> completed
    assert states in (["queued", "completed"], ["queued", "running", "completed"]), seen
    assert "pas.run.ev1.lane.code" in subjects and "pas.run.ev1.done.plan" in subjects
    assert subjects.index("pas.run.ev1.status") < subjects.index("pas.run.ev1.task.code-1-01")
    assert seen[-1] == (S.run_status("ev1"), "completed")
