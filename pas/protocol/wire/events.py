"""A run event as its readers see it, decoded from what its subject carries: the one decoder.

One write per fact: a run's state is its KV records, and the server turns every record write into the
event pas.run.<run>.<rest> (pas.protocol.subjects, "run events"), live and stored in PAS_EVENTS. So the
body of .status is the RunRecord, of .plan the PlanRecord, of .lane.<lane>, .job.<job>, .task.<task>
the LaneRecord, JobRecord, TaskRecord. The commands PAS publishes (.cancel, .release.<lane>,
.done.plan), and every event stored before records became events, carry a RunEvent. Every reader
(pas replay, the timeline, the HMI, `pas submit --wait`, MCP and A2A watches) decodes with run_event():
a task as its TaskRecord, anything else as a RunEvent, None for what is no event (a run's request, its
usage, a deleted key).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, get_args

import msgspec

from pas.protocol.subjects import parse_run
from pas.protocol.wire.base import EventStatusValue, decode, now
from pas.protocol.wire.records import JobRecord, LaneRecord, PlanRecord, RunRecord, TaskRecord
from pas.protocol.wire.replies import RunEvent

EVENT_STATUSES = frozenset(get_args(EventStatusValue))
_RECORDS: dict[str, type[Any]] = {"status": RunRecord, "plan": PlanRecord, "lane": LaneRecord, "job": JobRecord}
_COMMANDS = ("cancel", "release", "done")

Record = RunRecord | PlanRecord | LaneRecord | JobRecord
RUN_WRITERS = {"queued": "gateway", "running": "architect", "completed": "root", "failed": "root",
               "cancelled": "gateway", "rejected": "gateway"}
"""Who writes a run record with each status (the record does not name its writer): the agent of its event.
(`running` after an approval is the gateway's, `waiting_approval` a manager's: no one agent id says it.)"""


def record_event(rec: Record, ts: datetime | None = None) -> RunEvent:
    """The RunEvent a record's write stands for (ts: when it was written, else the record's own times)."""
    if isinstance(rec, RunRecord):
        when = ts or rec.finished_at or rec.started_at or rec.created_at
        ev = RunEvent(run_id=rec.run_id, kind="run", status=rec.status, ts=when, agent=RUN_WRITERS.get(rec.status, ""),
                      message=rec.message)
    elif isinstance(rec, PlanRecord):
        summary = ", ".join(f"{lane}={rec.done.get(lane, '?')}" for lane in rec.lanes)
        ev = RunEvent(run_id=rec.run_id, kind="plan", status=_status(rec.status), ts=ts or now(),
                      agent=rec.architect, message=summary)
    elif isinstance(rec, LaneRecord):
        ev = RunEvent(run_id=rec.run_id, kind="lane", status=_status(rec.status), ts=ts or now(), lane=rec.lane,
                      agent=rec.director, message=f"{len(rec.done)}/{len(rec.jobs)} job(s) done")
    else:
        ev = RunEvent(run_id=rec.run_id, kind="job", status=_status(rec.status), ts=ts or now(), lane=rec.lane,
                      job_id=rec.job_id, agent=rec.manager,
                      message=f"{sum(s == 'completed' for s in rec.done.values())}/{len(rec.tasks)} tasks completed")
    return ev


def _status(status: str) -> Any:
    if status not in EVENT_STATUSES:
        raise msgspec.ValidationError(f"not an event status: {status!r}")
    return status


def run_event(subject: str, data: bytes, ts: datetime | None = None) -> TaskRecord | RunEvent | None:
    """The event on subject (ts: when the server stored it, if known). Raises msgspec's DecodeError or
    ValidationError for a body that is not what its subject says (readers skip it with a WARNING)."""
    got = parse_run(subject)
    if got is None or not data:
        return None  # not a run event, or a record's deletion
    if got.kind == "task":
        return decode(data, TaskRecord)
    if got.kind in _COMMANDS:
        return decode(data, RunEvent)
    typ = _RECORDS.get(got.kind)
    if typ is None:
        return None  # a run's request, usage, rerun notes: records, not events
    try:
        rec = decode(data, typ)
    except msgspec.ValidationError:
        return decode(data, RunEvent)  # stored before records were events
    return record_event(rec, ts)
