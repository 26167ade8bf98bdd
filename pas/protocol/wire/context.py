"""The run context: what a run's submitter decided for all of it, in every work item of the run."""

from __future__ import annotations

from typing import Annotated

from msgspec import Meta, Struct

from pas.protocol.wire.requests import JobSubmit


# wire.Base's options, and frozen (a frozen struct cannot subclass the mutable Base): no tier can change it.
class RunContext(Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=False):
    """What the submitter decided for the whole run, carried unchanged in every work item below the
    architect (LaneWork, JobCard, TaskWork) and kept in the job record: set once where the work tree
    starts (the architect, from the request the gateway admitted; a manager, for a job card submitted
    to it directly). No tier copies it field by field or changes it; each reads what it needs."""

    goal: str = ""
    repo: str | None = None
    env: str | None = None
    priority: Annotated[int, Meta(ge=1, le=20)] = 5
    approval: bool = False
    """Hold the tasks until the run is approved (the job's approval_mode)."""

    @classmethod
    def of(cls, job: JobSubmit) -> RunContext:
        """The context of a run submitted as `job` (its repo as the gateway admitted it)."""
        return cls(goal=job.goal or job.title, repo=job.repo, env=job.env, priority=job.priority,
                   approval=job.approval_mode)
