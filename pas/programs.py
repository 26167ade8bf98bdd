"""Outside programs PAS runs itself: finding a binary (nats-server, aider) and running git."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Iterable
from pathlib import Path

from pas.errors import PasError


def is_elf(p: Path) -> bool:
    """Is p (after symlinks) a native executable? The check that tells an interpreter from a script
    named like one (`#!/bin/sh` in a file called python3)."""
    try:
        with p.resolve().open("rb") as f:
            return f.read(4) == b"\x7fELF"
    except (OSError, RuntimeError):
        return False


def _runnable(p: Path) -> bool:
    return p.is_file() and os.access(p, os.X_OK)


def find_binary(name: str, *, before: Iterable[Path] = (), after: Iterable[Path] = ()) -> str | None:
    """An executable: `name` itself if it is a path, else the first of <dir>/<name> for the `before`
    directories, the PATH, then the `after` directories; None if there is none."""
    if os.sep in name:
        return name if _runnable(Path(name)) else None
    for d in before:
        if _runnable(d / name):
            return str(d / name)
    found = shutil.which(name)
    if found:
        return found
    return next((str(d / name) for d in after if _runnable(d / name)), None)


async def run_git(cwd: Path, *args: str) -> tuple[int, str]:
    """`git -C cwd args...` with stdin closed and no terminal prompt: (exit code, stdout then stderr);
    127 if git cannot be started."""
    try:
        proc = await asyncio.create_subprocess_exec(
            "git", "-C", str(cwd), *args,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env=dict(os.environ, GIT_TERMINAL_PROMPT="0"),
        )
    except OSError as e:
        return 127, str(e)
    out, err = await proc.communicate()
    return proc.returncode or 0, out.decode(errors="replace") + err.decode(errors="replace")


async def git(*args: str, cwd: Path, check: bool = True) -> str:
    """run_git's output; with check, a non-zero exit raises PasError with git's message."""
    rc, text = await run_git(cwd, *args)
    if check and rc != 0:
        raise PasError(f"git {' '.join(args)} failed ({rc}): {text.strip()[:500]}")
    return text
