"""Issue 19, points 2-4: a job acts only where its submitter may; PAS's own git never runs what a
task wrote; everything a task produces is bounded where it is stored and cleaned where it is shown.

One stack with the HTTP adapter on the module's own nats-server; attacks are planted as probe.py
(tests/hostile_probe.py) and run as allowlisted command tasks through the real pool and sandbox.
Each test ends with a normal job that completes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from pas.base.errors import BadRequest
from pas.base.programs import remove_tree
from pas.base.textsafe import clean
from pas.execution import gitsafe
from pas.execution.executors import worktree_dir
from pas.execution.sandbox import _chown_tree
from pas.protocol import subjects as S
from pas.protocol import wire
from pas.runtime import comms
from pas.surfaces.http.backend import Backend
from pas.surfaces.mcp.tools import Ops
from pas.transport.client import PasClient
from pas.transport.server import EmbeddedServer
from tests.cli_support import run_pas
from tests.conftest import make_cfg
from tests.http_support import http_cfg
from tests.test_hostile import PROBE
from tests.test_http_adapter import Http, _http
from tests.test_pipeline import make_repo, task

pytestmark = pytest.mark.asyncio(loop_scope="module")

OVERRIDES = [
    f"settings.policy.command_allowlist={json.dumps([*make_cfg().settings.policy.command_allowlist, 'python probe.py*'])}",
    "settings.pool.task_timeout_s=300",
]
TERMINAL = ("\x1b", "\x07", "\x9b", "\x9d")
"""What must never reach a terminal from `pas`: ESC, BEL, C1 CSI and OSC."""


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def h(module_server: EmbeddedServer) -> AsyncIterator[Http]:
    async with _http(http_cfg(*OVERRIDES), module_server.url) as hh:
        yield hh


@pytest_asyncio.fixture(loop_scope="module")
async def client(h: Http) -> AsyncIterator[PasClient]:
    async with await PasClient.connect(h.stack.url or "", timeout_s=30) as c:
        yield c


@pytest.fixture
def big_tmp(tmp_path: Path) -> Iterator[Path]:
    """tmp_path, removed afterwards by rm -rf: a 1,500-deep tree kills the RecursionError-prone
    shutil.rmtree with which pytest cleans old temporary directories (in every later session)."""
    try:
        yield tmp_path
    finally:
        remove_tree(tmp_path)


@pytest.fixture
def outside() -> Iterator[Path]:
    """A directory outside every configured repo root (the tests allow the temp dir and the checkout)."""
    d = Path(tempfile.mkdtemp(prefix="pas-outside-", dir="/var/tmp"))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def plant(tmp_path: Path, **params: Any) -> tuple[Path, Path]:
    """A repository holding probe.py and its parameters; returns it and a directory outside it that
    an attack that got out would leave a mark in."""
    repo = make_repo(tmp_path)
    mark = tmp_path / "marks"
    mark.mkdir()
    shutil.copy(PROBE, repo / "probe.py")
    (repo / "probe.json").write_text(json.dumps({"outside": str(mark), **params}))
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "plant")
    return repo, mark


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=repo, check=True,
                          capture_output=True, text=True).stdout


async def attack(client: PasClient, repo: Path, run_id: str, *commands: str) -> dict[str, Any]:
    await client.submit({"title": run_id, "run_id": run_id, "repo": str(repo),
                         "tasks": [task("code", c) for c in commands]})
    return await client.wait(run_id, timeout_s=600)


async def still_serving(client: PasClient, run_id: str) -> None:
    await client.submit({"title": "next", "run_id": run_id + "-next", "tasks": [task("code", "echo still serving")]})
    nxt = await client.wait(run_id + "-next", timeout_s=60)
    assert nxt["status"] == "completed" and "still serving" in nxt["tasks"][0]["output"], nxt


async def pas(h: Http, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`pas ARGS` in its own process, off the event loop (the stack under test runs on it)."""
    return await asyncio.to_thread(run_pas, *args, "--nats-url", h.stack.url or "", timeout=timeout)


def no_terminal_controls(text: str) -> None:
    bad = [c for c in TERMINAL if c in text]
    assert not bad, (bad, text[:2000])


# ---- point 2: where a job may act ------------------------------------------------------------
async def test_repo_outside_roots_env_script_and_traversing_ids_refused(h: Http, client: PasClient, tmp_path: Path,
                                                                        outside: Path) -> None:
    foreign = make_repo(outside)  # a real git repository, outside settings.policy.repo_roots
    link = tmp_path / "link-to-foreign"
    link.symlink_to(foreign)  # inside a root by name, outside it once resolved
    inside = make_repo(tmp_path)
    script = tmp_path / "bin" / "python3"
    script.parent.mkdir()
    script.write_text("#!/bin/sh\necho pwned\n")
    script.chmod(0o755)
    fake_venv = tmp_path / "venv"
    (fake_venv / "bin").mkdir(parents=True)
    (fake_venv / "bin" / "python").symlink_to(script)
    echo = [task("code", "echo hi")]

    # NATS: pas.gateway.submit answers a structured 400 naming the field.
    for repo in (foreign, link):
        with pytest.raises(BadRequest) as e:
            await client.submit({"title": "x", "repo": str(repo), "tasks": echo})
        assert e.value.message.startswith(f"repo {str(repo)!r}") and "outside settings.policy.repo_roots" in e.value.message
    for env in (script, fake_venv):
        with pytest.raises(BadRequest) as e:
            await client.submit({"title": "x", "repo": str(inside), "env": str(env), "tasks": echo})
        assert e.value.message.startswith("env ") and "not a Python interpreter" in e.value.message, e.value.message
    with pytest.raises(BadRequest) as e:
        await client.submit({"title": "x", "run_id": "../../x", "tasks": echo})
    assert "run_id" in e.value.message

    # HTTP: the same rules on the gateway and on a programmer's /execute (ids in bodies and paths).
    r = await h.c.post(h.u("gateway", "/submit"), json={"title": "x", "repo": str(link), "tasks": echo})
    assert r.status_code == 400 and "repo" in r.text and "repo_roots" in r.text, r.text
    r = await h.c.post(h.u("gateway", "/prime_directives"), json={"title": "x", "goal": "g", "repo_root": str(foreign)})
    assert r.status_code == 400 and "repo_roots" in r.text, r.text
    card = {"job_id": "j1", "run_id": "te-card", "tasks": [{"lane": "code", "instruction": "hi", "executor": "echo"}]}
    r = await h.c.post(h.u("mgr-code-02", "/submit"), json={**card, "repo": str(link)})  # a lane's direct submit
    assert r.status_code == 400 and "repo_roots" in r.text, r.text
    r = await h.c.post(h.u("mgr-code-02", "/submit"), json={**card, "job_id": "../j"})
    assert r.status_code == 422 and "job_id" in r.text, r.text
    prog = next(a.id for a in h.stack.cfg.agents if a.role == "prog")
    made = Path(tempfile.gettempdir()) / "pas-te-escape"
    for run_id in ("../../../../tmp/pas-te-escape", str(made), "a/b", ".."):
        r = await h.c.post(h.u(prog, "/execute"), json={"instruction": "echo", "executor": "echo", "run_id": run_id})
        assert r.status_code == 422 and "run_id" in r.text, (run_id, r.text)
        r = await h.c.post(h.u(prog, "/execute"), json={"instruction": "echo", "executor": "echo", "job_id": run_id})
        assert r.status_code == 422 and "job_id" in r.text, (run_id, r.text)
    assert not made.exists()
    r = await h.c.post(h.u(prog, "/execute"), json={"instruction": "echo", "command": "echo hi", "repo": str(foreign)})
    assert r.status_code == 400 and "repo_roots" in r.text, r.text
    r = await h.c.post(h.u(prog, "/execute"), json={"instruction": "echo", "command": "echo hi", "repo": str(inside),
                                                     "env": str(script)})
    assert r.status_code == 400 and "not a Python interpreter" in r.text, r.text
    for path in ("/runs/.hidden", "/runs/-x", "/runs/a.b"):
        r = await h.c.get(h.u("gateway", path))
        assert r.status_code == 422, (path, r.text)

    # MCP: run_diff takes no repository from the caller.
    backend = await Backend.open(h.stack.cfg, h.stack.url or "")
    try:
        with pytest.raises(BadRequest, match="`repo` is not an argument"):
            await Ops(backend).run_diff({"run_id": "x", "repo": str(foreign)}, _no_progress)
        with pytest.raises(BadRequest, match="run_id"):
            await Ops(backend).run_diff({"run_id": "../x"}, _no_progress)
    finally:
        await backend.close()

    # CLI: the id is checked before anything is sent.
    p = await pas(h, "status", "../../x")
    assert p.returncode == 2 and "invalid id" in p.stderr, p.stderr

    ok = await attack(client, inside, "te-inside", "echo inside")
    assert ok["status"] == "completed" and ok["tasks"][0]["output"].strip() == "inside", ok


async def _no_progress(*_: Any) -> None:
    return None


# ---- point 3: PAS's git never runs what a task wrote -----------------------------------------
async def test_nested_repo_with_external_diff_is_never_run(h: Http, client: PasClient, tmp_path: Path) -> None:
    repo, mark = plant(tmp_path)
    st = await attack(client, repo, "te-nested", "python probe.py nested_ext_diff")
    [t] = st["tasks"]
    assert t["status"] == "failed" and "nested git repositories (nested)" in t["error"], t
    wt = worktree_dir(repo, "te-nested", t["task_id"])
    assert (wt / "changed.txt").exists() and (wt / "nested" / ".git").is_dir()  # kept for a look
    # PAS's hardened git, even pointed straight at the nested repository, runs none of its config
    # (diff.external, the textconv its .gitattributes selects, core.fsmonitor).
    for args in (("diff", "HEAD"), ("status", "--porcelain"), ("log", "-p", "-1")):
        rc, out = await gitsafe.run_git(wt / "nested", *args)
        assert rc == 0, out
    assert "+changed" in (await gitsafe.run_git(wt / "nested", "diff", "HEAD"))[1]
    assert list(mark.iterdir()) == []
    backend = await Backend.open(h.stack.cfg, h.stack.url or "")
    try:
        d = await Ops(backend).run_diff({"run_id": "te-nested", "per_task": True}, _no_progress)
        assert d["repo"] == str(repo.resolve())
    finally:
        await backend.close()
    assert list(mark.iterdir()) == []
    entries = [e async for e in comms.read(client.nc.jetstream(), run_id="te-nested")]
    assert any(e.msg_type == "RESPONSE" and "nested git repositories" in e.message for e in entries)
    await still_serving(client, "te-nested")


async def test_commit_that_fails_fails_the_task_and_is_not_integrated(h: Http, client: PasClient,
                                                                      tmp_path: Path) -> None:
    repo, _ = plant(tmp_path)
    st = await attack(client, repo, "te-attrs", "python probe.py bad_attributes")
    [t] = st["tasks"]
    assert t["status"] == "failed" and "could not commit" in t["error"] and "bogus" in t["error"], t
    assert st["status"] == "failed" and st["result_branch"] is None, st
    wt = worktree_dir(repo, "te-attrs", t["task_id"])
    assert (wt / "changed.txt").read_text() == "lost work?\n"  # the work is still there
    entries = [e async for e in comms.read(client.nc.jetstream(), run_id="te-attrs")]
    assert not [e.message for e in entries if "integrated" in e.message]
    assert any(e.msg_type == "RESPONSE" and "could not commit" in e.message for e in entries)
    await still_serving(client, "te-attrs")


async def test_1500_nested_directories(h: Http, client: PasClient, big_tmp: Path) -> None:
    tmp_path = big_tmp
    repo, _ = plant(tmp_path, depth=1500)
    st = await attack(client, repo, "te-deep", "python probe.py deep_dirs")
    [t] = st["tasks"]
    assert t["status"] == "completed" and t["attempts"] == 1 and "1 file changed" in t["diff_stat"], t
    assert st["status"] == "completed", st
    # The hand-over walk (before a task; a later launch in the same workspace walks what an earlier
    # one wrote) has no recursion: 1,500 levels are nothing to it.
    deep = tmp_path / "walk"
    deep.mkdir()
    with contextlib.chdir(deep):  # one level at a time: os.makedirs itself recurses
        for _ in range(1500):
            os.mkdir("d")
            os.chdir("d")
    _chown_tree(deep, os.geteuid())
    assert gitsafe.nested_repos(deep) == []
    await still_serving(client, "te-deep")


# ---- point 4: bounded where stored, clean where shown ----------------------------------------
async def test_60000_long_file_names_leave_a_readable_status(h: Http, client: PasClient, big_tmp: Path) -> None:
    tmp_path = big_tmp
    repo, _ = plant(tmp_path, names=60000)
    st = await attack(client, repo, "te-names", "python probe.py many_names", "python probe.py many_names")
    assert [t["status"] for t in st["tasks"]] == ["completed", "completed"], [t["error"] for t in st["tasks"]]
    for t in st["tasks"]:
        *listed, more, summary = t["diff_stat"].splitlines()
        m = re.fullmatch(r" \.\.\. (\d+) more files", more)
        assert m and len(listed) + int(m.group(1)) == 60000 and "60000 files changed" in summary, t["diff_stat"][-300:]
        assert 0 < len(listed) <= 50 and len(t["diff_stat"].encode()) <= 8192
    p = await pas(h, "status", "te-names")
    assert p.returncode == 0 and "run te-names COMPLETED" in p.stdout, p.stdout + p.stderr
    assert all(t["task_id"] in p.stdout for t in st["tasks"])
    p = await pas(h, "status", "te-names", "--json")
    assert p.returncode == 0 and json.loads(p.stdout)["tasks"][1]["diff_stat"] == st["tasks"][1]["diff_stat"]
    p = await pas(h, "status", "te-names", "--page", "1")
    assert p.returncode == 0 and "tasks 1-2 of 2 (page 1)" in p.stdout, p.stdout[-500:]
    page = await client.status_page("te-names", 1, 1)
    assert [t["task_id"] for t in page["tasks"]] == [st["tasks"][1]["task_id"]]
    assert page["tasks_total"] == 2 and page["offset"] == 1 and page["next_offset"] is None
    r = await h.c.get(h.u("gateway", "/runs/te-names"), params={"offset": 0, "limit": 1})
    assert r.status_code == 200 and len(r.json()["tasks"]) == 1 and r.json()["next_offset"] == 1, r.text
    await still_serving(client, "te-names")


async def test_status_pages_fit_max_payload_by_construction(h: Http, client: PasClient) -> None:
    """A run whose task records together pass max_payload (each one as big as PAS stores them): the
    gateway cuts each reply to fit and says where the rest starts; PasClient.status joins the pages."""
    js = client.nc.jetstream()
    runs, tree = await js.key_value(S.KV_RUNS), await js.key_value(S.KV_TREE)
    await runs.put("te-big", wire.encode(wire.RunRecord(run_id="te-big", title="big", status="completed",
                                                         created_at=wire.now())))
    stat = "\n".join(f" many/{i:06d}-{'n' * 150} | 0" for i in range(50)) + "\n ... 59950 more files"

    def rec(i: int) -> bytes:
        return wire.encode(wire.TaskRecord(
            task_id=f"code-1-{i:04d}", run_id="te-big", job_id="1", lane="code", manager="mgr-code-01",
            executor="command", instruction="i" * 2000, status="completed", error="e" * wire.MAX_ERROR,
            diff_stat=stat[:8192]))
    await asyncio.gather(*(tree.put(S.task_key("te-big", f"code-1-{i:04d}"), rec(i)) for i in range(1000)))
    first = await client.status_page("te-big")
    assert first["tasks_total"] == 1000 and first["next_offset"] == len(first["tasks"]) < 1000, first["next_offset"]
    assert len(json.dumps(first).encode()) <= client.nc.max_payload
    whole = await client.status("te-big")
    assert [t["task_id"] for t in whole["tasks"]] == [f"code-1-{i:04d}" for i in range(1000)]
    r = await h.c.get(h.u("gateway", "/runs/te-big"))
    assert r.status_code == 200 and r.json()["next_offset"] == first["next_offset"], r.text[:300]
    p = await pas(h, "status", "te-big", "--page", "10")
    assert p.returncode == 0 and "tasks 901-1000 of 1000 (page 10)" in p.stdout, p.stdout[-300:]


async def test_runs_page_past_1000(h: Http, client: PasClient) -> None:
    kv = await client.nc.jetstream().key_value(S.KV_RUNS)
    old = wire.now().replace(year=2001)
    await asyncio.gather(*(kv.put(f"te-old-{i:04d}", wire.encode(wire.RunRecord(
        run_id=f"te-old-{i:04d}", title=f"old {i}", status="completed", created_at=old.replace(second=i % 60,
                                                                                                minute=i // 60))))
        for i in range(1005)))
    first = await client.runs(limit=1000)
    assert len(first["runs"]) == 1000 and first["next_offset"] == 1000 and first["total"] >= 1005
    rest = await client.runs(limit=1000, offset=1000)
    assert len(rest["runs"]) == first["total"] - 1000 and rest["next_offset"] is None
    assert rest["runs"][-1]["run_id"] == "te-old-0000"  # the oldest, last
    r = await h.c.get(h.u("gateway", "/runs"), params={"offset": 1000, "limit": 1000})
    assert r.status_code == 200 and r.json()["runs"] == rest["runs"]
    p = await pas(h, "runs", "--offset", "1000", "--limit", "1000")
    assert p.returncode == 0 and "te-old-0000" in p.stdout
    p = await pas(h, "runs", "--limit", "3")
    assert p.returncode == 0 and "pas runs --offset 3" in p.stdout, p.stdout


async def test_no_raw_escape_reaches_the_terminal(h: Http, client: PasClient, tmp_path: Path) -> None:
    repo, _ = plant(tmp_path)
    st = await attack(client, repo, "te-esc", "python probe.py terminal_escapes")
    [t] = st["tasks"]
    assert t["status"] == "failed" and "\x1b]52;" in t["output"], t  # stored as the task wrote it ...
    outputs = {
        "status": await pas(h, "status", "te-esc"),
        "log": await pas(h, "log", "--run", "te-esc"),
        "replay": await pas(h, "replay", "te-esc"),
        "runs": await pas(h, "runs"),
        "submit --wait": await pas(h, "submit", "esc again", "--run-id", "te-esc2", "--repo", str(repo),
                             "--task", "code:python probe.py terminal_escapes", "--wait"),
    }
    for name, p in outputs.items():  # ... and shown without anything a terminal would act on
        no_terminal_controls(p.stdout + p.stderr)
        assert "Traceback" not in p.stderr, (name, p.stderr)
    assert "before" in outputs["status"].stdout and "after" in outputs["status"].stdout
    assert outputs["submit --wait"].returncode == 1  # the run failed, and says so readably
    assert clean("a\x1b]52;c;eA==\x07b\x1b[2Jc\x1b]0;t\x1b\\d\x9b31me\tf\ng\r") == "abcde\tf\ng"
    await still_serving(client, "te-esc")


async def test_cli_cleans_every_write() -> None:
    """The print boundary itself: a `pas` process whose output carries escapes writes none."""
    code = ("import sys; from pas.base.textsafe import terminal; sys.stdout = terminal(sys.stdout); "
            "print('x\\x1b]52;c;eA==\\x07y\\x1b[2J'); sys.stdout.write('\\x1b]0;t\\x07z\\n')")
    p = await asyncio.to_thread(subprocess.run, [sys.executable, "-c", code], capture_output=True, text=True)
    assert p.returncode == 0 and p.stdout == "xy\nz\n", p
