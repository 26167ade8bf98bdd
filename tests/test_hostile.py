"""Hostile tasks: each test is one attack, run through the real pool (gateway -> ... -> programmer).

Model-written code is planted in the task's repository as probe.py (tests/hostile_probe.py) and run
as an allowlisted command task `python probe.py ATTACK`; allowlist escapes come in as the acceptance
command of an llm task, the path by which model-written commands reach a programmer. Each test
asserts that the attack is contained, that the reason is in the task's error and in a comms entry,
and that the programmer then serves the next task.

PAS_TEST_SANDBOX=off runs the same tests with settings.policy.sandbox: off, to show which attacks
only the sandbox stops.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from pas.config.model import PasConfig
from pas.execution.executors import worktree_dir
from pas.runtime import comms
from pas.surfaces.stack import Stack
from tests.conftest import CODE_LANE, fast_args, make_cfg
from tests.fakellm import Reply
from tests.test_pipeline import make_repo, task

PROBE = Path(__file__).with_name("hostile_probe.py")
SECRET = "sk-hostile-0123456789abcdef"
SANDBOX = os.environ.get("PAS_TEST_SANDBOX", "auto")
LIMITS = [
    "settings.pool.task_timeout_s=6",
    "settings.pool.output_cap_bytes=4096",
    "settings.pool.output_kill_bytes=4194304",
    "settings.policy.sandbox_nproc=32",
    "settings.policy.sandbox_memory_mb=512",
    "settings.policy.sandbox_cpu_s=10",
    "settings.policy.sandbox_tmp_mb=16",
    f"settings.policy.sandbox={SANDBOX}",
]


def hostile_overrides() -> list[str]:
    allow = [*make_cfg().settings.policy.command_allowlist, "python probe.py*"]
    return [*LIMITS, f"settings.policy.command_allowlist={json.dumps(allow)}"]


@pytest.fixture
def cfg() -> PasConfig:
    return make_cfg(*hostile_overrides())


@pytest.fixture
def stack_agents() -> list[str]:
    return CODE_LANE  # every attack is a code task


def plant(tmp_path: Path, nats_url: str, **params: Any) -> Path:
    """A repository holding probe.py, its parameters, and a symlink that points outside it."""
    repo = make_repo(tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir(exist_ok=True)
    shutil.copy(PROBE, repo / "probe.py")
    (repo / "escape").symlink_to(outside)
    base = {"nats_port": int(nats_url.rsplit(":", 1)[1]), "secret": SECRET, "pas_pid": os.getpid(),
            "outside": str(outside), "forks": 200, "hog_mb": 1024}
    (repo / "probe.json").write_text(json.dumps({**base, **params}))
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "plant"], cwd=repo, check=True)
    return repo


async def attack(client: Any, repo: Path, run_id: str, command: str) -> dict[str, Any]:
    await client.submit({"title": run_id, "run_id": run_id, "repo": str(repo), "tasks": [task("code", command)]})
    st = await client.wait(run_id, timeout_s=60)
    return st["tasks"][0]


async def assert_logged_and_serving(client: Any, run_id: str, t: dict[str, Any], reason: str) -> None:
    """The reason is in the task's error and in the programmer's comms entry; the pool still works."""
    assert t["status"] in ("failed", "timeout") and reason in t["error"], t
    entries = [e async for e in comms.read(client.nc.jetstream(), run_id=run_id)]
    mine = [e for e in entries if e.msg_type == "RESPONSE" and e.from_agent == t["programmer"]]
    assert mine and reason in mine[-1].message, [e.message for e in entries]
    await client.submit({"title": "next", "run_id": run_id + "-next", "tasks": [task("code", "echo still serving")]})
    nxt = await client.wait(run_id + "-next", timeout_s=30)
    assert nxt["status"] == "completed" and "still serving" in nxt["tasks"][0]["output"]


async def probe_blocked(client: Any, repo: Path, run_id: str, name: str, reason: str) -> dict[str, Any]:
    t = await attack(client, repo, run_id, f"python probe.py {name}")
    assert "ESCAPED" not in t["output"], t["output"]
    await assert_logged_and_serving(client, run_id, t, "BLOCKED: " + reason)
    return t


# ---- network ----------------------------------------------------------------------------------
async def test_connect_to_nats_port_from_python(stack: Any, client: Any, nats_server: Any, tmp_path: Path) -> None:
    repo = plant(tmp_path, nats_server.url)
    await probe_blocked(client, repo, "h-nats", "nats", "connect to NATS port")


async def test_connect_to_nats_port_from_git(stack: Any, client: Any, nats_server: Any, tmp_path: Path) -> None:
    repo = plant(tmp_path, nats_server.url)
    await probe_blocked(client, repo, "h-git", "git_nats", "git: ")


# ---- reading what is not the task's -----------------------------------------------------------
async def test_read_pas_process_environ(nats_server: Any, client: Any, pas_procs: Any, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAS_HOSTILE_API_KEY", SECRET)  # in the PAS process's initial environment
    pas = pas_procs("--nats-url", nats_server.url, *fast_args(), *[a for o in hostile_overrides() for a in ("-c", o)])
    repo = plant(tmp_path, nats_server.url, pas_pid=pas.proc.pid)
    t = await probe_blocked(client, repo, "h-environ", "environ", "no visible /proc/*/environ holds the secret")
    assert SECRET not in t["output"]


async def test_read_home_ssh_key(stack: Any, client: Any, nats_server: Any, tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_ed25519").write_text("-----BEGIN OPENSSH PRIVATE KEY----- hostile")
    monkeypatch.setenv("HOME", str(home))
    repo = plant(tmp_path, nats_server.url, ssh_key=str(home / ".ssh" / "id_ed25519"))
    await probe_blocked(client, repo, "h-ssh", "ssh", str(home))


async def test_read_pas_data_dir(stack: Any, client: Any, nats_server: Any, tmp_path: Path) -> None:
    repo = plant(tmp_path, nats_server.url, data_dir=str(nats_server.data_dir))
    await probe_blocked(client, repo, "h-data", "data_dir", str(nats_server.data_dir))


async def test_read_another_runs_worktree(stack: Any, client: Any, nats_server: Any, tmp_path: Path) -> None:
    other = worktree_dir(make_repo(tmp_path / "other"), "h-first", "code-1-01")
    repo = plant(tmp_path, nats_server.url, other_worktree=str(other))
    first = await attack(client, other.parents[3], "h-first", "echo first")  # leaves its worktree behind
    assert first["status"] == "completed" and (other / "README.md").exists()
    await probe_blocked(client, repo, "h-other", "other_worktree", str(other))


# ---- writing outside the worktree -----------------------------------------------------------
async def test_write_outside_worktree(stack: Any, client: Any, nats_server: Any, tmp_path: Path) -> None:
    repo = plant(tmp_path, nats_server.url)
    await probe_blocked(client, repo, "h-write", "write_outside", str(tmp_path / "outside"))
    assert list((tmp_path / "outside").iterdir()) == []


async def test_write_through_symlink_planted_in_repo(stack: Any, client: Any, nats_server: Any, tmp_path: Path) -> None:
    repo = plant(tmp_path, nats_server.url)
    await probe_blocked(client, repo, "h-link", "write_symlink", "escape/pwned-by-symlink")
    assert list((tmp_path / "outside").iterdir()) == []


async def test_repoint_worktree_git_file(stack: Any, client: Any, nats_server: Any, tmp_path: Path) -> None:
    """PAS runs git in the worktree after the task: a .git pointing at a config the task wrote
    (core.fsmonitor, hooks) would run the task's code outside the sandbox."""
    repo = plant(tmp_path, nats_server.url)
    t = await probe_blocked(client, repo, "h-gitfile", "git_hijack", ".git")
    gitfile = worktree_dir(repo, "h-gitfile", "code-1-01") / ".git"
    assert gitfile.read_text().startswith("gitdir: ") and t["branch"] == "pas/h-gitfile/code-1-01"


async def test_nested_repo_config_run_by_pas_git(stack: Any, client: Any, nats_server: Any, tmp_path: Path) -> None:
    repo = plant(tmp_path, nats_server.url)
    t = await attack(client, repo, "h-nested", "python probe.py nested_repo")
    assert "planted nested/.git" in t["output"], t
    # PAS does not commit a nested repository (pas.execution.gitsafe): the task fails and says why ...
    await assert_logged_and_serving(client, "h-nested", t, "nested git repositories (nested)")
    assert list((tmp_path / "outside").iterdir()) == []  # ... without running the nested repo's config


# ---- secrets ----------------------------------------------------------------------------------
async def test_leak_api_key_from_pas_environment(stack: Any, client: Any, nats_server: Any, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    monkeypatch.setenv("PAS_HTTP_TOKEN", SECRET + "-http")
    repo = plant(tmp_path, nats_server.url)
    t = await probe_blocked(client, repo, "h-key", "leak_key", "no key in my environment")
    assert SECRET not in t["output"] and SECRET not in t["error"]


# ---- resources --------------------------------------------------------------------------------
async def test_fork_bomb(stack: Any, client: Any, nats_server: Any, tmp_path: Path) -> None:
    repo = plant(tmp_path, nats_server.url)
    await probe_blocked(client, repo, "h-fork", "fork_bomb", "fork #")


async def test_memory_hog(stack: Any, client: Any, nats_server: Any, tmp_path: Path) -> None:
    repo = plant(tmp_path, nats_server.url)
    await probe_blocked(client, repo, "h-mem", "memory_hog", "MemoryError allocating 1024 MB")


async def test_gigabyte_of_output(stack: Any, client: Any, nats_server: Any, tmp_path: Path) -> None:
    repo = plant(tmp_path, nats_server.url)
    t = await attack(client, repo, "h-flood", "python probe.py flood")
    assert "ESCAPED" not in t["output"] and len(t["output"]) < 5000
    await assert_logged_and_serving(client, "h-flood", t, "killed: output over 4194304 bytes")


async def test_sleep_forever(stack: Any, client: Any, nats_server: Any, tmp_path: Path) -> None:
    repo = plant(tmp_path, nats_server.url)
    t = await attack(client, repo, "h-sleep", "sleep 1000000")
    assert t["status"] == "timeout"
    await assert_logged_and_serving(client, "h-sleep", t, "timed out after 6.0s")


async def test_double_fork_child_outliving_its_task(stack: Any, client: Any, nats_server: Any, tmp_path: Path) -> None:
    repo = plant(tmp_path, nats_server.url)
    t = await attack(client, repo, "h-daemon", "python probe.py daemon")
    assert "daemon started" in t["output"], t
    lock = worktree_dir(repo, "h-daemon", "code-1-01") / "daemon.lock"
    fd = os.open(lock, os.O_RDWR)
    try:  # the task is over: nothing of it may still hold the lock
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        pytest.fail("the double-forked daemon outlived its task (it still holds daemon.lock)")
    finally:
        os.close(fd)
    entries = [e async for e in comms.read(client.nc.jetstream(), run_id="h-daemon")]
    assert any(e.msg_type == "RESPONSE" and "completed" in e.message for e in entries)


# ---- allowlist escapes (the acceptance command of an llm task) --------------------------------
ESCAPES = {
    "semicolon": ("python -m pytest -q;touch pwned", "shell metacharacter ';'"),
    "and_and": ("python -m pytest -q && touch pwned", "shell operators"),
    "pipe": ("python -m pytest -q | tee pwned", "shell operators"),
    "backticks": ("python -m pytest -q `touch pwned`", "shell metacharacter '`'"),
    "dollar_paren": ("python -m pytest -q $(touch pwned)", "shell metacharacter '$('"),
    "newline": ("python -m pytest -q\ntouch pwned", "shell metacharacter '\\n'"),
    "output_outside": ("git log --output=/etc/pas-hostile-x", "escapes the workspace"),
    "pytest_plugin_outside": ("python -m pytest -q -p evilplug", "pytest plugin 'evilplug' is not a module inside"),
}
EDIT = "FILE: notes.md\n<<<<<<< CONTENT\nhello\n>>>>>>> END\n"


@pytest.mark.parametrize("name", list(ESCAPES))
async def test_allowlist_escape(name: str, nats_server: Any, client: Any, fake_llm: Any, tmp_path: Path,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    command, reason = ESCAPES[name]
    plugins = tmp_path / "plugins"  # a pytest plugin outside the repo, importable from PAS's environment
    plugins.mkdir()
    marker = tmp_path / "plugin-ran"
    (plugins / "evilplug.py").write_text(f"open({str(marker)!r}, 'w').write('pwned')\n")
    monkeypatch.setenv("PYTHONPATH", f"{plugins}:{os.environ.get('PYTHONPATH', '')}")
    fake_llm.default("pp", Reply(EDIT))
    cfg = make_cfg(*hostile_overrides())
    cfg.models["pp"] = fake_llm.profile("pp")
    for a in cfg.agents:
        a.model, a.backup_model = ("pp" if a.role == "prog" else None), None
    repo = make_repo(tmp_path)
    async with Stack(cfg, url=nats_server.url, only=CODE_LANE):
        run_id = f"h-esc-{name.replace('_', '-')}"
        await client.submit({"title": name, "run_id": run_id, "repo": str(repo), "tasks": [{
            "lane": "code", "instruction": "write notes", "executor": "llm", "acceptance": command}]})
        t = (await client.wait(run_id, timeout_s=60))["tasks"][0]
        await assert_logged_and_serving(client, run_id, t, reason)
    assert "acceptance refused" in t["error"]
    assert not marker.exists() and not Path("/etc/pas-hostile-x").exists()
    assert not (worktree_dir(repo, run_id, "code-1-01") / "pwned").exists()
