"""Programmer executors and workspaces.

- echo: returns the instruction (smoke tests, benchmarks).
- command: an allowlisted command run without a shell in the task's workspace, inside the sandbox
  (pas.execution.sandbox), with a timeout and an output cap (output beyond kill_bytes kills it); a non-zero
  exit is a failed task, never a crashed programmer.
- llm / aider: see pas.execution.edit_loop and pas.execution.aider (wired in by the programmer role).

Workspaces: with a repo, each task gets its own git worktree on branch pas/<run>/<task>; without
one, a scratch directory. Changes made by the task are committed on its branch and the result
carries the diff stat.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pas.base.errors import CommandRefused, PasError
from pas.base.programs import remove_tree
from pas.base.redact import redact
from pas.base.textsafe import bounded_stat
from pas.execution.gitsafe import git, nested_repos, run_git
from pas.execution.policy import check_command
from pas.execution.repoenv import RepoEnv
from pas.execution.sandbox import Box, handed_over
from pas.transport import tracing


@dataclass
class ExecResult:
    status: str  # completed | failed | timeout | cancelled | budget_exceeded
    output: str = ""
    exit_code: int | None = None
    error: str = ""
    tokens: int = 0
    cost_usd: float | None = 0.0
    extra: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Bounds:
    """How long a command may run, how much of its output is kept (output_cap) and past how many
    bytes of output it is killed (kill_bytes; None: never)."""

    timeout_s: float
    output_cap: int
    kill_bytes: int | None = None


async def run_argv(argv: list[str], cwd: Path, bounds: Bounds, *, box: Box,
                   env: Mapping[str, str] | None = None) -> ExecResult:
    """Run argv (no shell, already resolved: see pas.execution.repoenv) in the sandbox `box`, in its own
    process group, with the allowlisted part of `env` (default: PAS's environment); kill it on
    timeout, cancel, or output beyond its bounds.
    With tracing on, in a span "command <program>" (pas.transport.tracing)."""
    on = tracing.enabled()
    attrs = {"process.command_line": redact(" ".join(argv))[:500], "pas.execution.sandbox": box.mode} if on else None
    with tracing.span(f"command {Path(argv[0]).name if argv else ''}", attrs) as sp:
        r = await _run_argv(argv, cwd, bounds, box=box, env=env)
        tracing.annotate(sp, {"process.exit.code": r.exit_code, "pas.status": r.status},
                         error=None if r.status == "completed" else (r.error or r.status))
        return r


async def _run_argv(argv: list[str], cwd: Path, bounds: Bounds, *, box: Box,
                    env: Mapping[str, str] | None = None) -> ExecResult:
    timeout_s, kill_bytes = bounds.timeout_s, bounds.kill_bytes
    launch = box.launch(argv, cwd, source_env=env)
    async with handed_over(launch):
        try:
            proc = await asyncio.create_subprocess_exec(
                *launch.argv, cwd=str(cwd), stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
                env=launch.env, start_new_session=True,
            )
        except (OSError, ValueError) as e:  # not found, not executable, NUL in an argument ...
            return ExecResult(status="failed", error=f"cannot start {argv[0]!r}: {e}", exit_code=127)
        out = Capped(bounds.output_cap)
        try:
            flooded = await asyncio.wait_for(out.read(proc.stdout, kill_bytes), timeout=timeout_s)
            if flooded:
                _kill_group(proc)
                await _reap(proc)
            await asyncio.wait_for(proc.wait(), timeout=max(1.0, timeout_s))
        except TimeoutError:
            _kill_group(proc)
            await _reap(proc)
            return ExecResult(status="timeout", output=out.text(), exit_code=proc.returncode,
                              error=f"timed out after {timeout_s}s")
        except asyncio.CancelledError:
            _kill_group(proc)
            await _reap(proc)
            raise
    text, code = out.text(), proc.returncode
    if flooded:
        return ExecResult(status="failed", output=text, exit_code=code,
                          error=f"killed: output over {kill_bytes} bytes")
    if code == 0:
        return ExecResult(status="completed", output=text, exit_code=0)
    return ExecResult(status="failed", output=text, exit_code=code, error=failure(-1 if code is None else code, text))


def failure(code: int, output: str) -> str:
    """`exit code N`, the signal if one killed it, and the last line of output (the reason, usually)."""
    why = f"exit code {code}"
    sig = -code if code < 0 else code - 128 if code > 128 else 0
    if sig:
        with contextlib.suppress(ValueError):
            why += f" ({signal.Signals(sig).name})"
    last = next((ln.strip() for ln in reversed(output.splitlines()) if ln.strip()), "")
    return f"{why}: {last[:200]}" if last else why


class Capped:
    """A process's output read incrementally: the first and last output_cap/2 bytes are kept, the
    middle is counted and dropped, so even gigabytes of output cost bounded memory."""

    def __init__(self, cap: int) -> None:
        self.half = max(1, cap // 2)
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0

    async def read(self, stream: asyncio.StreamReader | None, kill_bytes: int | None) -> bool:
        """Read to EOF; True (and stop reading) once more than kill_bytes came."""
        assert stream is not None
        while chunk := await stream.read(65536):
            self.total += len(chunk)
            room = self.half - len(self.head)
            if room > 0:
                self.head += chunk[:room]
                chunk = chunk[room:]
            self.tail += chunk
            if len(self.tail) > 2 * self.half:
                del self.tail[: len(self.tail) - self.half]
            if kill_bytes is not None and self.total > kill_bytes:
                return True
        return False

    def text(self) -> str:
        kept = len(self.head) + min(len(self.tail), self.half)
        if self.total <= kept:
            return (bytes(self.head) + bytes(self.tail)).decode(errors="replace")
        return (bytes(self.head).decode(errors="replace") + f"\n... [{self.total - kept} bytes cut] ...\n"
                + bytes(self.tail[-self.half:]).decode(errors="replace"))


def _kill_group(proc: asyncio.subprocess.Process) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


async def _reap(proc: asyncio.subprocess.Process) -> None:
    """After a kill: read the pipe to its end (asyncio's wait() waits for it) and reap, bounded."""

    async def drain() -> None:
        while proc.stdout is not None and await proc.stdout.read(65536):
            pass
        await proc.wait()

    with contextlib.suppress(asyncio.TimeoutError, ProcessLookupError):
        await asyncio.wait_for(drain(), 5)


async def run_command(command: str, allowlist: list[str], cwd: Path, bounds: Bounds, repo_env: RepoEnv, *,
                      box: Box) -> ExecResult:
    """Check `command` against the allowlist, then run it in the repository's environment, sandboxed."""
    try:
        argv = check_command(command, allowlist, cwd)
    except CommandRefused as e:
        return ExecResult(status="failed", error=e.message, exit_code=None)
    return await run_argv(repo_env.argv(argv), cwd, bounds, box=box, env=repo_env.env)


# ---- workspaces ----------------------------------------------------------------------------
STAT_FILES = 50
"""Files listed in a task's diff stat; the rest are counted ("... N more files")."""
_repo_locks: dict[str, asyncio.Lock] = {}


@dataclass
class Workspace:
    path: Path
    repo: Path | None = None
    branch: str | None = None

    async def finish(self, task_id: str) -> str | None:
        """Commit what the task changed on its branch (PAS's hardened git, pas.execution.gitsafe); return the
        diff stat, bounded (None without a repo). PasError when the work cannot be committed: the
        task then fails with the reason, and its worktree stays for a look."""
        if self.repo is None:
            return None
        nested = await asyncio.to_thread(nested_repos, self.path)
        if nested:  # `git add` would record a gitlink and read the nested repository
            raise PasError(f"the task made nested git repositories ({', '.join(nested)}): PAS does not commit "
                           "them; remove them or make them plain directories")
        await git("add", "-A", cwd=self.path)
        if (await run_git(self.path, "diff", "--cached", "--quiet", "--ignore-submodules=all"))[0] == 0:
            return ""  # nothing staged
        await git("-c", "user.name=PAS", "-c", "user.email=pas@localhost", "commit", "-q", "--no-verify", "-m",
                  f"pas: task {task_id}", cwd=self.path)
        stat = await git("diff", "--stat=200", f"--stat-count={STAT_FILES}", "--ignore-submodules=all", "HEAD~1",
                         "HEAD", cwd=self.path)
        return bounded_stat(stat)

    async def remove(self) -> None:
        if self.repo is None:
            await asyncio.to_thread(remove_tree, self.path)
        # Worktrees stay: the branch and its files are the task's result. `git worktree prune`
        # after deleting .pas/worktrees cleans them up.


def worktree_dir(repo: Path, run_id: str, task_id: str) -> Path:
    return repo / ".pas" / "worktrees" / run_id / task_id


async def open_workspace(repo: str | None, run_id: str, task_id: str, scratch_root: Path) -> Workspace:
    if not repo:
        p = scratch_root / run_id / task_id
        if os.path.lexists(p):  # an earlier attempt's (most tasks find nothing: no thread, no process)
            await asyncio.to_thread(remove_tree, p)
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
            await asyncio.to_thread(remove_tree, path)
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
