"""The sandbox itself: refusal without bwrap, the warning with it off, the scrubbed environment, the
workspace handed back, and the unprivileged-user path (bwrap's own user namespace)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from pas.base.programs import remove_tree
from pas.execution.executors import Bounds, run_argv
from pas.execution.sandbox import Box, Limits, clean_env, wrap
from pas.runtime import comms
from pas.surfaces.stack import Stack
from tests.conftest import CODE_LANE, make_cfg
from tests.test_pipeline import task


def test_clean_env_keeps_the_allowlist_only() -> None:
    src = {"PATH": "/usr/bin", "LANG": "C.UTF-8", "LC_ALL": "C", "OPENAI_API_KEY": "sk-x", "PAS_HTTP_TOKEN": "t",
           "NATS_PASSWORD": "p", "HOME": "/root", "PYTHONPATH": "/pas", "MY_DB_URL": "postgres://x"}
    env = clean_env({"VIRTUAL_ENV": "/repo/.venv"}, passthrough=("MY_DB_*",), source=src)
    assert {k: env[k] for k in ("PATH", "LANG", "LC_ALL", "MY_DB_URL", "VIRTUAL_ENV")} == {
        "PATH": "/usr/bin", "LANG": "C.UTF-8", "LC_ALL": "C", "MY_DB_URL": "postgres://x", "VIRTUAL_ENV": "/repo/.venv"}
    assert env["HOME"] == "/tmp" and env["TMPDIR"] == "/tmp"
    assert not {"OPENAI_API_KEY", "PAS_HTTP_TOKEN", "NATS_PASSWORD", "PYTHONPATH"} & set(env)


async def test_missing_bwrap_warns_at_start_and_refuses_tasks(nats_server: Any, client: Any,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    cfg = make_cfg("settings.policy.sandbox_bwrap=/nonexistent/bwrap")
    caplog.set_level(logging.WARNING)
    async with Stack(cfg, url=nats_server.url, only=CODE_LANE):
        assert any("no sandbox" in r.getMessage() and "REFUSED" in r.getMessage() for r in caplog.records)
        await client.submit({"title": "refused", "run_id": "nobw", "tasks": [task("code", "true")]})
        t = (await client.wait("nobw", timeout_s=30))["tasks"][0]
        assert t["status"] == "failed" and "refused: no sandbox for command tasks" in t["error"]
        assert "/nonexistent/bwrap" in t["error"] and "sandbox: off" in t["error"]
        entries = [e async for e in comms.read(client.nc.jetstream(), run_id="nobw")]
        assert any(e.msg_type == "RESPONSE" and "refused: no sandbox" in e.message for e in entries)
        # echo tasks run no process: the programmer keeps serving them
        await client.submit({"title": "echo", "run_id": "nobw2", "tasks": [
            {"lane": "code", "instruction": "hi", "executor": "echo"}]})
        assert (await client.wait("nobw2", timeout_s=30))["status"] == "completed"


async def test_sandbox_off_warns_on_every_task(nats_server: Any, client: Any, caplog: pytest.LogCaptureFixture) -> None:
    cfg = make_cfg("settings.policy.sandbox=off")
    caplog.set_level(logging.WARNING)
    async with Stack(cfg, url=nats_server.url):
        assert any("sandbox OFF" in r.getMessage() for r in caplog.records)
        await client.submit({"title": "off", "run_id": "off1", "tasks": [task("code", "true"), task("docs", "true")]})
        st = await client.wait("off1", timeout_s=30)
    assert st["status"] == "completed"
    warned = [r.getMessage() for r in caplog.records if "WITHOUT a sandbox" in r.getMessage()]
    assert len(warned) == 2 and all("settings.policy.sandbox: off" in w for w in warned)


async def test_workspace_stays_the_tasks_and_nothing_walks_back(tmp_path: Path) -> None:
    """What the task wrote is never chowned back (PAS's git reads it as it is, pas.execution.gitsafe): no walk
    with PAS's rights over the task's files after it."""
    ws = tmp_path / "ws"
    ws.mkdir()
    code = ("import os; open('made', 'w').write(str(os.getuid())); "
            "os.mkdir('sub'); open('sub/x', 'w').close()")
    r = await run_argv([sys.executable, "-c", code], ws, Bounds(30, 4096), box=Box())
    assert r.status == "completed", r
    inside_uid = int((ws / "made").read_text())
    assert (inside_uid != 0) if os.geteuid() == 0 else (inside_uid == os.geteuid())  # never root inside
    for p in (ws, ws / "made", ws / "sub", ws / "sub" / "x"):
        assert os.lstat(p).st_uid == inside_uid, p
    if os.geteuid() != 0:
        return  # one uid for every launch: nothing is handed on
    # A later launch in the same, now non-empty workspace hands all of it on to its own uid (the tree walk;
    # an empty workspace takes the path without a thread, above).
    again = "import os; open('made', 'w').write(str(os.getuid())); open('sub/x', 'a').write('y')"
    for _ in range(5):  # the uid is drawn at random per launch: the same one twice is possible, not 5 times
        r = await run_argv([sys.executable, "-c", again], ws, Bounds(30, 4096), box=Box())
        assert r.status == "completed", r
        if int((ws / "made").read_text()) != inside_uid:
            break
    second = int((ws / "made").read_text())
    assert second != inside_uid and second != 0
    for p in (ws, ws / "made", ws / "sub", ws / "sub" / "x"):
        assert os.lstat(p).st_uid == second, p


def test_remove_tree_never_follows_a_symlink_and_removes_any_depth(tmp_path: Path) -> None:
    """remove_tree: a plain directory of files goes without a process, a deeper one through `rm -rf`; a
    symlink is removed, its target never touched; a missing path is no error."""
    flat = tmp_path / "flat"
    flat.mkdir()
    (flat / "f").write_text("x")
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "k").write_text("k")
    os.symlink(kept, flat / "to-kept")
    os.symlink(tmp_path / "nowhere", flat / "dangling")
    remove_tree(flat)
    assert not os.path.lexists(flat) and (kept / "k").read_text() == "k"
    link = tmp_path / "link"
    os.symlink(kept, link)
    remove_tree(link)
    assert not os.path.lexists(link) and (kept / "k").read_text() == "k"
    deep = tmp_path / "deep"
    (deep / "a" / "b").mkdir(parents=True)
    (deep / "a" / "b" / "f").write_text("x")
    os.symlink(kept, deep / "a" / "to-kept")
    remove_tree(deep)
    assert not os.path.lexists(deep) and (kept / "k").read_text() == "k"
    remove_tree(tmp_path / "absent")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept"]


FORKS = """
import os, socket, time
n = 0
try:
    for _ in range(64):
        if os.fork() == 0:
            time.sleep(5); os._exit(0)
        n += 1
except OSError as e:
    print('fork refused after', n, e.errno)
try:
    socket.create_connection(('1.1.1.1', 53), timeout=2)
except OSError as e:
    print('network', e.errno)
print('uid', os.getuid(), 'pids', len([d for d in os.listdir('/proc') if d.isdigit()]))
"""


def test_unprivileged_user_gets_its_own_user_namespace() -> None:
    """As an ordinary user (here: nobody), bwrap adds a user namespace and RLIMIT_NPROC counts only
    the sandbox's processes."""
    if os.geteuid() != 0:
        argv_prefix: list[str] = []
    else:
        argv_prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"]
    ws = Path(tempfile.mkdtemp(prefix="pas-sbx-user-"))
    try:
        ws.chmod(0o777)
        argv = wrap(["/usr/bin/python3", "-c", FORKS], ws, {"PATH": "/usr/bin:/bin"}, box=Box(limits=Limits(nproc=16)), uid=None)
        assert "--unshare-user" in argv and "--unshare-net" in argv
        r = subprocess.run([*argv_prefix, *argv], capture_output=True, text=True, timeout=60, cwd=ws,
                           env={"PATH": "/usr/bin:/bin"})
        assert r.returncode == 0, r.stderr
        assert "fork refused after" in r.stdout and "network 101" in r.stdout, r.stdout  # ENETUNREACH
        refused_after = int(r.stdout.split("fork refused after ")[1].split()[0])
        assert refused_after < 16
    finally:
        subprocess.run(["rm", "-rf", str(ws)], check=False)


def test_executable_planted_in_the_workspace_picks_no_host_mounts(tmp_path: Path) -> None:
    """`venv/bin/python` in the worktree is the task's: its pyvenv.cfg must not choose host paths to
    mount (here ~/.ssh, via `home`)."""
    (tmp_path / "venv" / "bin").mkdir(parents=True)
    secret_dir = tmp_path / "host-secrets"
    (secret_dir / "bin").mkdir(parents=True)
    (tmp_path / "venv" / "pyvenv.cfg").write_text(f"home = {secret_dir / 'bin'}\n")
    (tmp_path / "venv" / "bin" / "python").symlink_to("/usr/bin/python3")
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "venv").symlink_to(tmp_path / "venv")
    argv = wrap(["venv/bin/python", "-V"], ws, {"PATH": "/usr/bin"}, box=Box(), uid=None)
    assert str(secret_dir) not in argv and str(tmp_path / "venv") not in argv
