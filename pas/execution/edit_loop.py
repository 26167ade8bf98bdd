"""The ``llm`` executor: a model edits files in a worktree until the acceptance command passes.

The model is shown the task and the named files and answers with edit blocks in this format (the
same text is its system prompt, see EDIT_FORMAT):

    FILE: path/relative/to/repo.py
    <<<<<<< CONTENT
    the whole new content of the file
    >>>>>>> END

    EDIT: path/relative/to/repo.py
    <<<<<<< SEARCH
    lines exactly as they are now in the file
    =======
    the lines that replace them
    >>>>>>> REPLACE

Parsing is strict: a FILE:/EDIT: line must be followed at once by its opening marker; markers are
whole lines; a block left open (a truncated reply) or a marker outside a block is an error. Other
text outside blocks is ignored. The SEARCH lines must occur exactly once in the file (as whole
lines); several EDIT blocks may target one file and apply in order. Paths must be relative and stay
inside the worktree: absolute paths, ``..``, ``.git`` and symlinks that lead outside are refused.
A reply is applied all-or-nothing. Then the acceptance command runs (through the caller's
``run_acceptance``, which enforces the command allowlist and runs it in the repository's
environment, see pas.execution.repoenv); a failure, or a reply that cannot be applied, is sent back to the
model, at most ``max_fix_iterations`` times after the first reply.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Literal

from pas.base.errors import BudgetExceeded, CommandRefused
from pas.execution.gitsafe import run_git
from pas.execution.policy import resolve_in
from pas.llm.budget import BudgetTracker
from pas.llm.client import Asker, LLMUnavailable

RunAcceptance = Callable[[str, Path], Awaitable[tuple[int, str]]]
FILE_CAP = 64 * 1024
"""Bytes of one file shown to the model; a longer file is shown truncated (and marked so)."""
OUTPUT_CAP = 8 * 1024
"""Characters of acceptance output fed back to the model (the tail)."""

EDIT_FORMAT = """You edit files by replying with edit blocks, in this exact format.

To write a whole file (new or replaced):
FILE: path/relative/to/repo.py
<<<<<<< CONTENT
the complete new content of the file
>>>>>>> END

To change part of a file:
EDIT: path/relative/to/repo.py
<<<<<<< SEARCH
lines copied exactly from the current file
=======
the lines that replace them
>>>>>>> REPLACE

Rules: the FILE:/EDIT: line is followed directly by the <<<<<<< line; every marker is on a line of
its own; SEARCH lines must match exactly one place in the file, whole lines, same indentation; use
several EDIT blocks for several changes; paths are relative to the repository root and must stay
inside it. Do not wrap blocks in ``` fences. Text outside blocks is ignored."""


@dataclass
class EditResult:
    status: Literal["completed", "failed", "budget_exceeded"]
    iterations: int
    """Model replies used (first attempt included)."""
    diff: str
    """git diff of the worktree (including files created by the edits)."""
    acceptance_exit: int | None = None
    acceptance_output: str = ""
    """Output of the last acceptance run."""
    tokens: int = 0
    cost_usd: float | None = 0.0
    """None when a model's cost is unknown."""
    error: str = ""
    changed_files: list[str] = field(default_factory=list)
    model_used: str | None = None


@dataclass
class Block:
    kind: Literal["file", "edit"]
    path: str
    content: str = ""
    search: list[str] = field(default_factory=list)
    replace: list[str] = field(default_factory=list)


class EditFormatError(ValueError):
    pass


_OPEN = {"FILE:": ("file", "<<<<<<< CONTENT"), "EDIT:": ("edit", "<<<<<<< SEARCH")}
_MARKERS = ("<<<<<<<", "=======", ">>>>>>>")


def _until(lines: list[str], i: int, end: str, block: str, section: str = "") -> tuple[list[str], int]:
    """lines[i:] up to the line `end`, and the index of that line. In an EDIT's SEARCH or REPLACE
    (`section`) another marker is an error; a FILE's content is taken as it is."""
    body: list[str] = []
    while i < len(lines) and lines[i].rstrip() != end:
        if section and lines[i].rstrip().startswith(_MARKERS):
            raise EditFormatError(f"{block}: unexpected {lines[i].rstrip()!r} in {section}")
        body.append(lines[i])
        i += 1
    if i >= len(lines):
        raise EditFormatError(f"{block}: no {end!r} (reply truncated?)")
    return body, i


def parse_edits(text: str) -> list[Block]:
    """Parse a reply into blocks (see the module docstring); EditFormatError on any violation."""
    lines = text.replace("\r\n", "\n").split("\n")
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        line = lines[i].rstrip()
        head = next((h for h in _OPEN if line.startswith(h)), None)
        if head is None:
            if line.startswith(_MARKERS):
                raise EditFormatError(f"line {i + 1}: marker {line[:20]!r} outside a block")
            i += 1
            continue
        kind, opener = _OPEN[head]
        path = line[len(head) :].strip().strip("`").strip()
        if not path:
            raise EditFormatError(f"line {i + 1}: {head} without a path")
        if i + 1 >= len(lines) or lines[i + 1].rstrip() != opener:
            raise EditFormatError(f"line {i + 2}: expected {opener!r} after {line!r}")
        i += 2
        if kind == "file":
            body, i = _until(lines, i, ">>>>>>> END", f"FILE {path}")
            blocks.append(Block("file", path, content="\n".join(body) + ("\n" if body else "")))
        else:
            body, i = _until(lines, i, "=======", f"EDIT {path}", "SEARCH")
            repl, i = _until(lines, i + 1, ">>>>>>> REPLACE", f"EDIT {path}", "REPLACE")
            if not any(s.strip() for s in body):
                raise EditFormatError(f"EDIT {path}: empty SEARCH (use FILE: to create a file)")
            blocks.append(Block("edit", path, search=body, replace=repl))
        i += 1
    return blocks


def glob_regex(glob: str) -> re.Pattern[str]:
    """Path glob: `**/` is any number of directories (zero included), `*` and `?` stay in one."""
    out, i = "", 0
    while i < len(glob):
        if glob.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif glob.startswith("**", i):
            out, i = out + ".*", i + 2
        elif glob[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif glob[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(glob[i]), i + 1
    return re.compile(out + r"\Z")


def _glob_ok(rel: str, globs: list[str]) -> bool:
    return any(glob_regex(g).match(rel) for g in globs)


def safe_path(workdir: Path, rel: str, allowed_globs: list[str] | None = None) -> Path:
    """The absolute path of `rel` inside `workdir`; CommandRefused if it is not safely inside."""
    if not rel or "\x00" in rel or "\\" in rel:
        raise CommandRefused(f"path {rel!r} refused: empty or invalid characters")
    p = PurePosixPath(rel)
    if p.is_absolute() or rel.startswith("~"):
        raise CommandRefused(f"path {rel!r} refused: absolute")
    if any(part == ".." for part in p.parts):
        raise CommandRefused(f"path {rel!r} refused: '..' leaves the worktree")
    if any(part == ".git" for part in p.parts):
        raise CommandRefused(f"path {rel!r} refused: inside .git")
    target = resolve_in(workdir, p)
    if target is None:
        raise CommandRefused(f"path {rel!r} refused: resolves outside the worktree (symlink)")
    if target == workdir.resolve():
        raise CommandRefused(f"path {rel!r} refused: the worktree itself")
    if allowed_globs and not _glob_ok(p.as_posix(), allowed_globs):
        raise CommandRefused(f"path {rel!r} refused: not on the filesystem allowlist")
    return target


def apply_edits(workdir: Path, blocks: list[Block], allowed_globs: list[str] | None = None) -> list[str]:
    """Apply blocks all-or-nothing; return the paths written. Raises EditFormatError/CommandRefused."""
    new: dict[str, tuple[Path, str]] = {}
    for b in blocks:
        target = safe_path(workdir, b.path, allowed_globs)
        key = PurePosixPath(b.path).as_posix()
        if b.kind == "file":
            new[key] = (target, b.content)
            continue
        if key in new:
            current = new[key][1]
        elif target.is_file():
            current = target.read_text(errors="replace")
        else:
            raise EditFormatError(f"EDIT {b.path}: file does not exist (use FILE: to create it)")
        flines = current.split("\n")
        n = len(b.search)
        hits = [k for k in range(len(flines) - n + 1) if flines[k : k + n] == b.search]
        if not hits:
            stripped = [s.rstrip() for s in b.search]
            hits = [k for k in range(len(flines) - n + 1) if [s.rstrip() for s in flines[k : k + n]] == stripped]
        if len(hits) != 1:
            what = "not found" if not hits else f"found {len(hits)} times"
            raise EditFormatError(f"EDIT {b.path}: SEARCH lines {what} in the file")
        k = hits[0]
        new[key] = (target, "\n".join(flines[:k] + b.replace + flines[k + n :]))
    for _key, (target, text) in new.items():
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    return list(new)


# ---- git -----------------------------------------------------------------------------------
async def untracked_files(workdir: Path) -> set[str]:
    rc, out = await run_git(workdir, "ls-files", "--others", "--exclude-standard", "-z")
    return set(filter(None, out.split("\0"))) if rc == 0 else set()


async def git_diff(workdir: Path, include_untracked: Iterable[str] = ()) -> str:
    """`git diff HEAD` of the worktree plus the given untracked files as new files ("" if no repo)."""
    # --ignore-submodules: a nested repository the task made must not have its config run by us.
    rc, out = await run_git(workdir, "diff", "--ignore-submodules=all", "HEAD", "--")
    if rc != 0:
        rc, out = await run_git(workdir, "diff", "--ignore-submodules=all", "--")
        if rc != 0:
            return ""
    wanted = set(include_untracked)
    if wanted:
        for path in sorted(wanted & await untracked_files(workdir)):
            _, d = await run_git(workdir, "diff", "--no-index", "--", "/dev/null", path)
            out += d
    return out


# ---- the loop ------------------------------------------------------------------------------
def _show_files(workdir: Path, paths: Iterable[str]) -> str:
    parts = []
    for rel in dict.fromkeys(paths):
        target = safe_path(workdir, rel)
        if not target.is_file():
            parts.append(f"--- {rel} (does not exist yet)")
            continue
        data = target.read_bytes()
        text = data[:FILE_CAP].decode(errors="replace")
        note = " (truncated: do not rewrite it with FILE:)" if len(data) > FILE_CAP else ""
        parts.append(f"--- {rel}{note}\n{text}")
    return "\n\n".join(parts) if parts else "(no files named)"


def _tail(s: str) -> str:
    return s if len(s) <= OUTPUT_CAP else "[... earlier output cut]\n" + s[-OUTPUT_CAP:]


@dataclass(frozen=True)
class EditTask:
    """What to change, where, and how to know it is done: an llm or aider task in its worktree."""

    workdir: Path
    instruction: str
    files: list[str]
    acceptance: str | None = None
    allowed_globs: list[str] | None = None  # what edits may touch (settings.policy.filesystem_allowlist)


async def run_llm_edit(
    who: Asker,
    task: EditTask,
    run_acceptance: RunAcceptance,
    *,
    max_fix_iterations: int = 3,
    budget: BudgetTracker | None = None,
) -> EditResult:
    """Ask for edits, apply them, run acceptance, feed failures back (see the module docstring)."""
    workdir, files, acceptance = Path(task.workdir), task.files, task.acceptance
    res = EditResult(status="failed", iterations=0, diff="")
    written: list[str] = []
    try:
        shown = _show_files(workdir, files)
    except CommandRefused as e:
        res.error = e.message
        return res
    asked = f"Task:\n{task.instruction}\n\n"
    if acceptance:
        asked += f"The task is done when this command exits 0: {acceptance}\n\n"
    messages = [
        {"role": "system", "content": EDIT_FORMAT},
        {"role": "user", "content": f"{asked}Files:\n{shown}"},
    ]
    for _ in range(1 + max(0, max_fix_iterations)):
        if budget is not None:
            try:
                budget.check()
            except BudgetExceeded as e:
                res.status, res.error = "budget_exceeded", e.message
                break
        try:
            reply = await who.complete(messages)
        except BudgetExceeded as e:  # the run's budget, as pas.runtime.usage sees it across every tier
            res.status, res.error = "budget_exceeded", e.message
            break
        except LLMUnavailable as e:
            res.error = e.message
            break
        res.iterations += 1
        res.tokens += reply.tokens
        res.model_used = reply.model_used
        res.cost_usd = None if res.cost_usd is None or reply.cost_usd is None else res.cost_usd + reply.cost_usd
        if budget is not None:
            budget.charge(reply.tokens, reply.cost_usd)
        messages.append({"role": "assistant", "content": reply.text})
        try:
            blocks = parse_edits(reply.text)
            changed = apply_edits(workdir, blocks, task.allowed_globs)
        except (EditFormatError, CommandRefused, OSError) as e:
            msg = e.message if isinstance(e, CommandRefused) else str(e)
            res.error = f"edits not applied: {msg}"
            messages.append({"role": "user", "content": (
                f"Your reply could not be applied: {msg}\nNothing was changed. Reply again with "
                "edit blocks in the required format.")})
            continue
        written += [c for c in changed if c not in written]
        if not blocks and not acceptance:
            res.error = "the reply contained no edit blocks"
            messages.append({"role": "user", "content": "Your reply contained no edit blocks. Reply with edit blocks."})
            continue
        if not acceptance:
            res.status, res.error = "completed", ""
            break
        try:
            code, out = await run_acceptance(acceptance, workdir)
        except CommandRefused as e:
            res.error = f"acceptance refused: {e.message}"
            break
        except Exception as e:  # the runner broke: no point asking the model again
            res.error = f"acceptance could not run: {type(e).__name__}: {e}"
            break
        res.acceptance_exit, res.acceptance_output = code, out
        if code == 0:
            res.status, res.error = "completed", ""
            break
        res.error = f"acceptance failed with exit code {code}"
        messages.append({"role": "user", "content": (
            f"The acceptance command `{acceptance}` failed (exit code {code}). Output:\n"
            f"{_tail(out)}\n\nCurrent files:\n{_show_files(workdir, list(files) + written)}\n\n"
            "Reply with edit blocks that fix it.")})
    res.changed_files = written
    res.diff = await git_diff(workdir, written)
    return res


__all__ = [
    "EDIT_FORMAT",
    "Block",
    "EditFormatError",
    "EditResult",
    "EditTask",
    "apply_edits",
    "git_diff",
    "parse_edits",
    "run_git",
    "run_llm_edit",
    "safe_path",
    "untracked_files",
]
