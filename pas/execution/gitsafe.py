"""PAS's own git: the one hardened invocation for every git command PAS runs on a repository or a
task's worktree (opening worktrees, committing a task's work, its diff stat, integration, run_diff,
`pas diff`, the edit loop's diffs).

A task's code writes files in its worktree, and git can be made to run programs from what it
reads there. So PAS's git:

- reads no system or global config (GIT_CONFIG_NOSYSTEM, GIT_CONFIG_GLOBAL=/dev/null, an empty
  HOME, no XDG_CONFIG_HOME) and no system attributes (GIT_ATTR_NOSYSTEM, core.attributesFile);
- overrides, on its command line, every config key that runs something and that it can name:
  hooks (core.hooksPath=/dev/null), core.fsmonitor, core.untrackedCache, the pager and editor,
  network protocols (protocol.allow=never), automatic gc;
- never runs an external diff or a textconv filter (--no-ext-diff --no-textconv on diff/show/log);
- trusts exactly the directory it works in (safe.directory=<cwd>), nothing else: a repository the
  task planted somewhere stays "dubious" and is never read;
- is never pointed at a nested repository: `nested_repos` finds them and the task's commit is
  refused (`git add` would record a gitlink and read the nested repository's files).

The repository-local config (<repo>/.git/config, which defines filter, merge and diff drivers) is
the repository owner's: the sandbox binds <repo>/.git and the worktree's .git file read-only
(pas.execution.sandbox.wrap), so a task cannot write it, and a .gitattributes a task writes can only select
drivers the owner defined. The environment is built from scratch: no GIT_DIR, GIT_* or other
variable of PAS's own environment leaks in.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import tempfile
from pathlib import Path

from pas.base.errors import PasError

_home: str | None = None


def _empty_home() -> str:
    """An empty directory for HOME (no ~/.gitconfig, ~/.config/git of anybody's), one per process."""
    global _home
    if _home is None or not os.path.isdir(_home):
        _home = tempfile.mkdtemp(prefix="pas-git-home-")
    return _home


HARDEN = ("core.hooksPath=/dev/null", "core.fsmonitor=false", "core.untrackedCache=false",
          "core.attributesFile=/dev/null", "core.pager=cat", "core.editor=true", "protocol.allow=never",
          "gc.auto=0", "maintenance.auto=false", "submodule.recurse=false")
NO_EXTERNAL = ("diff", "show", "log")
"""Subcommands that could run an external diff or a textconv filter: they get --no-ext-diff --no-textconv."""


def environment() -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", os.defpath), "LANG": "C.UTF-8", "HOME": _empty_home(),
            "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_ATTR_NOSYSTEM": "1",
            "GIT_TERMINAL_PROMPT": "0", "GIT_PAGER": "cat", "GIT_EDITOR": "true", "GIT_OPTIONAL_LOCKS": "0"}


def command(cwd: Path, *args: str) -> list[str]:
    """The argv of `git args...` run hardened in cwd (see the module docstring)."""
    where = str(Path(cwd).resolve())
    argv = ["git", "-C", where, "-c", f"safe.directory={where}"]
    for kv in HARDEN:
        argv += ["-c", kv]
    i = 0
    while i < len(args) - 1 and args[i] == "-c":  # the caller's own -c key=value pairs come first
        i += 2
    if i < len(args) and args[i] in NO_EXTERNAL:
        args = (*args[:i + 1], "--no-ext-diff", "--no-textconv", *args[i + 1:])
    return [*argv, *args]


def run(cwd: Path, *args: str, check: bool = True, binary: bool = False) -> subprocess.CompletedProcess[bytes]:
    """Hardened git, synchronously (for code already in a worker thread): stdout/stderr as bytes;
    with check, a non-zero exit raises PasError with git's message."""
    p = subprocess.run(command(cwd, *args), capture_output=True, stdin=subprocess.DEVNULL, env=environment())
    if check and p.returncode != 0:
        raise PasError(f"git {' '.join(args)} failed: {_text(p.stdout + p.stderr).strip()[:500]}")
    return p


def _text(b: bytes) -> str:
    return b.decode(errors="replace")


async def run_git(cwd: Path, *args: str) -> tuple[int, str]:
    """Hardened git: (exit code, stdout then stderr); 127 if git cannot be started."""
    try:
        proc = await asyncio.create_subprocess_exec(
            *command(cwd, *args), stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env=environment())
    except OSError as e:
        return 127, str(e)
    out, err = await proc.communicate()
    return proc.returncode or 0, _text(out) + _text(err)


async def git(*args: str, cwd: Path, check: bool = True) -> str:
    """run_git's output; with check, a non-zero exit raises PasError with git's message."""
    rc, text = await run_git(cwd, *args)
    if check and rc != 0:
        raise PasError(f"git {' '.join(args)} failed ({rc}): {text.strip()[:500]}")
    return text


def nested_repos(worktree: Path, limit: int = 20) -> list[str]:
    """Paths (relative to worktree) of the git repositories a task made inside it: directories
    holding a `.git` (file or directory), at most `limit`. Found by find(1), which never follows
    a symlink and walks any depth (it descends by relative paths: no PATH_MAX, no recursion limit)."""
    p = subprocess.run(["find", ".", "-mindepth", "2", "-name", ".git", "-prune", "-print0"], cwd=worktree,
                       capture_output=True, stdin=subprocess.DEVNULL, check=False)
    found = [os.path.dirname(x.decode(errors="replace"))[2:] for x in p.stdout.split(b"\0") if x]
    if p.returncode != 0 and not found:
        raise PasError(f"cannot look for nested repositories: {_text(p.stderr).strip()[:300]}")
    return sorted(found)[:limit]


__all__ = ["command", "environment", "git", "nested_repos", "run", "run_git"]
