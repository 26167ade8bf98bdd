"""Programmer executors and workspaces.

- echo: returns the instruction (smoke tests, benchmarks).
- command: an allowlisted command run without a shell in the task's workspace, with a timeout
  and an output cap; a non-zero exit is a failed task, never a crashed programmer.
- llm / aider: see pas.edit_loop and pas.aider (wired in by the programmer role).

Workspaces: with a repo, each task gets its own git worktree on branch pas/<run>/<task>; without
one, a scratch directory. Changes made by the task are committed on its branch and the result
carries the diff stat.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from pas.errors import CommandRefused, PasError
from pas.policy import check_command
from pas.repoenv import RepoEnv


# A task's command dies with its programmer (SIGTERM on parent death) via util-linux's setpriv:
# a preexec_fn would force a full fork of the agent process (~11 ms, blocking the event loop).
SETPRIV = ["/usr/bin/setpriv", "--pdeathsig", "TERM", "--"] if os.path.exists("/usr/bin/setpriv") else []


@dataclass
class ExecResult:
    status: str  # completed | failed | timeout | cancelled | budget_exceeded
    output: str = ""
    exit_code: int | None = None
    error: str = ""
    tokens: int = 0
    cost_usd: float | None = 0.0
    extra: dict[str, str] = field(default_factory=dict)


def cap(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    half = limit // 2
    return text[:half] + f"\n... [{len(text) - limit} chars cut] ...\n" + text[-half:]


async def run_argv(argv: list[str], cwd: Path, timeout_s: float, output_cap: int,
                   env: Mapping[str, str] | None = None) -> ExecResult:
    """Run argv (no shell, already resolved: see pas.repoenv) in its own process group with `env`
    (default: PAS's environment); kill the group on timeout or cancel."""
    env = dict(os.environ if env is None else env, PYTHONDONTWRITEBYTECODE="1", GIT_TERMINAL_PROMPT="0")
    try:
        proc = await asyncio.create_subprocess_exec(
            *SETPRIV, *argv, cwd=str(cwd), stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            env=env, start_new_session=True,
        )
    except (OSError, ValueError) as e:  # not found, not executable, NUL in an argument ...
        return ExecResult(status="failed", error=f"cannot start {argv[0]!r}: {e}", exit_code=127)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout=timeout_s)
    except asyncio.TimeoutError:
        _kill_group(proc)
        out = await _drain(proc)
        return ExecResult(status="timeout", output=cap(out.decode(errors="replace"), output_cap),
                          exit_code=proc.returncode, error=f"timed out after {timeout_s}s")
    except asyncio.CancelledError:
        _kill_group(proc)
        await _drain(proc)
        raise
    text = cap(out.decode(errors="replace"), output_cap)
    code = proc.returncode
    if code == 0:
        return ExecResult(status="completed", output=text, exit_code=0)
    return ExecResult(status="failed", output=text, exit_code=code, error=f"exit code {code}")


def _kill_group(proc: asyncio.subprocess.Process) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


async def _drain(proc: asyncio.subprocess.Process) -> bytes:
    try:
        out = await asyncio.wait_for(proc.stdout.read() if proc.stdout else asyncio.sleep(0, b""), 2)
        await asyncio.wait_for(proc.wait(), 2)
        return out or b""
    except (asyncio.TimeoutError, Exception):  # noqa: BLE001
        return b""


async def run_command(command: str, allowlist: list[str], cwd: Path, timeout_s: float, output_cap: int,
                      repo_env: RepoEnv) -> ExecResult:
    """Check `command` against the allowlist, then run it in the repository's environment."""
    try:
        argv = check_command(command, allowlist, cwd)
    except CommandRefused as e:
        return ExecResult(status="failed", error=e.message, exit_code=None)
    return await run_argv(repo_env.argv(argv), cwd, timeout_s, output_cap, env=repo_env.env)


# ---- workspaces ----------------------------------------------------------------------------
_repo_locks: dict[str, asyncio.Lock] = {}


async def git(*args: str, cwd: Path, check: bool = True) -> str:
    proc = await asyncio.create_subprocess_exec(
        "git", *args, cwd=str(cwd), stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        env=dict(os.environ, GIT_TERMINAL_PROMPT="0"),
    )
    out, _ = await proc.communicate()
    text = out.decode(errors="replace")
    if check and proc.returncode != 0:
        raise PasError(f"git {' '.join(args)} failed ({proc.returncode}): {text.strip()[:500]}")
    return text


@dataclass
class Workspace:
    path: Path
    repo: Path | None = None
    branch: str | None = None

    async def finish(self, task_id: str) -> str | None:
        """Commit what the task changed on its branch; return the diff stat (None without a repo)."""
        if self.repo is None:
            return None
        await git("add", "-A", cwd=self.path)
        status = await git("status", "--porcelain", cwd=self.path)
        if status.strip():
            await git("-c", "user.name=PAS", "-c", "user.email=pas@localhost", "commit", "-q", "-m",
                      f"pas: task {task_id}", cwd=self.path)
            return (await git("diff", "--stat", "HEAD~1", "HEAD", cwd=self.path)).strip()
        return ""

    async def remove(self) -> None:
        if self.repo is None:
            shutil.rmtree(self.path, ignore_errors=True)
        # Worktrees stay: the branch and its files are the task's result. `git worktree prune`
        # after deleting .pas/worktrees cleans them up.


def worktree_dir(repo: Path, run_id: str, task_id: str) -> Path:
    return repo / ".pas" / "worktrees" / run_id / task_id


async def open_workspace(repo: str | None, run_id: str, task_id: str, scratch_root: Path) -> Workspace:
    if not repo:
        p = scratch_root / run_id / task_id
        shutil.rmtree(p, ignore_errors=True)
        p.mkdir(parents=True, exist_ok=True)
        return Workspace(path=p)
    root = Path(repo).resolve()
    if not (root / ".git").exists():
        raise PasError(f"repo {repo!r} is not a git repository")
    branch = f"pas/{run_id}/{task_id}"
    path = worktree_dir(root, run_id, task_id)
    lock = _repo_locks.setdefault(str(root), asyncio.Lock())
    async with lock:  # git serialises worktree bookkeeping; parallel adds race on its lock files
        exclude = root / ".git" / "info" / "exclude"
        exclude.parent.mkdir(parents=True, exist_ok=True)
        if ".pas/" not in (exclude.read_text() if exclude.exists() else ""):
            with exclude.open("a") as f:
                f.write("\n.pas/\n")
        if path.exists():  # an earlier attempt of this task on this machine: start clean
            await git("worktree", "remove", "--force", str(path), cwd=root, check=False)
            shutil.rmtree(path, ignore_errors=True)
        await git("worktree", "prune", cwd=root, check=False)
        path.parent.mkdir(parents=True, exist_ok=True)
        for attempt in range(5):
            try:
                await git("worktree", "add", "-q", "-B", branch, str(path), "HEAD", cwd=root)
                break
            except PasError:
                if attempt == 4:
                    raise
                await asyncio.sleep(0.2 * (attempt + 1))  # another process held git's lock
    return Workspace(path=path, repo=root, branch=branch)
