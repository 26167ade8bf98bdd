"""Tasks run in the target repository's environment (pas.execution.repoenv), never silently in PAS's own.

The repositories here get a real virtualenv (`python -m venv`) holding a tiny package that PAS's
own environment does not have, so a task can only pass if it really ran there. No network.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pas.base.errors import BadRequest
from pas.execution import repoenv
from pas.execution.aider import AiderSetup, run_aider
from pas.execution.edit_loop import EditTask
from pas.runtime import comms
from pas.surfaces.cliutil import result_table
from pas.surfaces.stack import Stack
from tests.conftest import CODE_LANE, make_cfg

PROBE = "pas_probe_pkg"
ALLOW = 'settings.policy.command_allowlist=["python -c *", "probe-tool*", "git status*"]'
SHOW = f"python -c 'import sys, {PROBE}; print(sys.prefix, {PROBE}.WHERE)'"


def make_venv(path: Path, where: str) -> Path:
    """A venv (no pip: fast, offline) with package PROBE and a console tool `probe-tool` in bin/."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True, timeout=120)
    py = path / "bin" / "python"
    site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    pkg = Path(site) / PROBE
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(f"WHERE = {where!r}\n")
    tool = path / "bin" / "probe-tool"
    tool.write_text(f"#!{py}\nimport {PROBE}; print('probe-tool in', {PROBE}.WHERE)\n")
    tool.chmod(0o755)
    return path


def make_repo(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "README.md").write_text("probe\n")
    (path / ".gitignore").write_text(".venv/\n")
    for cmd in (["git", "init", "-q", "-b", "main"], ["git", "add", "-A"],
                ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init"]):
        subprocess.run(cmd, cwd=path, check=True)
    return path


def cmd(lane: str, command: str) -> dict[str, Any]:
    return {"lane": lane, "instruction": command, "command": command, "executor": "command"}


def test_pas_itself_lacks_the_probe_package() -> None:
    assert importlib.util.find_spec(PROBE) is None


async def test_command_tasks_use_the_repos_own_venv(nats_server: Any, client: Any, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    venv = make_venv(repo / ".venv", "repo-venv")
    # every start reported (however short the task): its "run task" entry carries the environment too
    async with Stack(make_cfg(ALLOW, "settings.pool.start_report_after_s=0"), url=nats_server.url) as st:
        await client.submit({"title": "venv", "run_id": "env1", "repo": str(repo), "tasks": [
            cmd("code", SHOW), cmd("code", "probe-tool"), cmd("docs", "git status --short")]})
        res = await client.wait("env1", timeout_s=60)
        entries = [e async for e in comms.read(st.bus.js, run_id="env1")]  # type: ignore[union-attr]
    assert res["status"] == "completed", res
    t = {x["task_id"]: x for x in res["tasks"]}
    # the task ran in the worktree, but with the venv at the repository's root
    assert t["code-1-01"]["output"].split() == [str(venv), "repo-venv"]
    assert t["code-1-02"]["output"].strip() == "probe-tool in repo-venv"  # bin/ first on PATH
    want = f"venv {venv} (the repository's own)"
    assert {x["env"] for x in res["tasks"]} == {want}
    assert f"environment of every task: {want}" in result_table(res)
    done = [e for e in entries if e.msg_type == "RESPONSE" and e.message.startswith("task code-1-01")]
    started = [e for e in entries if e.msg_type == "CMD" and e.message.startswith("run task code-1-01")]
    assert done and done[0].metadata["env"] == want and started[0].metadata["env"] == want


async def test_job_env_and_config_env(nats_server: Any, client: Any, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")  # no .venv: the explicit settings apply
    job_venv = make_venv(tmp_path / "job-env", "job-env")
    cfg_venv = make_venv(tmp_path / "cfg-env", "cfg-env")
    async with Stack(make_cfg(ALLOW, f"settings.pool.env={cfg_venv}"), url=nats_server.url, only=CODE_LANE):
        await client.submit({"title": "job env", "run_id": "env2", "repo": str(repo), "env": str(job_venv / "bin" / "python"),
                             "tasks": [cmd("code", SHOW)]})
        await client.submit({"title": "cfg env", "run_id": "env3", "repo": str(repo), "tasks": [cmd("code", SHOW)]})
        with pytest.raises(BadRequest) as missing:  # refused where it comes in, naming the field
            await client.submit({"title": "missing", "run_id": "env4", "repo": str(repo), "env": str(tmp_path / "nope"),
                                 "tasks": [cmd("code", SHOW)]})
        assert missing.value.message.startswith("env ") and "no such environment" in missing.value.message
        with pytest.raises(BadRequest) as e:
            await client.submit({"title": "runner", "repo": str(repo), "env": "uv run", "tasks": [cmd("code", SHOW)]})
        assert "must be a path" in e.value.message
        r2, r3 = [await client.wait(r, timeout_s=60) for r in ("env2", "env3")]
    t2, t3 = r2["tasks"][0], r3["tasks"][0]
    assert t2["status"] == "completed" and t2["output"].split() == [str(job_venv), "job-env"]
    assert t2["env"] == f"interpreter {job_venv / 'bin' / 'python'} (job env)"
    assert t3["status"] == "completed" and t3["output"].split() == [str(cfg_venv), "cfg-env"]
    assert t3["env"] == f"venv {cfg_venv} (settings.pool.env)"


async def test_config_runner_prefix(nats_server: Any, client: Any, tmp_path: Path) -> None:
    venv = make_venv(tmp_path / "env", "runner-env")
    runner = tmp_path / "run-in-env"  # a stand-in for `uv run`: runs the command with the env activated
    runner.write_text(f'#!/bin/sh\nPATH="{venv}/bin:$PATH" exec "$@"\n')
    runner.chmod(0o755)
    async with Stack(make_cfg(ALLOW, f"settings.pool.env={runner}"), url=nats_server.url, only=CODE_LANE):
        await client.submit({"title": "runner", "run_id": "env5", "tasks": [cmd("code", SHOW)]})
        res = await client.wait("env5", timeout_s=60)
    t = res["tasks"][0]
    # a single path is an interpreter or an env dir; an executable not named python* is refused
    assert t["status"] == "failed" and "not a Python interpreter" in t["error"]
    # the sandbox cannot see inside a runner script: the toolchain it uses is declared
    ro = f"settings.policy.sandbox_ro={json.dumps([str(venv), str(runner), sys.base_prefix])}"
    async with Stack(make_cfg(ALLOW, f"settings.pool.env='/bin/sh {runner}'", ro), url=nats_server.url,
                     only=CODE_LANE):
        await client.submit({"title": "runner", "run_id": "env6", "tasks": [cmd("code", SHOW)]})
        res = await client.wait("env6", timeout_s=60)
    t = res["tasks"][0]
    assert t["status"] == "completed", t
    assert t["output"].split() == [str(venv), "runner-env"]
    assert t["env"] == f"runner '/bin/sh {runner}' (settings.pool.env)"


async def test_path_fallback_skips_pas_own_venv(nats_server: Any, client: Any, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    venv = make_venv(tmp_path / "env", "path-env")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "python3").write_text(f'#!/bin/sh\nexec "{venv}/bin/python" "$@"\n')
    (bindir / "python3").chmod(0o755)
    own = Path(sys.prefix) / "bin"
    assert sys.prefix != sys.base_prefix, "the tests run in PAS's virtualenv"
    # PAS's own bin first on PATH (an activated PAS venv): it must still not be chosen
    monkeypatch.setenv("PATH", os.pathsep.join([str(own), str(bindir), os.environ["PATH"]]))
    # a wrapper script on PATH: the sandbox cannot see what it runs, so that is declared
    ro = f"settings.policy.sandbox_ro={json.dumps([str(venv), sys.base_prefix])}"
    async with Stack(make_cfg(ALLOW, ro), url=nats_server.url, only=CODE_LANE):
        await client.submit({"title": "path", "run_id": "env7", "tasks": [cmd("code", SHOW)]})
        res = await client.wait("env7", timeout_s=60)
    t = res["tasks"][0]
    assert t["status"] == "completed", t
    assert t["output"].split()[1] == "path-env"
    assert t["env"] == f"python3 on PATH: {bindir / 'python3'}"


def test_resolve_rules(tmp_path: Path) -> None:
    own = str(Path(sys.prefix) / "bin")
    empty = tmp_path / "empty"
    empty.mkdir()
    r = repoenv.resolve(None, base={"PATH": os.pathsep.join([own, str(empty)]), "VIRTUAL_ENV": sys.prefix})
    assert r.kind == "none" and r.python is None and "no python3 on PATH" in r.description
    assert own not in r.env["PATH"].split(os.pathsep) and "VIRTUAL_ENV" not in r.env
    venv = make_venv(tmp_path / "repo" / "venv", "plain-venv")  # `venv` works like `.venv`
    r = repoenv.resolve(tmp_path / "repo", job_env="/ignored", base={"PATH": "/usr/bin"})
    assert r.kind == "venv" and r.python == str(venv / "bin" / "python")
    assert r.env["PATH"].split(os.pathsep)[0] == str(venv / "bin") and r.env["VIRTUAL_ENV"] == str(venv)
    assert r.description.endswith("env '/ignored' not used")
    assert r.argv(["python3", "-m", "x"]) == [str(venv / "bin" / "python"), "-m", "x"]
    assert r.argv(["git", "status"]) == ["git", "status"]
    conda = tmp_path / "conda"
    (conda / "conda-meta").mkdir(parents=True)
    (conda / "bin").mkdir()
    os.symlink(sys.executable, conda / "bin" / "python")
    r = repoenv.resolve(None, config_env=str(conda), base={"PATH": "/usr/bin"})
    assert r.kind == "prefix" and r.env["CONDA_PREFIX"] == str(conda)
    for bad in ("uv run", "python3.11", "/bin/sh -c x"):
        with pytest.raises(repoenv.EnvError):
            repoenv.check_job_env(bad)
    with pytest.raises(repoenv.EnvError, match="not found on PATH"):
        repoenv.resolve(None, config_env="no-such-runner-xyz run", base={"PATH": "/usr/bin"})


async def test_aider_runs_in_the_repo_env(tmp_path: Path) -> None:
    """aider is its own tool; it gets the repository's environment (its lint/test commands resolve there)."""
    repo = make_repo(tmp_path / "repo")
    venv = make_venv(repo / ".venv", "aider-env")
    (repo / "calc.py").write_text("x = 1\n")
    fake_aider = tmp_path / "aider"
    fake_aider.write_text('#!/bin/sh\necho "VIRTUAL_ENV=$VIRTUAL_ENV"\nprobe-tool\n')
    fake_aider.chmod(0o755)
    renv = repoenv.resolve(repo)
    res = await run_aider(AiderSetup(str(fake_aider), "openai/x"), EditTask(repo, "x", ["calc.py"]), 60,
                          base_env=renv.env)
    assert f"VIRTUAL_ENV={venv}" in res.output and "probe-tool in aider-env" in res.output
    assert res.status == "failed" and "never got a reply" in res.error  # the stand-in talks to no model


async def test_llm_acceptance_runs_in_the_repo_env(nats_server: Any, client: Any, fake_llm: Any,
                                                   tmp_path: Path) -> None:
    from tests.fakellm import Reply
    from tests.test_llm_pipeline import swarm_cfg

    repo = make_repo(tmp_path / "repo")
    make_venv(repo / ".venv", "llm-env")
    edit = "FILE: notes.txt\n<<<<<<< CONTENT\nhello\n>>>>>>> END\n"
    fake_llm.default("pp", Reply(edit, prompt_tokens=10, completion_tokens=10))
    cfg = swarm_cfg(fake_llm, **{f"prog_{i:03d}": "pp" for i in range(1, 11)})
    cfg.settings.policy.command_allowlist = ["python -c *"]
    cfg.settings.policy.filesystem_allowlist = ["*.txt"]
    async with Stack(cfg, url=nats_server.url, only=CODE_LANE):
        await client.submit({"title": "llm", "run_id": "env8", "repo": str(repo), "tasks": [{
            "lane": "code", "instruction": "write notes", "executor": "llm", "files": ["notes.txt"],
            "acceptance": f"python -c 'import {PROBE}'"}]})
        res = await client.wait("env8", timeout_s=90)
    t = res["tasks"][0]
    assert t["status"] == "completed" and t["exit_code"] == 0, t
    assert t["env"] == f"venv {repo / '.venv'} (the repository's own)"
