"""Shared by the MCP and A2A tests: a git repo, the stack config whose allowlist lets a `command`
task write a file, and the one MCP scenario both transports run."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import jsonschema

from pas.protocol import wire
from pas.surfaces.mcp.tools import TOOLS
from tests.conftest import wait_for

# A command task that changes a file in its worktree (the test's allowlist entry, via -c).
WRITE_CMD = "python -c \"open('NOTES.md', 'a').write('written by a PAS task\\n')\""
# Waits (at most 60 s) for <repo>/.git/pas-go: the task's worktree is <repo>/.pas/worktrees/<run>/<task>,
# and the sandbox shows a task its repo's .git (read-only), so the marker is seen there.
WAIT_CMD = ("python -c \"import pathlib, time; go = pathlib.Path('..', '..', '..', '..', '.git', 'pas-go'); "
            "[time.sleep(0.05) for _ in range(1200) if not go.exists()]; assert go.exists()\"")
ALLOW = 'settings.policy.command_allowlist=["python -c *", "git status*", "sleep *"]'


def make_repo(root: Path) -> Path:
    repo = root / "repo"
    repo.mkdir()
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@localhost"]
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=repo, check=True)
    (repo / "README.md").write_text("sample\n")
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "init"], cwd=repo, check=True)
    return repo


def job(repo: Path, run_id: str) -> dict[str, Any]:
    return {"title": "mcp test: write a note", "run_id": run_id, "repo": str(repo),
            "tasks": [{"lane": "code", "instruction": "write NOTES.md", "command": WRITE_CMD},
                      {"lane": "docs", "instruction": "git status", "command": "git status --short"}]}


async def check_tools(session: Any) -> dict[str, Any]:
    listed = (await session.list_tools()).tools
    by_name = {t.name: t for t in listed}
    assert set(by_name) == set(TOOLS)
    for t in listed:
        assert t.description and len(t.description) > 40, t.name
        assert t.input_schema["type"] == "object"
        jsonschema.Draft202012Validator.check_schema(t.input_schema)
    submit = by_name["submit_job"].input_schema
    assert {"title", "goal", "repo", "lanes", "tasks", "budget", "approval_mode", "wait"} <= set(submit["properties"])
    assert by_name["approve_run"].input_schema["required"] == ["run_id"]
    assert submit["required"] == ["title"]
    jsonschema.validate({"title": "x", "tasks": [{"lane": "code", "instruction": "i"}], "wait": True}, submit)
    bad = jsonschema.Draft202012Validator(submit)
    assert not bad.is_valid({"title": "x", "lanes": ["nope"]})
    return by_name


def data(result: Any) -> Any:
    assert not result.is_error, result.content[0].text
    assert json.loads(result.content[0].text) == result.structured_content
    return result.structured_content


async def scenario(session: Any, repo: Path, run_id: str) -> None:
    """Tools, a job followed to the end through progress notifications, log, diff, bad arguments."""
    await session.initialize()
    await check_tools(session)
    seen: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total, message))

    final = data(await session.call_tool("submit_job", {**job(repo, run_id), "wait": True, "timeout_s": 120},
                                         progress_callback=on_progress))
    assert final["run_id"] == run_id and final["status"] == "completed", final
    assert {t["status"] for t in final["tasks"]} == {"completed"}
    # Progress came from the run's events, in order, ending with the run's end.
    assert [p for p, _, _ in seen] == list(range(1, len(seen) + 1)), seen
    messages = [m for _, _, m in seen]
    # First where the run stood when the watch began, then every event since the submit (subscribed
    # before it), the gateway's "queued" first.
    assert messages[0].startswith(("run queued: ", "run running: ")) and messages[1] == "run queued", messages
    assert messages[-1].startswith("run completed"), messages
    assert any(m and m.startswith("task ") and m.endswith("completed (code)") for m in messages), messages

    st = data(await session.call_tool("run_status", {"run_id": run_id}))
    assert st["status"] == "completed" and len(st["tasks"]) == 2
    wire.decode(json.dumps(st).encode(), wire.RunStatus)  # the wire type, as the gateway sent it

    # Submit without waiting, then wait_run. The task waits for a marker file that the test writes
    # on wait_run's first notification (sent once it is subscribed): the run ends after that, so
    # its events must come as notifications. run_diff finds the repo in the run's record.
    reply = data(await session.call_tool("submit_job", {
        "title": "second", "repo": str(repo),
        "tasks": [{"lane": "docs", "instruction": "wait for the marker", "command": WAIT_CMD}]}))
    wire.decode(json.dumps(reply).encode(), wire.SubmitReply)
    later: list[str | None] = []

    async def on_wait(progress: float, total: float | None, message: str | None) -> None:
        later.append(message)
        (repo / ".git" / "pas-go").touch()

    done = data(await session.call_tool("wait_run", {"run_id": reply["run_id"], "timeout_s": 120},
                                        progress_callback=on_wait))
    assert done["status"] == "completed", done
    assert later[0].startswith(("run queued: ", "run running: ")) and later[-1].startswith("run completed"), later
    assert any(m and m.startswith("task ") and m.endswith("completed (docs)") for m in later), later
    second = data(await session.call_tool("run_diff", {"run_id": reply["run_id"]}))
    assert second["repo"] == str(repo.resolve()) and [d["diff"] for d in second["diffs"]] == [""]
    assert second["result_branch"] is None  # nothing changed: nothing to merge

    log = data(await session.call_tool("run_log", {"run_id": run_id}))
    assert log["count"] == len(log["entries"]) > 0
    assert {e["run_id"] for e in log["entries"]} == {run_id}
    assert any(e["msg_type"] == "STATUS" and "completed" in e["message"] for e in log["entries"])

    # By default the run's merged result (Root merged the changed task branches into pas/<run>/result).
    merged = data(await session.call_tool("run_diff", {"run_id": run_id}))
    assert merged["result_branch"] == final["result_branch"] == f"pas/{run_id}/result" and merged["conflicts"] == []
    [res] = merged["diffs"]
    assert res["task_id"] is None and res["branch"] == f"pas/{run_id}/result"
    assert "+written by a PAS task" in res["diff"] and "NOTES.md" in res["diff"]
    diff = data(await session.call_tool("run_diff", {"run_id": run_id, "per_task": True}))
    by_task = {d["task_id"]: d for d in diff["diffs"]}
    assert len(by_task) == 2
    code_task = next(t["task_id"] for t in final["tasks"] if t["lane"] == "code")
    assert "+written by a PAS task" in by_task[code_task]["diff"]
    assert "NOTES.md" in by_task[code_task]["diff"]
    assert by_task[code_task]["branch"] == f"pas/{run_id}/{code_task}"
    one = data(await session.call_tool("run_diff", {"run_id": run_id, "task_id": code_task}))
    assert [d["task_id"] for d in one["diffs"]] == [code_task]

    agents = data(await session.call_tool("agents", {}))
    gw = next(a for a in agents["agents"] if a["role"] == "gateway")
    assert gw["state"] in ("alive", "unknown") and "model" in gw
    probed = data(await session.call_tool("agents", {"probe": True}))["agents"]
    assert len(probed) == len(agents["agents"]) and all(a["reachable"] for a in probed), probed
    assert next(a for a in probed if a["role"] == "gateway")["state"] == "alive"

    # Approval mode: the run waits for a decision; approve_run lets it run, reject_run ends another.
    for decision, end in (("approve_run", "completed"), ("reject_run", "rejected")):
        held = data(await session.call_tool("submit_job", {
            "title": f"held for {decision}", "approval_mode": True, "repo": str(repo),
            "tasks": [{"lane": "docs", "instruction": "status", "command": "git status --short"}]}))
        rid = held["run_id"]

        async def waiting() -> bool:
            return data(await session.call_tool("run_status", {"run_id": rid}))["status"] == "waiting_approval"

        await wait_for(waiting, timeout_s=30)
        data(await session.call_tool(decision, {"run_id": rid, "by": "mcp test", "reason": "checked"}))
        ended = data(await session.call_tool("wait_run", {"run_id": rid, "timeout_s": 60}))
        assert ended["status"] == end, ended
    late = await session.call_tool("approve_run", {"run_id": rid})
    assert late.is_error and "(409)" in late.content[0].text, late.content[0].text

    # Bad arguments: tool errors with PAS's text, and the server goes on.
    bad = await session.call_tool("run_status", {"run_id": "no such run!"})
    assert bad.is_error and "bad_request (400)" in bad.content[0].text, bad.content[0].text
    missing = await session.call_tool("run_status", {"run_id": "nosuchrun"})
    assert missing.is_error and "(404)" in missing.content[0].text, missing.content[0].text
    wrong = await session.call_tool("submit_job", {"title": "x", "lanes": ["nope"]})
    assert wrong.is_error and "lanes" in wrong.content[0].text, wrong.content[0].text
    extra = await session.call_tool("run_log", {"run": run_id})
    assert extra.is_error and "unknown field" in extra.content[0].text, extra.content[0].text
    again = await session.call_tool("cancel_run", {"run_id": run_id})
    assert again.is_error and "(409)" in again.content[0].text, again.content[0].text
    inject = await session.call_tool("run_diff", {"run_id": run_id, "base": "--output=x"})
    assert inject.is_error and "base" in inject.content[0].text and not (repo / "x").exists(), inject
    named = await session.call_tool("run_diff", {"run_id": run_id, "repo": "/"})  # never a path the caller names
    assert named.is_error and "`repo` is not an argument" in named.content[0].text, named.content[0].text
    unknown = await session.call_tool("no_such_tool", {})
    assert unknown.is_error
    assert data(await session.call_tool("run_status", {"run_id": run_id}))["status"] == "completed"
