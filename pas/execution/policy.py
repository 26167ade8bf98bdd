"""Command and path policy: what a `command` task may run, and where; which repository and
environment a job may name.

A job's repository must resolve (symlinks followed) under settings.policy.repo_roots (default: the
directory `pas up` started in) and its env must be a real interpreter (pas.execution.repoenv.check_job_env):
`admit` checks both where a job comes in (the gateway, a manager's direct submit, a programmer's
execute) and answers 400 naming the field.

Commands run WITHOUT a shell: the command line is split with shlex, matched against the
allowlist globs (configs/pas.yaml settings.policy.command_allowlist), and every argument that
looks like a path must stay inside the task's workspace.
"""

from __future__ import annotations

import fnmatch
import os
import shlex
from collections.abc import Iterable
from pathlib import Path, PurePath

from pas.base.errors import BadRequest, CommandRefused
from pas.execution.repoenv import EnvError, check_job_env

SHELL_OPERATORS = {"|", "||", "&", "&&", ";", ">", ">>", "<", "<<", "2>", "2>&1"}
SHELL_PUNCTUATION = ";&|<>()"
"""Unquoted, these only mean something to a shell: a command holding one expected a shell (which
it does not get), so it is refused rather than run with the characters as literal arguments."""
SHELL_EXPANSIONS = ("`", "$(", "${", "\n", "\r")
"""Refused anywhere, quoted or not: a shell expands the first three even inside double quotes, and
a newline separates commands."""


def split_command(command: str) -> list[str]:
    if "\0" in command:
        raise CommandRefused("command contains a NUL character")
    try:
        argv = shlex.split(command)
    except ValueError as e:
        raise CommandRefused(f"cannot parse command {command!r}: {e}") from None
    if not argv:
        raise CommandRefused("empty command")
    return argv


def check_command(command: str, allowlist: list[str], workdir: Path | None = None) -> list[str]:
    """Return argv if the command is allowed, else raise CommandRefused with the reason."""
    argv = split_command(command)
    if any(arg in SHELL_OPERATORS for arg in argv):
        raise CommandRefused(f"shell operators are not supported (commands run without a shell): {command!r}")
    bad = next((c for c in SHELL_EXPANSIONS if c in command), None) or _unquoted_punctuation(command)
    if bad is not None:
        raise CommandRefused(f"shell metacharacter {bad!r} refused (commands run without a shell): {command!r}")
    line = " ".join(argv)
    if not any(fnmatch.fnmatchcase(line, pat) for pat in allowlist):
        raise CommandRefused(f"command not on the allowlist: {line!r}", detail={"allowlist": allowlist})
    if workdir is not None:
        for arg in argv[1:]:
            check_path_arg(arg, workdir)
        check_pytest_plugins(argv, workdir)
    return argv


def _unquoted_punctuation(command: str) -> str | None:
    """The first shell operator outside quotes (`a;b`, `x|y`), None if there is none."""
    lex = shlex.shlex(command, posix=True, punctuation_chars=SHELL_PUNCTUATION)
    lex.whitespace_split = True
    try:
        return next((t for t in lex if t and all(c in SHELL_PUNCTUATION for c in t)), None)
    except ValueError:
        return None  # unbalanced quotes: split_command already refused those


def check_pytest_plugins(argv: list[str], workdir: Path) -> None:
    """`pytest -p NAME` imports NAME: only modules inside the workspace (or `no:NAME`) are allowed."""
    if not any(a == "pytest" or a.endswith("/pytest") for a in argv[:3]):
        return
    names = []
    for i, a in enumerate(argv):
        if a == "-p" and i + 1 < len(argv):
            names.append(argv[i + 1])
        elif a.startswith("-p") and len(a) > 2:
            names.append(a[2:].lstrip("="))
    for name in names:
        if name.startswith("no:"):
            continue
        top = name.split(".")[0]
        if not top or not ((workdir / top).is_dir() or (workdir / f"{top}.py").is_file()):
            raise CommandRefused(f"pytest plugin {name!r} is not a module inside the workspace")


def check_path_arg(arg: str, workdir: Path) -> None:
    value = arg.split("=", 1)[1] if arg.startswith("-") and "=" in arg else arg
    if arg.startswith("-") and "=" not in arg:
        return
    if not value or ("/" not in value and value != ".." and not value.startswith("~")):
        return
    check_inside(value, workdir)


def resolve_in(root: Path, path: str | PurePath) -> Path | None:
    """The one path check: path resolved against root (symlinks followed), or None when it lands
    outside root. Used for command arguments (check_inside) and for the files an edit writes
    (pas.execution.edit_loop.safe_path)."""
    root_r = root.resolve()
    p = Path(path)
    target = (p if p.is_absolute() else root_r / p).resolve()
    return target if target == root_r or root_r in target.parents else None


def check_inside(path: str, root: Path) -> Path:
    """Resolve path against root; refuse anything that lands outside it (.., absolute, symlinks)."""
    if "\0" in path:
        raise CommandRefused(f"path {path!r} contains a NUL character")
    try:
        target = resolve_in(root, os.path.expanduser(path))
    except (ValueError, OSError) as e:
        raise CommandRefused(f"path {path!r} cannot be resolved: {e}") from None
    if target is None:
        raise CommandRefused(f"path {path!r} escapes the workspace {root}")
    return target


def repo_roots(configured: Iterable[str]) -> list[Path]:
    """settings.policy.repo_roots resolved (symlinks followed); empty: the directory this process
    (`pas up`) started in."""
    return [Path(os.path.expanduser(r)).resolve() for r in configured] or [Path.cwd().resolve()]


def check_repo(repo: str, roots: list[Path]) -> Path:
    """The repository a job names, resolved, if it is a git repository under one of `roots`; else
    BadRequest naming `repo`."""
    bad = {"field": "repo", "repo_roots": [str(r) for r in roots]}
    if "\0" in repo:
        raise BadRequest("repo: contains a NUL character", detail=bad)
    try:
        path = Path(os.path.expanduser(repo)).resolve()
    except (OSError, RuntimeError) as e:  # a symlink loop, a name too long
        raise BadRequest(f"repo {repo!r} cannot be resolved: {e}", detail=bad) from None
    if not any(path == r or r in path.parents for r in roots):
        raise BadRequest(f"repo {repo!r} ({path}) is outside settings.policy.repo_roots "
                         f"({', '.join(map(str, roots))})", detail=bad)
    if not (path / ".git").exists():
        raise BadRequest(f"repo {repo!r} is not a git repository", detail=bad)
    return path


def admit(repo: str | None, env: str | None, roots: list[Path]) -> str | None:
    """Where a job may act: its repository (returned resolved, so later steps use the path that
    was checked) and its environment. BadRequest naming `repo` or `env`."""
    path = check_repo(repo, roots) if repo else None
    if env:
        try:
            check_job_env(env, path)
        except EnvError as e:
            raise BadRequest(e.message, detail={"field": "env"}) from None
    return str(path) if path else None
