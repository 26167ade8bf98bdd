"""What a new user reads in the CLI's text output (issue 20, points 2 and 4): `pas runs` columns with long ids,
a degraded run in `pas status` and in the timeline, who rejected a plan, a failed command's reason once, the
environment line, the client's give-up message, `pas rerun` without recordings, `pas diff` headers,
`pas log --follow --run` ending with the run, and the timeline's labels in Chromium.

One stack for the module (tests/module_stack.py); every `pas` command is a real process. No model key is set
for the planners' profiles (their key variables are renamed to unset ones), so a goal-only job fails over
to the backup profile at every planner, then to the offline planner: a degraded run."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from pas.surfaces.replay.html import LABEL_W
from tests.cli_support import cli_env, dead_port, pas_argv, run_pas
from tests.http_support import BROWSER_ARGS, CHROMIUM
from tests.module_stack import module_stack

pytestmark = pytest.mark.asyncio(loop_scope="module")
NO_KEY = "PAS_TEST_NO_SUCH_KEY"  # never set: the planners' calls fail at once, as without keys
stack, nc, client = module_stack(*(f"models.{p}.api_key_env={NO_KEY}"
                                   for p in ("claude-sonnet", "gemini-flash", "claude-haiku")))


async def pas(st: Any, *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    """`pas ARGS --nats-url URL` as a process (in a thread: the stack runs on this event loop)."""
    return await asyncio.to_thread(run_pas, *args, "--nats-url", st.url, timeout=timeout)


async def wait_status(client: Any, run_id: str, statuses: set[str], timeout_s: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        st = await client.status(run_id)
        if st["status"] in statuses:
            return st
        assert time.monotonic() < deadline, f"{run_id} still {st['status']}"
        await asyncio.sleep(0.1)


@pytest.fixture(scope="module")
def degraded() -> dict[str, str]:
    return {}


async def degraded_run(client: Any, cache: dict[str, str]) -> str:
    """A goal-only job planned without keys: each planner's primary and backup fail, the offline plan runs."""
    if "run" not in cache:
        rid = f"deg-{uuid.uuid4().hex[:8]}"
        await client.submit({"run_id": rid, "title": "degraded", "goal": "document the project", "lanes": ["docs"]})
        assert (await client.wait(rid, timeout_s=60))["status"] == "completed"
        cache["run"] = rid
    return cache["run"]


async def test_runs_columns_fit_uuid_ids_and_waiting_approval(stack: Any, client: Any) -> None:
    rid = str(uuid.uuid4())  # A2A's run ids are UUIDs
    await client.submit({"run_id": rid, "title": "wide columns", "approval_mode": True,
                         "tasks": [{"lane": "code", "instruction": "true", "command": "true"}]})
    await wait_status(client, rid, {"waiting_approval"})
    p = await pas(stack, "runs")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert re.split(r"\s{2,}", lines[0]) == ["RUN", "STATUS", "CREATED", "TITLE"], lines[0]
    mine = next(ln for ln in lines if ln.startswith(rid))
    cells = re.split(r"\s{2,}", mine)
    assert cells[:2] == [rid, "waiting_approval"] and cells[-1] == "wide columns", mine
    starts = [lines[0].index(h) for h in ("STATUS", "CREATED", "TITLE")]  # every row's cells under the headers
    assert all(ln[s - 2:s] == "  " for ln in lines[1:] for s in starts), p.stdout
    rej = await pas(stack, "reject", rid, "--by", "root", "--reason", "not now")
    assert rej.returncode == 0, rej.stderr
    st = await pas(stack, "status", rid, "--json")
    assert json.loads(st.stdout)["message"] == "rejected by user root: not now"
    plan = await pas(stack, "plan", rid)
    assert "approval: rejected by user root;" in plan.stdout, plan.stdout


async def test_degraded_run_says_so_in_status_and_timeline(stack: Any, client: Any, degraded: dict[str, str]) -> None:
    rid = await degraded_run(client, degraded)
    p = await pas(stack, "status", rid)
    assert p.returncode == 0, p.stderr
    head = p.stdout.splitlines()
    assert head[0].startswith(f"run {rid} COMPLETED (degraded)"), p.stdout
    assert head[1].startswith("degraded: ") and "missing API key" in head[1] and "dir-docs" in head[1], p.stdout
    calls = [json.loads(x) for x in (await pas(stack, "log", "--run", rid, "--type", "LLM", "--json")).stdout.split("\n")
             if x]
    backups = [c for c in calls if c["metadata"].get("backup")]
    planners = {c["from_agent"] for c in calls}
    assert planners >= {"architect", "dir-docs"} and len(backups) == len(planners), calls
    tl = await pas(stack, "replay", rid)
    assert f", {len(backups)} failovers" in tl.stdout, tl.stdout
    assert tl.stdout.count(" FAILOVER") == len(backups), tl.stdout


async def test_rerun_without_recordings_and_diff_say_what_there_is(stack: Any, client: Any,
                                                                   degraded: dict[str, str]) -> None:
    rid = await degraded_run(client, degraded)
    r = await pas(stack, "rerun", rid)
    assert r.returncode == 1, r.stdout + r.stderr
    assert f"run {rid} has no recorded model calls" in r.stderr, r.stderr
    assert "diverged at architect call 1: run " in r.stdout and "has no recordings to replay; stop" in r.stdout
    assert "None" not in r.stdout, r.stdout
    d = await pas(stack, "diff", rid, f"{rid}-r1")
    assert d.returncode == 1, d.stdout + d.stderr
    lines = d.stdout.splitlines()
    for i, ln in enumerate(lines):  # a diff header is followed by a diff, or says why there is none
        if ln.strip().startswith(("---", "+++")):
            assert not ln.rstrip().endswith((rid, f"{rid}-r1")) or (
                i + 1 < len(lines) and lines[i + 1].startswith("    ")), d.stdout


async def test_failed_command_reason_once_and_environment_line(stack: Any, client: Any, tmp_path: Path) -> None:
    rid = f"fail-{uuid.uuid4().hex[:8]}"
    await client.submit({"run_id": rid, "title": "no tests", "env": sys.prefix,  # PAS's own venv, chosen by the job
                         "tasks": [{"lane": "code", "instruction": "python -m pytest -q",
                                    "command": "python -m pytest -q"}]})
    assert (await client.wait(rid, timeout_s=60))["status"] == "failed"
    p = await pas(stack, "status", rid)
    assert p.stdout.count("no tests ran") == 1, p.stdout
    assert f"environment of every task: venv {sys.prefix} (job env; also PAS's own environment)" in p.stdout, p.stdout


async def test_client_without_server_names_its_own_timeout_setting() -> None:
    p = await asyncio.to_thread(run_pas, "runs", "--nats-url", f"nats://127.0.0.1:{dead_port()}",
                                "-c", "settings.nats.client_connect_timeout_s=1")
    assert p.returncode == 1 and "settings.nats.client_connect_timeout_s" in p.stderr, p.stderr
    assert "settings.nats.connect_timeout_s" not in p.stderr, p.stderr


async def test_log_follow_of_a_run_ends_with_the_run(stack: Any, client: Any) -> None:
    rid = f"follow-{uuid.uuid4().hex[:8]}"
    proc = subprocess.Popen(pas_argv(["pas", "log", "--follow", "--run", rid, "--nats-url", stack.url or ""]),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env(),
                            stdin=subprocess.DEVNULL)
    try:
        await client.submit({"run_id": rid, "title": "followed",
                             "tasks": [{"lane": "code", "instruction": "echo hi", "command": "echo hi"}]})
        assert (await client.wait(rid, timeout_s=60))["status"] == "completed"
        out, err = await asyncio.to_thread(proc.communicate, timeout=30)  # it ends by itself
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert f"run {rid} completed" in out.splitlines()[-1], out  # root's last STATUS entry came first
    ended = await pas(stack, "log", "--follow", "--run", rid, timeout=30)  # a run that has ended: at once
    assert ended.returncode == 0 and f"run {rid} completed" in ended.stdout.splitlines()[-1], ended


async def test_timeline_labels_stay_left_of_the_bars(stack: Any, client: Any, tmp_path: Path) -> None:
    from playwright.async_api import async_playwright

    rid = str(uuid.uuid4())
    await client.submit({"run_id": rid, "title": "a uuid run",
                         "tasks": [{"lane": "code", "instruction": "true", "command": "true"}]})
    assert (await client.wait(rid, timeout_s=60))["status"] == "completed"
    page = tmp_path / "tl.html"
    r = await pas(stack, "replay", rid, "--html", str(page))
    assert r.returncode == 0, r.stderr
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS, headless=True)
        try:
            pg = await browser.new_page(viewport={"width": 1300, "height": 700})
            await pg.goto(page.as_uri())
            labels = await pg.eval_on_selector_all("text.label", """els => els.map(e => ({
                text: e.textContent, right: e.getBBox().x + e.getBBox().width}))""")
            bars_x = await pg.eval_on_selector_all("rect.bar", "els => els.map(e => e.getBBox().x)")
        finally:
            await browser.close()
    assert any(rid[:8] in lb["text"] for lb in labels), labels
    assert all(lb["right"] < min(bars_x) for lb in labels) and min(bars_x) >= LABEL_W, (labels, bars_x)
