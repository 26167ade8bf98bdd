"""Integration: bring the task branches of one run together on ``pas/<run>/result``.

Every programmer task works in its own worktree on ``pas/<run>/<task>``, branched from the
repository's HEAD at the time. After the run, the branches of the tasks that completed are merged,
in task order (lane order of the run, then job, then task number), into ``pas/<run>/result``, made
from the same base. A branch that does not merge cleanly is left out (the merge is aborted) and
reported as a conflict naming the task and the files; the later branches are still tried, so one
report lists every conflict. A branch that changes a protected path (the job's `protected_paths`) is
left out the same way, naming the task and the paths. The merge runs in a temporary worktree that is
removed afterwards.

PAS Root integrates when a run ends (pas.roles.root), if the run has a repository and a task
changed something: the run's record gets ``result_branch`` and ``conflicts``, and a conflict
fails a run that would otherwise have completed.
"""

from __future__ import annotations

import subprocess
import tempfile
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path

from pas.base.programs import remove_tree
from pas.execution import gitsafe

GIT_ID = ["-c", "user.name=PAS integrate", "-c", "user.email=pas@localhost"]


@dataclass
class Conflict:
    task_id: str
    branch: str
    files: list[str]

    def __str__(self) -> str:
        return f"task {self.task_id} conflicts in {', '.join(self.files) or '?'} (branch {self.branch})"


@dataclass
class Refused(Conflict):
    def __str__(self) -> str:
        return f"task {self.task_id} changed protected path(s) {', '.join(self.files)} (branch {self.branch})"


def is_protected(path: str, patterns: list[str]) -> bool:
    """A glob match, or the path itself or a file under it ("secrets/" or "secrets")."""
    return any(fnmatchcase(path, p) or path == p.rstrip("/") or path.startswith(p.rstrip("/") + "/")
               for p in patterns)


@dataclass
class Integration:
    branch: str
    merged: list[str] = field(default_factory=list)
    """Task ids whose branch is in the result."""
    conflicts: list[Conflict] = field(default_factory=list)
    refused: list[Refused] = field(default_factory=list)
    """Task branches left out because they changed a protected path."""
    skipped: list[str] = field(default_factory=list)
    """Task ids left out because they did not complete (or have no branch)."""

    @property
    def ok(self) -> bool:
        return not self.conflicts and not self.refused

    def reason(self) -> str:
        parts = (["merge conflict: " + "; ".join(str(c) for c in self.conflicts)] if self.conflicts else []) + \
            [str(r) for r in self.refused]
        return "; ".join(parts)


def _git(cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    """PAS's hardened git (pas.execution.gitsafe) with PAS's identity for the merge commits."""
    return gitsafe.run(cwd, *GIT_ID, *args, check=check)


def task_order(task_id: str) -> tuple[int, int, int, str]:
    """<lane>-<job>-<nn> in lane order (pas.protocol.subjects.LANES), then job, then task number."""
    from pas.protocol.subjects import LANES

    lane, _, rest = task_id.partition("-")
    job, _, n = rest.partition("-")
    return (LANES.index(lane) if lane in LANES else len(LANES), int(job) if job.isdigit() else 0,
            int(n) if n.isdigit() else 0, task_id)


def integrate(repo: Path, run_id: str, tasks: list[dict], base: str = "HEAD",
              protected: list[str] | None = None) -> Integration:
    """Merge the completed tasks' branches (task dicts as in `pas status --json`: task_id, status,
    branch) into pas/<run_id>/result, in the given order; a branch changing a `protected` path is
    left out (Integration.refused)."""
    result = Integration(branch=f"pas/{run_id}/result")
    tasks = sorted(tasks, key=lambda t: task_order(str(t["task_id"])))
    tmp = Path(tempfile.mkdtemp(prefix="pas-integrate-"))
    wt = tmp / "wt"
    _git(repo, "worktree", "add", "-q", "-B", result.branch, str(wt), base)
    try:
        for t in tasks:
            branch = t.get("branch")
            if t.get("status") != "completed" or not branch:
                result.skipped.append(t["task_id"])
                continue
            if protected:
                # HEAD...branch: what the branch changed since it left the base (HEAD is base + merges)
                changed = _git(wt, "diff", "--name-only", "-z", f"HEAD...{branch}").stdout.decode(errors="replace")
                touched = [f for f in changed.split("\0") if f and is_protected(f, protected)]
                if touched:
                    result.refused.append(Refused(t["task_id"], branch, touched))
                    continue
            p = _git(wt, "merge", "--no-ff", "--no-edit", "--no-verify", "-m", f"pas: integrate task {t['task_id']}",
                     branch, check=False)
            if p.returncode == 0:
                result.merged.append(t["task_id"])
                continue
            files = _git(wt, "diff", "--name-only", "--diff-filter=U", check=False).stdout.decode(errors="replace").split()
            _git(wt, "merge", "--abort", check=False)
            result.conflicts.append(Conflict(t["task_id"], branch, files))
    finally:
        _git(repo, "worktree", "remove", "--force", str(wt), check=False)
        remove_tree(tmp)
    return result


def checkout(repo: Path, branch: str, dest: Path) -> Path:
    """A plain copy of `branch`'s files at dest (git archive: no .git, nothing untracked)."""
    dest.mkdir(parents=True, exist_ok=True)
    archive = gitsafe.run(repo, "archive", "--format=tar", branch)
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    return dest
