"""The eval task set: loading tasks, making fresh repositories, running the hidden tests.

A task is a directory evals/tasks/<name>/ with

- task.yaml: ``goal`` (plain words), ``acceptance`` (the visible command, run in the repository),
  ``lanes`` (the lanes the job may use), ``category`` (fix, feature, docs, tests, data, trap),
  optional ``notes``;
- repo/: the repository the swarm gets (copied into a fresh git repository per run);
- hidden/: the tests that decide pass or fail. They are copied next to the result AFTER the run,
  by the harness; no model ever sees them;
- solution/ (optional): a reference solution laid over repo/ (used to check the task itself: the
  hidden tests fail on repo/ and pass on repo/ + solution/; and by the scripted fake model).
"""

from __future__ import annotations

import fnmatch
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from pas.base.errors import PasError
from pas.execution import gitsafe

CATEGORIES = ("fix", "feature", "docs", "tests", "data", "trap")
HIDDEN_TIMEOUT_S = 60.0
GIT_ID = ["-c", "user.name=PAS eval", "-c", "user.email=eval@localhost"]


def default_tasks_dir() -> Path:
    """evals/tasks of the source tree (the task set is not shipped in the wheel)."""
    env = os.environ.get("PAS_EVAL_TASKS")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3] / "evals" / "tasks"


@dataclass
class EvalTask:
    name: str
    path: Path
    goal: str
    acceptance: str
    lanes: list[str]
    category: str
    notes: str = ""
    files: list[str] = field(default_factory=list)
    """The repository's files (relative paths), what a solo model is shown."""

    @property
    def repo_dir(self) -> Path:
        return self.path / "repo"

    @property
    def hidden_dir(self) -> Path:
        return self.path / "hidden"

    @property
    def solution_dir(self) -> Path:
        return self.path / "solution"

    def solution(self) -> dict[str, str]:
        """Reference solution: relative path -> content (empty without one)."""
        d = self.solution_dir
        return {str(p.relative_to(d)): p.read_text() for p in sorted(d.rglob("*")) if p.is_file()}

    def prompt(self) -> str:
        """The goal as given to the swarm and to the solo model: goal + the visible acceptance command."""
        return f"{self.goal}\n\nThe work is accepted when `{self.acceptance}` passes in the repository root."


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")
                  if p.is_file() and "__pycache__" not in p.parts)


def load_task(path: Path) -> EvalTask:
    meta_file = path / "task.yaml"
    try:
        meta = yaml.safe_load(meta_file.read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise PasError(f"eval task {path.name}: cannot read task.yaml: {e}") from None
    missing = [k for k in ("goal", "acceptance", "lanes", "category") if not meta.get(k)]
    unknown = set(meta) - {"goal", "acceptance", "lanes", "category", "notes"}
    if missing or unknown:
        raise PasError(f"eval task {path.name}: task.yaml missing {missing} / unknown keys {sorted(unknown)}")
    if meta["category"] not in CATEGORIES:
        raise PasError(f"eval task {path.name}: category {meta['category']!r} not one of {CATEGORIES}")
    if not (path / "repo").is_dir() or not list((path / "hidden").glob("test_*.py")):
        raise PasError(f"eval task {path.name}: needs repo/ and hidden/test_*.py")
    return EvalTask(name=path.name, path=path, goal=str(meta["goal"]).strip(), acceptance=str(meta["acceptance"]),
                    lanes=list(meta["lanes"]), category=meta["category"], notes=str(meta.get("notes") or ""),
                    files=_files(path / "repo"))


def load_tasks(root: Path | None = None, pattern: str = "*") -> list[EvalTask]:
    """Tasks under root whose name matches the glob `pattern` (comma-separated globs allowed)."""
    root = root or default_tasks_dir()
    if not root.is_dir():
        raise PasError(f"eval: no task directory {root} (set --tasks-dir or PAS_EVAL_TASKS)")
    globs = [g.strip() for g in pattern.split(",") if g.strip()] or ["*"]
    tasks = [load_task(p) for p in sorted(root.iterdir())
             if (p / "task.yaml").exists() and any(fnmatch.fnmatch(p.name, g) for g in globs)]
    if not tasks:
        raise PasError(f"eval: no task in {root} matches {pattern!r}")
    return tasks


def _git(repo: Path, *args: str) -> str:
    return gitsafe.run(repo, *GIT_ID, *args).stdout.decode(errors="replace")


def make_repo(task: EvalTask, dest: Path) -> Path:
    """A fresh git repository at dest holding the task's repo/ (never hidden/ or solution/), on main."""
    shutil.copytree(task.repo_dir, dest, ignore=shutil.ignore_patterns("__pycache__"))
    _git(dest, "init", "-q", "-b", "main")
    _git(dest, "add", "-A")
    _git(dest, "commit", "-q", "-m", f"eval task {task.name}")
    return dest


@dataclass
class HiddenResult:
    passed: bool
    summary: str
    output: str


def run_hidden(task: EvalTask, checkout: Path, python: str | None = None) -> HiddenResult:
    """Copy the hidden tests into `checkout` (a scratch checkout of the result) and run them with
    unittest; the task repositories need nothing beyond the standard library."""
    names = []
    for f in sorted(task.hidden_dir.glob("test_*.py")):
        shutil.copy(f, checkout / f.name)
        names.append(f.stem)
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPATH": str(checkout)}
    try:
        p = subprocess.run([python or sys.executable, "-m", "unittest", "-q", *names], cwd=checkout, env=env,
                           capture_output=True, text=True, timeout=HIDDEN_TIMEOUT_S, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return HiddenResult(False, f"hidden tests timed out after {HIDDEN_TIMEOUT_S:.0f}s", "")
    out = (p.stdout + p.stderr).strip()
    last = next((ln for ln in reversed(out.splitlines()) if ln.strip()), "")
    if p.returncode == 0:
        return HiddenResult(True, last or "OK", out)
    return HiddenResult(False, f"hidden tests failed: {last}", out)
