"""What clients send: a job and its tasks, and the bodies of the gateway's, the programmers' and
the agents' request endpoints."""

from __future__ import annotations

from typing import Annotated, Literal

from msgspec import Meta, Struct

from pas.protocol.subjects import Lane
from pas.protocol.wire.base import MAX_TEXT, Base, Executor, JobId, RunId, RunStatusValue, TaskId, Text, Title


class TaskSpec(Base):
    lane: Lane
    instruction: Annotated[str, Meta(min_length=1, max_length=MAX_TEXT)]
    executor: Executor | None = None
    command: Annotated[str, Meta(max_length=4096)] | None = None
    files: Annotated[list[Annotated[str, Meta(max_length=1024)]], Meta(max_length=200)] = []
    acceptance: Annotated[str, Meta(max_length=4096)] | None = None


class Budget(Base):
    """Bounded, so a budget is a finite number everywhere it is stored and compared (1e400 is refused)."""

    tokens_max: Annotated[int, Meta(ge=0, le=10**9)] = 25000
    cost_usd_max: Annotated[float, Meta(ge=0, le=10**6)] = 2.0


class JobSubmit(Base):
    """Body of pas.gateway.submit."""

    title: Title
    run_id: RunId | None = None
    goal: Text | None = None
    repo: Annotated[str, Meta(max_length=4096)] | None = None
    env: Annotated[str, Meta(max_length=4096)] | None = None
    """The tasks' Python environment when the repo has no .venv: a venv/conda dir or an interpreter."""
    lanes: Annotated[list[Lane], Meta(max_length=5)] | None = None
    tasks: Annotated[list[TaskSpec], Meta(max_length=10000)] | None = None
    budget: Budget | None = None
    priority: Literal[1, 5, 10, 20] = 5
    approval_mode: bool = False
    idempotency_key: Annotated[str, Meta(max_length=256)] | None = None
    protected_paths: Annotated[list[Annotated[str, Meta(max_length=1024)]], Meta(max_length=200)] = []
    """Paths (globs; "dir/" for a tree) no task may change: a task branch that does is left out of
    the result and fails the run, naming task and path (pas.execution.integrate). Needs `repo`."""


class JobCardSubmit(Base):
    """Body of pas.mgr.<lane>.submit (the legacy POST /submit of a manager): a job card outside any
    run's work tree, with its context given field by field; the manager makes the JobCard."""

    job_id: JobId
    run_id: RunId
    lane: Lane
    tasks: list[TaskSpec]
    goal: str = ""
    repo: str | None = None
    env: str | None = None
    parent_id: str = ""
    submitted_by: str = ""
    priority: Annotated[int, Meta(ge=1, le=20)] = 5
    approval: bool = False


class RunRef(Base):
    run_id: RunId


class StatusQuery(Base):
    """Body of pas.gateway.status: a run, and which of its tasks (in task id order). The reply holds
    the tasks from `offset`, at most `limit` (default: as many as fit in one NATS message), and says
    where the next page starts (RunStatus.next_offset)."""

    run_id: RunId
    offset: Annotated[int, Meta(ge=0)] = 0
    limit: Annotated[int, Meta(ge=1, le=100000)] | None = None


class RunsQuery(Base):
    limit: Annotated[int, Meta(ge=1, le=1000)] = 50
    status: RunStatusValue | None = None
    offset: Annotated[int, Meta(ge=0)] = 0
    """Skip this many of the newest runs (pages past the first `limit`)."""


class Decision(Base):
    """Body of pas.gateway.approve / pas.gateway.reject."""

    run_id: RunId
    by: Annotated[str, Meta(max_length=200)] | None = None
    """Who decides (a person, a tool); the gateway records "anonymous" when absent."""
    drop: Annotated[list[TaskId], Meta(max_length=10000)] = []
    """Approve only: task ids removed from the plan (they end `skipped`)."""
    reason: Annotated[str, Meta(max_length=2000)] = ""


class ExecuteRequest(Base):
    """Body of pas.prog.execute / pas.prog.<id>.execute: run one task now and reply with the result."""

    instruction: str
    executor: Executor | None = None
    command: str | None = None
    files: list[str] = []
    acceptance: str | None = None
    model: str | None = None
    """The model profile to use: this programmer's primary (the default) or its backup."""
    budget_usd: Annotated[float, Meta(ge=0, le=10**6)] | None = None
    """A cost cap for this one task, below the per-job cap (llm tasks: aider reports no cost)."""
    repo: str | None = None
    env: str | None = None
    run_id: RunId = "adhoc"
    job_id: JobId = "adhoc"
    timeout_s: Annotated[float, Meta(ge=1, le=86400)] = 300.0


class StatusRef(Struct, forbid_unknown_fields=True):
    """Body of pas.<role>.<id>.status: the id of what to report (a run, a lane); none = the agent."""

    id: str | None = None


class SetModel(Struct, forbid_unknown_fields=True):
    """Body of pas.ctl.<id>.set_model: switch an agent's primary and/or backup model profile."""

    primary: str | None = None
    backup: str | None = None


def effective_executor(spec: TaskSpec) -> str:
    """A task without an executor runs its command if it has one, else goes to the model (llm)."""
    return spec.executor or ("command" if spec.command else "llm")
