"""Outside programs PAS runs itself: finding a binary (nats-server, aider), telling a native binary
from a script. PAS's git is pas.execution.gitsafe."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from collections.abc import Iterable
from pathlib import Path


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


def remove_tree(path: Path) -> None:
    """`rm -rf path`: whatever a task left there, at any depth (coreutils walks without recursion
    and never follows a symlink; Python 3.11's shutil.rmtree dies of RecursionError on deep trees).
    Errors are ignored, as with rmtree(ignore_errors=True). No process for a path that is not there,
    nor for a directory of plain files (most tasks' scratch directories): ten programmers starting at
    once spent 5-40 ms each in these processes."""
    try:
        if _removed_without_a_process(path):
            return
    except OSError:
        pass
    subprocess.run(["rm", "-rf", "--", str(path)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, check=False)


def _removed_without_a_process(path: Path) -> bool:
    """Remove path if it is absent, a non-directory, or a directory holding no directory; False (or
    OSError) leaves the rest to `rm -rf`. Symlinks are removed, never followed (O_NOFOLLOW)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return True
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(path)
        return True
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        with os.scandir(fd) as it:
            entries = list(it)
        if any(e.is_dir(follow_symlinks=False) for e in entries):
            return False
        for e in entries:
            os.unlink(e.name, dir_fd=fd)
    finally:
        os.close(fd)
    os.rmdir(path)
    return True
