"""The comms log: one JetStream entry per message between agents, in stream PAS_COMMS.

Subject: pas.comms.<run_id>.<from_agent>.<msg_type>, so `nats stream view PAS_COMMS` or
`nats sub 'pas.comms.<run>.>'` selects one run, and 'pas.comms.*.<agent>.>' one sender.
The call shape is the one the original design insisted on: log(from, to, type, message, run, status).

One write per fact: a message that a record's write already says (a run submitted, and its request
stored for the architect; the plan and a lane handed on; a programmer's result; a job, lane or plan
finished; a run ended by root) is not logged by its agent. The server sources every run record write into PAS_COMMS
too (pas.comms.<run>.record.<rest>, pas.protocol.subjects.COMMS_RECORD_SOURCES), and every reader turns
those into the entries they stand for with stored_entry(): pas log, the HMI, pas replay, MCP's run_log.
A record is written by its owner only (pas.transport.auth), so such an entry is as trustworthy as an
agent's own, whose subject NATS checked.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from nats.aio.client import Client
from nats.js import JetStreamContext

from pas.base.redact import redact, redact_obj
from pas.protocol import subjects as S
from pas.protocol import wire
from pas.transport.auth import ANONYMOUS
from pas.transport.streams import ALL, ReadOptions, read_raw

if TYPE_CHECKING:
    from pas.transport.bus import Bus

log = logging.getLogger("pas.comms")


def check(subject: str, e: wire.CommsEntry) -> None:
    """An entry says who sent it where NATS checked it (the subject: each agent may publish only its own
    pas.comms.*.<agent_id>.*) and again in its body: they must agree. ValueError if not."""
    if S.comms(e.run_id, e.from_agent, e.msg_type) != subject:
        raise ValueError(f"its body (from {e.from_agent!r}, run {e.run_id!r}, {e.msg_type}) does not match "
                         f"its subject")


@dataclass(frozen=True)
class Entry:
    """One comms log entry as an agent says it: who to whom, which kind (CMD, RESPONSE, STATUS, LLM,
    ERROR), the text, the run and status it is about, and for a model call its model and spend."""

    from_agent: str
    to_agent: str
    msg_type: str
    message: str
    run_id: str | None = None
    status: str = ""
    llm_model: str | None = None
    tokens: int | None = None
    cost_usd: float | None = None
    metadata: dict[str, Any] | None = None


class CommsLog:
    """With a Bus, every entry is stored for sure (its ack is checked in the background and the
    publish retried through an election or failover); with a bare connection, a plain publish."""

    def __init__(self, nc: Client, preview_chars: int = 2000, bus: Bus | None = None) -> None:
        self.nc = nc
        self.preview_chars = preview_chars
        self.bus = bus

    async def log(self, e: Entry) -> None:
        """Store one entry: stamped, redacted, its message cut to preview_chars."""
        message = redact(e.message)
        if len(message) > self.preview_chars:
            message = message[: self.preview_chars] + f"... [{len(message)} chars]"
        entry = wire.CommsEntry(
            ts=wire.now(),
            from_agent=e.from_agent,
            to_agent=e.to_agent,
            msg_type=e.msg_type,
            message=message,
            run_id=e.run_id,
            status=e.status,
            llm_model=e.llm_model,
            tokens=e.tokens,
            cost_usd=e.cost_usd,
            metadata=redact_obj(e.metadata) if e.metadata else {},  # type: ignore[arg-type]
        )
        # No round trip on the agent's hot path either way.
        subject, data = S.comms(e.run_id, e.from_agent, e.msg_type), wire.encode(entry)
        if self.bus is not None:
            await self.bus.publish_js_nowait(subject, data)
        else:
            await self.nc.publish(subject, data)


Record = wire.RunRecord | wire.PlanRecord | wire.LaneRecord | wire.JobRecord | wire.TaskRecord
_RECORD_TYPES: dict[str, type[Any]] = {"status": wire.RunRecord, "plan": wire.PlanRecord, "lane": wire.LaneRecord,
                                       "job": wire.JobRecord, "task": wire.TaskRecord}


def stored_entry(subject: str, data: bytes, stored: datetime) -> wire.CommsEntry | None:
    """The entry a PAS_COMMS message is: an agent's own (its body checked against its subject), or the
    one a record write stands for (stored: when the server stored it; None: a write that tells nothing
    new, e.g. a task queued, a parent noting one more child). Raises msgspec's errors or ValueError for a
    body that is neither: readers skip it with a WARNING."""
    event = S.record_of_comms(subject)
    if event is None:
        e: wire.CommsEntry = wire.decode(data, wire.CommsEntry)
        check(subject, e)
        return e
    kind = S.parse_run(event)
    if kind is None or not data:
        return None  # a record's deletion
    if kind.kind == S.COMMS_START:  # a programmer's start report, kept as published (S.STARTED_TO_COMMS)
        return start_entry(kind.run_id, kind.rest[0] if len(kind.rest) == 1 else "", data, stored)
    if kind.kind == "request":  # the job as submitted, stored by the gateway for the architect: its hand-over
        job: wire.JobSubmit = wire.decode(data, wire.JobSubmit)
        return wire.CommsEntry(ts=stored, from_agent="gateway", to_agent="architect", msg_type="CMD",
                               message=f"plan run {kind.run_id}: {job.title}", run_id=kind.run_id, status="queued")
    typ = _RECORD_TYPES.get(kind.kind)
    if typ is None:
        return None
    rec: Record = wire.decode(data, typ)
    return record_entry(rec, stored)


def start_entry(run_id: str, programmer: str, data: bytes, stored: datetime) -> wire.CommsEntry:
    """A programmer's start report (pas.mgr.<lane>.started.<run>.<programmer>) as its "run task" entry.
    The sender is the subject's, which NATS checked (pas.transport.auth); a body naming another run or
    programmer is no entry (ValueError: readers skip it with a WARNING, as the managers ignored it)."""
    rec: wire.TaskRecord = wire.decode(data, wire.TaskRecord)
    if rec.run_id != run_id or rec.programmer != programmer:
        raise ValueError(f"start report of {programmer!r} on run {run_id!r} names {rec.programmer!r}, run {rec.run_id!r}")
    meta = redact_obj({"executor": rec.executor, "env": rec.env, "sandbox": rec.sandbox})  # as CommsLog.log does
    return wire.CommsEntry(ts=rec.started_at or stored, from_agent=programmer, to_agent=rec.manager, msg_type="CMD",
                           message=f"run task {rec.task_id} (attempt {rec.attempts})", run_id=run_id,
                           status="running", metadata=meta)  # type: ignore[arg-type]


def record_entry(rec: Record, stored: datetime) -> wire.CommsEntry | None:
    """The comms entry a record write stands for, in the words its agent used to log it; None for a
    write that is no message between agents."""
    def entry(ts: datetime | None, frm: str, to: str, typ: str, message: str, status: str,
              **kw: Any) -> wire.CommsEntry:
        return wire.CommsEntry(ts=ts or stored, from_agent=frm, to_agent=to, msg_type=typ, message=message,
                               run_id=rec.run_id, status=status, **kw)

    done = rec.status in wire.TERMINAL_TASK if isinstance(rec, wire.TaskRecord) else rec.status != "running"
    if isinstance(rec, wire.TaskRecord):
        if not rec.programmer or rec.status == "queued":
            return None  # planned, or ended by a manager (approval): no programmer said anything
        if not done:  # running: a progress write that may be lost; the programmer's start report is the entry
            return None
        meta: dict[str, Any] = {"executor": rec.executor, "attempts": rec.attempts, "env": rec.env}
        return entry(rec.finished_at, rec.programmer, rec.manager, "RESPONSE",
                     f"task {rec.task_id} {rec.status}" + (f": {rec.error}" if rec.error else ""), rec.status,
                     tokens=rec.tokens or None, cost_usd=rec.cost_usd, metadata={**meta, "exit_code": rec.exit_code})
    if isinstance(rec, wire.RunRecord):
        if rec.status == "queued":  # created on a submit: the command of the user the record names
            return entry(rec.created_at, rec.submitted_by or ANONYMOUS, "gateway", "CMD", f"submit {rec.title!r}",
                         "queued", metadata={"lanes": rec.lanes})
        if rec.status in ("completed", "failed"):  # root's ending (a cancel or a rejection is the gateway's)
            return entry(rec.finished_at, "root", "gateway", "STATUS", f"run {rec.run_id} {rec.status}", rec.status)
        return None
    if isinstance(rec, wire.PlanRecord):
        if not done:
            return None if rec.done else entry(None, rec.architect, _directors(rec.lanes), "CMD",
                                               f"lanes {', '.join(rec.lanes)}", "running")
        summary = ", ".join(f"{lane}={rec.done.get(lane, '?')}" for lane in rec.lanes)
        return entry(None, rec.architect, "root", "RESPONSE", f"all lanes done: {summary}", rec.status)
    if isinstance(rec, wire.LaneRecord):
        if not done:
            return None if rec.done else entry(None, rec.director, f"mgr-{rec.lane}", "CMD",
                                               f"lane {rec.lane}: job(s) {', '.join(rec.jobs)}", "queued")
        return entry(None, rec.director, "architect", "RESPONSE",
                     f"lane {rec.lane} {rec.status}: {len(rec.done)}/{len(rec.jobs)} job(s) done", rec.status)
    if not done:
        return None  # the manager logs the job's hand-over to the pool itself (with its tasks)
    n = sum(s == "completed" for s in rec.done.values())
    return entry(None, rec.manager, f"dir-{rec.lane}", "RESPONSE",
                 f"job {rec.job_id} {rec.status}: {n}/{len(rec.tasks)} tasks completed", rec.status)


def _directors(lanes: list[str]) -> str:
    return f"dir-{lanes[0]}" if len(lanes) == 1 else "directors"


async def read(
    js: JetStreamContext,
    *,
    run_id: str | None = None,
    agent: str | None = None,
    msg_type: str | None = None,
    how: ReadOptions = ALL,
) -> AsyncIterator[wire.CommsEntry]:
    """Entries in order, all of them or those from a time (`how.since`) or a stream sequence (`how.start_seq`)
    on. `agent` matches the sender or the receiver; an entry that does not decode is skipped.

    Without `how.follow`, stops after the entries that existed when it started; with it, tails until
    `how.stop` is set (pas.transport.streams.read_raw: an ephemeral pull consumer, pulled in batches).
    """
    async for _, e in read_numbered(js, run_id=run_id, agent=agent, msg_type=msg_type, how=how):
        yield e


async def read_numbered(
    js: JetStreamContext,
    *,
    run_id: str | None = None,
    agent: str | None = None,
    msg_type: str | None = None,
    how: ReadOptions = ALL,
) -> AsyncGenerator[tuple[int, wire.CommsEntry], None]:
    """read(), each entry with its PAS_COMMS sequence (the HMI fills gaps in its live log by it)."""
    subjects: str | tuple[str, ...] = (S.comms_type_filters(run_id, msg_type) if msg_type else
                                       S.comms_run(run_id) if run_id else S.COMMS_ALL)
    async for m in read_raw(js, S.STREAM_COMMS, subjects, how):
        try:
            e = stored_entry(m.subject, m.data, m.stored)
        except Exception as err:
            log.warning("comms log: skipped entry %d (%s): not a valid CommsEntry (%s)", m.seq, m.subject, err)
            continue
        if e is None or (agent and agent not in (e.from_agent, e.to_agent)) or (msg_type and e.msg_type != msg_type):
            continue
        yield m.seq, e


def format_entry(e: wire.CommsEntry) -> str:
    ts = e.ts.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    extra = ""
    if e.llm_model:
        cost = "unknown" if e.cost_usd is None else f"${e.cost_usd:.6f}"
        extra = f" [{e.llm_model} tok={e.tokens} cost={cost}]"
    line = f"{ts} {e.run_id or '-':<20} {e.from_agent:>12} -> {e.to_agent:<12} {e.msg_type:<8} {e.status:<10} {e.message}{extra}"
    return redact(line)  # entries written by anything but PAS were not redacted at the source
