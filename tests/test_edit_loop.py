"""pas.execution.edit_loop: the llm executor on a real git repo, a real acceptance command (pytest) and the
fake model server."""

from __future__ import annotations

import asyncio
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pas.base.errors import CommandRefused
from pas.execution.edit_loop import (
    EditFormatError,
    EditResult,
    EditTask,
    apply_edits,
    parse_edits,
    run_llm_edit,
    safe_path,
)
from pas.llm.client import Asker, BudgetTracker, LLMClient
from tests.fakellm import Fail, FakeLLM, Reply, fake_llm  # noqa: F401

BUGGY = "def add(a, b):\n    return a - b\n"
TEST = "from calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n"
ACCEPT = "python -m pytest -q -p no:cacheprovider test_calc.py"

FIX = """I'll fix the operator.

EDIT: calc.py
<<<<<<< SEARCH
    return a - b
=======
    return a + b
>>>>>>> REPLACE
"""
WRONG = """EDIT: calc.py
<<<<<<< SEARCH
    return a - b
=======
    return a * b
>>>>>>> REPLACE
"""


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    wd = tmp_path / "repo"
    wd.mkdir()
    (wd / "calc.py").write_text(BUGGY)
    (wd / "test_calc.py").write_text(TEST)
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}
    for cmd in (["git", "init", "-q"], ["git", "add", "."], ["git", "commit", "-qm", "init"]):
        subprocess.run(cmd, cwd=wd, check=True, env=env)
    return wd


async def run_acceptance(command: str, workdir: Path) -> tuple[int, str]:
    """The test's stand-in for the lead's allowlisted runner: `python` is this interpreter."""
    argv = shlex.split(command)
    if argv[0] == "python":
        argv[0] = sys.executable
    proc = await asyncio.create_subprocess_exec(
        *argv, cwd=workdir, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"},
    )
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode()


def llm(fake: FakeLLM) -> LLMClient:
    return LLMClient({"coder": fake.profile("coder"), "spare": fake.profile("coder-spare")})


async def edit(fake: FakeLLM, repo: Path, files: list[str] | None = None, acceptance: str | None = ACCEPT,
               backup: str | None = None, **kw: Any) -> EditResult:
    return await run_llm_edit(Asker(llm(fake), "prog-001", "coder", backup, "r1"),
                              EditTask(repo, "make add() add", files or ["calc.py"], acceptance), run_acceptance, **kw)


async def test_edit_passes_acceptance_and_reports_diff(fake_llm: FakeLLM, repo: Path) -> None:
    fake_llm.script("coder", Reply(FIX, prompt_tokens=300, completion_tokens=40))
    res = await edit(fake_llm, repo)
    assert res.status == "completed", res.error
    assert res.iterations == 1 and res.acceptance_exit == 0 and "1 passed" in res.acceptance_output
    assert "-    return a - b\n+    return a + b" in res.diff
    assert res.tokens == 340 and res.cost_usd is None and res.changed_files == ["calc.py"]
    assert (repo / "calc.py").read_text() == "def add(a, b):\n    return a + b\n"
    [req] = fake_llm.requests
    system, user = req.messages
    assert "<<<<<<< SEARCH" in system["content"] and "FILE:" in system["content"]
    assert BUGGY in user["content"] and ACCEPT in user["content"]


async def test_whole_file_block_creates_a_file_in_the_diff(fake_llm: FakeLLM, repo: Path) -> None:
    reply = "FILE: pkg/util.py\n<<<<<<< CONTENT\nVALUE = 42\n>>>>>>> END\n"
    fake_llm.script("coder", Reply(reply))
    res = await edit(fake_llm, repo, files=["pkg/util.py"], acceptance=None)
    assert res.status == "completed" and res.acceptance_exit is None
    assert (repo / "pkg" / "util.py").read_text() == "VALUE = 42\n"
    assert "+++ b/pkg/util.py" in res.diff and "+VALUE = 42" in res.diff
    assert "does not exist yet" in fake_llm.requests[0].text()


async def test_wrong_edit_retried_then_fixed(fake_llm: FakeLLM, repo: Path) -> None:
    fix_after_wrong = "EDIT: calc.py\n<<<<<<< SEARCH\n    return a * b\n=======\n    return a + b\n>>>>>>> REPLACE\n"
    fake_llm.script("coder", Reply(WRONG), Reply(fix_after_wrong))
    res = await edit(fake_llm, repo)
    assert res.status == "completed" and res.iterations == 2
    feedback = fake_llm.requests[1].messages[-1]["content"]
    assert "exit code 1" in feedback and "assert 6 == 5" in feedback and "return a * b" in feedback


async def test_wrong_edits_fail_after_max_fix_iterations(fake_llm: FakeLLM, repo: Path) -> None:
    def wrong(n: int) -> Reply:
        return Reply(f"FILE: calc.py\n<<<<<<< CONTENT\ndef add(a, b):\n    return a * b  # try {n}\n>>>>>>> END\n")

    fake_llm.script("coder", *[wrong(n) for n in range(4)])
    res = await edit(fake_llm, repo, max_fix_iterations=3)
    assert res.status == "failed" and res.iterations == 4 and len(fake_llm.requests) == 4
    assert res.acceptance_exit == 1 and "1 failed" in res.acceptance_output
    assert "acceptance failed" in res.error
    assert "+    return a * b  # try 3" in res.diff  # the worktree keeps the last attempt
    assert "try 2" in fake_llm.requests[3].messages[-1]["content"]  # fed back the current file
    assert fake_llm.pending("coder") == 0


async def test_path_escapes_refused_and_fed_back(fake_llm: FakeLLM, repo: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (repo / "link").symlink_to(outside)
    escapes = [
        "FILE: ../escape.txt\n<<<<<<< CONTENT\npwned\n>>>>>>> END\n",
        f"FILE: {tmp_path}/abs.txt\n<<<<<<< CONTENT\npwned\n>>>>>>> END\n",
        "FILE: link/through-symlink.txt\n<<<<<<< CONTENT\npwned\n>>>>>>> END\n",
        "FILE: .git/hooks/pre-commit\n<<<<<<< CONTENT\npwned\n>>>>>>> END\n",
    ]
    fake_llm.script("coder", *[Reply(e) for e in escapes])
    res = await edit(fake_llm, repo, acceptance=None)
    assert res.status == "failed" and res.iterations == 4 and "refused" in res.error
    assert not (tmp_path / "escape.txt").exists() and not (tmp_path / "abs.txt").exists()
    assert list(outside.iterdir()) == [] and not (repo / ".git/hooks/pre-commit").exists()
    assert res.diff == ""
    for req, why in zip(fake_llm.requests[1:], ["'..'", "absolute", "symlink"], strict=False):
        assert "could not be applied" in req.messages[-1]["content"] and why in req.messages[-1]["content"]


async def test_named_file_outside_workdir_is_never_read(fake_llm: FakeLLM, repo: Path) -> None:
    res = await edit(fake_llm, repo, files=["../../etc/passwd"])
    assert res.status == "failed" and "refused" in res.error and not fake_llm.requests


async def test_budget_exceeded_stops_the_loop(fake_llm: FakeLLM, repo: Path) -> None:
    fake_llm.script("coder", Reply(WRONG, prompt_tokens=900, completion_tokens=200), Reply(FIX))
    budget = BudgetTracker(tokens_max=1000)
    res = await edit(fake_llm, repo, budget=budget)
    assert res.status == "budget_exceeded" and res.iterations == 1 and len(fake_llm.requests) == 1
    assert budget.tokens == 1100 and "budget exceeded" in res.error


async def test_model_unavailable_fails(fake_llm: FakeLLM, repo: Path) -> None:
    fake_llm.script("coder", Fail(500))
    fake_llm.script("coder-spare", Fail(500))
    res = await edit(fake_llm, repo, backup="spare")
    assert res.status == "failed" and res.iterations == 0 and "no model answered" in res.error
    assert res.diff == ""


# ---- the format, strictly ------------------------------------------------------------------
def test_parse_edits_strict() -> None:
    blocks = parse_edits("text\n" + FIX + "\nmore text\nFILE: a.txt\n<<<<<<< CONTENT\nx\ny\n>>>>>>> END\n")
    assert [(b.kind, b.path) for b in blocks] == [("edit", "calc.py"), ("file", "a.txt")]
    assert blocks[0].search == ["    return a - b"] and blocks[1].content == "x\ny\n"
    assert parse_edits("no blocks here") == []
    bad = {
        "EDIT: calc.py\n    return a - b\n": "expected",
        "FILE: a.py\n<<<<<<< CONTENT\nhalf a file": "truncated",
        "EDIT: a.py\n<<<<<<< SEARCH\nx\n=======\ny\n": "truncated",
        "=======\n": "outside a block",
        "EDIT: a.py\n<<<<<<< SEARCH\n\n=======\ny\n>>>>>>> REPLACE\n": "empty SEARCH",
        "FILE:\n<<<<<<< CONTENT\nx\n>>>>>>> END\n": "without a path",
        "EDIT: a.py\n<<<<<<< SEARCH\nx\n": "EDIT a.py: no '=======' \\(reply truncated",
        "EDIT: a.py\n<<<<<<< SEARCH\n<<<<<<< SEARCH\n=======\ny\n>>>>>>> REPLACE\n": "unexpected '<<<<<<< SEARCH' in SEARCH",
        "EDIT: a.py\n<<<<<<< SEARCH\nx\n=======\n>>>>>>> END\n>>>>>>> REPLACE\n": "unexpected '>>>>>>> END' in REPLACE",
    }
    for text, why in bad.items():
        with pytest.raises(EditFormatError, match=why):
            parse_edits(text)
    # a FILE's content is taken as it is, markers included (a file may hold them)
    assert parse_edits("FILE: m.txt\n<<<<<<< CONTENT\n=======\n>>>>>>> END\n")[0].content == "=======\n"


def test_apply_edits_all_or_nothing(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("x = 1\ny = 2\nx = 1\n")
    ok = parse_edits("EDIT: a.py\n<<<<<<< SEARCH\ny = 2\n=======\ny = 3\n>>>>>>> REPLACE\n")
    assert apply_edits(tmp_path, ok) == ["a.py"]
    assert (tmp_path / "a.py").read_text() == "x = 1\ny = 3\nx = 1\n"
    two = parse_edits(
        "FILE: b.py\n<<<<<<< CONTENT\nnew\n>>>>>>> END\n"
        "EDIT: a.py\n<<<<<<< SEARCH\nx = 1\n=======\nx = 9\n>>>>>>> REPLACE\n"
    )
    with pytest.raises(EditFormatError, match="found 2 times"):
        apply_edits(tmp_path, two)
    assert not (tmp_path / "b.py").exists()  # nothing written when one block fails
    missing = parse_edits("EDIT: a.py\n<<<<<<< SEARCH\nz = 0\n=======\nz = 1\n>>>>>>> REPLACE\n")
    with pytest.raises(EditFormatError, match="not found"):
        apply_edits(tmp_path, missing)


def test_safe_path(tmp_path: Path) -> None:
    assert safe_path(tmp_path, "src/a.py") == tmp_path.resolve() / "src" / "a.py"
    for bad in ["../x", "a/../../x", "/etc/passwd", "~/x", ".git/config", "", "a\\..\\b"]:
        with pytest.raises(CommandRefused):
            safe_path(tmp_path, bad)
    assert safe_path(tmp_path, "docs/x.md", ["docs/**/*.md", "**/*.py"])
    assert safe_path(tmp_path, "x.py", ["**/*.py"])
    with pytest.raises(CommandRefused, match="allowlist"):
        safe_path(tmp_path, "setup.cfg", ["**/*.py"])
