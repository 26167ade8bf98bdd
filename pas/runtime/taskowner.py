"""Task records belong to their lane's managers: a programmer reports, the managers check and write.

A programmer's credentials are what a task's code could reach, so a programmer writes no task record
(pas.transport.auth). It tells its lane's managers when it takes a task (pas.mgr.<lane>.started.<id>,
a plain publish) and what came of it (pas.mgr.<lane>.done.<id>, the first step of the completion walk),
on subjects that name it: each programmer may publish only its own id. The managers record the holder
in the task's record and store what the holder reports; a start or a result from another programmer
is refused with a WARNING, unless it is a later attempt (JetStream redelivers a task whose holder died
or timed out; that takeover is logged too), and a finished record is never written again.

No read on the hot path: the record as this process last wrote it (the queued one from decompose, the
running one from the start) is kept by the run store (pas.runtime.store); KV is read only when another
process wrote it.
"""

from __future__ import annotations

import logging

from nats.js.errors import KeyWrongLastSequenceError

from pas.base.errors import BadRequest, Forbidden
from pas.base.textsafe import cap
from pas.protocol import subjects as S
from pas.protocol import wire
from pas.protocol.ids import is_id
from pas.runtime.store import RunStore

log = logging.getLogger("pas.taskowner")

REPORTED = ("status", "attempts", "exit_code", "output", "error", "tokens", "cost_usd", "branch", "diff_stat",
            "started_at", "finished_at", "env", "sandbox")
"""What a programmer reports of a task; the rest of the record (ids, lane, manager, spec) is the managers'."""


async def stored(store: RunStore, key: str) -> tuple[wire.TaskRecord | None, int | None]:
    """The task record as this process wrote it (revision None), else as stored (with its revision)."""
    mine = store.written_task(key)
    if mine is not None:
        return mine, None
    read = await store.task(key)
    return (read.record, read.rev) if read else (None, None)


def _refusal(prev: wire.TaskRecord | None, rec: wire.TaskRecord, sender: str, lane: str) -> str | None:
    """Why `sender` may not report rec (None: it may)."""
    if not (is_id(rec.run_id) and is_id(rec.task_id)):
        return f"bad ids run_id={rec.run_id!r} task_id={rec.task_id!r}"
    if (prev or rec).lane != lane:
        return f"the task is lane {(prev or rec).lane!r}'s, not {lane!r}'s"
    if prev is None:
        return None
    if prev.status in wire.TERMINAL_TASK:
        return f"it ended {prev.status} already"
    if prev.status == "running" and prev.programmer != sender:
        if rec.attempts > prev.attempts:  # a redelivery: the holder died or timed out
            log.warning("task %s.%s: %s takes over from %s (attempt %d after %d)", rec.run_id, rec.task_id, sender,
                        prev.programmer, rec.attempts, prev.attempts)
            return None
        return f"{prev.programmer} holds it (attempt {prev.attempts})"
    return None


def _merged(prev: wire.TaskRecord | None, rec: wire.TaskRecord, sender: str) -> wire.TaskRecord:
    """The managers' fields from the stored record, the reported ones from the programmer (bounded again)."""
    out: wire.TaskRecord = wire.decode(wire.encode(prev or rec), wire.TaskRecord)
    for name in REPORTED:
        setattr(out, name, getattr(rec, name))
    out.programmer = sender
    out.output = cap(out.output, wire.MAX_OUTPUT, tail=True)
    out.error = cap(out.error, wire.MAX_ERROR)
    return out


async def started(store: RunStore, rec: wire.TaskRecord, sender: str, lane: str,
                  run_id: str | None = None) -> wire.TaskRecord | None:
    """A programmer took a task: record it as the holder (a progress write, not awaited by the store).
    run_id: the run its subject names (the body's must match: the comms entry PAS_COMMS keeps of the
    same message is filed under it). None, with a WARNING, if it may not."""
    if run_id is not None and run_id != rec.run_id:
        log.warning("ignored %s's start of task %s.%s: sent on run %r's subject", sender, rec.run_id, rec.task_id,
                    run_id)
        return None
    key = S.task_key(rec.run_id, rec.task_id)
    mine = store.written_task_at(key)  # with the revision of its create, once that was acknowledged
    prev, rev = await stored(store, key) if is_id(rec.run_id) and is_id(rec.task_id) else (None, None)
    if prev is not None and prev.status in wire.TERMINAL_TASK and prev.programmer == sender:
        return None  # its own result got here first (the two reports took different managers)
    why = _refusal(prev, rec, sender, lane) or (None if rec.status == "running" else f"status {rec.status!r}")
    if why:
        log.warning("ignored %s's start of task %s.%s: %s", sender, rec.run_id, rec.task_id, why)
        return None
    new = _merged(prev, rec, sender)
    # Remembered before the write: a result handled meanwhile in this process finds the holder, and its
    # write, later, wins. Read from the store (another process wrote it): written only over what was read.
    store.remember_task(key, new)
    if rev is None:  # as this process wrote it: only over that write, when its revision is known (the
        # result may be stored meanwhile by another manager, whose connection NATS does not order after this);
        # a create still in flight here (the programmer took the task first): its acknowledgement is waited for
        last = (mine.rev if mine is not None else 0) or await store.created_rev(key)
        await store.put_task_progress(key, new, last)
        return new
    try:
        await store.update_task(key, new, rev)
    except KeyWrongLastSequenceError:  # the result was stored meanwhile: it stands
        store.forget_task(key)
        return None
    return new


async def finished(store: RunStore, done: wire.ChildDone, sender: str, lane: str) -> wire.TaskRecord:
    """A programmer's result: stored if the sender holds the task, then returned for the walk up. A task
    that ended already (a repeated walk) keeps its stored result, which is returned. Forbidden, with a
    WARNING, for anyone else."""
    ev = done.event
    rec = done.task
    if not (is_id(ev.run_id) and is_id(ev.task_id or "")):
        raise BadRequest(f"bad task ids run_id={ev.run_id!r} task_id={ev.task_id!r}", detail={"field": "event"})
    key = S.task_key(ev.run_id, ev.task_id or "")
    prev, _ = await stored(store, key)
    if prev is not None and prev.status in wire.TERMINAL_TASK:
        return prev  # announced again: the stored result stands
    if rec is None or (rec.run_id, rec.task_id) != (ev.run_id, ev.task_id) or rec.status not in wire.TERMINAL_TASK:
        raise BadRequest(f"a result of task {ev.task_id!r} needs its finished task record", detail={"field": "task"})
    why = _refusal(prev, rec, sender, lane)
    if why:
        log.warning("refused %s's result of task %s.%s: %s", sender, rec.run_id, rec.task_id, why)
        raise Forbidden(f"task {rec.run_id}.{rec.task_id}: {why}")
    new = _merged(prev, rec, sender)
    store.remember_task(key, new)  # first: a start handled meanwhile in this process is not written over it
    try:
        await store.put_task(key, new)
    except BaseException:
        store.forget_task(key)  # not stored: the programmer's retry finds the store as it is
        raise
    return new
