"""The shape of a run: which record is whose parent, and how a parent's status follows from its children's."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeAlias, TypeVar

from pas.protocol import subjects as S
from pas.protocol import wire

Parent: TypeAlias = wire.JobRecord | wire.LaneRecord | wire.PlanRecord
"""A record with children: a job (its tasks), a lane (its jobs), a plan (its lanes)."""
P = TypeVar("P", bound=Parent)


@dataclass(frozen=True)
class Noted(Generic[P]):
    """A child's completion noted in its parent: the parent as written, and whether this write finished it
    (True for exactly one caller)."""

    parent: P
    finished_now: bool


@dataclass(frozen=True)
class ParentRef:
    """Where a child's completion is noted: its parent's key and type, and the child's id there."""

    key: str
    typ: type[Parent]
    child: str


def parent_of(ev: wire.RunEvent) -> ParentRef | None:
    """The walk upward: the record whose child ev announces (task -> job -> lane -> plan); None for a plan
    or a run, which have no parent record."""
    if ev.kind == "task":
        return ParentRef(S.job_key(ev.run_id, ev.job_id or ""), wire.JobRecord, ev.task_id or "")
    if ev.kind == "job":
        return ParentRef(S.lane_key(ev.run_id, ev.lane or ""), wire.LaneRecord, ev.job_id or "")
    if ev.kind == "lane":
        return ParentRef(S.plan_key(ev.run_id), wire.PlanRecord, ev.lane or "")
    return None


def children(rec: Parent) -> list[str]:
    """The ids of a parent's children."""
    if isinstance(rec, wire.JobRecord):
        return rec.tasks
    if isinstance(rec, wire.LaneRecord):
        return rec.jobs
    return rec.lanes


def rollup(statuses: list[str]) -> str:
    """Status of a parent from its children's terminal statuses."""
    if any(s == "cancelled" for s in statuses):
        return "cancelled"
    if any(s == "rejected" for s in statuses):
        return "rejected"  # the plan was rejected (approval mode): its held tasks never ran
    # A task dropped at approval ("skipped") does not fail its job.
    return "completed" if all(s in ("completed", "skipped") for s in statuses) else "failed"
