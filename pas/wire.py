"""Wire types: every message PAS puts on NATS, as msgspec structs, JSON on the wire.

A person can publish any of these with `nats pub` and read them with `nats sub`. Handlers receive
decoded, validated structs (see pas.service); bad input never reaches business code.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, Struct, field

from pas.subjects import Lane as Lane  # the one definition of the lanes, re-exported

Executor = Literal["command", "echo", "llm", "aider"]
AgentStatusValue = Literal[
    "ok", "degraded", "down", "queued", "running", "blocked", "waiting_approval", "paused", "error", "done"
]
RunStatusValue = Literal["queued", "running", "waiting_approval", "completed", "failed", "cancelled", "rejected"]
TaskStatusValue = Literal[
    "queued", "running", "completed", "failed", "cancelled", "timeout", "budget_exceeded", "skipped"
]
TERMINAL_TASK = frozenset({"completed", "failed", "cancelled", "timeout", "budget_exceeded", "skipped"})
TERMINAL_RUN = frozenset({"completed", "failed", "cancelled", "rejected"})
PRIORITIES = (20, 10, 5, 1)  # the priority bands of the programmer pool, highest first


def band(priority: int) -> int:
    """The pool band of a priority: the highest band not above it (7 -> 5; below 1 -> 1)."""
    return next((b for b in PRIORITIES if priority >= b), PRIORITIES[-1])

RunId = Annotated[str, Meta(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
Title = Annotated[str, Meta(min_length=1, max_length=500)]
MAX_TEXT = 64 * 1024  # instructions, goals: 64 KiB
Text = Annotated[str, Meta(max_length=MAX_TEXT)]
MAX_OUTPUT = 16 * 1024  # task output kept in status (capped)


def now() -> datetime:
    return datetime.now(UTC)


class Base(Struct, forbid_unknown_fields=True, omit_defaults=False):
    pass


# ---- jobs ----------------------------------------------------------------------------------
class TaskSpec(Base):
    lane: Lane
    instruction: Annotated[str, Meta(min_length=1, max_length=MAX_TEXT)]
    executor: Executor | None = None
    command: Annotated[str, Meta(max_length=4096)] | None = None
    files: Annotated[list[Annotated[str, Meta(max_length=1024)]], Meta(max_length=200)] = []
    acceptance: Annotated[str, Meta(max_length=4096)] | None = None


class Budget(Base):
    tokens_max: Annotated[int, Meta(ge=0)] = 25000
    cost_usd_max: Annotated[float, Meta(ge=0)] = 2.0


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


class SubmitReply(Base):
    run_id: str
    status: str = "queued"
    duplicate: bool = False


class RunRef(Base):
    run_id: RunId


class StatusRef(Struct, forbid_unknown_fields=True):
    """Body of pas.<role>.<id>.status: the id of what to report (a run, a lane); none = the agent."""

    id: str | None = None


class SetModel(Struct, forbid_unknown_fields=True):
    """Body of pas.ctl.<id>.set_model: switch an agent's primary and/or backup model profile."""

    primary: str | None = None
    backup: str | None = None


class ExecuteRequest(Base):
    """Body of pas.prog.execute / pas.prog.<id>.execute: run one task now and reply with the result."""

    instruction: str
    executor: Executor | None = None
    command: str | None = None
    files: list[str] = []
    acceptance: str | None = None
    repo: str | None = None
    env: str | None = None
    run_id: str = "adhoc"
    job_id: str = "adhoc"
    timeout_s: float = 300.0


class Decision(Base):
    """Body of pas.gateway.approve / pas.gateway.reject."""

    run_id: RunId
    by: Annotated[str, Meta(max_length=200)] | None = None
    """Who decides (a person, a tool); the gateway records "anonymous" when absent."""
    drop: Annotated[list[Annotated[str, Meta(max_length=200)]], Meta(max_length=10000)] = []
    """Approve only: task ids removed from the plan (they end `skipped`)."""
    reason: Annotated[str, Meta(max_length=2000)] = ""


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


class RunsQuery(Base):
    limit: Annotated[int, Meta(ge=1, le=1000)] = 50
    status: RunStatusValue | None = None


class Usage(Base):
    tokens: int = 0
    cost_usd: float | None = 0.0
    llm_calls: int = 0
    unknown_cost_calls: int = 0
    """Calls (or aider tasks) whose cost is unknown: cost_usd sums only the known costs."""


class RunRecord(Base):
    """KV pas_runs[<run_id>]: the run's own record, small (every tier reads it). The submitted job
    is kept once under pas_tree[<run>.request]; tasks live under their own keys."""

    run_id: str
    title: str
    status: RunStatusValue
    created_at: datetime
    lanes: list[str] = []
    budget: Budget = field(default_factory=Budget)
    goal: str = ""
    started_at: datetime | None = None
    finished_at: datetime | None = None
    message: str = ""
    degraded: bool = False
    priority: int = 5
    approval_mode: bool = False
    approval: Approval | None = None
    result_branch: str | None = None
    """pas/<run>/result: the completed tasks' branches merged in task order (pas.integrate)."""
    conflicts: list[str] = []
    """Task branches that did not merge into result_branch, with the files (a conflict fails the run)."""
    repo: str | None = None
    """The job's repository (as submitted): root integrates there without reading the request."""


class PlanWork(Base):
    """pas.work.architect: a run to start. The gateway sends the run record it has just created,
    with its revision, and the job (when under CARRY_BYTES), so the architect starts the run by
    compare-and-set without reading either back; a redelivery reads them from KV."""

    run_id: RunId
    run: RunRecord | None = None
    rev: int = 0
    job: JobSubmit | None = None


CARRY_BYTES = 64 * 1024


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


class JobCard(Base):
    """Work item on pas.work.mgr.<lane> (and body of pas.mgr.<lane>.submit)."""

    job_id: str
    run_id: str
    lane: Lane
    tasks: list[TaskSpec]
    goal: str = ""
    repo: str | None = None
    env: str | None = None
    parent_id: str = ""
    submitted_by: str = ""
    priority: int = 5
    approval: bool = False
    """Hold the tasks until the run is approved (the job's approval_mode)."""


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
    repo: str | None = None
    env: str | None = None
    priority: int = 5


class LaneWork(Base):
    """Work item on pas.work.dir.<lane>: one lane of a run for its director."""

    run_id: str
    lane: Lane
    goal: str = ""
    brief: str = ""
    tasks: list[TaskSpec] = []
    repo: str | None = None
    env: str | None = None
    priority: int = 5
    approval: bool = False


class TaskWork(Base):
    """Work item on pas.work.prog.<band>: one atomic task for the programmer pool."""

    run_id: str
    job_id: str
    task_id: str
    lane: str
    manager: str
    spec: TaskSpec
    repo: str | None = None
    env: str | None = None
    timeout_s: float = 300.0
    priority: int = 5


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
    """The environment the task ran in (pas.repoenv), e.g. "venv /repo/.venv (the repository's own)"."""


class RunStatus(Base):
    """Reply of pas.gateway.status: the run record plus its derived tree."""

    run_id: str
    title: str
    status: RunStatusValue
    created_at: datetime
    finished_at: datetime | None
    lanes: list[str]
    tasks: list[TaskRecord]
    usage: Usage
    started_at: datetime | None = None
    message: str = ""
    degraded: bool = False
    priority: int = 5
    approval: Approval | None = None
    result_branch: str | None = None
    conflicts: list[str] = []


class PlanTask(Base):
    task_id: str
    status: str
    spec: TaskSpec


class PlanJob(Base):
    job_id: str
    lane: str
    manager: str
    tasks: list[PlanTask]


class PlanView(Base):
    """Reply of pas.gateway.plan: every job and task the managers planned, with the approval state."""

    run_id: str
    title: str
    status: str
    lanes: list[str]
    jobs: list[PlanJob]
    complete: bool
    """Every lane's director and every job's manager has planned (what approval waits for)."""
    approval_mode: bool = False
    approval: Approval | None = None


class RunEvent(Base):
    """Body of pas.run.<run>.status / .lane.<lane> / .job.<job> / .done.* events."""

    run_id: str
    kind: str  # run | lane | job | task | plan
    status: str
    ts: datetime
    lane: str | None = None
    job_id: str | None = None
    task_id: str | None = None
    agent: str = ""
    message: str = ""


class RunSummary(Base):
    run_id: str
    title: str
    status: str
    created_at: datetime
    finished_at: datetime | None = None


class RunsReply(Base):
    runs: list[RunSummary]


# ---- agents --------------------------------------------------------------------------------
class Heartbeat(Base):
    agent: str
    ts: datetime
    status: AgentStatusValue = "ok"
    run_id: str | None = None
    progress: Annotated[float, Meta(ge=0, le=1)] = 0.0
    message: str = ""
    model: str | None = None  # the primary model profile in use (live switches included)


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


class Alert(Base):
    agent: str
    kind: Literal["dead", "recovered"]
    ts: datetime
    last_beat: datetime | None = None
    missed_s: float = 0.0


class AgentHealth(Base):
    """Reply of pas.<role>.<agent>.health."""

    agent: str
    role: str
    tier: str
    lane: str | None
    parent: str | None
    status: str
    model: str | None
    backup_model: str | None
    started_at: datetime
    in_flight: int = 0
    handled: int = 0


class CommsEntry(Base):
    """One message between agents, kept in PAS_COMMS on pas.comms.<run>.<from>.<type>."""

    ts: datetime
    from_agent: str
    to_agent: str
    msg_type: str
    message: str
    run_id: str | None = None
    status: str = ""
    llm_model: str | None = None
    tokens: int | None = None
    cost_usd: float | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


class ErrorBody(Base):
    """JSON body of every error reply (with the Nats-Service-Error[-Code] headers)."""

    code: int
    error: str
    message: str
    detail: Any = None


class Empty(Struct):
    """Body for endpoints that take nothing: any JSON object (or no body) is accepted."""


# ---- codecs --------------------------------------------------------------------------------
_encoder = msgspec.json.Encoder()


def encode(obj: Any) -> bytes:
    return _encoder.encode(obj)


def decode(data: bytes, typ: type[Any]) -> Any:
    return msgspec.json.decode(data, type=typ)


def to_builtins(obj: Any) -> Any:
    return msgspec.to_builtins(obj)


def effective_executor(spec: TaskSpec) -> str:
    """A task without an executor runs its command if it has one, else goes to the model (llm)."""
    return spec.executor or ("command" if spec.command else "llm")
