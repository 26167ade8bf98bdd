"""The records PAS keeps in KV: a run (pas_runs), its plan, lanes, jobs and tasks (pas_tree), and
the heartbeat monitor's view of each agent (pas_agents). A task record is also the body of its event."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from msgspec import field

from pas.protocol.wire.base import Base, RunStatusValue, TaskStatusValue
from pas.protocol.wire.context import RunContext
from pas.protocol.wire.requests import Budget, TaskSpec


class Approval(Base):
    """The approval state of a run in approval mode (part of its RunRecord)."""

    status: Literal["pending", "approved", "rejected"] = "pending"
    requested_at: datetime | None = None
    deadline: datetime | None = None
    decided_at: datetime | None = None
    decided_by: str = ""
    reason: str = ""
    dropped: list[str] = []
    released: bool = False
    """Approved and the managers told to release the held tasks (pas.run.<run>.release.<lane>)."""


def decider(by: str) -> str:
    """Who decided, for messages: a bare name is a user's (the CLI sends the login name, so "rejected by
    root" would read as PAS Root), `http:<addr>`, the gateway (a timeout) and `anonymous` say themselves."""
    if by in ("gateway", "anonymous") or ":" in by:
        return by
    return f"user {by}"


class RunRecord(Base):
    """KV pas_runs[<run_id>]: the run's own record, small (every tier reads it). The submitted job
    is kept once under pas_tree[<run>.request]; tasks live under their own keys."""

    run_id: str
    title: str
    status: RunStatusValue
    created_at: datetime
    lanes: list[str] = []
    budget: Budget = field(default_factory=Budget)
    protected_paths: list[str] = []
    """The job's protected paths: root leaves out (and fails the run for) a task branch touching one."""
    goal: str = ""
    started_at: datetime | None = None
    finished_at: datetime | None = None
    message: str = ""
    degraded: bool = False
    priority: int = 5
    approval_mode: bool = False
    approval: Approval | None = None
    result_branch: str | None = None
    """pas/<run>/result: the completed tasks' branches merged in task order (pas.execution.integrate)."""
    conflicts: list[str] = []
    """Task branches that did not merge into result_branch, with the files (a conflict fails the run)."""
    repo: str | None = None
    """The job's repository (as submitted): root integrates there without reading the request."""
    submitted_by: str | None = None
    """The NATS user that submitted it on pas.gateway.as.<user>.submit (None: on pas.gateway.submit)."""


class PlanRecord(Base):
    """KV pas_tree[<run>.plan]: the lanes the architect opened."""

    run_id: str
    lanes: list[str]
    architect: str
    status: str = "running"
    done: dict[str, str] = {}  # lane -> terminal status, filled by compare-and-set as lanes finish


class LaneRecord(Base):
    """KV pas_tree[<run>.lane.<lane>]: the job cards a director handed out."""

    run_id: str
    lane: str
    director: str
    jobs: list[str]
    status: str = "running"
    done: dict[str, str] = {}  # job id -> terminal status, filled by compare-and-set as jobs finish


class JobRecord(Base):
    """KV pas_tree[<run>.job.<job>]: the tasks a manager decomposed a job card into."""

    run_id: str
    job_id: str
    lane: str
    manager: str
    tasks: list[str]
    status: str = "running"
    specs: list[TaskSpec] = []  # the planned tasks, so a redelivered job card is not planned again
    done: dict[str, str] = {}  # task id -> terminal status, filled by compare-and-set as tasks finish
    ctx: RunContext = field(default_factory=RunContext)  # the job card's, for its tasks released on approval


ACCEPTANCE_MARK = "\n--- acceptance `"
"""Where an llm task's output shows its acceptance run: <diff><MARK><command>` exit <code>\n<output>."""


class TaskRecord(Base):
    """KV pas_tree[<run>.task.<task>] and the body of pas.run.<run>.task.<task> events."""

    task_id: str
    run_id: str
    job_id: str
    lane: str
    manager: str
    executor: str
    instruction: str
    status: TaskStatusValue = "queued"
    programmer: str = ""
    command: str | None = None
    exit_code: int | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    output: str = ""
    error: str = ""
    attempts: int = 0
    branch: str | None = None
    diff_stat: str | None = None
    tokens: int = 0
    cost_usd: float | None = 0.0
    env: str | None = None
    """The environment the task ran in (pas.execution.repoenv), e.g. "venv /repo/.venv (the repository's own)"."""
    sandbox: str | None = None
    """How the task's process was confined (pas.execution.sandbox: bwrap, or off), as its programmer said."""


class AgentState(Base):
    """KV pas_agents[<agent_id>]: the heartbeat monitor's view of one agent."""

    agent: str
    state: Literal["alive", "dead"]
    last_beat: datetime
    status: str = "ok"
    run_id: str | None = None
    message: str = ""
    since: datetime | None = None
    model: str | None = None
