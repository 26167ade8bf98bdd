"""What PAS answers and announces: the gateway's replies (a run's status, its plan, the list of
runs), run events, heartbeats, alerts, agent health, the comms log's entries and error bodies."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from msgspec import Meta, Struct, field

from pas.protocol.wire.base import AgentStatusValue, Base, EventKind, EventStatusValue, RunStatusValue
from pas.protocol.wire.records import Approval, TaskRecord
from pas.protocol.wire.requests import TaskSpec


class SubmitReply(Base):
    run_id: str
    status: str = "queued"
    duplicate: bool = False


class Usage(Base):
    tokens: int = 0
    cost_usd: float | None = 0.0
    llm_calls: int = 0
    unknown_cost_calls: int = 0
    """Calls (or aider tasks) whose cost is unknown: cost_usd sums only the known costs."""


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
    tasks_total: int = 0
    """How many tasks the run has; `tasks` holds those from `offset` (a page)."""
    offset: int = 0
    next_offset: int | None = None
    """Where the next page of tasks starts; None when this reply reaches the last task."""


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


class RunSummary(Base):
    run_id: str
    title: str
    status: str
    created_at: datetime
    finished_at: datetime | None = None


class RunsReply(Base):
    runs: list[RunSummary]
    total: int = 0
    """How many runs match (the status filter); `runs` are those from the query's offset."""
    next_offset: int | None = None
    """The offset of the next page of runs; None when this one reaches the oldest."""


class RunEvent(Base):
    """Body of pas.run.<run>.status / .lane.<lane> / .job.<job> / .done.* events."""

    run_id: str
    kind: EventKind
    status: EventStatusValue
    ts: datetime
    lane: str | None = None
    job_id: str | None = None
    task_id: str | None = None
    agent: str = ""
    message: str = ""


class ChildDone(Base):
    """Body of pas.mgr.<lane>.done, pas.dir.<lane>.done, pas.architect.lanes.done: a task, job or lane
    ended; the owner of its parent's record notes it and goes on up (pas.runtime.runs.note_child_done).
    `redelivered`: the walk is a repeat (the child's work item came again), so finished parents are
    announced again. `task`: a programmer's result (its task record), which the managers store after
    checking that the sender holds the task (pas.runtime.taskowner); None on a repeated walk."""

    event: RunEvent
    redelivered: bool = False
    task: TaskRecord | None = None


class Heartbeat(Base):
    agent: str
    ts: datetime
    status: AgentStatusValue = "ok"
    run_id: str | None = None
    progress: Annotated[float, Meta(ge=0, le=1)] = 0.0
    message: str = ""
    model: str | None = None  # the primary model profile in use (live switches included)


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
