"""pas.execution.aider: the real aider CLI against the fake model server.

aider lives outside the project venv (`uv tool install aider-chat`, binary in ~/.local/bin). Tests
that run it are skipped only when the binary is absent; the missing-binary test always runs.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

import pytest

from pas.execution import gitsafe
from pas.execution.aider import AiderSetup, find_binary, run_aider
from pas.execution.edit_loop import EditTask
from tests.fakellm import API_KEY_ENV, Fail, FakeLLM, Reply, fake_llm  # noqa: F401

AIDER = find_binary(os.environ.get("PAS_AIDER_BINARY", "aider"))
needs_aider = pytest.mark.skipif(
    AIDER is None, reason="aider binary not found (install: pip install uv && uv tool install aider-chat)"
)
BUGGY = "def add(a, b):\n    return a - b\n"


def make_repo(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "calc.py").write_text(BUGGY)
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}
    for cmd in (["git", "init", "-q"], ["git", "add", "."], ["git", "commit", "-qm", "init"]):
        subprocess.run(cmd, cwd=path, check=True, env=env)
    return path


def aider_args(fake: FakeLLM, repo: Path, model: str, timeout_s: float = 300.0) -> tuple[AiderSetup, EditTask, float]:
    return (AiderSetup(AIDER or "aider", f"openai/{model}", fake.api_base, API_KEY_ENV, edit_format="whole", map_tokens=0),
            EditTask(repo, "fix add() so it adds", ["calc.py"]), timeout_s)


async def test_missing_binary_is_a_failure(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r")
    res = await run_aider(AiderSetup(str(tmp_path / "no-such-aider"), "openai/x"), EditTask(repo, "x", ["calc.py"]), 5)
    assert res.status == "failed" and "not found" in res.error and res.exit_code is None
    res = await run_aider(AiderSetup("definitely-not-aider-xyz", "openai/x"), EditTask(repo, "x", ["calc.py"]), 5)
    assert res.status == "failed" and "not found" in res.error


async def test_escaping_file_refused_before_running(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r")
    res = await run_aider(AiderSetup(AIDER or "/bin/true", "openai/x"), EditTask(repo, "x", ["../secret"]), 5)
    assert res.status == "failed" and "refused" in res.error


@needs_aider
async def test_aider_edits_file_through_fake_model(fake_llm: FakeLLM, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r")
    fake_llm.script("aider-ok", Reply("Fixed the operator.\n\ncalc.py\n```\ndef add(a, b):\n    return a + b\n```\n"))
    res = await run_aider(*aider_args(fake_llm, repo, "aider-ok"))
    assert res.status == "completed", (res.error, res.output)
    assert res.exit_code == 0 and res.model_replied
    assert "-    return a - b\n+    return a + b" in res.diff
    assert (repo / "calc.py").read_text() == "def add(a, b):\n    return a + b\n"
    [req] = fake_llm.requests_for("aider-ok")
    assert req.headers["authorization"] == "Bearer sk-fake-test-key"
    assert "fix add() so it adds" in req.text() and "return a - b" in req.text()
    # no aider litter in the worktree, nothing committed
    # the worktree stays the task's (pas.execution.gitsafe trusts the directory it works in; plain git would refuse it)
    status = gitsafe.run(repo, "status", "--porcelain").stdout.decode()
    assert status.strip() == "M calc.py"
    log = gitsafe.run(repo, "log", "--oneline").stdout.decode()
    assert len(log.splitlines()) == 1


@needs_aider
async def test_model_errors_and_no_change_are_failures(fake_llm: FakeLLM, tmp_path: Path) -> None:
    """Three runs at once: provider 500s (aider retries until it is stopped), a 401 (aider gives up
    and exits 0), and a reply that changes nothing. Nothing here depends on how fast a cold aider
    starts: the 500 run is stopped by an event (aider has retried, so it met the error), and the
    timeouts are generous bounds, never expectations."""
    fake_llm.default("aider-500", Fail(500, "upstream exploded"))
    fake_llm.default("aider-401", Fail(401, "invalid api key"))
    fake_llm.script("aider-noop", Reply("The code looks fine to me; no changes needed."))

    async def retried() -> None:
        deadline = asyncio.get_running_loop().time() + 300
        # One aider attempt is 3 requests (the OpenAI SDK retries twice), then aider prints the error
        # and retries: a 7th request means aider has met (and printed) the 500 at least twice.
        while len(fake_llm.requests_for("aider-500")) < 7:
            assert asyncio.get_running_loop().time() < deadline, "aider never retried the 500"
            await asyncio.sleep(0.05)

    r500, r401, rnoop = await asyncio.gather(
        run_aider(*aider_args(fake_llm, make_repo(tmp_path / "a"), "aider-500", timeout_s=600),
                  stop=retried()),
        run_aider(*aider_args(fake_llm, make_repo(tmp_path / "b"), "aider-401", timeout_s=600)),
        run_aider(*aider_args(fake_llm, make_repo(tmp_path / "c"), "aider-noop", timeout_s=600)),
    )
    assert r500.status == "timeout" and not r500.model_replied and r500.diff == ""
    assert "aider was stopped" in r500.error
    assert "no reply from the model" in r500.error and "upstream exploded" in r500.output
    assert len(fake_llm.requests_for("aider-500")) >= 1

    assert r401.status == "failed" and r401.exit_code == 0 and not r401.model_replied
    assert "never got a reply" in r401.error and "invalid api key" in r401.error

    assert rnoop.status == "failed" and rnoop.model_replied and rnoop.diff == ""
    assert "no file changed" in rnoop.error
    for d in "abc":
        assert (tmp_path / d / "calc.py").read_text() == BUGGY
