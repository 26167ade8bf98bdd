"""Outside programs PAS runs itself: finding a binary (nats-server, aider), telling a native binary
from a script. PAS's git is pas.execution.gitsafe."""

from __future__ import annotations

import os
import shutil
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
    Errors are ignored, as with rmtree(ignore_errors=True)."""
    subprocess.run(["rm", "-rf", "--", str(path)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, check=False)
