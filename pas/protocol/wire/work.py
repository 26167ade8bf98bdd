"""The work items on the PAS_WORK queues, one a tier: a run for the architect, a lane for its
director, a job card for its manager, a task for the programmer pool."""

from __future__ import annotations

import msgspec

from pas.protocol.subjects import Lane
from pas.protocol.wire.base import Base, JobId, RunId
from pas.protocol.wire.context import RunContext
from pas.protocol.wire.records import RunRecord
from pas.protocol.wire.requests import JobSubmit, TaskSpec


class PlanWork(Base):
    """pas.work.architect: a run to start. The gateway sends the run record it has just created,
    with its revision, and the job (when under CARRY_BYTES), so the architect starts the run by
    compare-and-set without reading either back; a redelivery reads them from KV."""

    run_id: RunId
    run: RunRecord | None = None
    rev: int = 0
    job: JobSubmit | None = None


CARRY_BYTES = 64 * 1024


class LaneWork(Base):
    """Work item on pas.work.dir.<lane>: one lane of a run for its director."""

    run_id: str
    lane: Lane
    brief: str = ""
    tasks: list[TaskSpec] = []
    ctx: RunContext = msgspec.field(default_factory=RunContext)


class JobCard(Base):
    """Work item on pas.work.mgr.<lane>: one job of a lane for its managers."""

    job_id: JobId
    run_id: RunId
    lane: Lane
    tasks: list[TaskSpec]
    ctx: RunContext = msgspec.field(default_factory=RunContext)
    parent_id: str = ""
    submitted_by: str = ""


class TaskWork(Base):
    """Work item on pas.work.prog.<band>: one atomic task for the programmer pool."""

    run_id: str
    job_id: str
    task_id: str
    lane: str
    manager: str
    spec: TaskSpec
    ctx: RunContext = msgspec.field(default_factory=RunContext)
    timeout_s: float = 300.0
