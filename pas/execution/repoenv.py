"""The target repository's environment: which toolchain a task's commands, acceptance commands and
aider run with. Never silently PAS's own interpreter.

Resolution, first match wins:

1. the repository's own virtualenv: ``<repo root>/.venv`` or ``<repo root>/venv`` (the root of the
   repository, not the task's worktree: an untracked .venv is not in a worktree);
2. an explicit setting: the job's ``env`` field, else ``settings.pool.env``. Its forms:
   - a directory with ``bin/python`` (a virtualenv or a conda prefix), absolute or relative to the
     repository root;
   - an interpreter: an executable named ``python*`` that is, after symlinks, a native (ELF) binary
     named ``python*``; a directory's ``bin/python`` must be one too: never a script that merely
     carries the name (``check_interpreter``);
   - ``settings.pool.env`` only (the operator's choice, not a job's: it wraps every command): a
     command prefix such as ``uv run`` or ``conda run -p /opt/env``;
3. the first ``python3`` on PATH (PAS's own virtualenv is left out of the search).

``python``/``python3`` at the start of a command mean the chosen interpreter; the environment's
``bin`` directory goes first on PATH so ``pytest``, ``ruff`` ... resolve there.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pas.base.errors import PasError
from pas.base.programs import is_elf

VENV_NAMES = (".venv", "venv")
PYTHON_NAMES = ("python", "python3")


class EnvError(PasError):
    """The configured environment cannot be used (missing path, not an interpreter, ...)."""


@dataclass(frozen=True)
class RepoEnv:
    kind: str
    """venv | prefix | interpreter | runner | path | none"""
    description: str
    """What the task ran in, for humans: shown by `pas status` and in the comms log."""
    python: str | None = None
    """The interpreter `python`/`python3` at the start of a command mean (None: left to the runner)."""
    prefix: tuple[str, ...] = ()
    """A command prefix (``uv run``) put in front of every command."""
    env: Mapping[str, str] = field(default_factory=dict)
    """The whole process environment for the task's processes."""

    def argv(self, argv: list[str]) -> list[str]:
        """The argv to execute for an (allowlist-checked) command."""
        if argv and argv[0] in PYTHON_NAMES and self.python:
            argv = [self.python, *argv[1:]]
        return [*self.prefix, *argv]


def _own_bin() -> str | None:
    """PAS's own virtualenv bin directory, if PAS runs in one."""
    if sys.prefix != getattr(sys, "base_prefix", sys.prefix):
        return str(Path(sys.prefix) / "bin")
    return None


def _clean_path(path: str) -> list[str]:
    own = _own_bin()
    out = []
    for d in path.split(os.pathsep):
        if d and (own is None or os.path.realpath(d) != os.path.realpath(own)):
            out.append(d)
    return out


def _base_env(base: Mapping[str, str]) -> dict[str, str]:
    env = dict(base)
    for k in ("VIRTUAL_ENV", "CONDA_PREFIX", "PYTHONHOME", "__PYVENV_LAUNCHER__"):
        env.pop(k, None)
    env["PATH"] = os.pathsep.join(_clean_path(env.get("PATH", os.defpath)))
    return env


def _with_bin(env: dict[str, str], bin_dir: Path) -> dict[str, str]:
    rest = [d for d in env["PATH"].split(os.pathsep) if d and d != str(bin_dir)]
    env["PATH"] = os.pathsep.join([str(bin_dir), *rest])
    return env


def _is_own(python: str | Path) -> bool:
    """Is this PAS's own interpreter? Compared by directory: a venv's bin/python is a symlink to the
    base interpreter, yet it is another environment."""
    return os.path.realpath(Path(python).parent) == os.path.realpath(Path(sys.executable).parent)


def check_interpreter(p: Path, how: str) -> None:
    """A real interpreter: named python*, and after symlinks a native binary named python*. A
    script called python3 (`#!/bin/sh ...`) would run whatever it says as every task's Python."""
    real = p.resolve()
    if not (p.name.startswith("python") and real.name.startswith("python") and is_elf(real)):
        raise EnvError(f"{how}: {str(p)!r} is not a Python interpreter (expected a native binary named python*, "
                       f"not a script; it resolves to {str(real)!r})")


def _dir_python(d: Path, how: str) -> Path:
    py = d / "bin" / "python"
    if not os.access(py, os.X_OK):
        py = d / "bin" / "python3"
    if not os.access(py, os.X_OK):
        raise EnvError(f"environment {str(d)!r} ({how}) has no bin/python")
    check_interpreter(py, how)
    return py


def _from_dir(d: Path, env: dict[str, str], how: str) -> RepoEnv:
    py = _dir_python(d, how)
    if (d / "conda-meta").is_dir():
        kind, env["CONDA_PREFIX"] = "prefix", str(d)
    else:
        kind, env["VIRTUAL_ENV"] = "venv", str(d)
    own = "; also PAS's own environment" if _is_own(py) else ""
    return RepoEnv(kind, f"{kind} {d} ({how}{own})", str(py), (), _with_bin(env, d / "bin"))


def _looks_like_path(raw: str) -> bool:
    return bool(raw) and not any(c.isspace() for c in raw) and ("/" in raw or raw.startswith((".", "~")))


def check_job_env(value: str, root: Path | None = None) -> None:
    """A job's env must be a path (a venv/conda directory or an interpreter, relative paths against
    the repository `root`) naming a real interpreter: a job may choose an interpreter, never wrap
    commands in a program of its choice. Raises EnvError."""
    raw = value.strip()
    if not _looks_like_path(raw):
        raise EnvError(f"env {value!r}: a job's env must be a path to a venv or conda directory or to an "
                       "interpreter (command prefixes such as 'uv run' belong in settings.pool.env)")
    p = Path(os.path.expanduser(raw))
    if root is not None and not p.is_absolute():
        p = root / p
    try:
        if p.is_dir():
            _dir_python(p, f"env {value!r}")
        elif p.is_file():
            check_interpreter(p, f"env {value!r}")
        else:
            raise EnvError(f"env {value!r}: no such environment directory or interpreter")
    except OSError as e:
        raise EnvError(f"env {value!r}: {e.strerror or e}") from None


def _explicit(value: str, root: Path | None, env: dict[str, str], how: str, allow_runner: bool) -> RepoEnv:
    raw = value.strip()
    if not raw:
        raise EnvError(f"{how}: empty environment")
    if not allow_runner:
        check_job_env(raw)
    try:
        words = shlex.split(raw)
    except ValueError as e:
        raise EnvError(f"{how}: cannot parse {raw!r}: {e}") from None
    looks_like_path = _looks_like_path(raw)
    p = Path(os.path.expanduser(words[0]))
    if root is not None and not p.is_absolute():
        p = root / p
    if looks_like_path or (len(words) == 1 and p.exists()):
        if p.is_dir():
            return _from_dir(p, env, how)
        if not (p.is_file() and os.access(p, os.X_OK)):
            raise EnvError(f"{how}: {raw!r} is neither an environment directory nor an executable")
        check_interpreter(p, how)
        own = "; also PAS's own interpreter" if _is_own(str(p)) else ""
        return RepoEnv("interpreter", f"interpreter {p} ({how}{own})", str(p), (), _with_bin(env, p.parent))
    exe = shutil.which(words[0], path=env["PATH"])
    if exe is None:
        raise EnvError(f"{how}: runner {words[0]!r} not found on PATH")
    return RepoEnv("runner", f"runner {raw!r} ({how})", None, (exe, *words[1:]), env)


def resolve(repo: str | Path | None, job_env: str | None = None, config_env: str | None = None,
            base: Mapping[str, str] | None = None) -> RepoEnv:
    """The environment a task in `repo` (its root, or None for a scratch task) runs in.

    Raises EnvError when an explicit setting is given but unusable (never falls back silently)."""
    env = _base_env(os.environ if base is None else base)
    root = Path(repo).resolve() if repo else None
    if root is not None:
        for name in VENV_NAMES:
            d = root / name
            if os.access(d / "bin" / "python", os.X_OK):
                r = _from_dir(d, env, "the repository's own")
                if job_env or config_env:
                    ignored = job_env or config_env
                    r = RepoEnv(r.kind, f"{r.description}; env {ignored!r} not used", r.python, r.prefix, r.env)
                return r
    try:
        if job_env:
            return _explicit(job_env, root, env, "job env", allow_runner=False)
        if config_env:
            return _explicit(config_env, root, env, "settings.pool.env", allow_runner=True)
    except OSError as e:  # a path too long, a permission error ...
        raise EnvError(f"env {(job_env or config_env)!r}: {e.strerror or e}") from None
    py = shutil.which("python3", path=env["PATH"])
    if py is None:
        return RepoEnv("none", "no Python environment (no .venv, no env setting, no python3 on PATH)", None, (), env)
    own = " (also PAS's own interpreter)" if _is_own(py) else ""
    return RepoEnv("path", f"python3 on PATH: {py}{own}", py, (), env)


__all__ = ["EnvError", "RepoEnv", "check_interpreter", "check_job_env", "resolve"]
